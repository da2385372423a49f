package cluster

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/protograin/protograin/runtime"
)

// TestOneWayMessagesBehindADeactivationReachTheNextActivation checks that
// one-way messages that reach a grain's actor after its OnDeactivate run
// once each, in order, on the grain's next activation. It queues them as a
// stream's reader does (see oneWayTarget), counted in on the activation
// before it closed: half while OnDeactivate runs, half after it returned.
// The deactivation must wait for the reader to count out before it stops
// the actor, or the later half would be dead letters.
func TestOneWayMessagesBehindADeactivationReachTheNextActivation(t *testing.T) {
	t.Parallel()
	const half = 100
	rec := newRecorder()
	kind := newRecorderKind(rec, -1)
	inHook, release := make(chan struct{}), make(chan struct{})
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	var made atomic.Int32
	newRecorderGrain := kind.New
	kind.New = func(identity string) any {
		newRecorderGrain(identity)
		if made.Add(1) == 1 { // only the first activation's hook waits
			return gateGrain{enter: func() { close(inHook) }, release: release}
		}
		return struct{}{}
	}
	cfg := testConfig(t)
	cfg.PassivationInterval = time.Hour // only the test deactivates
	cfg.Kinds = []*Kind{kind}
	node := startNode(t, cfg)

	const id = "behind"
	if err := node.Send(context.Background(), recordCall(id, 0)); err != nil {
		t.Fatal(err)
	}
	waitValues(t, rec, id, []int64{0})
	hk, m, err := node.lookup(recorderKind, methodRecord)
	if err != nil {
		t.Fatal(err)
	}
	a := node.readyActivation(hk, id) // the reader's count
	if a == nil {
		t.Fatal("no ready activation after the first message ran")
	}
	node.acts.retire(a)
	select {
	case <-inHook:
	case <-time.After(waitTimeout):
		t.Fatal("OnDeactivate did not run")
	}

	var batch runtime.Batch
	queue := func(from, to int64) {
		t.Helper()
		for v := from; v <= to; v++ {
			if err := batch.Add(a.ref, newOneWayCall(m, wrapperspb.Int64(v), Metadata{})); err != nil {
				t.Fatalf("message %d: %v", v, err)
			}
		}
		batch.Flush()
	}
	queue(1, half) // behind the hook
	close(release)
	waitFor(t, waitTimeout, "the deactivation to wait for the reader", func() bool {
		node.acts.mu.Lock()
		defer node.acts.mu.Unlock()
		d := node.acts.ending[a]
		return d != nil && d.callsOut != nil
	})
	queue(half+1, 2*half) // after the hook, while the reader is counted in

	node.acts.release(a)

	waitValues(t, rec, id, sequence(0, 2*half))
	if got := rec.activations(id); got != 2 {
		t.Errorf("%d activations, want 2", got)
	}
	if node.acts.peek(a.key()) == a {
		t.Error("the old activation is still in the table")
	}
}
