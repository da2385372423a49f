package cluster

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/protograin/protograin/cluster/storage"
	"github.com/protograin/protograin/cluster/storage/memstore"
)

// hungListStore makes ListReminders hang while hang is set, until the
// call's context ends, as a database that stopped answering would. It says
// on entered that a listing hangs, and counts the hung listings that
// returned.
type hungListStore struct {
	storage.Store
	hang     atomic.Bool
	entered  chan struct{} // capacity one
	returned atomic.Int64
}

// ListReminders lists, or hangs until ctx ends while hang is set.
func (s *hungListStore) ListReminders(ctx context.Context, kind string) ([]storage.Reminder, error) {
	if !s.hang.Load() {
		return s.Store.ListReminders(ctx, kind)
	}
	select {
	case s.entered <- struct{}{}:
	default:
	}
	<-ctx.Done()
	s.returned.Add(1)
	return nil, ctx.Err()
}

// TestAHungReminderListingDoesNotHoldUpTheView: node a's store stops
// answering reminder listings, and a member joins, which makes a list them
// again. The listing hangs, but a's view does not wait for it: a sees the
// next member that joins, and sends the grains that member owns to it
// rather than run them itself.
func TestAHungReminderListingDoesNotHoldUpTheView(t *testing.T) {
	t.Parallel()
	shared := memstore.New()
	t.Cleanup(func() { shared.Close() })
	hung := &hungListStore{Store: shared, entered: make(chan struct{}, 1)}
	first := true
	nodes, _ := echoCluster(t, 2, -1, func(cfg *Config) {
		cfg.Store = shared
		if first { // a: the only node whose listings hang
			cfg.Store, first = hung, false
		}
	})
	a, b := nodes[0], nodes[1]

	hung.hang.Store(true)
	cfgC := testConfig(t)
	cfgC.NodeName += "-c"
	cfgC.Store = shared
	cfgC.Seeds = []string{b.GossipAddr()}
	c := startNode(t, cfgC) // hosts nothing: its join makes a list again
	receive(t, hung.entered, "a's listing of reminders after c joined, which hangs")

	cfgD := testConfig(t)
	cfgD.NodeName += "-d"
	cfgD.Store = shared
	cfgD.Kinds = []*Kind{newEchoKind(newHooks(cfgD.NodeName), -1)}
	cfgD.Seeds = []string{b.GossipAddr()}
	d := startNode(t, cfgD)
	all := []*Node{a, b, c, d}
	waitConverged(t, all, 4)
	if n := hung.returned.Load(); n != 0 {
		t.Fatalf("%d hung listings returned; the test needs them hanging", n)
	}
	id := ownedInEveryView(t, all, d, echoKind, "hung")
	if got := where(t, a, id); got != d.Name() {
		t.Fatalf("a's call to %s ran on %s, want %s, which owns it", id, got, d.Name())
	}
}

// listFaultStore fails ListReminders for the kinds in failing, as a store
// does while it is down, or for a kind of which it holds a damaged record,
// and counts the listings that failed.
type listFaultStore struct {
	storage.Store
	mu      sync.Mutex
	failing map[string]bool
	failed  atomic.Int64
}

// fail sets whether the listings of each of kinds fail.
func (s *listFaultStore) fail(failing bool, kinds ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range kinds {
		s.failing[k] = failing
	}
}

// ListReminders lists, or fails if kind is failing.
func (s *listFaultStore) ListReminders(ctx context.Context, kind string) ([]storage.Reminder, error) {
	s.mu.Lock()
	failing := s.failing[kind]
	s.mu.Unlock()
	if failing {
		s.failed.Add(1)
		return nil, errors.New("test: cannot list the reminders of " + kind)
	}
	return s.Store.ListReminders(ctx, kind)
}

// TestANodeStartsWhenItsStoreCannotListReminders: a node starts over a
// store that cannot list the reminders of one of its kinds (a damaged
// record), or of any (the store is down). Start succeeds; the reminders of
// the kinds listed fire; the listing is tried again with backoff, and
// once the store lists the other kind again, its reminders fire too.
func TestANodeStartsWhenItsStoreCannotListReminders(t *testing.T) {
	t.Parallel()
	for name, failing := range map[string][]string{
		"one kind":   {manualKind},
		"every kind": {accountKind, manualKind},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			mem := memstore.New()
			t.Cleanup(func() { mem.Close() })
			store := &listFaultStore{Store: mem, failing: make(map[string]bool)}
			for _, r := range []storage.Reminder{
				{Grain: storage.Key{Kind: accountKind, Identity: "due"}, Name: "listed", Due: time.Now()},
				{Grain: storage.Key{Kind: manualKind, Identity: "due"}, Name: "damaged", Due: time.Now()},
			} {
				if err := mem.SaveReminder(context.Background(), r); err != nil {
					t.Fatal(err)
				}
			}
			store.fail(true, failing...)
			nodes, banks := bankCluster(t, 1, store, -1, nil) // fails the test if Start fails
			b := banks[nodes[0].Name()]
			waitFor(t, waitTimeout, "a listing of reminders to fail", func() bool { return store.failed.Load() > 0 })
			if len(failing) == 1 {
				if f := nextFiring(t, b); f != "due listed" {
					t.Fatalf("fired %q, want the reminder of the kind that could be listed", f)
				}
			}
			store.fail(false, failing...)
			want := map[string]bool{"due damaged": true}
			if len(failing) == 2 {
				want["due listed"] = true
			}
			for len(want) > 0 {
				f := nextFiring(t, b)
				if !want[f] {
					t.Fatalf("fired %q, want one of %v", f, want)
				}
				delete(want, f)
			}
		})
	}
}
