package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// view builds members from "name:status" pairs, each with incarnation
// "1" unless the pair is "name:status:incarnation".
func view(t *testing.T, pairs ...string) []Member {
	t.Helper()
	statuses := map[string]MemberStatus{"alive": StatusAlive, "leaving": StatusLeaving, "left": StatusLeft, "failed": StatusFailed}
	var members []Member
	for _, p := range pairs {
		var name, st, inc string
		for i, part := range strings.Split(p, ":") {
			switch i {
			case 0:
				name = part
			case 1:
				st = part
			case 2:
				inc = part
			}
		}
		status, ok := statuses[st]
		if !ok {
			t.Fatalf("bad status in %q", p)
		}
		if inc == "" {
			inc = "1"
		}
		members = append(members, Member{Name: name, Status: status, Kinds: []string{echoKind}, incarnation: inc})
	}
	return members
}

func nobodyLeaving(string) bool { return false }

// TestTheMajorityVote checks the split-brain vote on one view at a time.
func TestTheMajorityVote(t *testing.T) {
	const downAfter = 10 * time.Second
	for _, tc := range []struct {
		name    string
		members []string
		leaving string // a member that said it is leaving
		fenced  bool
		held    []string
	}{
		{"everyone alive", []string{"a:alive", "b:alive", "c:alive"}, "", false, nil},
		{"one of three failed", []string{"a:alive", "b:alive", "c:failed"}, "", false, []string{"c"}},
		{"two of three failed", []string{"a:alive", "b:failed", "c:failed"}, "", true, []string{"b", "c"}},
		{"an even split, with the first name", []string{"a:alive", "b:alive", "c:failed", "d:failed"}, "", false, []string{"c", "d"}},
		{"an even split, without the first name", []string{"a:failed", "b:failed", "c:alive", "d:alive"}, "", true, []string{"a", "b"}},
		{"a leaving member is reachable", []string{"a:failed", "b:leaving", "c:alive"}, "", false, []string{"a"}},
		{"members that left do not count", []string{"a:left", "b:left", "c:alive", "d:failed"}, "", false, []string{"d"}},
		{"a leaver seen failed does not count", []string{"a:failed", "b:alive"}, "a", false, nil},
		{"alone", []string{"a:alive"}, "", false, nil},
		{"nobody counts: the last node has left", []string{"a:left", "b:left"}, "", false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newMajority(downAfter, nil)
			leaving := func(name string) bool { return name == tc.leaving }
			got := v.vote(view(t, tc.members...), time.Unix(100, 0), leaving)
			if got.fenced != tc.fenced || !slices.Equal(got.held, tc.held) {
				t.Errorf("vote = fenced %t, held %v; want fenced %t, held %v", got.fenced, got.held, tc.fenced, tc.held)
			}
			if wantRecheck := !tc.fenced && len(tc.held) > 0; (got.recheck == downAfter) != wantRecheck {
				t.Errorf("recheck in %v, want it in %v: %t", got.recheck, downAfter, wantRecheck)
			}
		})
	}
}

// TestTheMajorityDownsFailedMembersInTime follows one vote over time: a
// failed member is held for DownAfter and then downed by a node with a
// majority, but still counts against it while it is failed (the nodes do
// not agree on whom they downed); a member back counts again; a fenced
// node downs nobody, and waits DownAfter afresh once it regains a
// majority, fenced for as long unless the failed members come back.
func TestTheMajorityDownsFailedMembersInTime(t *testing.T) {
	const downAfter = 10 * time.Second
	t0 := time.Unix(100, 0)
	v := newMajority(downAfter, nil)
	check := func(at time.Duration, members []Member, fenced bool, held []string, recheck time.Duration) {
		t.Helper()
		got := v.vote(members, t0.Add(at), nobodyLeaving)
		if got.fenced != fenced || !slices.Equal(got.held, held) || got.recheck != recheck {
			t.Errorf("at %v: vote = fenced %t, held %v, recheck %v; want fenced %t, held %v, recheck %v",
				at, got.fenced, got.held, got.recheck, fenced, held, recheck)
		}
	}
	cFailed := view(t, "a:alive", "b:alive", "c:failed")
	check(0, cFailed, false, []string{"c"}, downAfter)
	check(4*time.Second, cFailed, false, []string{"c"}, 6*time.Second)
	check(downAfter, cFailed, false, nil, 0) // downed: its grains move
	// c, downed, still counts: with b failed too, a is one against two. (A
	// partition that changed shape, b now with c: they count a majority.)
	check(11*time.Second, view(t, "a:alive", "b:failed", "c:failed"), true, []string{"b"}, 0)
	if got := v.vote(view(t, "a:alive", "b:failed", "c:failed"), t0.Add(11*time.Second), nobodyLeaving); !slices.Equal(got.against, []string{"b", "c"}) {
		t.Errorf("the members against a: %v, want [b c], c downed included", got.against)
	}
	// Both back: they count as reachable again.
	check(12*time.Second, view(t, "a:alive", "b:alive", "c:alive"), false, nil, 0)
	check(13*time.Second, view(t, "a:alive", "b:failed", "c:failed"), true, []string{"b", "c"}, 0)
	// Fenced, a downs nobody, however long it waits.
	check(time.Hour, view(t, "a:alive", "b:failed", "c:failed"), true, []string{"b", "c"}, 0)
	// c restarted under its name: the new start counts, the old one is
	// gone; a has a majority again and gives b DownAfter afresh, not the
	// hour it was fenced. And for as long, a settles: b may have downed
	// it, and serve its grains until b sees that it lost its majority.
	check(time.Hour+time.Second, view(t, "a:alive", "b:failed", "c:alive:2"), true, []string{"b"}, downAfter)
	check(time.Hour+5*time.Second, view(t, "a:alive", "b:failed", "c:alive:2"), true, []string{"b"}, 6*time.Second)
	check(time.Hour+11*time.Second, view(t, "a:alive", "b:failed", "c:alive:2"), false, nil, 0)
	// A member a downed while it had a majority is no reason to settle:
	// it was fenced then, and c, which a did not down, is back.
	check(2*time.Hour, view(t, "a:alive", "b:failed", "c:failed:2"), true, []string{"c"}, 0)
	check(2*time.Hour+time.Second, view(t, "a:alive", "b:failed", "c:alive:2"), false, nil, 0)
	// Settling ends at once when the members it did not down come back:
	// nobody is left to serve its grains but through the view it shares.
	check(2*time.Hour+2*time.Second, view(t, "a:alive", "b:alive", "c:failed:2"), false, []string{"c"}, downAfter)
	check(2*time.Hour+3*time.Second, view(t, "a:alive", "b:failed", "c:failed:2"), true, []string{"b", "c"}, 0)
	check(2*time.Hour+4*time.Second, view(t, "a:alive", "b:failed", "c:alive:2"), true, []string{"b"}, downAfter)
	check(2*time.Hour+5*time.Second, view(t, "a:alive", "b:alive", "c:alive:2"), false, nil, 0)
	// A majority lost while settling, and regained: settling afresh.
	check(3*time.Hour, view(t, "a:alive", "b:failed", "c:failed:2"), true, []string{"b", "c"}, 0)
	check(3*time.Hour+time.Second, view(t, "a:alive", "b:failed", "c:alive:2"), true, []string{"b"}, downAfter)
	check(3*time.Hour+2*time.Second, view(t, "a:alive", "b:failed", "c:failed:2"), true, []string{"b", "c"}, 0)
	check(3*time.Hour+3*time.Second, view(t, "a:alive", "b:failed", "c:alive:2"), true, []string{"b"}, downAfter)
	check(3*time.Hour+13*time.Second, view(t, "a:alive", "b:failed", "c:alive:2"), false, nil, 0)

	// Without DownAfter, the patience for the view's size applies.
	v = newMajority(0, func(members int) time.Duration { return time.Duration(members) * time.Second })
	if got := v.vote(cFailed, t0, nobodyLeaving); got.recheck != 3*time.Second {
		t.Errorf("recheck in %v with a patience of 1 s per member of three, want 3s", got.recheck)
	}
}

