package cluster

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/protograin/protograin/cluster/internal/reminder"
	"github.com/protograin/protograin/cluster/storage"
	"github.com/protograin/protograin/cluster/storage/memstore"
)

// remind registers (or, with "off", unregisters) the reminder name of
// identity's account.
func remind(t *testing.T, c Caller, identity, name, period string) {
	t.Helper()
	if _, err := c.Invoke(context.Background(), accountCall(accountKind, methodRemind, identity, name+"="+period)); err != nil {
		t.Fatalf("Remind(%s, %s=%s): %v", identity, name, period, err)
	}
}

// nextFiring waits for the next reminder delivered on b's node and returns
// "identity name".
func nextFiring(t *testing.T, b *bank) string {
	t.Helper()
	node, rest, _ := strings.Cut(receive(t, b.reminded, "a reminder to fire on "+b.node), " ")
	if node != b.node {
		t.Fatalf("firing on %s reported by %s's bank", node, b.node)
	}
	return rest
}

// Reminders fire from the grain's owner only, and move with ownership
// when the owner leaves.
func TestRemindersFollowTheOwner(t *testing.T) {
	eachStore(t, func(t *testing.T, store storage.Store) {
		nodes, banks := bankCluster(t, 2, store, -1, nil)
		owner, other := nodes[0], nodes[1]
		ob, nb := banks[owner.Name()], banks[other.Name()]
		id := accountOwnedBy(t, owner, accountKind, "remind")
		remind(t, other, id, "tick", "20ms")
		for range 3 {
			if f := nextFiring(t, ob); f != id+" tick" {
				t.Fatalf("firing %q on the owner, want %q", f, id+" tick")
			}
		}
		if n := len(nb.reminded); n != 0 {
			t.Fatalf("%d firings on a node that does not own the grain", n)
		}

		// Shutdown waits for the firings under way; then the other node
		// owns the grain and fires its reminders.
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if err := owner.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		for len(ob.reminded) > 0 {
			<-ob.reminded
		}
		for range 3 {
			if f := nextFiring(t, nb); f != id+" tick" {
				t.Fatalf("firing %q on the new owner, want %q", f, id+" tick")
			}
		}
		if n := len(ob.reminded); n != 0 {
			t.Fatalf("%d firings on the old owner after it left", n)
		}
		// Each firing changed state, and its changes were committed. Not
		// all of them by now: a firing reports itself before its commit.
		// And the new owner's first may have met a stale activation: the
		// old owner's last firing, which its Shutdown stopped waiting for
		// (reminder.Scheduler.Stop), commits as the new owner, which does
		// not wait for a FlushAfterCall grain's release, loads it (see
		// docs/state.md, "Overlapping activations"). That firing's change
		// is dropped, and the scheduler fires it again.
		waitFor(t, waitTimeout, "the firings on both owners to be committed", func() bool {
			return storedBalance(t, store, accountKind, id) >= 6
		})

		remind(t, other, id, "tick", "off")
		rs, err := store.ListReminders(context.Background(), accountKind)
		if err != nil || len(rs) != 0 {
			t.Fatalf("reminders after Unregister: %v, %v; want none", rs, err)
		}
	})
}

// A reminder not delivered before its node crashed fires on a node started
// later over the same store.
func TestRemindersSurviveRestart(t *testing.T) {
	eachStore(t, func(t *testing.T, store storage.Store) {
		nodes, banks := bankCluster(t, 1, store, -1, nil)
		banks[nodes[0].Name()].deaf.Store(true) // every delivery fails
		remind(t, nodes[0], "sleeper", "wake", "1h")
		nodes[0].Close()
		if got := storedBalance(t, store, accountKind, "sleeper"); got != 0 {
			t.Fatalf("a failed delivery committed state: balance %d", got)
		}

		nodes, banks = bankCluster(t, 1, store, -1, nil)
		if f := nextFiring(t, banks[nodes[0].Name()]); f != "sleeper wake" {
			t.Fatalf("firing %q, want wake of sleeper on the restarted cluster", f)
		}
	})
}

