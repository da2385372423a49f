package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestLifecycleOrderWithChildren(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	log := &eventLog{}
	child := make(chan *Ref, 1)
	parent := spawnFunc(t, s, func(c *Context) {
		switch c.Message().(type) {
		case *Started:
			log.add("parent started")
			k, err := c.Spawn(counterProps("kid", log))
			if err != nil {
				panic(err)
			}
			child <- k
		case *Stopping:
			log.add("parent stopping")
		case *Stopped:
			log.add("parent stopped")
		}
	})
	kid := recv(t, child, "child")
	if _, err := kid.Request(ctxTimeout(t), "get"); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, parent.Stop(), "parent stop")
	select {
	case <-kid.Done():
	default:
		t.Fatal("parent's Done closed before its child's")
	}
	want := []string{"parent started", "kid#1 started", "parent stopping", "kid#1 stopping", "kid#1 stopped", "parent stopped"}
	if got := log.snapshot(); !slices.Equal(got, want) {
		t.Fatalf("events = %v, want %v", got, want)
	}
}

func TestGracefulStopDrainsAbruptStopDoesNot(t *testing.T) {
	t.Parallel()
	for _, graceful := range []bool{true, false} {
		name := map[bool]string{true: "graceful", false: "abrupt"}[graceful]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := newTestSystem(t, Config{})
			entered, release := make(chan struct{}), make(chan struct{})
			var handled atomic.Int32
			r := spawnFunc(t, s, blockOrCount(entered, release, &handled))
			if err := r.Send("block"); err != nil {
				t.Fatal(err)
			}
			<-entered
			for range 20 {
				if err := r.Send("m"); err != nil {
					t.Fatal(err)
				}
			}
			var done <-chan struct{}
			if graceful {
				done = r.GracefulStop()
			} else {
				done = r.Stop()
			}
			close(release)
			waitClosed(t, done, "stop")
			want := int32(0)
			if graceful {
				want = 20
			}
			if n := handled.Load(); n != want {
				t.Fatalf("handled %d queued messages, want %d", n, want)
			}
		})
	}
}

// TestStopIsIdempotent calls both stop verbs repeatedly and concurrently.
func TestStopIsIdempotent(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	var stopped atomic.Int32
	r := spawnFunc(t, s, func(c *Context) {
		if _, ok := c.Message().(*Stopped); ok {
			stopped.Add(1)
		}
	})
	done := make(chan struct{})
	for i := range 8 {
		go func() {
			if i%2 == 0 {
				r.Stop()
			} else {
				r.GracefulStop()
			}
			done <- struct{}{}
		}()
	}
	for range 8 {
		recv(t, done, "stop call")
	}
	waitClosed(t, r.Done(), "stop")
	if r.Stop() != r.Done() || r.GracefulStop() != r.Done() {
		t.Fatal("stop verbs must return the Done channel")
	}
	if n := stopped.Load(); n != 1 {
		t.Fatalf("Stopped delivered %d times, want 1", n)
	}
}

// TestAbruptStopOvertakesGraceful: an abrupt stop during a graceful one
// skips what is still queued.
func TestAbruptStopOvertakesGraceful(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	entered, release := make(chan struct{}), make(chan struct{})
	var handled atomic.Int32
	r := spawnFunc(t, s, blockOrCount(entered, release, &handled))
	if err := r.Send("block"); err != nil {
		t.Fatal(err)
	}
	<-entered
	for range 5 {
		if err := r.Send("m"); err != nil {
			t.Fatal(err)
		}
	}
	r.GracefulStop()
	r.Stop()
	close(release)
	waitClosed(t, r.Done(), "stop")
	if n := handled.Load(); n != 0 {
		t.Fatalf("handled %d messages after the abrupt stop", n)
	}
}

