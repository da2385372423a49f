package cluster

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/protograin/protograin/cluster/storage"
	"github.com/protograin/protograin/cluster/storage/memstore"
)

// slowReminderStore is a store whose reminder writes can be made slow, as
// on a loaded database: while delay is set, SaveReminder, DeleteReminder
// and CompleteReminder ("save", "delete", "complete") first wait what it
// says (or until ctx ends).
type slowReminderStore struct {
	storage.Store
	delay atomic.Pointer[func(ctx context.Context, op string, r storage.Reminder) error]
}

// slow waits as delay says before the write op of r.
func (s *slowReminderStore) slow(ctx context.Context, op string, r storage.Reminder) error {
	if d := s.delay.Load(); d != nil {
		return (*d)(ctx, op, r)
	}
	return nil
}

// delayBy makes every reminder write wait d (or until its ctx ends).
func (s *slowReminderStore) delayBy(d time.Duration) {
	f := func(ctx context.Context, _ string, _ storage.Reminder) error { return storeLatency(ctx, d) }
	s.delay.Store(&f)
}

// storeLatency waits d, or until ctx ends, and returns ctx's error then: a
// store's latency, not a wait for an outcome.
func storeLatency(ctx context.Context, d time.Duration) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// SaveReminder implements storage.Store, after the delay.
func (s *slowReminderStore) SaveReminder(ctx context.Context, r storage.Reminder) error {
	if err := s.slow(ctx, "save", r); err != nil {
		return err
	}
	return s.Store.SaveReminder(ctx, r)
}

// DeleteReminder implements storage.Store, after the delay.
func (s *slowReminderStore) DeleteReminder(ctx context.Context, k storage.Key, name string) error {
	if err := s.slow(ctx, "delete", storage.Reminder{Grain: k, Name: name}); err != nil {
		return err
	}
	return s.Store.DeleteReminder(ctx, k, name)
}

// CompleteReminder implements storage.Store, after the delay.
func (s *slowReminderStore) CompleteReminder(ctx context.Context, fired storage.Reminder, next *storage.Reminder) (bool, error) {
	if err := s.slow(ctx, "complete", fired); err != nil {
		return false, err
	}
	return s.Store.CompleteReminder(ctx, fired, next)
}

// tidyKind is the kind of the grains of these tests.
const tidyKind = "test.Tidier"

// tidier reports its firings on fired ("node identity name", or "LATE
// node identity name" for a firing of a reminder this activation
// unregistered), and runs its node's OnDeactivate hook.
type tidier struct {
	node         string
	fired        chan<- string
	onDeactivate *atomic.Pointer[func(ctx GrainContext)]
	off          map[string]bool // unregistered by this activation: UnregisterReminder returned nil
}

// OnReminder implements ReminderReceiver.
func (g *tidier) OnReminder(ctx GrainContext, name string) error {
	prefix := ""
	if g.off[name] {
		prefix = "LATE "
	}
	g.fired <- prefix + g.node + " " + ctx.Identity() + " " + name
	return nil
}

// OnDeactivate implements the grain's deactivation hook.
func (g *tidier) OnDeactivate(ctx GrainContext) error {
	if f := g.onDeactivate.Load(); f != nil {
		(*f)(ctx)
	}
	return nil
}

// newTidyKind returns the kind of tidiers: Arm takes "name=period" and
// registers that reminder, due now ("name=off" unregisters it); Touch does
// nothing.
func newTidyKind(node string, fired chan<- string, onDeactivate *atomic.Pointer[func(GrainContext)]) *Kind {
	return &Kind{
		Name:        tidyKind,
		IdleTimeout: -1,
		New: func(string) any {
			return &tidier{node: node, fired: fired, onDeactivate: onDeactivate, off: map[string]bool{}}
		},
		Methods: []Method{
			{
				Name:       "/" + tidyKind + "/Arm",
				NewRequest: newString,
				Handle: func(gr any, ctx GrainContext, req proto.Message) (proto.Message, error) {
					g := gr.(*tidier)
					name, period, _ := strings.Cut(req.(*wrapperspb.StringValue).GetValue(), "=")
					if period == "off" {
						err := UnregisterReminder(ctx, name)
						if err == nil {
							g.off[name] = true
						}
						return req, err
					}
					delete(g.off, name)
					d, err := time.ParseDuration(period)
					if err != nil {
						return nil, err
					}
					return req, RegisterReminder(ctx, name, 0, d)
				},
			},
			{
				Name:       "/" + tidyKind + "/Touch",
				NewRequest: newString,
				Handle:     func(_ any, _ GrainContext, req proto.Message) (proto.Message, error) { return req, nil },
			},
		},
	}
}

func tidyCall(method, identity, arg string) Call {
	return Call{Kind: tidyKind, Identity: identity, Method: "/" + tidyKind + "/" + method,
		Request: wrapperspb.String(arg), NewResponse: newString}
}

