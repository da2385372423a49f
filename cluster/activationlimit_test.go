package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/protograin/protograin/cluster/storage"
	"github.com/protograin/protograin/cluster/storage/memstore"
)

// TestActivationLimitRefusesNewGrains: a node that holds
// Config.ActivationLimit grains, all busy, refuses a new one with
// ErrTooManyActivations (codes.ResourceExhausted) to a call and a Send on
// the node and to a call from a peer, which Invoke does not retry, and
// drops a peer's one-way message that needed it; its active grains still
// take messages. Each refusal is counted in Stats and logged.
func TestActivationLimitRefusesNewGrains(t *testing.T) {
	s := newSink()
	logs := map[string]*logLines{}
	nodes := startCluster(t, 2, func(name string) []*Kind {
		if strings.HasSuffix(name, "-n0") {
			return []*Kind{newSinkKind(s)}
		}
		return nil // the client: every sink grain is the owner's
	}, withLogs(logs, false, func(cfg *Config) { cfg.ActivationLimit = 2 }))
	owner, client := nodes[0], nodes[1]
	t.Cleanup(s.releaseHeld) // before the nodes close, which waits for the turns
	release := holdInCalls(t, owner, s, "a", "b")

	refused := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, ErrTooManyActivations) || status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("%s: %v (code %v), want ErrTooManyActivations with codes.ResourceExhausted, not retried", what, err, status.Code(err))
		}
	}
	newGrain := holdCall("c", 1)
	newGrain.NewResponse = func() proto.Message { return new(emptypb.Empty) }
	_, err := owner.Invoke(context.Background(), newGrain)
	refused("a call on the owner", err)
	_, err = client.Invoke(context.Background(), newGrain)
	refused("a call from a peer", err)
	refused("a Send on the owner", owner.Send(context.Background(), newGrain))
	if err := client.Send(context.Background(), newGrain); err != nil {
		t.Fatalf("a Send from a peer: %v, want it handed over (the owner drops it)", err)
	}
	waitFor(t, waitTimeout, "the owner to drop the peer's message", func() bool { return owner.Stats().DroppedOneWay == 1 })

	// The grains active already are not refused.
	for _, id := range []string{"a", "b"} {
		if err := client.Send(context.Background(), holdCall(id, 1)); err != nil {
			t.Fatalf("a Send to the active grain %s: %v", id, err)
		}
	}
	if st := owner.Stats(); st.Activations != 2 || st.RefusedActivations != 4 {
		t.Fatalf("Stats of the owner: %+v, want 2 activations and 4 refused", st)
	}
	waitFor(t, waitTimeout, "the refusals to be logged", func() bool {
		return logs[owner.Name()].count("Config.ActivationLimit activations", "limit=2") > 0
	})
	release()
	waitFor(t, waitTimeout, "the active grains to run the values sent to them", func() bool { return s.got.Load() == 2 })
}

// TestAnActivationLimitRefusalWakesTheTrim: a refused activation wakes a
// trim, as an activation past Config.MaxActivations does, so that a node
// whose grains went idle makes room for the next one with no sweep to come
// (PassivationInterval is an hour here): with MaxActivations below the
// limit, at it, and without it.
func TestAnActivationLimitRefusalWakesTheTrim(t *testing.T) {
	for _, max := range []int{2, 3, 0} {
		t.Run(fmt.Sprintf("MaxActivations=%d", max), func(t *testing.T) {
			s := newSink()
			logs := map[string]*logLines{}
			nodes := startCluster(t, 1, func(string) []*Kind { return []*Kind{newSinkKind(s)} }, withLogs(logs, false, func(cfg *Config) {
				cfg.MaxActivations, cfg.ActivationLimit = max, 3
				cfg.PassivationInterval = time.Hour
			}))
			n := nodes[0]
			t.Cleanup(s.releaseHeld)
			// Busy, the three grains at the limit are left be by the trim
			// the third one's activation woke past MaxActivations, if it is
			// below the limit; idle, they wait for a trim.
			release := holdInCalls(t, n, s, "a", "b", "c")
			if max < 3 && max > 0 {
				waitFor(t, waitTimeout, "the trim the third activation woke", func() bool {
					return logs[n.Name()].count("more activations than Config.MaxActivations") > 0
				})
			}
			release()
			call := holdCall("d", 1)
			call.NewResponse = func() proto.Message { return new(emptypb.Empty) }
			waitFor(t, waitTimeout, "the new grain to be activated", func() bool {
				_, err := n.Invoke(context.Background(), call)
				if err != nil && !errors.Is(err, ErrTooManyActivations) {
					t.Fatalf("a call to a new grain: %v, want it refused until a trim made room", err)
				}
				return err == nil
			})
			if got := n.Stats().RefusedActivations; got == 0 {
				t.Fatal("no activation was refused: the test tested nothing")
			}
		})
	}
}

