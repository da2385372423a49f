package cluster

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
)

// TestActivationWhoseOnActivateFlushFailedIsReplaced has a grain's first
// OnActivate flush its state into a store that fails the commit, and then
// return nil. The activation's state is broken, so it runs nothing: the
// call and the one-way message that reach it must go on to a new
// activation (whose flush succeeds), not bounce off the broken one until
// their deadline.
func TestActivationWhoseOnActivateFlushFailedIsReplaced(t *testing.T) {
	t.Parallel()
	store := hookedMemstore(t)
	failed := errors.New("commit refused")
	store.commitErr.Store(&failed)
	var made, ran atomic.Int32
	cfg := testConfig(t)
	cfg.Store = store
	cfg.PassivationInterval = time.Hour // no sweep finds the broken activation first
	cfg.Kinds = []*Kind{{
		Name:        gateKind,
		IdleTimeout: -1,
		New: func(string) any {
			made.Add(1)
			return flushingGrain{store: store}
		},
		Methods: []Method{{
			Name:       methodAdd,
			NewRequest: newInt64,
			Handle: func(_ any, _ GrainContext, req proto.Message) (proto.Message, error) {
				ran.Add(1)
				return req, nil
			},
		}},
	}}
	node := startNode(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout/2)
	defer cancel()
	call := addCall("broken", 1)
	call.Kind = gateKind
	if _, err := node.Invoke(ctx, call); err != nil {
		t.Fatalf("Invoke: %v", err)
	}
	if got := made.Load(); got != 2 {
		t.Errorf("%d activations, want 2: the broken one and its replacement", got)
	}
	if err := node.Send(ctx, call); err != nil {
		t.Fatal(err)
	}
	waitFor(t, waitTimeout, "the one-way message to run", func() bool { return ran.Load() == 2 })
}

// flushingGrain writes its state and flushes it in OnActivate, ignoring
// the error; the first flush makes the store refuse no more commits.
type flushingGrain struct{ store *hookedStore }

func (g flushingGrain) OnActivate(ctx GrainContext) error {
	if err := ctx.State().Set("k", []byte("v")); err != nil {
		return err
	}
	_ = ctx.State().Flush(ctx)
	g.store.commitErr.Store(nil)
	return nil
}