func TestWatchTerminated(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	target := spawnFunc(t, s, func(c *Context) {})
	other := spawnFunc(t, s, func(c *Context) {})
	terminated := make(chan *Ref, 4)
	watcher := spawnFunc(t, s, func(c *Context) {
		switch m := c.Message().(type) {
		case *Terminated:
			terminated <- m.Who
		case *Ref:
			c.Watch(m)
			c.Watch(m) // idempotent
			c.Respond(true)
		case []*Ref: // watch then unwatch
			c.Watch(m[0])
			c.Unwatch(m[0])
			c.Respond(true)
		}
	})
	if _, err := watcher.Request(ctxTimeout(t), target); err != nil {
		t.Fatal(err)
	}
	if _, err := watcher.Request(ctxTimeout(t), []*Ref{other}); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, other.Stop(), "other stop")
	waitClosed(t, target.Stop(), "target stop")
	if who := recv(t, terminated, "Terminated"); who != target {
		t.Fatalf("Terminated for %v, want %v", who, target)
	}
	// Watching an actor that has already stopped delivers Terminated.
	if _, err := watcher.Request(ctxTimeout(t), target); err != nil {
		t.Fatal(err)
	}
	if who := recv(t, terminated, "late Terminated"); who != target {
		t.Fatalf("late Terminated for %v", who)
	}
	// No Terminated for the unwatched actor, nor a duplicate: a marker
	// sent after everything else arrives first.
	marker := spawnFunc(t, s, func(c *Context) {})
	if _, err := watcher.Request(ctxTimeout(t), marker); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, marker.Stop(), "marker stop")
	if who := recv(t, terminated, "marker Terminated"); who != marker {
		t.Fatalf("unexpected Terminated for %v", who)
	}
}

func TestShutdownDrainsAndRefusesSpawns(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	var handled atomic.Int32
	refs := make([]*Ref, 10)
	for i := range refs {
		refs[i] = spawnFunc(t, s, func(c *Context) {
			if c.Message() == "m" {
				handled.Add(1)
			}
		})
		for range 10 {
			if err := refs[i].Send("m"); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.Shutdown(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	if n := handled.Load(); n != 100 {
		t.Fatalf("handled %d messages, want all 100 queued before Shutdown", n)
	}
	for _, r := range refs {
		waitClosed(t, r.Done(), "actor stopped")
	}
	if _, err := s.Spawn(Props{New: func() Actor { return ActorFunc(func(*Context) {}) }}); !errors.Is(err, ErrSystemStopped) {
		t.Fatalf("Spawn after Shutdown = %v, want ErrSystemStopped", err)
	}
	if err := s.Shutdown(ctxTimeout(t)); err != nil {
		t.Fatalf("second Shutdown = %v", err)
	}
	s.Close()
	s.Close()
}

// TestShutdownHonoursContext checks that Shutdown returns ctx's error when
// ctx ends while an actor blocks, and that every other actor stops anyway,
// having handled what was queued before: with one actor, and with more
// than Shutdown ever has stoppers (maxStoppers), the blocked one in the
// middle.
func TestShutdownHonoursContext(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 3*maxStoppers + 7} {
		t.Run(fmt.Sprintf("actors=%d", n), func(t *testing.T) {
			t.Parallel()
			testShutdownGivesUp(t, n)
		})
	}
}

func testShutdownGivesUp(t *testing.T, n int) {
	s := newTestSystem(t, Config{})
	entered, release := make(chan struct{}), make(chan struct{})
	releaseOnce := sync.OnceFunc(func() { close(release) })
	t.Cleanup(releaseOnce) // before the System's cleanup, which waits for the actor
	var handled atomic.Int32
	refs := make([]*Ref, n)
	for i := range refs {
		refs[i] = spawnFunc(t, s, blockOrCount(entered, release, &handled))
		if err := refs[i].Send("m"); err != nil {
			t.Fatal(err)
		}
	}
	blocked := refs[n/2]
	if err := blocked.Send("block"); err != nil {
		t.Fatal(err)
	}
	<-entered
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown = %v, want context.Canceled while an actor blocks", err)
	}
	for _, r := range refs {
		if r != blocked {
			waitClosed(t, r.Done(), "actor stopped after Shutdown gave up")
		}
	}
	select {
	case <-blocked.Done():
		t.Fatal("the blocked actor stopped in its handler")
	default:
	}
	releaseOnce()
	if err := s.Shutdown(ctxTimeout(t)); err != nil {
		t.Fatalf("Shutdown after release = %v", err)
	}
	if got := handled.Load(); got != int32(n) {
		t.Fatalf("handled %d messages, want the %d queued before Shutdown", got, n)
	}
}

// TestCloseWaitsForEveryActor checks Close with more actors than it ever
// has stoppers: it returns once every one has stopped.
func TestCloseWaitsForEveryActor(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	refs := make([]*Ref, 2*maxStoppers+1)
	for i := range refs {
		refs[i] = spawnFunc(t, s, func(c *Context) {})
	}
	s.Close()
	for _, r := range refs {
		select {
		case <-r.Done():
		default:
			t.Fatal("Close returned before every actor stopped")
		}
	}
}

// TestSlowStopsOverlap checks that Shutdown and Close stop up to
// maxStoppers actors at once: every actor's Stopping waits until all of
// them are in theirs.
func TestSlowStopsOverlap(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"Shutdown", "Close"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			s := newTestSystem(t, Config{})
			const n = maxStoppers
			var inside atomic.Int32
			all := make(chan struct{})
			release := sync.OnceFunc(func() { close(all) })
			t.Cleanup(release) // before the System's cleanup, which waits for the actors
			spawnSlowToStop(t, s, n, func() {
				if inside.Add(1) == n {
					release()
				}
			}, all)
			switch how {
			case "Shutdown":
				if err := s.Shutdown(ctxTimeout(t)); err != nil {
					t.Fatalf("Shutdown = %v with %d of %d actors in Stopping at once", err, inside.Load(), n)
				}
			case "Close":
				closed := make(chan struct{})
				go func() {
					s.Close()
					close(closed)
				}()
				select {
				case <-closed:
				case <-time.After(testTimeout):
					t.Fatalf("Close did not return with %d of %d actors in Stopping at once", inside.Load(), n)
				}
			}
		})
	}
}

