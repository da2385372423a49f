package cluster

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

// tableGrain makes an activation of kind hk for a table test, with its hash.
func tableGrain(hk *hostedKind, identity string) (*activation, uint64) {
	return &activation{hk: hk, identity: identity}, hashString(hk.keySeed, identity)
}

// TestActTableInsertFindRemove fills a table, empties most of it and fills
// it again, checking every key after each step: the table grows, probes
// past tombstones, and shrinks.
func TestActTableInsertFindRemove(t *testing.T) {
	kinds := []*hostedKind{newHostedKind(nil, &Kind{Name: "a"}), newHostedKind(nil, &Kind{Name: "b"})}
	const n = 2000
	type entry struct {
		a *activation
		h uint64
	}
	var all []entry
	for i := range n {
		a, h := tableGrain(kinds[i%2], fmt.Sprint("grain-", i/2)) // the same identities under two kinds
		all = append(all, entry{a, h})
	}
	in := make(map[*activation]bool)
	tab := newActTable(0)
	check := func(step string) {
		t.Helper()
		live := 0
		for _, e := range all {
			got := tab.find(e.h, e.a.hk, e.a.identity)
			switch {
			case in[e.a] && got != e.a:
				t.Fatalf("%s: find %s/%s = %p, want %p", step, e.a.hk.Name, e.a.identity, got, e.a)
			case !in[e.a] && got != nil:
				t.Fatalf("%s: find %s/%s = %p, want none", step, e.a.hk.Name, e.a.identity, got)
			}
			if in[e.a] {
				live++
			}
		}
		for i := range tab.slots {
			a := tab.slots[i].Load()
			if a == nil || a == &tab.tomb {
				continue
			}
			if want := tagOf(a.hk.keyHash(a.identity)); tab.tag(uint64(i)) != want {
				t.Fatalf("%s: slot %d of %s/%s has tag %#x, want %#x", step, i, a.hk.Name, a.identity, tab.tag(uint64(i)), want)
			}
		}
		seen := 0
		tab.each(func(*activation) { seen++ })
		if tab.live != live || seen != live {
			t.Fatalf("%s: live %d, each saw %d, want %d", step, tab.live, seen, live)
		}
		if 4*tab.used > 3*len(tab.slots) {
			t.Fatalf("%s: %d of %d slots used, more than three quarters", step, tab.used, len(tab.slots))
		}
	}

	for _, e := range all {
		tab = tab.insert(e.h, e.a)
		in[e.a] = true
	}
	check("filled")
	full := len(tab.slots)
	for i, e := range all {
		if i%10 == 0 {
			continue
		}
		var ok bool
		if tab, ok = tab.remove(e.h, e.a); !ok {
			t.Fatalf("remove %s/%s: not found", e.a.hk.Name, e.a.identity)
		}
		delete(in, e.a)
	}
	check("nine in ten removed")
	if len(tab.slots) >= full {
		t.Fatalf("the table kept %d slots for %d activations", len(tab.slots), tab.live)
	}
	if _, ok := tab.remove(all[1].h, all[1].a); ok {
		t.Fatal("removed an activation that was not in the table")
	}
	for i, e := range all {
		if i%10 != 0 && i%3 == 0 {
			tab = tab.insert(e.h, e.a)
			in[e.a] = true
		}
	}
	check("refilled")
}

