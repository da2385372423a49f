package cluster

import (
	"context"
	"testing"

	"google.golang.org/protobuf/types/known/wrapperspb"
)

// TestAMovedGrainRunsNoMoreOfItsQueueOnTheOldOwner: once a node's view
// gives a grain to another member, the old activation runs nothing more of
// what is queued to it: the one-way messages are sent on to the grain's new
// owner (and calls placed again), rather than run on the old owner, beside
// the new activation, for as long as the queue lasts.
func TestAMovedGrainRunsNoMoreOfItsQueueOnTheOldOwner(t *testing.T) {
	t.Parallel()
	nodes, hs := echoCluster(t, 2, -1, nil)
	a, b := nodes[0], nodes[1]
	id := identityOwnedBy(t, nodes, b)
	setView := holdViews(t, a)
	setView(withStatus(b.Name(), StatusFailed)) // a takes the grain meanwhile

	held := make(chan error, 1)
	go func() {
		_, err := a.Invoke(context.Background(), stringCall(methodHold, id, ""))
		held <- err
	}()
	if got := receive(t, hs[a.Name()].entered, "the held call"); got != id {
		t.Fatalf("held %q, want %q", got, id)
	}
	const queued = 20
	for range queued {
		if err := a.Send(context.Background(), addCall(id, 1)); err != nil {
			t.Fatal(err)
		}
	}
	setView(withStatus(b.Name(), StatusAlive)) // the grain moves to b
	hs[a.Name()].releaseHeld()
	if err := <-held; err != nil {
		t.Fatalf("the held call: %v", err)
	}
	waitFor(t, waitTimeout, "the queue to run on the new owner", func() bool {
		resp, err := b.Invoke(context.Background(), addCall(id, 0))
		return err == nil && resp.(*wrapperspb.Int64Value).GetValue() == queued
	})
	if got := receive(t, hs[a.Name()].deactivated, "the old activation's OnDeactivate"); got != id {
		t.Fatalf("deactivated %q on %s, want %q", got, a.Name(), id)
	}
}
