package cluster

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/protograin/protograin/cluster/storage"
	"github.com/protograin/protograin/cluster/storage/memstore"
)

// panickyStore is a store whose Load panics while panics is set, as bbolt
// does on a damaged page.
type panickyStore struct {
	storage.Store
	panics atomic.Bool
}

func (s *panickyStore) Load(ctx context.Context, key storage.Key) (map[string][]byte, storage.Version, error) {
	if s.panics.Load() {
		panic("damaged page")
	}
	return s.Store.Load(ctx, key)
}

// TestAStoreThatPanicsFailsTheActivation: a store's panic while a grain
// activates fails the call with ErrStateUnavailable, as a store's error
// does, instead of ending the caller's goroutine, and leaves no half-made
// activation behind: once the store loads again, the grain activates.
func TestAStoreThatPanicsFailsTheActivation(t *testing.T) {
	t.Parallel()
	store := &panickyStore{Store: memstore.New()}
	logs := &logLines{}
	n := startCluster(t, 1, func(name string) []*Kind { return []*Kind{newEchoKind(newHooks(name), -1)} }, func(cfg *Config) {
		cfg.Store = store
		cfg.Logger = slog.New(logs.handler(cfg.Logger.Handler()))
	})[0]
	store.panics.Store(true)
	_, err := n.Invoke(context.Background(), addCall("damaged", 1))
	if status.Code(err) != codes.Unavailable || !errors.Is(err, ErrStateUnavailable) {
		t.Fatalf("a call whose activation's load panicked: %v, want Unavailable, ErrStateUnavailable", err)
	}
	if logs.count("the store panicked", "damaged page") != 1 {
		t.Error("the store's panic was not logged once")
	}
	store.panics.Store(false)
	for want := int64(1); want <= 2; want++ {
		resp, err := n.Invoke(context.Background(), addCall("damaged", 1))
		if err != nil {
			t.Fatalf("call %d once the store loads again: %v", want, err)
		}
		if got := resp.(*wrapperspb.Int64Value).GetValue(); got != want {
			t.Fatalf("call %d once the store loads again: total %d, want %d", want, got, want)
		}
	}
}
