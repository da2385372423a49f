package runtime

import (
	"context"
	"errors"
	"fmt"
	goruntime "runtime"
	"strings"
	"sync/atomic"
	"testing"
)

// Tests of handlers that end their goroutine with runtime.Goexit, as
// t.FailNow does: the actor fails as if the handler had panicked, and a new
// goroutine carries on with it.

// exitingProps returns recordingProps whose actor calls runtime.Goexit on
// "exit", after recording it.
func exitingProps(rec *recorder) Props {
	p := recordingProps(rec)
	newRecording := p.New
	p.New = func() Actor {
		a := newRecording()
		return ActorFunc(func(c *Context) {
			if c.Message() == "exit" {
				rec.add("exit")
				goruntime.Goexit()
			}
			a.Receive(c)
		})
	}
	return p
}

// TestGoexitInAHandlerIsAFailure: a handler that calls runtime.Goexit
// fails its actor as a panic does: the supervisor decides, and the
// Request gets a *PanicError that wraps ErrGoexit. When a worker ran the
// turn, the worker's goroutine is gone; when the caller ran it, the
// caller's goroutine is gone, and the Request never returns. Either way
// the actor goes on, on a new goroutine.
func TestGoexitInAHandlerIsAFailure(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		directive Directive
		want      []string // messages handled, after the first Started
		alive     bool
	}{
		{Restart, []string{"exit", "Restarting", "Started", "after"}, true},
		{Resume, []string{"exit", "after"}, true},
		{Stop, []string{"exit", "Stopping", "Stopped"}, false},
	} {
		for _, runner := range []string{"worker", "caller"} {
			t.Run(tc.directive.String()+"/"+runner, func(t *testing.T) {
				t.Parallel()
				decided := make(chan *Failure, 1)
				s := newTestSystem(t, Config{Supervisor: NewOneForOne(StrategyConfig{
					Decider: func(f *Failure) Directive { decided <- f; return tc.directive },
				})})
				rec := &recorder{}
				r := spawn(t, s, exitingProps(rec))
				waitIdle(t, r, rec, 1)

				if runner == "worker" {
					_, err := r.Request(ctxTimeout(t), "exit")
					var pe *PanicError
					if !errors.Is(err, ErrGoexit) || !errors.Is(err, ErrPanic) || !errors.As(err, &pe) || len(pe.Stack) == 0 {
						t.Fatalf("Request(exit) = %v; want a *PanicError wrapping ErrGoexit, with a stack", err)
					}
					if !strings.Contains(err.Error(), "Goexit") {
						t.Fatalf("Request(exit) = %q; want an error that names Goexit", err)
					}
				} else {
					ended, returned := make(chan struct{}), make(chan error, 1)
					go func() {
						defer close(ended)
						_, err := r.Request(context.Background(), "exit") // runs the turn here
						returned <- err
					}()
					waitClosed(t, ended, "the caller's goroutine to end")
					select {
					case err := <-returned:
						t.Fatalf("Request(exit) returned %v on a goroutine that the handler ended", err)
					default:
					}
				}
				f := recv(t, decided, "the decision")
				if f.Who != r || f.Message != "exit" || f.Reason != ErrGoexit || !strings.Contains(f.Error(), "Goexit") {
					t.Fatalf("the Decider saw %v (%+v); want the Goexit of %s handling exit", f, f, r)
				}
				if !tc.alive {
					waitClosed(t, r.Done(), "stop")
					if _, err := r.Request(ctxTimeout(t), "after"); !errors.Is(err, ErrStopped) {
						t.Fatalf("Request after Stop = %v; want ErrStopped", err)
					}
				} else if v, err := r.Request(ctxTimeout(t), "after"); err != nil || v != "re:after" {
					t.Fatalf("Request after %s = %v, %v", tc.directive, v, err)
				}
				if got := strings.Join(rec.msgs()[1:], ","); got != strings.Join(tc.want, ",") {
					t.Fatalf("handled %s; want %v", got, tc.want)
				}
			})
		}
	}
}

