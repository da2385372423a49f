package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/protograin/protograin/cluster/storage/memstore"
)

// A call that registers or unregisters a reminder on a grain's old owner,
// after a member joined and took the grain and after the joiner listed the
// reminders, is taken over by the joiner once the old owner's calls are
// over, not at its listing five minutes later: the old owner still runs
// the calls it had begun when its grains moved, and their store writes can
// land after every listing the joiner made for the change (reminders.go,
// relistAfterMoves). Before, the reminder registered there did not fire
// for five minutes, and the one unregistered there fired once more at its
// next due time, however far.
func TestAReminderRegisteredByAMovedGrainsLastCallFiresOnItsNewOwner(t *testing.T) {
	t.Parallel()
	store := memstore.New()
	t.Cleanup(func() { store.Close() })
	log := newTickLog()
	configure := func(cfg *Config) {
		cfg.Store = store
		// The joiner's later listing comes DeactivateTimeout and 3 s
		// after its start: the held calls below must end before it, once
		// the joiner fired its first reminders, which takes well under a
		// second, or seconds on a starved machine.
		cfg.DeactivateTimeout = 4 * time.Second
	}
	old := startCluster(t, 1, func(name string) []*Kind { return []*Kind{newTickKind(name, log)} }, configure)[0]

	// Each grain gets a reminder first, so that the joiner's firing of
	// it shows the joiner listed after its view had it own the grain, and
	// a slow one, due after the joiner's later listing.
	const grains = 30
	for i := range grains {
		if _, err := old.Invoke(context.Background(), tickCall(methodTick, fmt.Sprintf("g-%d", i), "early=100ms,slow=15s")); err != nil {
			t.Fatal(err)
		}
	}
	// Then a call per grain that will register another reminder, and
	// unregister the slow one, waits in the grain on the old owner.
	calls := make(chan error, grains)
	for i := range grains {
		go func() {
			_, err := old.Invoke(context.Background(), tickCall(methodTickHeld, fmt.Sprintf("g-%d", i), "late=100ms,slow=off"))
			calls <- err
		}()
	}
	for range grains {
		receive(t, log.entered, "a held call to begin")
	}

	cfg := testConfig(t)
	cfg.NodeName += "-joiner"
	cfg.Seeds = []string{old.GossipAddr()}
	cfg.Kinds = []*Kind{newTickKind(cfg.NodeName, log)}
	configure(&cfg)
	joiner := startNode(t, cfg)
	waitConverged(t, []*Node{old, joiner}, 2)
	var moved []string
	for i := range grains {
		id := fmt.Sprintf("g-%d", i)
		if m, ok := joiner.Owner(tickKind, id); ok && m.Name == joiner.Name() {
			moved = append(moved, id)
		}
	}
	if len(moved) == 0 {
		t.Fatalf("the joiner took none of the %d grains", grains)
	}
	for _, id := range moved {
		waitFor(t, waitTimeout, "the joiner to fire "+id+"'s first reminder", func() bool {
			for _, f := range log.firings(id + " early") {
				if f.node == joiner.Name() {
					return true
				}
			}
			return false
		})
	}

	// The held calls change their reminders now, on the old owner, which
	// does not own the moved grains any more.
	close(log.hold)
	for range grains {
		if err := <-calls; err != nil {
			t.Fatalf("held call: %v", err)
		}
	}
	registered := time.Now()
	for _, id := range moved {
		waitFor(t, waitTimeout, "the joiner to fire "+id+"'s reminder registered on its old owner", func() bool {
			return log.firedSince(id+" late", registered) > 0
		})
	}
	// The listing that took the late reminders over dropped the slow
	// ones, due seconds later: the joiner holds early and late.
	if got, want := joiner.reminders.Len(), 2*len(moved); got != want {
		t.Errorf("the joiner schedules %d reminders, want %d: early and late of its %d grains", got, want, len(moved))
	}
	for _, id := range moved {
		if fs := log.firings(id + " slow"); len(fs) > 0 {
			t.Errorf("%s's slow reminder fired on %s at %s, after its unregistration", id, fs[0].node, fs[0].start.Format("15:04:05.000"))
		}
	}
}

func tickCall(method, identity, arg string) Call {
	return Call{Kind: tickKind, Identity: identity, Method: method, Request: wrapperspb.String(arg), NewResponse: newString}
}