// TestALeaverSeenFailedDoesNotCountOnceItsStreamsEnd: a member seen
// failed that said it is leaving does not count, and keeps not counting
// after its streams, which said so, have ended, until the gossip brings
// its leave; back alive and failed again without a word, it counts.
func TestALeaverSeenFailedDoesNotCountOnceItsStreamsEnd(t *testing.T) {
	v := newMajority(time.Minute, nil)
	leaving := true
	said := func(name string) bool { return leaving && name == "a" }
	for i, tc := range []struct {
		members []string
		leaving bool
		fenced  bool
	}{
		{[]string{"a:failed", "b:alive"}, true, false},
		{[]string{"a:failed", "b:alive"}, false, false}, // its streams ended
		{[]string{"a:alive", "b:alive"}, false, false},
		{[]string{"a:failed", "b:alive"}, false, true}, // failed, without a word: a sorts first
	} {
		leaving = tc.leaving
		if got := v.vote(view(t, tc.members...), time.Unix(100, 0), said); got.fenced != tc.fenced {
			t.Errorf("vote %d on %v: fenced %t, want %t", i, tc.members, got.fenced, tc.fenced)
		}
	}
}

// TestAStartSettlesForUnnamedHoldsWhoeverComesBack: a starting node that
// settles for holds the answers named settles no longer once those
// members are in its view; for holds they bounded without names it
// settles until the bound, whoever is in its view, and it passes the bound
// on in its own answers meanwhile.
func TestAStartSettlesForUnnamedHoldsWhoeverComesBack(t *testing.T) {
	start := time.Unix(100, 0)
	for _, tc := range []struct {
		name    string
		unnamed bool
		fenced  bool // at start+30s, with x back in the view
	}{
		{"named", false, false},
		{"unnamed too", true, true},
	} {
		v := newMajority(time.Minute, nil)
		v.unseen, v.unseenUntil = map[string]bool{"x": true}, start.Add(time.Minute)
		if tc.unnamed {
			v.unlisted = start.Add(time.Minute)
		}
		if got := v.vote(view(t, "a:alive", "b:alive"), start, nobodyLeaving); !got.fenced || !got.settling {
			t.Errorf("%s: at the start, fenced %t and settling %t, want both", tc.name, got.fenced, got.settling)
		}
		got := v.vote(view(t, "a:alive", "b:alive", "x:alive"), start.Add(30*time.Second), nobodyLeaving)
		if got.fenced != tc.fenced {
			t.Errorf("%s: with x back, fenced %t, want %t", tc.name, got.fenced, tc.fenced)
		}
		if tc.unnamed {
			if got.recheck != 30*time.Second {
				t.Errorf("%s: recheck in %v, want when the bound ends, in 30s", tc.name, got.recheck)
			}
			if h := v.holds.Load(); !h.unlisted.Equal(start.Add(time.Minute)) {
				t.Errorf("%s: published the unnamed bound as %v, want %v", tc.name, h.unlisted, start.Add(time.Minute))
			}
			if got := v.vote(view(t, "a:alive", "b:alive", "x:alive"), start.Add(time.Minute), nobodyLeaving); got.fenced {
				t.Errorf("%s: still settling once the bound ended", tc.name)
			}
		}
	}
}