// shutdownDoing lets a's grains run change in OnDeactivate, with each of
// a's reminder writes taking half a second, shuts a down gracefully, and
// returns what change returned.
func shutdownDoing(t *testing.T, a *Node, slow *slowReminderStore, hook *atomic.Pointer[func(GrainContext)], change func(GrainContext) error) error {
	t.Helper()
	changed := make(chan error, 1)
	f := func(ctx GrainContext) { changed <- change(ctx) }
	hook.Store(&f)
	slow.delayBy(500 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := a.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	return receive(t, changed, "a's OnDeactivate to change its reminders")
}

// tidyPair starts two nodes a and b over one memstore, a through a
// slowReminderStore, with a short DeactivateTimeout, and returns them with
// the store a writes through, the shared store, the firings and a's
// OnDeactivate hook.
func tidyPair(t *testing.T) (a, b *Node, slow *slowReminderStore, shared storage.Store, fired chan string, hook *atomic.Pointer[func(GrainContext)]) {
	t.Helper()
	return tidyPairWith(t, time.Second)
}

// tidyPairWith is tidyPair with the given DeactivateTimeout.
func tidyPairWith(t *testing.T, deactivateTimeout time.Duration) (a, b *Node, slow *slowReminderStore, shared storage.Store, fired chan string, hook *atomic.Pointer[func(GrainContext)]) {
	t.Helper()
	shared = memstore.New()
	t.Cleanup(func() { shared.Close() })
	slow = &slowReminderStore{Store: shared}
	fired = make(chan string, 1024)
	hook = new(atomic.Pointer[func(GrainContext)])
	noHook := new(atomic.Pointer[func(GrainContext)])
	var mu sync.Mutex
	first := true
	nodes := startCluster(t, 2, func(name string) []*Kind {
		mu.Lock()
		defer mu.Unlock()
		h := noHook
		if first {
			h, first = hook, false
		}
		return []*Kind{newTidyKind(name, fired, h)}
	}, func(cfg *Config) {
		cfg.DeactivateTimeout = deactivateTimeout
		cfg.Store = shared
		if strings.HasSuffix(cfg.NodeName, "-n0") {
			cfg.Store = slow
		}
	})
	return nodes[0], nodes[1], slow, shared, fired, hook
}

// storedTidy returns the names of the reminders stored for identity.
func storedTidy(t *testing.T, store storage.Store, identity string) []string {
	t.Helper()
	rs, err := store.ListReminders(context.Background(), tidyKind)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range rs {
		if r.Grain.Identity == identity {
			names = append(names, r.Name)
		}
	}
	return names
}

// waitFiring waits for the firing want on fired.
func waitFiring(t *testing.T, fired <-chan string, want string) {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		select {
		case f := <-fired:
			if f == want {
				return
			}
		case <-deadline:
			t.Fatalf("timed out waiting for firing %q", want)
		}
	}
}

// TestOnDeactivateReminderChangesReachTheNextOwner: a grain unregisters
// its reminder, or registers one, in OnDeactivate while its node a leaves
// with Shutdown; a's store takes 500 ms to write, so the write lands after
// the next owner b listed the reminders for a's leave. b lists again once
// a's deactivations are over, and follows the change: the unregistered
// reminder leaves b's schedule (it would fire an hour later), and the
// registered one fires on b.
func TestOnDeactivateReminderChangesReachTheNextOwner(t *testing.T) {
	t.Parallel()
	t.Run("unregister", func(t *testing.T) {
		t.Parallel()
		a, b, slow, shared, fired, hook := tidyPair(t)
		id := ownedInEveryView(t, []*Node{a, b}, a, tidyKind, "unreg")
		if _, err := a.Invoke(context.Background(), tidyCall("Arm", id, "r=1h")); err != nil {
			t.Fatal(err)
		}
		waitFiring(t, fired, a.Name()+" "+id+" r")
		waitFor(t, waitTimeout, "the next due time to be stored", func() bool {
			rs, err := shared.ListReminders(context.Background(), tidyKind)
			return err == nil && len(rs) == 1 && time.Until(rs[0].Due) > 30*time.Minute
		})
		if err := shutdownDoing(t, a, slow, hook, func(ctx GrainContext) error { return UnregisterReminder(ctx, "r") }); err != nil {
			t.Fatalf("UnregisterReminder in OnDeactivate: %v", err)
		}
		waitFor(t, waitTimeout, "r to leave the store and b's schedule", func() bool {
			return len(storedTidy(t, shared, id)) == 0 && b.reminders.Len() == 0
		})
	})
	t.Run("register", func(t *testing.T) {
		t.Parallel()
		a, b, slow, shared, fired, hook := tidyPair(t)
		id := ownedInEveryView(t, []*Node{a, b}, a, tidyKind, "reg")
		if _, err := a.Invoke(context.Background(), tidyCall("Touch", id, "")); err != nil {
			t.Fatal(err)
		}
		if err := shutdownDoing(t, a, slow, hook, func(ctx GrainContext) error { return RegisterReminder(ctx, "r2", 0, 0) }); err != nil {
			t.Fatalf("RegisterReminder in OnDeactivate: %v", err)
		}
		waitFiring(t, fired, b.Name()+" "+id+" r2")
		waitFor(t, waitTimeout, "the one-shot r2 to be deleted after it fired", func() bool {
			return len(storedTidy(t, shared, id)) == 0
		})
	})
}