// TestActivationLimitHoldsUnderConcurrentActivations: activations that
// enter the node's table at once, in different shards, do not pass
// Config.ActivationLimit together, and the refused ones leave the node's
// count of its activations as its table has them.
func TestActivationLimitHoldsUnderConcurrentActivations(t *testing.T) {
	const limit, callers, grains = 30, 8, 20
	nodes, _ := bankCluster(t, 1, nil, -1, func(cfg *Config) { cfg.ActivationLimit = limit }) // grains that never passivate
	n := nodes[0]
	admitted := make(chan string, callers*grains)
	concurrently(t, callers, func(c int) error {
		for i := range grains {
			id := fmt.Sprintf("g-%d-%d", c, i)
			_, err := n.Invoke(context.Background(), depositCall(accountKind, id, 1))
			switch {
			case err == nil:
				admitted <- id
			case !errors.Is(err, ErrTooManyActivations):
				return err
			}
		}
		return nil
	})
	if got := len(admitted); got != limit {
		t.Fatalf("%d grains activated, want Config.ActivationLimit, %d", got, limit)
	}
	if held, count := n.acts.held.Load(), n.acts.count(); held != limit || count != limit {
		t.Fatalf("the table counts %d activations and holds %d, want %d", held, count, limit)
	}
	if got := n.Stats().RefusedActivations; got != callers*grains-limit {
		t.Fatalf("%d activations refused, want %d", got, callers*grains-limit)
	}
}

// TestAReminderRefusedPastTheActivationLimitFiresLater: a reminder whose
// grain a full node refuses to activate is tried again after the delivery
// backoff, as after any failed delivery, and fires once the node has room.
func TestAReminderRefusedPastTheActivationLimitFiresLater(t *testing.T) {
	store := memstore.New()
	s := newSink()
	var b *bank
	nodes := startCluster(t, 1, func(name string) []*Kind {
		b = newBank(name)
		return []*Kind{newSinkKind(s), newAccountKind(b, accountKind, FlushAfterCall, time.Hour)}
	}, func(cfg *Config) {
		cfg.Store = store
		cfg.MaxActivations, cfg.ActivationLimit = 1, 1
		cfg.PassivationInterval = time.Hour // only refusals wake a trim
		cfg.relistEvery = 10 * time.Millisecond
		cfg.reminderRetryBackoff = 10 * time.Millisecond
	})
	n := nodes[0]
	t.Cleanup(s.releaseHeld)
	release := holdInCalls(t, n, s, "blocker") // the node is full, and no trim may take a busy grain
	r := storage.Reminder{Grain: storage.Key{Kind: accountKind, Identity: "sleeper"}, Name: "wake", Due: time.Now(), Period: time.Hour}
	if err := store.SaveReminder(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	waitFor(t, waitTimeout, "the reminder's activation to be refused", func() bool { return n.Stats().RefusedActivations > 0 })
	release() // idle now: the next refusal's trim passivates it
	if f := nextFiring(t, b); f != "sleeper wake" {
		t.Fatalf("firing %q, want wake of sleeper", f)
	}
}