// TestGoexitInANestedTurnFailsBothActors: a handler that asks another
// actor without a deadline runs that actor's turn on its own goroutine
// (see Ref.runInline); a Goexit there ends both turns, so both actors fail,
// and both go on.
func TestGoexitInANestedTurnFailsBothActors(t *testing.T) {
	t.Parallel()
	failed := make(chan *Failure, 2)
	s := newTestSystem(t, Config{Supervisor: NewOneForOne(StrategyConfig{
		Decider: func(f *Failure) Directive { failed <- f; return Restart },
	})})
	rec := &recorder{}
	b := spawn(t, s, exitingProps(rec))
	waitIdle(t, b, rec, 1)
	a := spawnFunc(t, s, func(c *Context) {
		switch c.Message() {
		case "ask":
			v, err := b.Request(context.Background(), "exit") // never returns
			panic(fmt.Sprintf("b's Request returned %v, %v", v, err))
		case "ping":
			c.Respond("pong")
		}
	})
	if _, err := a.Request(ctxTimeout(t), "ask"); !errors.Is(err, ErrGoexit) {
		t.Fatalf("Request(ask) = %v; want ErrGoexit", err)
	}
	who := map[*Ref]any{}
	for range 2 {
		f := recv(t, failed, "a failure")
		who[f.Who] = f.Message
		if f.Reason != ErrGoexit {
			t.Fatalf("%s failed with %v; want ErrGoexit", f.Who, f.Reason)
		}
	}
	if who[a] != "ask" || who[b] != "exit" {
		t.Fatalf("failures %v; want a's handling ask and b's handling exit", who)
	}
	if v, err := a.Request(ctxTimeout(t), "ping"); err != nil || v != "pong" {
		t.Fatalf("a: ping = %v, %v", v, err)
	}
	if v, err := b.Request(ctxTimeout(t), "ping"); err != nil || v != "re:ping" {
		t.Fatalf("b: ping = %v, %v", v, err)
	}
}

// TestGoexitInLifecycleHandlers: a Goexit in *Started is a failure, as a
// panic there is; in *Restarting, *Stopping and *Stopped, which are not
// supervised, the restart or the stop carries on without the handler, on
// a new goroutine; in Props.New on a restart, it is a failure, as a panic
// there is.
func TestGoexitInLifecycleHandlers(t *testing.T) {
	t.Parallel()
	for _, exitIn := range []string{"Started", "Restarting", "Stopping", "Stopped", "New"} {
		t.Run(exitIn, func(t *testing.T) {
			t.Parallel()
			failures := make(chan *Failure, 4)
			s := newTestSystem(t, Config{Supervisor: NewOneForOne(StrategyConfig{
				Decider:     func(f *Failure) Directive { failures <- f; return Restart },
				MaxRestarts: -1,
			})})
			var instances atomic.Int32
			r := spawn(t, s, Props{New: func() Actor {
				n := instances.Add(1)
				if exitIn == "New" && n == 2 {
					goruntime.Goexit()
				}
				return ActorFunc(func(c *Context) {
					m := name(c.Message())
					if m == exitIn && n == 1 {
						goruntime.Goexit()
					}
					switch m {
					case "boom":
						panic("boom")
					case "ping":
						c.Respond(fmt.Sprintf("pong from #%d", n))
					}
				})
			}})
			switch exitIn {
			case "Stopping", "Stopped":
				r.Stop()
				waitClosed(t, r.Done(), "the stop")
				return
			case "Restarting", "New":
				if _, err := r.Request(ctxTimeout(t), "boom"); !errors.Is(err, ErrPanic) {
					t.Fatalf("Request(boom) = %v; want ErrPanic", err)
				}
			}
			want := "pong from #2"
			if exitIn == "New" {
				want = "pong from #3"
			}
			if v, err := r.Request(ctxTimeout(t), "ping"); err != nil || v != want {
				t.Fatalf("ping = %v, %v; want %q", v, err, want)
			}
			var got []string
			for len(failures) > 0 {
				f := <-failures
				got = append(got, fmt.Sprintf("%v in %s", f.Reason, name(f.Message)))
			}
			wantFailures := map[string]string{
				"Started":    "runtime: actor called runtime.Goexit in Started",
				"Restarting": "boom in boom",
				"New":        "boom in boom,runtime: actor called runtime.Goexit in Restarting",
			}[exitIn]
			if strings.Join(got, ",") != wantFailures {
				t.Fatalf("failures %q; want %q", got, wantFailures)
			}
		})
	}
}

