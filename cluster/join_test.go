package cluster

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
)

// TestOneWayMessagesSurviveAJoin sends one-way messages without pause from
// a node that hosts nothing to grains of the one node that hosts their
// kind, while a second host joins and takes most of them over. Nobody
// fails, so every message that Send accepted must run exactly once, on one
// of the two hosts, whichever path it took: straight to the owner, to the
// old owner and forwarded, kept in a deactivating grain's mailbox and sent
// on, or placed again after waiting for an activation that moved.
func TestOneWayMessagesSurviveAJoin(t *testing.T) {
	t.Parallel()
	const grains, afterJoin = 16, 400
	recA, recB := newRecorder(), newRecorder()
	cfgA, cfgB, cfgC := testConfig(t), testConfig(t), testConfig(t)
	cfgA.NodeName, cfgB.NodeName, cfgC.NodeName = cfgA.NodeName+"-a", cfgB.NodeName+"-b", cfgC.NodeName+"-c"
	cfgA.Kinds, cfgB.Kinds = []*Kind{newRecorderKind(recA, -1)}, []*Kind{newRecorderKind(recB, -1)}
	a := startNode(t, cfgA)
	cfgB.Seeds, cfgC.Seeds = []string{a.GossipAddr()}, []string{a.GossipAddr()}
	c := startNode(t, cfgC)
	waitConverged(t, []*Node{a, c}, 2)

	ids := make([]string, grains)
	for i := range ids {
		ids[i] = fmt.Sprintf("join-%d", i)
	}
	var joined atomic.Bool
	sent := make([][]int64, grains) // by grain, the values Send accepted
	done := make(chan error, 1)
	go func() {
		after := 0
		for v := int64(0); after < afterJoin; v++ {
			g := int(v % grains)
			if joined.Load() {
				after++
			}
			if err := c.Send(context.Background(), recordCall(ids[g], v)); err != nil {
				done <- fmt.Errorf("Send %d to %s: %w", v, ids[g], err)
				return
			}
			sent[g] = append(sent[g], v)
		}
		done <- nil
	}()
	waitFor(t, waitTimeout, "messages on their way before the join", func() bool {
		return len(recA.values(ids[grains-1])) > 0
	})
	b := startNode(t, cfgB)
	waitConverged(t, []*Node{a, b, c}, 3)
	joined.Store(true)
	if err := receive(t, done, "the sender"); err != nil {
		t.Fatal(err)
	}

	moved := 0
	for g, id := range ids {
		waitFor(t, waitTimeout, fmt.Sprintf("%d messages to %s", len(sent[g]), id), func() bool {
			return len(recA.values(id))+len(recB.values(id)) >= len(sent[g])
		})
		got := append(recA.values(id), recB.values(id)...)
		slices.Sort(got)
		if !slices.Equal(got, sent[g]) {
			t.Fatalf("%s ran %d messages, want each of the %d sent once (first difference near %v)",
				id, len(got), len(sent[g]), firstDifference(got, sent[g]))
		}
		if len(recB.values(id)) > 0 {
			moved++
		}
	}
	if moved == 0 {
		t.Fatal("no grain moved to the node that joined: the test tested nothing")
	}
	t.Logf("%d of %d grains moved; %d messages in all", moved, grains, func() (n int) {
		for _, s := range sent {
			n += len(s)
		}
		return n
	}())
}

// TestOneWayMessagesSurviveALeave is TestOneWayMessagesSurviveAJoin the
// other way round: of two hosts, one leaves gracefully (Shutdown) while a
// node that hosts nothing sends to their grains without pause. A graceful
// leave fails nothing either, so again every message that Send accepted
// must run exactly once, on one of the two hosts: sent to the leaver and
// forwarded by it, kept by one of its deactivating grains and sent on, or
// placed again because the stream to the leaver had closed to requests.
func TestOneWayMessagesSurviveALeave(t *testing.T) {
	t.Parallel()
	const grains, afterLeave = 16, 400
	recA, recB := newRecorder(), newRecorder()
	cfgA, cfgB, cfgC := testConfig(t), testConfig(t), testConfig(t)
	cfgA.NodeName, cfgB.NodeName, cfgC.NodeName = cfgA.NodeName+"-a", cfgB.NodeName+"-b", cfgC.NodeName+"-c"
	cfgA.Kinds, cfgB.Kinds = []*Kind{newRecorderKind(recA, -1)}, []*Kind{newRecorderKind(recB, -1)}
	a := startNode(t, cfgA)
	cfgB.Seeds, cfgC.Seeds = []string{a.GossipAddr()}, []string{a.GossipAddr()}
	b, c := startNode(t, cfgB), startNode(t, cfgC)
	waitConverged(t, []*Node{a, b, c}, 3)

	ids := make([]string, grains)
	var onB []string
	for i := range ids {
		ids[i] = fmt.Sprintf("leave-%d", i)
		if owner, _ := c.Owner(recorderKind, ids[i]); owner.Name == b.Name() {
			onB = append(onB, ids[i])
		}
	}
	if len(onB) == 0 {
		t.Fatal("the leaving node owns none of the grains: the test would test nothing")
	}
	var left atomic.Bool
	sent := make([][]int64, grains) // by grain, the values Send accepted
	done := make(chan error, 1)
	go func() {
		after := 0
		for v := int64(0); after < afterLeave; v++ {
			g := int(v % grains)
			if left.Load() {
				after++
			}
			if err := c.Send(context.Background(), recordCall(ids[g], v)); err != nil {
				done <- fmt.Errorf("Send %d to %s: %w", v, ids[g], err)
				return
			}
			sent[g] = append(sent[g], v)
		}
		done <- nil
	}()
	waitFor(t, waitTimeout, "messages on their way to the leaving node", func() bool {
		return len(recB.values(onB[len(onB)-1])) > 0
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := b.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown of the leaving node: %v", err)
	}
	waitConverged(t, []*Node{a, c}, 2)
	left.Store(true)
	if err := receive(t, done, "the sender"); err != nil {
		t.Fatal(err)
	}

	total := 0
	for g, id := range ids {
		waitFor(t, waitTimeout, fmt.Sprintf("%d messages to %s", len(sent[g]), id), func() bool {
			return len(recA.values(id))+len(recB.values(id)) >= len(sent[g])
		})
		got := append(recA.values(id), recB.values(id)...)
		slices.Sort(got)
		if !slices.Equal(got, sent[g]) {
			t.Fatalf("%s ran %d messages, want each of the %d sent once (first difference near %v)",
				id, len(got), len(sent[g]), firstDifference(got, sent[g]))
		}
		total += len(sent[g])
	}
	t.Logf("%d of %d grains moved; %d messages in all", len(onB), grains, total)
}

// firstDifference returns the first value where got and want differ, or
// the first one past the shorter.
func firstDifference(got, want []int64) int64 {
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			return min(got[i], want[i])
		}
	}
	if len(got) > len(want) {
		return got[len(want)]
	}
	if len(want) > len(got) {
		return want[len(got)]
	}
	return -1
}