// Bad reminders are refused with a clear error and nothing is saved.
func TestBadReminders(t *testing.T) {
	store := hookedMemstore(t)
	plain := &Kind{
		Name: "test.Plain",
		New:  func(string) any { return struct{}{} },
		Methods: []Method{{
			Name:       "/test.Plain/Remind",
			NewRequest: newString,
			Handle: func(_ any, ctx GrainContext, req proto.Message) (proto.Message, error) {
				return req, RegisterReminder(ctx, "r", time.Second, 0)
			},
		}},
	}
	nodes, _ := bankCluster(t, 1, store, -1, func(cfg *Config) { cfg.Kinds = append(cfg.Kinds, plain) })
	n := nodes[0]
	for _, arg := range []string{"neg=-1s", "=1s", "bad\x00name=1s"} {
		_, err := n.Invoke(context.Background(), accountCall(accountKind, methodRemind, "bad", arg))
		if !errors.Is(err, ErrBadRequest) {
			t.Errorf("Remind(%q): %v, want ErrBadRequest", arg, err)
		}
	}
	_, err := n.Invoke(context.Background(), Call{Kind: "test.Plain", Identity: "p", Method: "/test.Plain/Remind",
		Request: wrapperspb.String(""), NewResponse: newString})
	if !errors.Is(err, ErrBadRequest) || status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "ReminderReceiver") {
		t.Errorf("reminder of a grain without OnReminder: %v, want InvalidArgument naming ReminderReceiver", err)
	}
	if err := RegisterReminder(fakeGrainContext{context.Background()}, "r", 0, 0); !errors.Is(err, ErrBadRequest) {
		t.Errorf("RegisterReminder with a foreign GrainContext: %v, want ErrBadRequest", err)
	}
	// WithContext over one: the same refusal, not a nil node.
	derived := WithContext(fakeGrainContext{context.Background()}, context.Background())
	if err := RegisterReminder(derived, "r", 0, 0); !errors.Is(err, ErrBadRequest) {
		t.Errorf("RegisterReminder with a foreign GrainContext under WithContext: %v, want ErrBadRequest", err)
	}
	for _, kind := range []string{accountKind, "test.Plain"} {
		if rs, err := store.ListReminders(context.Background(), kind); err != nil || len(rs) != 0 {
			t.Fatalf("reminders of %s saved by bad registrations: %v, %v", kind, rs, err)
		}
	}
}

// fakeGrainContext is a GrainContext not made by a node, as a unit test of
// a grain might build one.
type fakeGrainContext struct{ context.Context }

func (fakeGrainContext) Invoke(context.Context, Call, ...CallOption) (proto.Message, error) {
	return nil, errors.New("fake")
}
func (fakeGrainContext) Kind() string     { return accountKind }
func (fakeGrainContext) Identity() string { return "fake" }
func (fakeGrainContext) State() State     { return nil }

// TestAFiringThatTimedOutDoesNotRun: a reminder's firing waits in the
// mailbox of a grain busy committing a call, and gives up at its deadline:
// the scheduler counts it failed and fires the due time again, so
// OnReminder must not run for it once the grain is free.
func TestAFiringThatTimedOutDoesNotRun(t *testing.T) {
	t.Parallel()
	store := hookedMemstore(t)
	nodes, banks := bankCluster(t, 1, store, -1, nil)
	n, b := nodes[0], banks[nodes[0].Name()]
	deposit(t, n, accountKind, "busy", 1)
	key := storage.Key{Kind: accountKind, Identity: "busy"}
	store.holdKey.Store(&key)
	held := make(chan error, 1)
	go func() {
		_, err := n.Invoke(context.Background(), depositCall(accountKind, "busy", 1))
		held <- err
	}()
	receive(t, store.holding, "the grain busy committing")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := n.fireReminder(ctx, storage.Reminder{Grain: key, Name: "r", Due: time.Now()}); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("the firing returned %v, want its deadline's error", err)
	}
	store.holdKey.Store(nil)
	close(store.release)
	if err := receive(t, held, "the held call"); err != nil {
		t.Fatal(err)
	}
	// The firing's message was queued before this call's, so the grain has
	// dealt with it once this call returns.
	if got := balance(t, n, accountKind, "busy"); got != 2 {
		t.Fatalf("balance %d, want 2: the timed-out firing changed it", got)
	}
	select {
	case f := <-b.reminded:
		t.Fatalf("OnReminder ran for a firing that had timed out: %q", f)
	default:
	}
}

// tidyGrain unregisters its reminder as it deactivates, once its node's
// reminders stopped firing (a leave's view change may deactivate it before
// Shutdown gets that far).
type tidyGrain struct {
	node         *atomic.Pointer[Node]
	unregistered chan error
}

func (g *tidyGrain) OnReminder(GrainContext, string) error { return nil }

func (g *tidyGrain) OnDeactivate(ctx GrainContext) error {
	// Refresh refuses once the scheduler stopped firing.
	stopped := func() bool { return errors.Is(g.node.Load().reminders.Refresh(ctx), reminder.ErrClosed) }
	for deadline := time.Now().Add(waitTimeout); !stopped() && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	err := UnregisterReminder(ctx, "r")
	g.unregistered <- err
	return err
}