// TestGoexitInADeciderEscalates: a Decider that calls runtime.Goexit
// escalates the failure, as one that panics does, whichever goroutine it
// ends: a worker's or a Request's caller's, deciding for a top-level
// actor, where the escalation stops the actor; the parent's, deciding for
// a child, where the parent fails and its own supervisor decides. So does
// a Rand that calls it, in a restart's backoff. The supervising actor goes
// on, on a new goroutine, and the System closes.
func TestGoexitInADeciderEscalates(t *testing.T) {
	t.Parallel()
	exit := func(*Failure) Directive { goruntime.Goexit(); return Restart }
	failing := func(c *Context) {
		switch c.Message() {
		case "boom":
			panic("boom")
		case "ping":
			c.Respond("pong")
		}
	}
	// stopped checks that r was stopped by the escalation, and that the
	// System closes.
	stopped := func(t *testing.T, s *System, r *Ref) {
		t.Helper()
		waitClosed(t, r.Done(), "the escalation to stop the actor")
		if _, err := r.Request(ctxTimeout(t), "ping"); !errors.Is(err, ErrStopped) {
			t.Fatalf("ping after the escalation = %v; want ErrStopped", err)
		}
		closed := make(chan struct{})
		go func() { defer close(closed); s.Close() }()
		waitClosed(t, closed, "Close")
	}

	t.Run("root/worker", func(t *testing.T) {
		t.Parallel()
		s := newTestSystem(t, Config{Supervisor: NewOneForOne(StrategyConfig{Decider: exit})})
		r := spawnFunc(t, s, failing)
		if _, err := r.Request(ctxTimeout(t), "boom"); !errors.Is(err, ErrPanic) {
			t.Fatalf("Request(boom) = %v; want ErrPanic", err)
		}
		stopped(t, s, r)
	})

	t.Run("root/caller", func(t *testing.T) {
		t.Parallel()
		s := newTestSystem(t, Config{Supervisor: NewOneForOne(StrategyConfig{Decider: exit})})
		r := spawnFunc(t, s, failing)
		waitFor(t, testTimeout, func() bool { return r.status.Load() == idle }, "the actor to idle")
		ended, returned := make(chan struct{}), make(chan error, 1)
		go func() {
			defer close(ended)
			_, err := r.Request(context.Background(), "boom") // runs the turn, and the root Decider, here
			returned <- err
		}()
		waitClosed(t, ended, "the caller's goroutine to end")
		select {
		case err := <-returned:
			t.Fatalf("Request(boom) returned %v on a goroutine that the Decider ended", err)
		default:
		}
		stopped(t, s, r)
	})

	t.Run("rand", func(t *testing.T) {
		t.Parallel()
		s := newTestSystem(t, Config{Supervisor: NewOneForOne(StrategyConfig{
			Rand: func() float64 { goruntime.Goexit(); return 0 },
		})})
		r := spawnFunc(t, s, failing)
		// The first restart in the window has no backoff, so no jitter:
		// the second failure's backoff calls Rand.
		for range 2 {
			if _, err := r.Request(ctxTimeout(t), "boom"); !errors.Is(err, ErrPanic) {
				t.Fatalf("Request(boom) = %v; want ErrPanic", err)
			}
		}
		stopped(t, s, r)
	})

	t.Run("parent", func(t *testing.T) {
		t.Parallel()
		decided := make(chan *Failure, 1)
		s := newTestSystem(t, Config{Supervisor: NewOneForOne(StrategyConfig{
			Decider: func(f *Failure) Directive { decided <- f; return Restart },
		})})
		parent := spawn(t, s, Props{
			Supervisor: NewOneForOne(StrategyConfig{Decider: exit}),
			New: func() Actor {
				return ActorFunc(func(c *Context) {
					switch c.Message() {
					case "spawn":
						child, err := c.Spawn(Props{New: func() Actor { return ActorFunc(failing) }})
						if err != nil {
							panic(err)
						}
						c.Respond(child)
					case "ping":
						c.Respond("pong")
					}
				})
			},
		})
		v, err := parent.Request(ctxTimeout(t), "spawn")
		if err != nil {
			t.Fatalf("Request(spawn) = %v", err)
		}
		child := v.(*Ref)
		if _, err := child.Request(ctxTimeout(t), "boom"); !errors.Is(err, ErrPanic) {
			t.Fatalf("the child's Request(boom) = %v; want ErrPanic", err)
		}
		f := recv(t, decided, "the root's decision")
		if f.Who != parent || f.Cause == nil || f.Cause.Who != child || f.Cause.Reason != "boom" {
			t.Fatalf("the root decided about %v; want the parent escalating the child's panic", f)
		}
		waitClosed(t, child.Done(), "the parent's restart to stop the child")
		if v, err := parent.Request(ctxTimeout(t), "ping"); err != nil || v != "pong" {
			t.Fatalf("the parent's ping after its restart = %v, %v", v, err)
		}
		closed := make(chan struct{})
		go func() { defer close(closed); s.Close() }()
		waitClosed(t, closed, "Close")
	})
}