// TestDefaultDownAfter checks DownAfter's default: three probe intervals
// and the longest suspicion, plus half of the members probed at
// Lifeguard's slowest rate; the name claim's patience counting that rate
// does not lengthen it.
func TestDefaultDownAfter(t *testing.T) {
	mc := (&Config{Gossip: GossipLocal}).memberlistConfig()
	for _, tc := range []struct {
		members int
		want    time.Duration
	}{
		{3, 27*localProbeInterval + 2*8*localProbeInterval},
		{7, 27*localProbeInterval + 4*8*localProbeInterval},
		{20, time.Duration((3+24*math.Log10(20))*float64(localProbeInterval)) + 10*8*localProbeInterval},
	} {
		if got := defaultDownAfter(mc, tc.members); got != tc.want {
			t.Errorf("defaultDownAfter(local, %d) = %v, want %v", tc.members, got, tc.want)
		}
	}
	// The figures Config.DownAfter's doc gives.
	if got := defaultDownAfter(mc, 3); got != 12900*time.Millisecond {
		t.Errorf("defaultDownAfter(local, 3) = %v, want 12.9s", got)
	}
	if got := defaultDownAfter((&Config{Gossip: GossipLAN}).memberlistConfig(), 3); got != 43*time.Second {
		t.Errorf("defaultDownAfter(lan, 3) = %v, want 43s", got)
	}
}

// withStatuses returns an edit for holdViews that gives each named member
// status st.
func withStatuses(st MemberStatus, names ...string) func([]Member) []Member {
	return func(members []Member) []Member {
		for _, name := range names {
			members = withStatus(name, st)(members)
		}
		return members
	}
}