// TestCloseDoesNotWaitForAReminderWrite: Close stops the node at once,
// as in a crash, even while the store write after a firing hangs (it would
// wait FireTimeout, a minute); Shutdown waits for that write only while
// its ctx lasts.
func TestCloseDoesNotWaitForAReminderWrite(t *testing.T) {
	t.Parallel()
	for _, shutdown := range []bool{false, true} {
		name := map[bool]string{false: "Close", true: "Shutdown"}[shutdown]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			a, b, slow, _, fired, _ := tidyPair(t)
			id := ownedInEveryView(t, []*Node{a, b}, a, tidyKind, "close")
			entered := make(chan struct{}, 1)
			hang := func(ctx context.Context, op string, _ storage.Reminder) error {
				if op != "complete" {
					return nil
				}
				select {
				case entered <- struct{}{}:
				default:
				}
				<-ctx.Done() // a hung store that honours ctx
				return ctx.Err()
			}
			slow.delay.Store(&hang)
			if _, err := a.Invoke(context.Background(), tidyCall("Arm", id, "slow=1h")); err != nil {
				t.Fatal(err)
			}
			waitFiring(t, fired, a.Name()+" "+id+" slow")
			receive(t, entered, "the write after the firing to hang")
			stopped := make(chan error, 1)
			go func() {
				if !shutdown {
					stopped <- a.Close()
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				stopped <- a.Shutdown(ctx)
			}()
			receive(t, stopped, name+" to return while the write after a firing hangs")
		})
	}
}

// TestAFiringQueuedBehindUnregisterDoesNotRun: a grain unregisters its
// reminder while the store is slow to delete; the reminder comes due
// meanwhile, and its firing waits in the grain's mailbox behind the
// unregistering call. Once UnregisterReminder returned nil, OnReminder
// must not run for it.
func TestAFiringQueuedBehindUnregisterDoesNotRun(t *testing.T) {
	t.Parallel()
	a, b, slow, shared, fired, _ := tidyPair(t)
	id := ownedInEveryView(t, []*Node{a, b}, a, tidyKind, "unreg")
	if _, err := a.Invoke(context.Background(), tidyCall("Arm", id, "r=1s")); err != nil {
		t.Fatal(err)
	}
	waitFiring(t, fired, a.Name()+" "+id+" r")
	var due time.Time
	waitFor(t, waitTimeout, "the next due time to be stored", func() bool {
		rs, err := shared.ListReminders(context.Background(), tidyKind)
		if err != nil || len(rs) != 1 || time.Until(rs[0].Due) < 300*time.Millisecond {
			return false
		}
		due = rs[0].Due
		return true
	})
	// The delete lands half a second after the reminder came due: its
	// firing has reached the grain's mailbox by then.
	hold := func(ctx context.Context, op string, _ storage.Reminder) error {
		if op != "delete" {
			return nil
		}
		return storeLatency(ctx, time.Until(due.Add(500*time.Millisecond)))
	}
	slow.delay.Store(&hold)
	if _, err := a.Invoke(context.Background(), tidyCall("Arm", id, "r=off")); err != nil {
		t.Fatal(err)
	}
	// This call queues behind the firing: once it returns, the grain has
	// dealt with it.
	if _, err := a.Invoke(context.Background(), tidyCall("Touch", id, "")); err != nil {
		t.Fatal(err)
	}
	for len(fired) > 0 {
		if f := <-fired; strings.HasPrefix(f, "LATE ") {
			t.Fatalf("OnReminder ran after the grain's UnregisterReminder returned nil: %q", f)
		}
	}
	if names := storedTidy(t, shared, id); len(names) != 0 {
		t.Fatalf("stored %v after the grain unregistered r", names)
	}
}

// TestALeaversFarewellListsTheRemindersAgain: as in the register case of
// TestOnDeactivateReminderChangesReachTheNextOwner, but with a
// DeactivateTimeout of a minute, so that the listing b times after a's
// leave (a minute and three seconds later) cannot be what fires the
// reminder within the test: b lists again when a says bye on their stream
// in its farewell, which a does once its grains are deactivated and their
// hooks' writes have landed.
func TestALeaversFarewellListsTheRemindersAgain(t *testing.T) {
	t.Parallel()
	a, b, slow, _, fired, hook := tidyPairWith(t, time.Minute)
	id := ownedInEveryView(t, []*Node{a, b}, a, tidyKind, "bye")
	// b calls a's grain: a stream between them, on which a says bye.
	if _, err := b.Invoke(context.Background(), tidyCall("Touch", id, "")); err != nil {
		t.Fatal(err)
	}
	if err := shutdownDoing(t, a, slow, hook, func(ctx GrainContext) error { return RegisterReminder(ctx, "r2", 0, 0) }); err != nil {
		t.Fatalf("RegisterReminder in OnDeactivate: %v", err)
	}
	waitFiring(t, fired, b.Name()+" "+id+" r2")
}