// TestShutdownGivesUpWhileEveryStopperWaits checks that when Shutdown's
// context ends while every stopper waits in a slow stop, the actors that no
// stopper has taken yet stop once the stoppers are free.
func TestShutdownGivesUpWhileEveryStopperWaits(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	var inside atomic.Int32
	full, all := make(chan struct{}), make(chan struct{})
	release := sync.OnceFunc(func() { close(all) })
	t.Cleanup(release) // before the System's cleanup, which waits for the actors
	refs := spawnSlowToStop(t, s, maxStoppers+100, func() {
		if inside.Add(1) == maxStoppers {
			close(full)
		}
	}, all)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-full
		cancel()
	}()
	if err := s.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown = %v, want context.Canceled with every stopper waiting", err)
	}
	release()
	for _, r := range refs {
		waitClosed(t, r.Done(), "actor stopped after Shutdown gave up")
	}
}

// spawnSlowToStop spawns n actors that are idle until their first message,
// so that Shutdown's stoppers run their stopping turns themselves, and
// whose Stopping handler calls enter and then waits until release is
// closed.
func spawnSlowToStop(t *testing.T, s *System, n int, enter func(), release <-chan struct{}) []*Ref {
	t.Helper()
	a := ActorFunc(func(c *Context) {
		if _, ok := c.Message().(*Stopping); ok {
			enter()
			<-release
		}
	})
	refs := make([]*Ref, n)
	for i := range refs {
		refs[i] = spawn(t, s, Props{New: func() Actor { return a }, StartOnFirstMessage: true})
	}
	return refs
}

func TestCloseStopsAbruptly(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	var stopped atomic.Int32
	for range 5 {
		spawnFunc(t, s, func(c *Context) {
			switch c.Message().(type) {
			case *Started:
				if _, err := c.Spawn(Props{New: func() Actor {
					return ActorFunc(func(c *Context) {
						if _, ok := c.Message().(*Stopped); ok {
							stopped.Add(1)
						}
					})
				}}); err != nil {
					panic(err)
				}
			case *Stopped:
				stopped.Add(1)
			}
		})
	}
	s.Close()
	if n := stopped.Load(); n != 10 {
		t.Fatalf("%d actors saw Stopped after Close, want 10", n)
	}
}

func TestSpawnErrors(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	noop := func() Actor { return ActorFunc(func(*Context) {}) }
	tests := []struct {
		name  string
		props Props
	}{
		{"nil New", Props{}},
		{"New returns nil", Props{New: func() Actor { return nil }}},
		{"negative throughput", Props{New: noop, Throughput: -1}},
		{"negative capacity", Props{New: noop, Mailbox: MailboxConfig{Capacity: -1}}},
		{"unknown overflow", Props{New: noop, Mailbox: MailboxConfig{Capacity: 1, Overflow: 7}}},
		{"nil middleware", Props{New: noop, Middleware: []Middleware{nil}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.Spawn(tt.props); !errors.Is(err, ErrInvalidProps) {
				t.Fatalf("Spawn = %v, want ErrInvalidProps", err)
			}
		})
	}
	// The same checks apply to children.
	errc := make(chan error, 1)
	spawnFunc(t, s, func(c *Context) {
		if _, ok := c.Message().(*Started); ok {
			_, err := c.Spawn(Props{})
			errc <- err
		}
	})
	if err := recv(t, errc, "child spawn"); !errors.Is(err, ErrInvalidProps) {
		t.Fatalf("child Spawn = %v, want ErrInvalidProps", err)
	}
}

