package runtime

import (
	"context"
	"log/slog"
	"testing"
	"time"
)

// blockingDeadLetters is a slog.Handler that holds up the first "runtime:
// dead letter" record until release is closed, after closing entered.
type blockingDeadLetters struct {
	entered, release chan struct{}
	first            chan struct{} // holds one token, for the first record
}

func newBlockingDeadLetters() *blockingDeadLetters {
	h := &blockingDeadLetters{entered: make(chan struct{}), release: make(chan struct{}), first: make(chan struct{}, 1)}
	h.first <- struct{}{}
	return h
}

func (h *blockingDeadLetters) Enabled(context.Context, slog.Level) bool { return true }
func (h *blockingDeadLetters) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *blockingDeadLetters) WithGroup(string) slog.Handler            { return h }

func (h *blockingDeadLetters) Handle(_ context.Context, rec slog.Record) error {
	if rec.Message != "runtime: dead letter" {
		return nil
	}
	select {
	case <-h.first:
		close(h.entered)
		<-h.release
	default:
	}
	return nil
}

// blockedChild spawns, under a parent of s, a child that blocks in its
// turn on "block" until release is closed, and returns the parent and the
// child once the child is in that turn.
func blockedChild(t *testing.T, s *System, release <-chan struct{}) (parent, kid *Ref) {
	t.Helper()
	entered := make(chan struct{})
	kids := make(chan *Ref, 1)
	parent = spawnFunc(t, s, func(c *Context) {
		if _, ok := c.Message().(*Started); !ok {
			return
		}
		k, err := c.Spawn(Props{New: func() Actor {
			return ActorFunc(func(c *Context) {
				if c.Message() == "block" {
					close(entered)
					<-release
				}
			})
		}})
		if err != nil {
			panic(err)
		}
		kids <- k
	})
	kid = recv(t, kids, "the child")
	if err := kid.Send("block"); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, entered, "the child's blocked turn")
	return parent, kid
}

// TestAParentIsDoneOnlyAfterItsChildIsDone: a stopping child tells its
// parent it has stopped only once it has turned its queued messages into
// dead letters and closed its Done; the parent, which waits for that, is
// not done while the child still drains (here held up publishing its first
// dead letter).
func TestAParentIsDoneOnlyAfterItsChildIsDone(t *testing.T) {
	h := newBlockingDeadLetters()
	s := NewSystem(Config{Logger: slog.New(h), LogDeadLetters: true})
	defer s.Close()
	defer close(h.release)
	release := make(chan struct{})
	parent, kid := blockedChild(t, s, release)
	if err := kid.Send("queued"); err != nil { // a dead letter once the child stops
		t.Fatal(err)
	}
	done := parent.Stop()
	waitFor(t, testTimeout, func() bool { return kid.stopReq.Load()&stopAbrupt != 0 }, "the parent to stop its child")
	close(release)
	waitClosed(t, h.entered, "the child to publish its dead letter")
	// The child is held up in its drain. Its parent must not be done
	// meanwhile; watch for a while (a parent that is wrongly done shows it
	// in microseconds).
	select {
	case <-done:
		t.Fatalf("the parent is done while its child is still turning its mailbox into dead letters (child stopped: %v)", kid.Stopped())
	case <-time.After(200 * time.Millisecond):
	}
}

// TestCloseReturnsOnceEveryDeadLetterIsOut: System.Close returns only once
// every actor has stopped, its queued messages published as dead letters.
func TestCloseReturnsOnceEveryDeadLetterIsOut(t *testing.T) {
	s := NewSystem(Config{Logger: testLogger(t)})
	const queued = 20_000
	dead := make(chan DeadLetter, queued+10)
	s.SubscribeDeadLetters(dead)
	release := make(chan struct{})
	_, kid := blockedChild(t, s, release)
	for i := range queued {
		if err := kid.Send(i); err != nil {
			t.Fatal(err)
		}
	}
	closed := make(chan struct{})
	go func() {
		s.Close()
		close(closed)
	}()
	waitFor(t, testTimeout, func() bool { return kid.stopReq.Load()&stopAbrupt != 0 }, "Close to stop the child")
	close(release)
	waitClosed(t, closed, "Close")
	if !kid.Stopped() || len(dead) != queued {
		t.Fatalf("after Close returned: child stopped %v, %d of %d dead letters published", kid.Stopped(), len(dead), queued)
	}
}

// TestARestartedInstanceStartsWithoutChildren: a restart stops the old
// instance's children, and the new instance's *Started sees none of them
// in Context.Children, as the package doc says, though they may not have
// stopped yet.
func TestARestartedInstanceStartsWithoutChildren(t *testing.T) {
	s := newTestSystem(t, Config{})
	seen := make(chan int, 4)
	r := spawn(t, s, Props{New: func() Actor {
		return ActorFunc(func(c *Context) {
			switch c.Message().(type) {
			case *Started:
				seen <- len(c.Children())
				if _, err := c.Spawn(Props{New: func() Actor { return ActorFunc(func(*Context) {}) }}); err != nil {
					panic(err)
				}
			case string:
				panic("restart me")
			}
		})
	}})
	for i, what := range []string{"the first *Started", "the restarted instance's *Started"} {
		if i > 0 {
			if err := r.Send("fail"); err != nil {
				t.Fatal(err)
			}
		}
		if n := recv(t, seen, what); n != 0 {
			t.Fatalf("%s sees %d children, want none", what, n)
		}
	}
}
