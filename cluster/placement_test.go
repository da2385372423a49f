package cluster

import (
	"fmt"
	"testing"
)

func members(names ...string) []Member {
	ms := make([]Member, len(names))
	for i, n := range names {
		ms[i] = Member{Name: n, GRPCAddr: "127.0.0.1:1", Kinds: []string{"k"}, Status: StatusAlive}
	}
	return ms
}

func memberNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("node-%d", i)
	}
	return names
}

func TestPlacementDistribution(t *testing.T) {
	const keys = 20000
	p := newPlacement(members(memberNames(5)...))
	counts := make(map[string]int)
	for i := range keys {
		m, ok := p.owner("k", fmt.Sprintf("id-%d", i))
		if !ok {
			t.Fatal("no owner")
		}
		counts[m.Name]++
	}
	mean := keys / 5
	for name, c := range counts {
		// A uniform hash puts each share within a few percent of the mean;
		// 15% leaves room without hiding a skewed one.
		if c < mean*85/100 || c > mean*115/100 {
			t.Errorf("%s owns %d of %d keys, want about %d", name, c, keys, mean)
		}
	}
	if len(counts) != 5 {
		t.Errorf("keys spread over %d members, want 5", len(counts))
	}
}

func TestPlacementStableWhenMemberAdded(t *testing.T) {
	const keys = 20000
	before := newPlacement(members(memberNames(5)...))
	after := newPlacement(members(memberNames(6)...))
	moved := 0
	for i := range keys {
		id := fmt.Sprintf("id-%d", i)
		a, _ := before.owner("k", id)
		b, _ := after.owner("k", id)
		if a.Name == b.Name {
			continue
		}
		moved++
		if b.Name != "node-5" {
			t.Fatalf("%s moved from %s to %s, not to the new member", id, a.Name, b.Name)
		}
	}
	// About 1/6 of the keys move, all to the new member.
	if moved < keys/6*85/100 || moved > keys/6*115/100 {
		t.Errorf("%d of %d keys moved, want about %d", moved, keys, keys/6)
	}
}

func TestPlacementIgnoresMembersNotAliveOrNotHosting(t *testing.T) {
	ms := members("a", "b", "c")
	ms[1].Status = StatusFailed
	ms[2].Kinds = []string{"other"}
	p := newPlacement(ms)
	for i := range 100 {
		m, ok := p.owner("k", fmt.Sprint(i))
		if !ok || m.Name != "a" {
			t.Fatalf("owner = %v, %v; want a", m, ok)
		}
	}
	if _, ok := p.owner("missing", "x"); ok {
		t.Error("a kind nobody hosts has an owner")
	}
	if len(p.members) != 3 {
		t.Errorf("placement lists %d members, want all 3", len(p.members))
	}
}

func TestPlacementKeysDoNotCollideAcrossFields(t *testing.T) {
	// ("ab", "c") and ("a", "bc") are different grains and must hash apart.
	if keyHash("ab", "c") == keyHash("a", "bc") {
		t.Fatal("kind and identity run together in the key hash")
	}
}

func TestPlacementLookupDoesNotAllocate(t *testing.T) {
	p := newPlacement(members(memberNames(7)...))
	allocs := testing.AllocsPerRun(1000, func() {
		if _, ok := p.owner("k", "user-42"); !ok {
			t.Fatal("no owner")
		}
	})
	if allocs != 0 {
		t.Errorf("owner allocates %v times per lookup, want 0", allocs)
	}
}

func BenchmarkPlacementOwner(b *testing.B) {
	p := newPlacement(members(memberNames(10)...))
	for b.Loop() {
		p.owner("k", "user-42")
	}
}

// The activation table hashes a grain's key from its kind's seed, without
// hashing the kind's name again: the hash must be keyHash's.
func TestShardOfHashesTheKey(t *testing.T) {
	tbl := newActivations(nil)
	for _, kind := range []string{"", "a", "pkg.v1.Counter"} {
		hk := newHostedKind(nil, &Kind{Name: kind})
		for i := range 200 {
			id := fmt.Sprint("grain-", i)
			sh, h := tbl.shardOf(hk, id)
			if want := keyHash(kind, id); h != want || sh != &tbl.shards[want%actShards] {
				t.Fatalf("kind %q identity %q: shardOf hashed %#x, want %#x", kind, id, h, want)
			}
		}
	}
}

// TestOwnerExceptIsTheOwnerWithoutThem checks ownerExcept against the
// owner of a view without the members it leaves out.
func TestOwnerExceptIsTheOwnerWithoutThem(t *testing.T) {
	names := memberNames(4)
	all := newPlacement(members(names...))
	withoutTwo := newPlacement(members(names[2:]...))
	for i := range 2000 {
		id := fmt.Sprintf("id-%d", i)
		owner, _ := all.owner("k", id)
		if m, _ := all.ownerExcept("k", id, "", ""); m != owner {
			t.Fatalf("%s: ownerExcept leaving out nobody = %s, owner = %s", id, m.Name, owner.Name)
		}
		got, ok := all.ownerExcept("k", id, names[1], names[0])
		want, _ := withoutTwo.owner("k", id)
		if !ok || got.Name != want.Name {
			t.Fatalf("%s: ownerExcept = %v, %v; the view without them has %s", id, got, ok, want.Name)
		}
	}
	if m, ok := newPlacement(members(names[0])).ownerExcept("k", "id", names[0], ""); ok {
		t.Errorf("ownerExcept leaving out the only candidate = %s, want none", m.Name)
	}
}