func TestSpawnFromStoppingActorFails(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	errc := make(chan error, 1)
	r := spawnFunc(t, s, func(c *Context) {
		if _, ok := c.Message().(*Stopping); ok {
			_, err := c.Spawn(Props{New: func() Actor { return ActorFunc(func(*Context) {}) }})
			errc <- err
		}
	})
	r.Stop()
	if err := recv(t, errc, "spawn"); !errors.Is(err, ErrStopped) {
		t.Fatalf("Spawn while stopping = %v, want ErrStopped", err)
	}
}

func TestContextAccessors(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	type info struct {
		self, parent *Ref
		sys          *System
		children     int
	}
	got := make(chan info, 2)
	parent := spawnFunc(t, s, func(c *Context) {
		if _, ok := c.Message().(*Started); ok {
			if _, err := c.Spawn(Props{New: func() Actor {
				return ActorFunc(func(c *Context) {
					if _, ok := c.Message().(*Started); ok {
						got <- info{c.Self(), c.Parent(), c.System(), 0}
					}
				})
			}}); err != nil {
				panic(err)
			}
			got <- info{c.Self(), c.Parent(), c.System(), len(c.Children())}
		}
	})
	p := recv(t, got, "parent info")
	k := recv(t, got, "child info")
	if p.parent != nil { // the child reported first
		p, k = k, p
	}
	if p.parent != nil || p.children != 1 || p.sys != s {
		t.Fatalf("parent context = %+v", p)
	}
	if k.parent != p.self || k.sys != s {
		t.Fatalf("child context = %+v", k)
	}
	if want := parent.String() + "/"; len(k.self.String()) <= len(want) || k.self.String()[:len(want)] != want {
		t.Fatalf("child path %q does not extend parent path %q", k.self, parent)
	}
}

func TestSpawnWithPanickingNew(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	_, err := s.Spawn(Props{New: func() Actor { panic("no actor today") }})
	var pe *PanicError
	if !errors.As(err, &pe) || pe.Value != "no actor today" || !errors.Is(err, ErrPanic) {
		t.Fatalf("Spawn = %v, want a *PanicError", err)
	}
	var nilRef *Ref
	if _, err := nilRef.Request(ctxTimeout(t), "x"); !errors.Is(err, ErrStopped) {
		t.Fatalf("Request on nil Ref = %v, want ErrStopped", err)
	}
}

// TestGracefulStopOfFailingChild: a child that fails on a message queued
// before its graceful stop must still stop, whether its parent is stopping
// or not.
func TestGracefulStopOfFailingChild(t *testing.T) {
	t.Parallel()
	for _, parentStops := range []bool{false, true} {
		name := map[bool]string{false: "child stopped", true: "parent stopped"}[parentStops]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			logs := &recordLog{}
			s := newTestSystem(t, Config{Logger: slog.New(logs)})
			entered, release := make(chan struct{}), make(chan struct{})
			kids := make(chan *Ref, 1)
			parent := spawnFunc(t, s, func(c *Context) {
				if _, ok := c.Message().(*Started); ok {
					k, err := c.Spawn(Props{New: func() Actor {
						return ActorFunc(func(c *Context) {
							switch c.Message() {
							case "block":
								close(entered)
								<-release
							case "boom":
								panic("boom")
							}
						})
					}})
					if err != nil {
						panic(err)
					}
					kids <- k
				}
			})
			kid := recv(t, kids, "child")
			if err := kid.Send("block"); err != nil {
				t.Fatal(err)
			}
			<-entered
			if err := kid.Send("boom"); err != nil {
				t.Fatal(err)
			}
			if parentStops {
				parent.GracefulStop()
				// The parent's stop reaches the child as a graceful stop
				// queued behind "boom"; wait until the parent is stopping.
				waitFor(t, testTimeout, func() bool { return parent.isStopping() }, "parent stopping")
			} else {
				kid.GracefulStop()
			}
			close(release)
			waitClosed(t, kid.Done(), "child stopped")
			if parentStops {
				waitClosed(t, parent.Done(), "parent stopped")
			}
			// The panic is logged once either way, also when the stopping
			// parent decides nothing.
			failed := logs.find("runtime: actor failed")
			want := map[bool]string{false: "Restart", true: "Stop: it or its supervisor is stopping"}[parentStops]
			if len(failed) != 1 || failed[0].level != slog.LevelWarn || failed[0].attrs["directive"] != want {
				t.Errorf("failure lines %v, want one at Warn with directive %q", failed, want)
			}
		})
	}
}