// TestRemindersChangeInOnDeactivateDuringShutdown: a node that leaves stops
// firing reminders before its grains deactivate, but their OnDeactivate
// hooks may still unregister (or register) reminders, for the grains' next
// owners; the scheduler refused them as closed.
func TestRemindersChangeInOnDeactivateDuringShutdown(t *testing.T) {
	t.Parallel()
	store := memstore.New()
	unregistered := make(chan error, 1)
	var node atomic.Pointer[Node]
	kind := &Kind{
		Name:        "test.Tidy",
		IdleTimeout: -1,
		New:         func(string) any { return &tidyGrain{node: &node, unregistered: unregistered} },
		Methods: []Method{{
			Name:       "/test.Tidy/Arm",
			NewRequest: newString,
			Handle: func(_ any, ctx GrainContext, req proto.Message) (proto.Message, error) {
				return req, RegisterReminder(ctx, "r", time.Hour, 0)
			},
		}},
	}
	nodes := startCluster(t, 1, func(string) []*Kind { return []*Kind{kind} }, func(cfg *Config) { cfg.Store = store })
	n := nodes[0]
	node.Store(n)
	if _, err := n.Invoke(context.Background(), Call{Kind: "test.Tidy", Identity: "x", Method: "/test.Tidy/Arm",
		Request: wrapperspb.String(""), NewResponse: newString}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := n.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := receive(t, unregistered, "OnDeactivate"); err != nil {
		t.Fatalf("UnregisterReminder in OnDeactivate during Shutdown: %v", err)
	}
	if rs, err := store.ListReminders(context.Background(), "test.Tidy"); err != nil || len(rs) != 0 {
		t.Fatalf("stored reminders after the grain unregistered its one: %v, %v", rs, err)
	}
}

// flakyListStore fails ListReminders while failing is set, as a database
// does during a brief outage, and counts the failures.
type flakyListStore struct {
	storage.Store
	failing atomic.Bool
	failed  atomic.Int64
}

func (s *flakyListStore) ListReminders(ctx context.Context, kind string) ([]storage.Reminder, error) {
	if s.failing.Load() {
		s.failed.Add(1)
		return nil, errors.New("test: store briefly down")
	}
	return s.Store.ListReminders(ctx, kind)
}

// TestARemindersListingThatFailedIsTriedAgain: a grain's owner leaves while
// the store fails to list reminders; once the store is back, the grain's
// new owner lists again by itself and fires the reminder, where it waited
// for the next membership change.
func TestARemindersListingThatFailedIsTriedAgain(t *testing.T) {
	t.Parallel()
	store := &flakyListStore{Store: memstore.New()}
	nodes, banks := bankCluster(t, 2, store, -1, nil)
	owner, other := nodes[0], nodes[1]
	id := accountOwnedBy(t, owner, accountKind, "flaky")
	remind(t, other, id, "tick", "50ms")
	nextFiring(t, banks[owner.Name()])

	store.failing.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := owner.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, waitTimeout, "the other node to fail to list the reminders after the leave", func() bool {
		return aliveCount(other) == 1 && store.failed.Load() > 0
	})
	store.failing.Store(false)
	if f := nextFiring(t, banks[other.Name()]); !strings.Contains(f, id+" tick") {
		t.Fatalf("fired %q on the new owner, want %s's tick", f, id)
	}
}

// rearmGrain's OnReminder, for reminder "tick", runs first (which changes
// the reminder itself) and then registers another reminder, sending what
// that returned on done.
type rearmGrain struct {
	first func(ctx GrainContext, name string) error
	done  chan error
}

// OnReminder implements ReminderReceiver.
func (g *rearmGrain) OnReminder(ctx GrainContext, name string) error {
	if name != "tick" {
		return nil
	}
	if err := g.first(ctx, name); err != nil {
		g.done <- err
		return err
	}
	err := RegisterReminder(ctx, "tock", time.Hour, 0)
	g.done <- err
	return err
}

// TestAReminderThatChangesItselfKeepsItsTurn: a grain that
// unregisters (or re-registers) the reminder being delivered, from its
// OnReminder, has that turn's context cancelled under it (Register and
// Unregister bump the running firing's entry), so what the hook does next
// with its GrainContext fails.
// TestAReminderThatChangesItselfKeepsItsTurn: a grain's OnReminder
// unregisters, or registers again, the reminder that fired (a reminder that
// ends or re-arms itself), and then registers another: the change must not
// cancel the turn under it. It did, since a change of a reminder cancels
// its firing's context, which the turn ran under: the second registration
// failed with "context canceled".
func TestAReminderThatChangesItselfKeepsItsTurn(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		first func(ctx GrainContext, name string) error
	}{
		{"unregister", func(ctx GrainContext, name string) error { return UnregisterReminder(ctx, name) }},
		{"re-register", func(ctx GrainContext, name string) error { return RegisterReminder(ctx, name, time.Hour, 0) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			store := memstore.New()
			done := make(chan error, 4)
			kind := &Kind{
				Name:        "test.Chain",
				IdleTimeout: -1,
				New:         func(string) any { return &rearmGrain{first: tc.first, done: done} },
				Methods: []Method{{
					Name:       "/test.Chain/Arm",
					NewRequest: newString,
					Handle: func(_ any, ctx GrainContext, req proto.Message) (proto.Message, error) {
						return req, RegisterReminder(ctx, "tick", 0, 0)
					},
				}},
			}
			nodes := startCluster(t, 1, func(string) []*Kind { return []*Kind{kind} }, func(cfg *Config) { cfg.Store = store })
			if _, err := nodes[0].Invoke(context.Background(), Call{Kind: "test.Chain", Identity: "x", Method: "/test.Chain/Arm",
				Request: wrapperspb.String(""), NewResponse: newString}); err != nil {
				t.Fatal(err)
			}
			if err := receive(t, done, "OnReminder"); err != nil {
				t.Fatalf("OnReminder: RegisterReminder(tock) after %s of its own reminder: %v", tc.name, err)
			}
		})
	}
}