// TestActTableConcurrentFind finds a set of activations from several
// goroutines without a lock while a writer inserts and removes others,
// growing and shrinking the table: every lookup finds its own activation.
// Run it with -race.
func TestActTableConcurrentFind(t *testing.T) {
	hk := newHostedKind(nil, &Kind{Name: "k"})
	var sh actShard
	sh.tab.Store(newActTable(0))
	stable := make([]*activation, 64)
	for i := range stable {
		a, h := tableGrain(hk, fmt.Sprint("stable-", i))
		stable[i] = a
		sh.mu.Lock()
		sh.tab.Store(sh.tab.Load().insert(h, a))
		sh.mu.Unlock()
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for r := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := r; !stop.Load(); i++ {
				want := stable[i%len(stable)]
				h := hashString(hk.keySeed, want.identity)
				if got := sh.tab.Load().find(h, hk, want.identity); got != want {
					errs <- fmt.Errorf("find %s = %p, want %p", want.identity, got, want)
					return
				}
			}
		}()
	}
	for round := range 20 {
		var churn []*activation
		for i := range 500 {
			a, h := tableGrain(hk, fmt.Sprintf("churn-%d-%d", round, i))
			churn = append(churn, a)
			sh.mu.Lock()
			sh.tab.Store(sh.tab.Load().insert(h, a))
			sh.mu.Unlock()
		}
		for _, a := range churn {
			sh.mu.Lock()
			tab, ok := sh.tab.Load().remove(hashString(hk.keySeed, a.identity), a)
			sh.tab.Store(tab)
			sh.mu.Unlock()
			if !ok {
				t.Fatalf("remove %s: not found", a.identity)
			}
		}
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := sh.tab.Load().live; got != len(stable) {
		t.Fatalf("%d activations left, want %d", got, len(stable))
	}
}

// TestActivationCloses checks the call count's closed bit: a passivation
// closes an activation only while no call is in and none came and went
// since the sweep looked, a call cannot count in once it is closed, and
// calls in flight count out as before.
func TestActivationCloses(t *testing.T) {
	n := new(Node) // a call that backs out tells the node's deactivations
	n.acts = newActivations(n)
	a, _ := tableGrain(newHostedKind(n, &Kind{Name: "k"}), "g")
	if !a.enter() || a.idle() {
		t.Fatal("an open activation refused a call, or is idle with a call in")
	}
	if a.close(true) {
		t.Fatal("a passivation closed an activation with a call in")
	}
	a.calls.Add(-1) // the call's release
	if !a.idle() || !a.close(true) || !a.deactivating {
		t.Fatal("a passivation did not close an idle activation")
	}
	if a.enter() {
		t.Fatal("a call counted in on a closed activation")
	}
	if got := a.calls.Load(); got != callsClosed {
		t.Fatalf("calls = %#x after a refused call, want only the closed bit", got)
	}

	// A call that came and went after the sweep looked (it left the used
	// flag) keeps the grain open.
	c, _ := tableGrain(a.hk, "i")
	c.flags.Or(usedFlag)
	if c.close(true) || c.deactivating || !c.enter() {
		t.Fatal("a passivation closed an activation used since the sweep looked")
	}
	c.calls.Add(-1)
	if got := c.calls.Load(); got != 0 {
		t.Fatalf("calls = %#x after the passivation backed off, want 0", got)
	}

	b, _ := tableGrain(a.hk, "h")
	if !b.enter() {
		t.Fatal("an open activation refused a call")
	}
	b.close(false) // a node shutting down closes busy grains too
	if b.enter() || b.idle() {
		t.Fatal("a closed activation took a call, or lost the call in flight")
	}
	b.calls.Add(-1)
	if got := b.calls.Load(); got != callsClosed {
		t.Fatalf("calls = %#x after the last call left, want only the closed bit", got)
	}
}

// TestActTableReadsOnlyTaggedSlots checks that a lookup reads the key of
// no activation whose tag differs from its own: an activation stored
// under another key's tag, in the slot its own key's probe starts at, is
// not found, and the activation after it is.
func TestActTableReadsOnlyTaggedSlots(t *testing.T) {
	hk := newHostedKind(nil, &Kind{Name: "k"})
	a, h := tableGrain(hk, "a")
	b, _ := tableGrain(hk, "b")
	other := h ^ 1<<56 // a hash with another tag
	tab := newActTable(0)
	i := tab.home(h)
	tab.put(i, other, a)
	if got := tab.find(h, hk, "a"); got != nil {
		t.Fatalf("find a = %p with a's slot tagged %#x, want none: the lookup read an activation under another tag", got, tagOf(other))
	}
	tab.put(i, h, a)
	if got := tab.find(h, hk, "a"); got != a {
		t.Fatalf("find a = %p with its own tag, want %p", got, a)
	}
	tab.put(i, other, b)
	tab.put((i+1)%uint64(len(tab.slots)), h, a)
	if got := tab.find(h, hk, "a"); got != a {
		t.Fatalf("find a = %p past a slot under another tag, want %p", got, a)
	}
}