// TestStoppedAgreesWithDone checks Stopped before and after a stop, on an
// actor whose Done channel nobody asked for (Stopped must not need it).
func TestStoppedAgreesWithDone(t *testing.T) {
	s := NewSystem(Config{Logger: testLogger(t)})
	t.Cleanup(s.Close)
	r, err := s.Spawn(Props{New: func() Actor { return ActorFunc(func(*Context) {}) }})
	if err != nil {
		t.Fatal(err)
	}
	if r.Stopped() {
		t.Fatal("a running actor reports Stopped")
	}
	r.mu.Lock()
	made := r.done != nil
	r.mu.Unlock()
	if made {
		t.Fatal("Stopped made the Done channel")
	}
	r.Stop()
	waitFor(t, testTimeout, r.Stopped, "Stopped after Stop")
	waitClosed(t, r.Done(), "Done after Stopped")
}

func TestStartOnFirstMessage(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	log := &eventLog{}
	props := func(name string) Props {
		return Props{StartOnFirstMessage: true, New: func() Actor {
			return ActorFunc(func(c *Context) {
				switch m := c.Message().(type) {
				case *Started:
					log.add("%s started", name)
				case *Stopped:
					log.add("%s stopped", name)
				case string:
					log.add("%s %s", name, m)
					if m == "spawn" {
						k, err := c.Spawn(Props{StartOnFirstMessage: true, New: func() Actor {
							return ActorFunc(func(c *Context) {
								if _, ok := c.Message().(*Started); ok {
									log.add("kid started")
								}
								if c.Message() == "hi" {
									c.Respond("hi")
								}
							})
						}})
						if err != nil {
							panic(err)
						}
						if k.status.Load() != idle {
							panic("the child got a turn at spawn")
						}
						c.Respond(k)
						return
					}
					c.Respond(m)
				}
			})
		}}
	}
	r := spawn(t, s, props("a"))
	// No turn was run for *Started: the actor is idle and has seen nothing.
	if st := r.status.Load(); st != idle {
		t.Fatalf("status after spawn = %d, want idle", st)
	}
	if got := log.snapshot(); len(got) != 0 {
		t.Fatalf("events after spawn = %v, want none", got)
	}
	kid, err := r.Request(ctxTimeout(t), "spawn")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kid.(*Ref).Request(ctxTimeout(t), "hi"); err != nil {
		t.Fatal(err)
	}
	// Never sent anything, then stopped: *Started still comes first.
	idler := spawn(t, s, props("b"))
	waitClosed(t, idler.Stop(), "stop")
	want := []string{"a started", "a spawn", "kid started", "b started", "b stopped"}
	if got := log.snapshot(); !slices.Equal(got, want) {
		t.Fatalf("events = %v, want %v", got, want)
	}
}

// TestTopLevelSetFollowsSpawnsAndStops: the System's set of top-level
// actors (a list per shard, see topShard) holds exactly the live ones,
// whichever order they stop in and wherever they sit in their list, holds
// no children, and is empty once Shutdown returns.
func TestTopLevelSetFollowsSpawnsAndStops(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	const n = 10 * topShards // ten to a shard: heads, middles and tails
	children := make(chan *Ref, n)
	refs := make([]*Ref, n)
	for i := range refs {
		refs[i] = spawnFunc(t, s, func(c *Context) {
			if _, ok := c.Message().(*Started); ok && i%7 == 0 {
				child, err := c.Spawn(Props{New: func() Actor { return ActorFunc(func(*Context) {}) }})
				if err != nil {
					t.Error(err)
				}
				children <- child
			}
		})
	}
	for range (n + 6) / 7 {
		<-children
	}
	live := map[*Ref]bool{}
	for _, r := range refs {
		live[r] = true
	}
	stop := func(r *Ref) {
		waitClosed(t, r.Stop(), "a top-level actor stopped")
		delete(live, r)
	}
	for i := 0; i < n; i += 3 { // oldest first
		stop(refs[i])
	}
	for i := n - 1; i >= 0; i -= 5 { // newest first
		if live[refs[i]] {
			stop(refs[i])
		}
	}
	got := s.topWhere(func(*Ref) bool { return true })
	seen := map[*Ref]bool{}
	for _, r := range got {
		if !live[r] || seen[r] {
			t.Fatalf("the set holds an actor that stopped, a child, or one twice (%d actors, %d live)", len(got), len(live))
		}
		seen[r] = true
	}
	if len(seen) != len(live) {
		t.Fatalf("the set holds %d actors, want the %d live ones", len(seen), len(live))
	}
	if err := s.Shutdown(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	if left := s.topWhere(func(*Ref) bool { return true }); len(left) != 0 {
		t.Fatalf("%d actors left in the set after Shutdown", len(left))
	}
}
