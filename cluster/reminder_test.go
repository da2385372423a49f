package cluster

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/protograin/protograin/cluster/storage"
)

// remind registers (or, with "off", unregisters) the reminder name of
// identity's account.
func remind(t *testing.T, c Caller, identity, name, period string) {
	t.Helper()
	if _, err := c.Invoke(context.Background(), accountCall(accountKind, methodRemind, identity, name+"="+period)); err != nil {
		t.Fatalf("Remind(%s, %s=%s): %v", identity, name, period, err)
	}
}

// firing is one delivery of a reminder, as the banks report it.
type firing struct{ node, identity, name string }

// nextFiring waits for the next reminder delivered on any of banks' nodes.
func nextFiring(t *testing.T, banks map[string]*bank) firing {
	t.Helper()
	merged := make(chan string, 1)
	stop := make(chan struct{})
	defer close(stop)
	for _, b := range banks {
		go func() {
			select {
			case s := <-b.reminded:
				select {
				case merged <- s:
				case <-stop:
					b.reminded <- s // not taken: leave it for the next wait
				}
			case <-stop:
			}
		}()
	}
	f := strings.Fields(receive(t, merged, "a reminder to fire"))
	return firing{f[0], f[1], f[2]}
}

// Reminders fire from the grain's owner only, and move with ownership
// when the owner leaves.
func TestRemindersFollowTheOwner(t *testing.T) {
	eachStore(t, func(t *testing.T, store storage.Store) {
		nodes, banks := bankCluster(t, 2, store, -1, nil)
		owner, other := nodes[0], nodes[1]
		id := accountOwnedBy(t, owner, accountKind, "remind")
		remind(t, other, id, "tick", "20ms")
		for range 3 {
			if f := nextFiring(t, banks); f != (firing{owner.Name(), id, "tick"}) {
				t.Fatalf("firing %+v, want tick of %s on its owner %s", f, id, owner.Name())
			}
		}

		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if err := owner.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		// Firings of the old owner may still be queued; then the new
		// owner takes over, and only it fires.
		f := nextFiring(t, banks)
		for f.node == owner.Name() {
			f = nextFiring(t, banks)
		}
		for range 3 {
			if f != (firing{other.Name(), id, "tick"}) {
				t.Fatalf("firing %+v after the move, want tick of %s on %s", f, id, other.Name())
			}
			f = nextFiring(t, banks)
		}
		// Each firing changed state, and its changes were committed.
		if got := storedBalance(t, store, accountKind, id); got < 6 {
			t.Fatalf("stored balance %d after at least 6 firings", got)
		}

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
		if f := nextFiring(t, banks); f != (firing{nodes[0].Name(), "sleeper", "wake"}) {
			t.Fatalf("firing %+v, want wake of sleeper on the restarted cluster", f)
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
	if !errors.Is(err, ErrBadRequest) || status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "ReminderReceiver") {
		t.Errorf("reminder of a grain without OnReminder: %v, want FailedPrecondition naming ReminderReceiver", err)
	}
	if err := RegisterReminder(fakeGrainContext{context.Background()}, "r", 0, 0); !errors.Is(err, ErrBadRequest) {
		t.Errorf("RegisterReminder with a foreign GrainContext: %v, want ErrBadRequest", err)
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