// TestANodeWithoutAMajorityServesNoGrain partitions a three-node cluster
// with KeepMajority, one node from two, by holding the views: the lone
// node deactivates its grains, refuses calls with ErrNoQuorum and says it
// is Fenced, the others hold its grains for DownAfter, and once the
// partition heals the lone node serves again.
func TestANodeWithoutAMajorityServesNoGrain(t *testing.T) {
	t.Parallel()
	nodes, hooks := echoCluster(t, 3, 0, func(cfg *Config) { cfg.KeepMajority, cfg.DownAfter = true, time.Minute })
	a, b, c := nodes[0], nodes[1], nodes[2]
	id := identityOwnedBy(t, nodes, a)
	if got := add(t, b, id, 1); got != 1 {
		t.Fatalf("total %d, want 1", got)
	}
	setA, setB := holdViews(t, a), holdViews(t, b)

	setA(withStatuses(StatusFailed, b.Name(), c.Name()))
	if !a.Fenced() || b.Fenced() {
		t.Errorf("Fenced: the lone node %t, the others %t; want true, false", a.Fenced(), b.Fenced())
	}
	if got := receive(t, hooks[a.Name()].deactivated, "the lone node's grain to deactivate"); got != id {
		t.Errorf("%s deactivated, want %s", got, id)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	_, err := a.Invoke(ctx, addCall(id, 1))
	if !errors.Is(err, ErrNoQuorum) || status.Code(err) != codes.Unavailable {
		t.Errorf("a call through the lone node: %v (%v), want ErrNoQuorum, Unavailable", err, status.Code(err))
	}
	if err := a.Send(t.Context(), addCall(id, 1)); !errors.Is(err, ErrNoQuorum) {
		t.Errorf("a message through the lone node: %v, want ErrNoQuorum", err)
	}
	if m, ok := a.Owner(echoKind, id); ok {
		t.Errorf("the lone node places %s on %s, want nowhere", id, m.Name)
	}

	// The other side holds the lone node's grains until DownAfter.
	setB(withStatuses(StatusFailed, a.Name()))
	if m, ok := b.Owner(echoKind, id); !ok || m.Name != a.Name() {
		t.Errorf("the majority places %s on %s before DownAfter, want %s", id, m.Name, a.Name())
	}
	if _, err := b.Invoke(t.Context(), addCall(id, 1), WithoutRetry()); err == nil {
		t.Error("a call to a grain of the fenced node succeeded")
	}

	// The partition heals.
	setA(withStatuses(StatusAlive, b.Name(), c.Name()))
	setB(withStatuses(StatusAlive, a.Name()))
	if a.Fenced() {
		t.Error("the lone node says it is fenced after the partition healed")
	}
	if got := where(t, b, id); got != a.Name() {
		t.Errorf("%s answered from %s after the partition healed, want %s", id, got, a.Name())
	}
	if got := add(t, a, id, 1); got != 1 {
		t.Errorf("total %d from a fresh activation, want 1", got)
	}
}

// TestTheMajorityTakesAFailedMembersGrainsAfterDownAfter crashes one node
// of three with KeepMajority: the other two place its grains on themselves
// once DownAfter has passed since they saw it failed, with no further
// membership change to prompt them.
func TestTheMajorityTakesAFailedMembersGrainsAfterDownAfter(t *testing.T) {
	t.Parallel()
	nodes, _ := echoCluster(t, 3, 0, func(cfg *Config) { cfg.KeepMajority, cfg.DownAfter = true, 300*time.Millisecond })
	a, b, c := nodes[0], nodes[1], nodes[2]
	id := identityOwnedBy(t, nodes, c)
	add(t, a, id, 1)
	_ = c.Close()
	waitFor(t, waitTimeout, "the others to place the crashed node's grain on themselves", func() bool {
		for _, n := range []*Node{a, b} {
			if m, ok := n.Owner(echoKind, id); !ok || m.Name == c.Name() {
				return false
			}
		}
		return true
	})
	if got := add(t, a, id, 1); got != 1 {
		t.Errorf("total %d from the new owner's fresh activation, want 1", got)
	}
}

// TestAnEvenSplitKeepsTheFirstName crashes one node of two with
// KeepMajority: the survivor serves only if its name sorts first.
func TestAnEvenSplitKeepsTheFirstName(t *testing.T) {
	t.Parallel()
	nodes, _ := echoCluster(t, 2, 0, func(cfg *Config) { cfg.KeepMajority, cfg.DownAfter = true, time.Minute })
	slices.SortFunc(nodes, func(x, y *Node) int { return strings.Compare(x.Name(), y.Name()) })
	first, second := nodes[0], nodes[1]
	id := identityOwnedBy(t, nodes, first)
	_ = first.Close()
	waitFor(t, waitTimeout, "the survivor to fence itself", second.Fenced)
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if _, err := second.Invoke(ctx, addCall(id, 1)); !errors.Is(err, ErrNoQuorum) {
		t.Errorf("a call through the survivor: %v, want ErrNoQuorum", err)
	}
}

// TestAGracefulLeaveKeepsTheMajority shuts one node of two down
// gracefully with KeepMajority: a member that left does not count, so the
// other serves on, its grains too.
func TestAGracefulLeaveKeepsTheMajority(t *testing.T) {
	t.Parallel()
	nodes, _ := echoCluster(t, 2, 0, func(cfg *Config) { cfg.KeepMajority, cfg.DownAfter = true, time.Minute })
	slices.SortFunc(nodes, func(x, y *Node) int { return strings.Compare(x.Name(), y.Name()) })
	first, second := nodes[0], nodes[1]
	id := identityOwnedBy(t, nodes, first)
	if err := first.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := addWithin(t, second, id, 1); got != 1 {
		t.Errorf("total %d, want 1", got)
	}
	if second.view.Load().fenced {
		t.Error("the node that stayed fenced itself after a graceful leave")
	}
}

// TestAReshapedPartitionHasOneMajority cuts z off from x and y, who down
// it after DownAfter; then the partition changes shape without healing: y
// now sees z, not x. z, downed by x, still counts against x, so x fences
// itself, and no grain is served on both sides of {x} | {y, z}. z, which
// regained its majority while x is failed, settles for DownAfter before it
// serves: on a real network x sees the new shape only later (see
// TestAPartitionThatChangesShapeRunsNoGrainTwice).
func TestAReshapedPartitionHasOneMajority(t *testing.T) {
	t.Parallel()
	nodes, _ := echoCluster(t, 3, 0, func(cfg *Config) { cfg.KeepMajority, cfg.DownAfter = true, 200*time.Millisecond })
	slices.SortFunc(nodes, func(p, q *Node) int { return strings.Compare(p.Name(), q.Name()) })
	x, y, z := nodes[0], nodes[1], nodes[2]
	ofZ := identityOwnedBy(t, nodes, z)
	setX, setY, setZ := holdViews(t, x), holdViews(t, y), holdViews(t, z)

	// {z} | {x, y}
	setZ(withStatuses(StatusFailed, x.Name(), y.Name()))
	if !z.view.Load().fenced {
		t.Fatal("z, alone, is not fenced")
	}
	waitFor(t, waitTimeout, "x and y to down z", func() bool {
		setX(withStatuses(StatusFailed, z.Name())) // a refresh, as the vote's timer asks for
		setY(withStatuses(StatusFailed, z.Name()))
		mx, okx := x.Owner(echoKind, ofZ)
		my, oky := y.Owner(echoKind, ofZ)
		return okx && oky && mx.Name != z.Name() && my.Name != z.Name()
	})

	// Reshaped, not healed: {x} | {y, z}.
	setX(withStatuses(StatusFailed, y.Name(), z.Name()))
	setY(func(m []Member) []Member {
		return withStatus(z.Name(), StatusAlive)(withStatus(x.Name(), StatusFailed)(m))
	})
	setZ(func(m []Member) []Member {
		return withStatus(y.Name(), StatusAlive)(withStatus(x.Name(), StatusFailed)(m))
	})
	if !x.view.Load().fenced {
		t.Error("x serves alone against y and z")
	}
	if y.view.Load().fenced {
		t.Error("y, which never lost its majority, fenced itself")
	}
	if p := z.view.Load(); !p.fenced || !p.settling {
		t.Errorf("z, back in a majority while x is failed: fenced %t, settling %t; want it settling", p.fenced, p.settling)
	}
	waitFor(t, waitTimeout, "z to settle", func() bool {
		setZ(func(m []Member) []Member { return m }) // a refresh, as the vote's timer asks for
		return !z.view.Load().fenced
	})
	for i := range 1000 {
		id := fmt.Sprintf("grain-%d", i)
		if mx, ok := x.Owner(echoKind, id); ok {
			t.Fatalf("x, fenced, places %s on %s", id, mx.Name)
		}
	}
}

// TestALeaverSeenFailedDoesNotFenceTheSurvivor lets the first-named of two
// nodes leave gracefully while the other sees it failed before the leave
// arrives (as serf may), before and after the leaver's streams, which said
// it leaves, have ended: the survivor does not fence itself.
func TestALeaverSeenFailedDoesNotFenceTheSurvivor(t *testing.T) {
	t.Parallel()
	nodes, _ := echoCluster(t, 2, 0, func(cfg *Config) { cfg.KeepMajority, cfg.DownAfter = true, time.Minute })
	slices.SortFunc(nodes, func(p, q *Node) int { return strings.Compare(p.Name(), q.Name()) })
	first, second := nodes[0], nodes[1]
	add(t, second, identityOwnedBy(t, nodes, first), 1) // streams both ways
	add(t, first, identityOwnedBy(t, nodes, second), 1)
	setSecond := holdViews(t, second)
	seenFailed := withStatus(first.Name(), StatusFailed)

	done := make(chan error, 1)
	go func() { done <- first.Shutdown(t.Context()) }()
	waitFor(t, waitTimeout, "the leaver to say it leaves", func() bool { return second.transport.saidLeaving(first.Name()) })
	setSecond(seenFailed)
	if second.view.Load().fenced {
		t.Fatal("fenced by a leaver seen failed that said it leaves")
	}
	if err := receive(t, done, "the leaver's Shutdown"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, waitTimeout, "the leaver's streams to end", func() bool { return !second.transport.saidLeaving(first.Name()) })
	setSecond(seenFailed) // a refresh while the leave is on its way
	if second.view.Load().fenced {
		t.Error("the survivor fenced itself once the leaver's streams had ended")
	}
}

// TestTheLastNodeToLeaveDoesNotFenceItself shuts a cluster of one down
// gracefully: its view then has nobody who counts, itself included, which
// is no reason to fence itself or to warn that it sees no majority.
func TestTheLastNodeToLeaveDoesNotFenceItself(t *testing.T) {
	t.Parallel()
	logs := &logLines{}
	nodes, _ := echoCluster(t, 1, 0, func(cfg *Config) {
		cfg.KeepMajority = true
		cfg.Logger = slog.New(logs.handler(cfg.Logger.Handler()))
	})
	n := nodes[0]
	if err := n.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n.view.Load().fenced || logs.count("sees no majority") > 0 {
		t.Errorf("a lone node shutting down fenced itself (fenced %t, %d warnings)", n.view.Load().fenced, logs.count("sees no majority"))
	}
}

// TestAMessageToAFencedNodeIsDroppedForWantOfAMajority sends a one-way
// message to a grain of a node that has fenced itself, from a node whose
// view still places the grain there: the fenced node drops it, logging
// that it sees no majority, not that nobody hosts the kind.
func TestAMessageToAFencedNodeIsDroppedForWantOfAMajority(t *testing.T) {
	t.Parallel()
	logs := &logLines{}
	nodes, _ := echoCluster(t, 3, 0, func(cfg *Config) {
		cfg.KeepMajority, cfg.DownAfter = true, time.Minute
		if strings.HasSuffix(cfg.NodeName, "-n0") {
			cfg.Logger = slog.New(logs.handler(cfg.Logger.Handler()))
		}
	})
	a, b, c := nodes[0], nodes[1], nodes[2]
	if !strings.HasSuffix(a.Name(), "-n0") {
		t.Fatalf("the first node is %s, want the one named -n0", a.Name())
	}
	id := identityOwnedBy(t, nodes, a)
	add(t, b, id, 1)
	holdViews(t, a)(withStatuses(StatusFailed, b.Name(), c.Name()))
	if err := b.Send(t.Context(), addCall(id, 1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, waitTimeout, "the fenced node to drop the message", func() bool { return logs.count("dropped a one-way message") > 0 })
	if n := logs.count("dropped a one-way message", "no majority"); n == 0 {
		t.Errorf("the fenced node dropped the message for another reason than its missing majority: %d drops logged so", n)
	}
}

// TestALeavingNodeDoesNotWarnOfItsSide lets z, of x, y and z, leave after
// x failed and y left: z's vote is then an even split that x, failed and
// first, wins, which fences z, but z leaves and owns nothing either way,
// so it does not warn (the README's walk-through did, at every Ctrl-C).
func TestALeavingNodeDoesNotWarnOfItsSide(t *testing.T) {
	t.Parallel()
	logs := map[string]*logLines{}
	nodes, _ := echoCluster(t, 3, 0, withLogs(logs, false, func(cfg *Config) {
		cfg.KeepMajority, cfg.DownAfter = true, time.Minute
	}))
	slices.SortFunc(nodes, func(p, q *Node) int { return strings.Compare(p.Name(), q.Name()) })
	x, y, z := nodes[0], nodes[1], nodes[2]
	setZ := holdViews(t, z)
	setZ(withStatus(x.Name(), StatusFailed))
	if z.view.Load().fenced {
		t.Fatal("z fenced itself with y beside it")
	}
	z.transport.leaving.Store(true) // as Shutdown does first
	setZ(func(m []Member) []Member {
		return withStatus(z.Name(), StatusLeaving)(withStatus(y.Name(), StatusLeft)(m))
	})
	if !z.view.Load().fenced {
		t.Error("z, alone against x, which sorts first, is not fenced")
	}
	if n := logs[z.Name()].count("sees no majority"); n > 0 {
		t.Errorf("z, leaving, warned %d times that it sees no majority", n)
	}
}

// TestAFencedNodeRefusesStrangers checks the rule of a fenced node's merge
// delegate: members that are all unknown to it are refused; a state that
// names one it knows (a partition that heals, a restart under a known
// name) or itself is taken, and so is anything while it is not fenced.
func TestAFencedNodeRefusesStrangers(t *testing.T) {
	n := &Node{name: "a", log: testLogger(t)}
	members := func(names ...string) []*serf.Member {
		var out []*serf.Member
		for _, name := range names {
			out = append(out, &serf.Member{Name: name})
		}
		return out
	}
	for _, fenced := range []bool{false, true} {
		n.view.Store(newPlacement(view(t, "a:alive", "b:failed", "c:failed")).judged(verdict{fenced: fenced}))
		for _, tc := range []struct {
			members []*serf.Member
			refused bool
		}{
			{members("j"), true},
			{members("j", "k"), true},
			{members("j", "b"), false},
			{members("c"), false},
			{members("a", "j"), false},
			{nil, false},
		} {
			err := n.refuseStrangers(tc.members)
			if want := fenced && tc.refused; (err != nil) != want {
				t.Errorf("fenced %t, a merge of %d members: %v, want refused %t", fenced, len(tc.members), err, want)
			}
		}
	}
	n.view.Store(newPlacement(view(t, "a:alive", "b:failed")).judged(verdict{fenced: true}))
	if err := n.refuseStrangers(members("j")); err == nil || !strings.HasPrefix(err.Error(), "cluster: node a has no majority") {
		t.Errorf("the refusal: %v", err)
	}
}

// TestAStrangerCannotJoinThroughAFencedNode crashes two nodes of three with
// KeepMajority: a new node that joins through the survivor, fenced, fails
// to start with ErrNoQuorum, and the survivor does not take it in. One of
// the two comes back under its name: the survivor takes it, has a majority
// again (both settle, with the other failed), and then takes the new node.
func TestAStrangerCannotJoinThroughAFencedNode(t *testing.T) {
	t.Parallel()
	nodes, _ := echoCluster(t, 3, 0, func(cfg *Config) { cfg.KeepMajority, cfg.DownAfter = true, time.Minute })
	a, b, c := nodes[0], nodes[1], nodes[2]
	bCfg := b.cfg
	_ = b.Close()
	_ = c.Close()
	waitFor(t, waitTimeout, "the survivor to fence itself", a.Fenced)
	waitFor(t, waitTimeout, "the survivor to say so in its tags", func() bool { return hasTag(a, a.Name(), tagFenced) })

	stranger := testConfig(t)
	stranger.NodeName += "-stranger"
	stranger.KeepMajority = true
	stranger.Kinds = []*Kind{newEchoKind(newHooks(stranger.NodeName), 0)}
	stranger.Seeds = []string{a.GossipAddr()}
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	err := startFails(t, ctx, stranger)
	t.Logf("Start through the fenced node: %v", err)
	if !errors.Is(err, ErrNoQuorum) || !strings.Contains(err.Error(), a.Name()) || !strings.Contains(err.Error(), "join through a member of the majority") {
		t.Errorf("Start through the fenced node: %v; want ErrNoQuorum, naming %s and what to do", err, a.Name())
	}
	if knowsName(a, stranger.NodeName) {
		t.Error("the fenced node took the stranger in")
	}

	// b comes back under its name: the survivor knows it, takes it, and
	// has a majority with it.
	bCfg.BindAddr, bCfg.GRPCAddr = "127.0.0.1:0", "127.0.0.1:0"
	bCfg.Seeds = []string{a.GossipAddr()}
	// A joiner waits half a second (fenceNewsPatience) for the survivor to
	// say it is no longer fenced; on a starved machine the news can come
	// later, and the start fails with ErrNoQuorum: a deploy starts it
	// again, and so does the test.
	var again *Node
	waitFor(t, waitTimeout, "b to start again through the survivor", func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
		defer cancel()
		n, err := Start(ctx, bCfg)
		if err != nil {
			if !errors.Is(err, ErrNoQuorum) {
				t.Fatalf("Start(%s) again: %v", bCfg.NodeName, err)
			}
			t.Logf("b's start gave up, as the survivor's news came late; again: %v", err)
			return false
		}
		t.Cleanup(func() { _ = n.Close() })
		again = n
		return true
	})
	// It settles then (c is still failed): it owns no grain for DownAfter,
	// but says it has a majority, and takes in the new node. So does b,
	// whose gossip did not take in c, failed in the survivor's list (see
	// settleForUnseen).
	waitFor(t, waitTimeout, "the survivor to see a majority again", func() bool { return !a.view.Load().minority() })
	if !a.Fenced() {
		t.Error("the survivor serves at once, with c still failed")
	}
	if v := again.view.Load(); v.minority() || !v.settling {
		t.Errorf("the restarted node: fenced %t, settling %t; want it to settle, with a majority", v.fenced, v.settling)
	}

	j := startNode(t, stranger)
	waitFor(t, waitTimeout, "the survivor to see the new node alive", func() bool {
		m, ok := memberNamed(a, j.Name())
		return ok && m.Status == StatusAlive
	})
}

// hasTag reports whether n's serf has the named member with tag.
func hasTag(n *Node, name, tag string) bool {
	for _, m := range n.serf.Members() {
		if m.Name == name {
			_, ok := m.Tags[tag]
			return ok
		}
	}
	return false
}

// knowsName reports whether n's serf has a member named name, whatever
// its status.
func knowsName(n *Node, name string) bool {
	for _, m := range n.serf.Members() {
		if m.Name == name {
			return true
		}
	}
	return false
}

// TestANodeNoLongerFencedLearnsOfAMemberItRefused: X, one of three with
// KeepMajority, is fenced for a moment (its vote held so), and N joins
// the majority meanwhile, through A and X: X refuses N, as a stranger. Once X is no longer fenced it exchanges member
// lists with the others at once, and learns of N; it used to wait for the
// next periodic push-pull (an hour here), or a retransmission of N's
// gossip that came late enough, placing N's grains on itself meanwhile
// while the others placed them on N.
func TestANodeNoLongerFencedLearnsOfAMemberItRefused(t *testing.T) {
	t.Parallel()
	logs := map[string]*logLines{} // at every level: the exchange is logged at Info
	nodes, _ := echoCluster(t, 3, 0, withLogs(logs, true, func(cfg *Config) {
		cfg.KeepMajority, cfg.pushPullInterval = true, time.Hour
	}))
	a, x := nodes[0], nodes[2]
	x.refresh()
	x.refreshMu.Lock()
	release := sync.OnceFunc(x.refreshMu.Unlock)
	t.Cleanup(release) // X's membership watcher needs it at close
	x.replaceView(newPlacement(x.Members()).judged(verdict{fenced: true}))

	joiner := testConfig(t)
	joiner.NodeName += "-joiner"
	joiner.KeepMajority, joiner.pushPullInterval = true, time.Hour
	joiner.Kinds = []*Kind{newEchoKind(newHooks(joiner.NodeName), 0)}
	// Through A and X: X refuses the join's exchange of member lists, and
	// A takes it.
	joiner.Seeds = []string{a.GossipAddr(), x.GossipAddr()}
	n := startNode(t, joiner)
	waitFor(t, waitTimeout, "X to refuse the joiner", func() bool {
		return logs[x.Name()].count("refused members this node never saw") > 0
	})
	release()
	x.refresh() // X's own view: the others alive, no longer fenced
	if x.Fenced() {
		t.Fatal("X is still fenced")
	}
	// The joiner's gossip, retransmitted, may still reach X after it is
	// no longer fenced; the exchange is what makes sure X hears of it.
	waitFor(t, waitTimeout, "X to exchange member lists", func() bool {
		return logs[x.Name()].count("exchanged member lists after regaining a majority") > 0
	})
	waitFor(t, waitTimeout, "X to learn of the joiner", func() bool { return knowsName(x, n.Name()) })
}

// TestHoldAnswers: a member's answer to a starting node's question (see
// queryHeld) says whether it can say, the members whose grains it holds
// with what is left of each hold, and a bound on the holds it does not
// name; an answer that does not parse is refused, and the node then takes
// the member for one that cannot say.
func TestHoldAnswers(t *testing.T) {
	const room = 1024
	for _, a := range []holdAnswer{
		{ok: true},
		{},
		{ok: true, holds: map[string]time.Duration{"a": 1500 * time.Millisecond, "node-with-a-longer-name": time.Hour}},
		{ok: true, rest: time.Minute},
		{ok: true, holds: map[string]time.Duration{"a": time.Second}, rest: time.Hour},
	} {
		got, err := decodeHoldAnswer(a.encode(room))
		if err != nil || got.ok != a.ok || !maps.Equal(got.holds, a.holds) || got.rest != a.rest {
			t.Errorf("answer %+v came back as %+v, %v", a, got, err)
		}
	}
	whole := holdAnswer{ok: true, holds: map[string]time.Duration{"abc": time.Second}}.encode(room)
	zero := holdAnswer{ok: true, holds: map[string]time.Duration{"abc": 0}}.encode(room)
	for _, b := range [][]byte{nil, {2}, {4}, {2, 0, 0, 0, 0, 0, 0, 0, 0}, {3, 0, 0, 0, 0, 0, 0, 1}, whole[:len(whole)-1], whole[:3],
		append(whole, 0x80), zero, {1, 0, 0, 0, 0, 0, 0, 0, 0, 1}} {
		if a, err := decodeHoldAnswer(b); !errors.Is(err, errMalformedHoldAnswer) {
			t.Errorf("the malformed answer %x parsed as %+v, %v", b, a, err)
		}
	}
}

// TestAHoldAnswerWithoutRoomNamesTheLongestHolds: an answer with more
// holds than fit in its room names the longest and bounds the others by
// the longest it leaves out, or by the bound the member had already if
// that is longer; it never takes more than its room.
func TestAHoldAnswerWithoutRoomNamesTheLongestHolds(t *testing.T) {
	holds := make(map[string]time.Duration)
	for i := range 40 {
		holds[fmt.Sprintf("member-%02d", i)] = time.Duration(i+1) * time.Second
	}
	for _, tc := range []struct {
		room       int
		rest, want time.Duration // the bound the member had, and the one it gives
		named      int
	}{
		{room: 1 + 8 + 3*(9+holdEntryBytes), want: 37 * time.Second, named: 3},
		{room: 1 + 8 + 3*(9+holdEntryBytes) + 5, want: 37 * time.Second, named: 3},
		{room: 1 + 8, want: 40 * time.Second},
		{room: 1 + 8 + 3*(9+holdEntryBytes), rest: time.Hour, want: time.Hour, named: 3},
	} {
		a := holdAnswer{ok: true, holds: holds, rest: tc.rest}
		b := a.encode(tc.room)
		if len(b) > tc.room {
			t.Errorf("room %d: the answer takes %d bytes", tc.room, len(b))
		}
		got, err := decodeHoldAnswer(b)
		if err != nil {
			t.Fatalf("room %d: %v", tc.room, err)
		}
		if got.rest != tc.want || len(got.holds) != tc.named {
			t.Errorf("room %d: %d holds named, the rest bound by %v; want %d, %v", tc.room, len(got.holds), got.rest, tc.named, tc.want)
		}
		for name, left := range got.holds {
			if left != holds[name] || left <= tc.want && tc.rest == 0 {
				t.Errorf("room %d: named %s for %v, which is not among the longest holds", tc.room, name, left)
			}
		}
	}
	// With room for all, none is left out.
	if got, err := decodeHoldAnswer(holdAnswer{ok: true, holds: holds}.encode(4096)); err != nil || len(got.holds) != len(holds) || got.rest != 0 {
		t.Errorf("with room for all: %d holds named, the rest bound by %v, %v", len(got.holds), got.rest, err)
	}
}

// TestAStartingNodeSettlesForHoldsAnAnswerHadNoRoomToName: a member that
// holds the grains of more failed members than its answer to a starting
// node has room to name (serf's response limit: 1 KB by default, 300
// bytes here) names the longest holds and bounds the others: the starting
// node gets an answer, and settles until the holds end. An answer too
// large for serf was not sent: the starting node, whose lists named none
// of those members, did not settle at all.
func TestAStartingNodeSettlesForHoldsAnAnswerHadNoRoomToName(t *testing.T) {
	t.Parallel()
	nodes, _ := echoCluster(t, 1, 0, func(cfg *Config) {
		cfg.KeepMajority = true
		cfg.queryResponseLimit = 300
	})
	a := nodes[0]
	holdViews(t, a) // no vote replaces the holds the test sets
	asked := time.Now()
	until := make(map[string]time.Time)
	var last time.Time
	for i := range 40 {
		last = asked.Add(3*time.Second + time.Duration(i)*10*time.Millisecond)
		until[fmt.Sprintf("gone-%02d", i)] = last
	}
	a.majority.holds.Store(&holdTimes{until: until})

	logs := map[string]*logLines{}
	cfg := testConfig(t)
	cfg.NodeName += "-d"
	cfg.KeepMajority, cfg.DownAfter = true, time.Hour
	cfg.Seeds = []string{a.GossipAddr()}
	withLogs(logs, true, nil)(&cfg) // the settle's line is at Info
	d := startNode(t, cfg)
	if !d.Fenced() {
		t.Fatal("d serves at once: it did not settle for the holds a answered with")
	}
	if got := logs[d.Name()].count("the others hold the grains of failed members", "unnamedIn="); got != 1 {
		t.Errorf("d logged %d settles for holds it was not told the names of, want 1", got)
	}
	if got := logs[d.Name()].count("the others hold the grains of failed members", "why="); got != 0 {
		t.Errorf("d settled for DownAfter, as if a had not answered")
	}
	d.refreshMu.Lock()
	unnamed := d.majority.unlisted
	d.refreshMu.Unlock()
	if !unnamed.After(asked) {
		t.Errorf("d settles for the holds a left unnamed until %v, want after a answered", unnamed)
	}
	waitFor(t, waitTimeout, "d to serve once the holds end", func() bool { return !d.Fenced() })
	if served := time.Now(); served.Before(last) {
		t.Errorf("d served %v before the last of a's holds ended", last.Sub(served))
	}
}

// TestACrashedMembersNewStartReachesTheOthersAsTheStartItReplaces: with
// KeepMajority, a member that crashed and starts again at once under its
// name, before the others declared its earlier start failed, dials them to
// count a majority only once it holds its name, with the hello that says
// which start it replaces. It dialed them first before: a member whose
// view still had the earlier start took the new start's stream for a
// stale one (they disagreed on the member's address) and closed it, and
// with two members doing so under load the new start counted no majority
// and failed to start (the rolling restart's variant keeping a majority,
// in a soak).
func TestACrashedMembersNewStartReachesTheOthersAsTheStartItReplaces(t *testing.T) {
	t.Parallel()
	var cfg Config
	nodes, _ := echoCluster(t, 3, 0, func(c *Config) {
		c.KeepMajority = true
		cfg = *c // the last node's, c's
	})
	c := nodes[2]
	earlier := c.incarnation
	if err := c.Close(); err != nil {
		t.Fatalf("Close of %s: %v", c.Name(), err)
	}
	cfg.Seeds = []string{nodes[0].GossipAddr()}
	var replaced atomic.Pointer[string]
	reached := make(chan struct{})
	cfg.reachingMajority = func(n *Node) {
		if p := n.transport.replaced.Load(); p != nil {
			replaced.Store(p)
		}
		close(reached)
	}
	again := startNode(t, cfg)
	receive(t, reached, "the new start to count a majority")
	if p := replaced.Load(); p == nil || *p != earlier {
		t.Errorf("the new start dialed the others to count a majority saying it replaced %v, want its earlier start %s", p, earlier)
	}
	waitConverged(t, []*Node{nodes[0], nodes[1], again}, 3)
}

// TestAMemberSaysWhatItHolds: a member's answer to a starting node names
// the members whose grains it holds, with what is left of each hold, and
// leaves out holds that ended; it cannot say while it is fenced, nor of a
// member asked about that its view has alive. A member that has not voted
// yet holds nothing.
func TestAMemberSaysWhatItHolds(t *testing.T) {
	t.Parallel()
	nodes, _ := echoCluster(t, 2, 0, func(cfg *Config) { cfg.KeepMajority = true })
	a, b := nodes[0], nodes[1]
	holdViews(t, a) // no vote replaces the holds the test sets
	now := time.Now()
	for _, tc := range []struct {
		name  string
		holds *holdTimes
		asked []string
		want  holdAnswer
	}{
		{"not voted yet", nil, []string{"x"}, holdAnswer{ok: true}},
		{"holds, one ended", &holdTimes{until: map[string]time.Time{"x": now.Add(time.Minute), "y": now.Add(-time.Second), "z": {}}}, []string{"x", "w"},
			holdAnswer{ok: true, holds: map[string]time.Duration{"x": time.Minute}}},
		{"fenced", &holdTimes{fenced: true}, []string{"x"}, holdAnswer{}},
		{"asked of a member its view has alive", &holdTimes{}, []string{b.Name()}, holdAnswer{}},
		{"settling for holds it was told of without their names", &holdTimes{unlisted: now.Add(time.Minute)}, nil,
			holdAnswer{ok: true, rest: time.Minute}},
	} {
		a.majority.holds.Store(tc.holds)
		got := a.heldAnswer(tc.asked, now)
		if got.ok != tc.want.ok || !maps.Equal(got.holds, tc.want.holds) || got.rest != tc.want.rest {
			t.Errorf("%s: answered %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

// TestClaimPatienceCountsLifeguard checks the name claim's patience: a
// probe and its timeout at Lifeguard's slowest rate, the longest
// suspicion and a claim round, the figures Config.NodeName's doc gives.
func TestClaimPatienceCountsLifeguard(t *testing.T) {
	local := (&Config{Gossip: GossipLocal}).memberlistConfig()
	lan := (&Config{Gossip: GossipLAN}).memberlistConfig()
	for _, tc := range []struct {
		name    string
		mc      *memberlist.Config
		members int
		want    time.Duration
	}{
		{"local, 3 members", local, 3, 12300 * time.Millisecond},
		{"lan, 3 members", lan, 3, 41 * time.Second},
		{"local, 20 members", local, 20, time.Duration((2*8 + 24*math.Log10(20) + 1) * float64(localProbeInterval))},
	} {
		if got := claimPatience(tc.mc, tc.members); got != tc.want {
			t.Errorf("claimPatience(%s) = %v, want %v", tc.name, got, tc.want)
		}
	}
}
