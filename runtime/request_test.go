package runtime

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestRequestDeadlineAndCancel(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	release := make(chan struct{})
	entered := make(chan struct{}, 4)
	r := spawnFunc(t, s, func(c *Context) {
		switch c.Message() {
		case "slow":
			entered <- struct{}{}
			<-release
			c.Respond("late") // the caller has gone: must not leak or panic
		case "fast":
			c.Respond("fast")
		}
	})

	t.Run("deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 0)
		defer cancel()
		<-ctx.Done()
		if _, err := r.Request(ctx, "fast"); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Request with expired ctx = %v, want DeadlineExceeded", err)
		}
	})
	t.Run("cancel while waiting", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() {
			_, err := r.Request(ctx, "slow")
			errc <- err
		}()
		recv(t, entered, "handler")
		cancel()
		if err := recv(t, errc, "request"); !errors.Is(err, context.Canceled) {
			t.Fatalf("Request = %v, want context.Canceled", err)
		}
	})
	close(release) // the late reply is dropped
	// The actor and the pooled reply slots still work afterwards.
	for i := range 100 {
		v, err := r.Request(ctxTimeout(t), "fast")
		if err != nil || v != "fast" {
			t.Fatalf("request %d after abandoned one = %v, %v", i, v, err)
		}
	}
}

// TestLateRepliesDoNotCross makes many replies arrive after their caller
// gave up, interleaved with requests that wait: every waiting caller must
// get its own answer, so a late reply can never land in a reused slot.
func TestLateRepliesDoNotCross(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	// abandoned is a request whose handler cancels the caller's context and
	// replies only once the caller has returned.
	type abandoned struct {
		n      int
		cancel context.CancelFunc
		gaveUp chan struct{}
	}
	r := spawnFunc(t, s, func(c *Context) {
		switch m := c.Message().(type) {
		case int:
			c.Respond(m)
		case abandoned:
			m.cancel()
			resp := c.DetachReply()
			go func() {
				<-m.gaveUp
				if resp.Respond(m.n) {
					t.Errorf("late reply %d was delivered to a caller that gave up", m.n)
				}
			}()
		}
	})
	wait := goEach(8, func(g int) {
		for i := range 200 {
			n := g*1000 + i
			if i%2 == 0 {
				ctx, cancel := context.WithCancel(context.Background())
				m := abandoned{n: n, cancel: cancel, gaveUp: make(chan struct{})}
				if _, err := r.Request(ctx, m); !errors.Is(err, context.Canceled) {
					t.Errorf("abandoned request %d = %v, want context.Canceled", n, err)
				}
				close(m.gaveUp)
				continue
			}
			v, err := r.Request(context.Background(), n)
			if err != nil || v != n {
				t.Errorf("request %d = %v, %v", n, v, err)
				return
			}
		}
	})
	wait()
}

func TestRequestErrors(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	sentinel := errors.New("app: not allowed")
	r := spawnFunc(t, s, func(c *Context) {
		switch c.Message() {
		case "error":
			c.RespondError(sentinel)
		case "silent":
		case "twice":
			c.Respond(1)
			c.Respond(2)
		}
	})
	if _, err := r.Request(ctxTimeout(t), "error"); err != sentinel {
		t.Fatalf("RespondError: got %v, want the sentinel as is", err)
	}
	if _, err := r.Request(ctxTimeout(t), "silent"); !errors.Is(err, ErrNoReply) {
		t.Fatalf("no reply: got %v, want ErrNoReply", err)
	}
	if v, err := r.Request(ctxTimeout(t), "twice"); err != nil || v != 1 {
		t.Fatalf("twice = %v, %v; want the first answer", v, err)
	}
	if _, err := r.Request(ctxTimeout(t), nil); !errors.Is(err, ErrNilMessage) {
		t.Fatalf("nil message = %v, want ErrNilMessage", err)
	}
	if err := r.Send(nil); !errors.Is(err, ErrNilMessage) {
		t.Fatalf("Send(nil) = %v, want ErrNilMessage", err)
	}
	var nilRef *Ref
	if err := nilRef.Send("x"); !errors.Is(err, ErrStopped) {
		t.Fatalf("Send on nil Ref = %v, want ErrStopped", err)
	}
}

func TestDetachReply(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	r := spawnFunc(t, s, func(c *Context) {
		if c.Message() == "later" {
			resp := c.DetachReply()
			if c.DetachReply() != nil {
				panic("second DetachReply returned a Responder")
			}
			go func() {
				resp.Respond("answered later")
				if resp.Respond("again") {
					panic("second Respond delivered")
				}
			}()
		}
		if c.Message() == "send" && c.DetachReply() != nil {
			panic("DetachReply on a Send returned a Responder")
		}
	})
	v, err := r.Request(ctxTimeout(t), "later")
	if err != nil || v != "answered later" {
		t.Fatalf("Request = %v, %v", v, err)
	}
	if err := r.Send("send"); err != nil {
		t.Fatal(err)
	}
	// A request after the Send proves the Send did not panic the actor
	// into a restart loop.
	if v, err := r.Request(ctxTimeout(t), "later"); err != nil || v != "answered later" {
		t.Fatalf("Request = %v, %v", v, err)
	}
}

// TestRequestToStoppedActorFailsAtOnce uses a context without deadline: a
// wrong implementation hangs instead of failing.
func TestRequestToStoppedActorFailsAtOnce(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	dead := make(chan DeadLetter, 10)
	s.SubscribeDeadLetters(dead)
	r := spawnFunc(t, s, func(c *Context) {})
	waitClosed(t, r.Stop(), "stop")
	if _, err := r.Request(context.Background(), "hello"); !errors.Is(err, ErrStopped) {
		t.Fatalf("Request to stopped actor = %v, want ErrStopped", err)
	}
	if dl := recv(t, dead, "dead letter"); dl.Message != "hello" || dl.To != r {
		t.Fatalf("dead letter = %+v", dl)
	}
}

// TestQueuedRequestsFailWhenActorStops queues requests behind a blocked
// handler and stops the actor: each fails with ErrStopped without waiting
// for a deadline.
func TestQueuedRequestsFailWhenActorStops(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	entered, release := make(chan struct{}), make(chan struct{})
	r := spawnFunc(t, s, func(c *Context) {
		if c.Message() == "block" {
			close(entered)
			<-release
		}
	})
	if err := r.Send("block"); err != nil {
		t.Fatal(err)
	}
	<-entered
	const n = 5
	errc := make(chan error, n)
	for i := range n {
		go func() {
			_, err := r.Request(context.Background(), fmt.Sprint("q", i))
			errc <- err
		}()
	}
	// The requests are queued or refused; either way they fail with
	// ErrStopped once the actor stops.
	r.Stop()
	close(release)
	for range n {
		if err := recv(t, errc, "request"); !errors.Is(err, ErrStopped) {
			t.Fatalf("queued request = %v, want ErrStopped", err)
		}
	}
}

func TestRequestAllocations(t *testing.T) {
	s := newTestSystem(t, Config{})
	r := spawnFunc(t, s, func(c *Context) { c.Respond(c.Message()) })
	ctx := context.Background()
	msg := any("ping")
	if _, err := r.Request(ctx, msg); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := r.Request(ctx, msg); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("allocations per Request round trip: %.1f", allocs)
	if allocs > 3 {
		t.Fatalf("Request allocates %.1f times per call; want the envelope and little else", allocs)
	}
}

// TestRequestsRacingStopNeverHang sends requests from many goroutines
// while the actor is stopped: each must end with the reply or ErrStopped,
// never wait (the context has no deadline).
func TestRequestsRacingStopNeverHang(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	for round := range 20 {
		r := spawnFunc(t, s, func(c *Context) {
			if n, ok := c.Message().(int); ok {
				c.Respond(n)
			}
		})
		wait := goEach(4, func(g int) {
			for i := range 50 {
				v, err := r.Request(context.Background(), i)
				switch {
				case errors.Is(err, ErrStopped):
					return
				case err != nil || v != i:
					t.Errorf("round %d, goroutine %d: Request = %v, %v", round, g, v, err)
					return
				}
			}
		})
		if round%2 == 0 {
			r.Stop()
		} else {
			r.GracefulStop()
		}
		wait()
		waitClosed(t, r.Done(), "stop")
	}
}

// TestAskReportsACallerThatGaveUp: Ask tells a caller whose context ended
// whether its message was queued, and so is still the actor's (it gave
// up), or was not queued at all; an answered request is never reported
// given up, whatever its error.
func TestAskReportsACallerThatGaveUp(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	// abandoned is a request whose handler cancels the caller's context and
	// answers only once the caller has returned.
	type abandoned struct {
		cancel context.CancelFunc
		gaveUp chan struct{}
	}
	delivered := make(chan bool, 1)
	r := spawnFunc(t, s, func(c *Context) {
		switch m := c.Message().(type) {
		case abandoned:
			m.cancel()
			<-m.gaveUp
			resp := c.DetachReply()
			delivered <- resp.Respond("late")
		case error:
			c.RespondError(m) // an answer, though it may look like a context's error
		default:
			c.Respond(m)
		}
	})
	for _, inline := range []bool{false, true} {
		if v, gaveUp, err := r.Ask(ctxTimeout(t), "fast", inline); v != "fast" || gaveUp || err != nil {
			t.Errorf("Ask(inline %t) = %v, %t, %v; want fast, false, nil", inline, v, gaveUp, err)
		}
		if _, gaveUp, err := r.Ask(ctxTimeout(t), context.DeadlineExceeded, inline); gaveUp || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Ask(inline %t) answered with DeadlineExceeded = %t, %v; want false, the answer", inline, gaveUp, err)
		}
		done, cancel := context.WithCancel(context.Background())
		cancel()
		if _, gaveUp, err := r.Ask(done, "never", inline); gaveUp || !errors.Is(err, context.Canceled) {
			t.Errorf("Ask(inline %t) with an ended context = %t, %v; want false (not queued), Canceled", inline, gaveUp, err)
		}
	}
	// A caller that waits on a worker's turn (an inline one would run the
	// handler itself) gives up while the actor handles its message.
	ctx, cancel := context.WithCancel(context.Background())
	m := abandoned{cancel: cancel, gaveUp: make(chan struct{})}
	_, gaveUp, err := r.Ask(ctx, m, false)
	close(m.gaveUp)
	if !gaveUp || !errors.Is(err, context.Canceled) {
		t.Errorf("Ask that gave up on a queued message = %t, %v; want true, Canceled", gaveUp, err)
	}
	if recv(t, delivered, "the late answer") {
		t.Error("the answer to a message whose caller gave up was delivered")
	}
}

// TestRespondReportsWhatTheCallerGot races every reply with its caller's
// cancellation, on worker and caller-run turns: a Responder reports the
// reply delivered exactly when its caller returned it, and Ask reports
// the caller gave up exactly when it was not.
func TestRespondReportsWhatTheCallerGot(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	type req struct {
		n         int
		delivered chan bool
	}
	r := spawnFunc(t, s, func(c *Context) {
		if m, ok := c.Message().(req); ok {
			resp := c.DetachReply()
			go func() { m.delivered <- resp.Respond(m.n) }()
		}
	})
	wait := goEach(8, func(g int) {
		for i := range 500 {
			m := req{n: g*1000 + i, delivered: make(chan bool, 1)}
			ctx, cancel := context.WithCancel(context.Background())
			go cancel() // anywhere between the Ask and the reply
			v, gaveUp, err := r.Ask(ctx, m, i%2 == 0)
			cancel()
			if !gaveUp && errors.Is(err, context.Canceled) {
				continue // not queued: nobody answers it
			}
			delivered := recv(t, m.delivered, "the Responder's report")
			if delivered == gaveUp || !gaveUp && (v != m.n || err != nil) {
				t.Errorf("Ask(%d) = %v, gave up %t, %v; Respond reported delivered %t", m.n, v, gaveUp, err, delivered)
				return
			}
		}
	})
	wait()
}

// TestRequestsRacingStopLeaveOneDeadLetterEach races requests, some with
// a deadline, with a stop: each request that fails with ErrStopped leaves
// exactly one dead letter, and only those and the ones whose callers gave
// up leave any.
func TestRequestsRacingStopLeaveOneDeadLetterEach(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	dead := make(chan DeadLetter, 1<<14)
	s.SubscribeDeadLetters(dead)
	for round := range 20 {
		r := spawnFunc(t, s, func(c *Context) {
			if n, ok := c.Message().(int); ok {
				c.Respond(n)
			}
		})
		var mu sync.Mutex
		stopped, gaveUp := map[int]bool{}, map[int]bool{}
		wait := goEach(4, func(g int) {
			for i := range 100 {
				n := g*1000 + i
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i%4)*50*time.Microsecond)
				v, gave, err := r.Ask(ctx, n, i%3 == 0)
				cancel()
				mu.Lock()
				switch {
				case gave:
					gaveUp[n] = true
				case errors.Is(err, ErrStopped):
					stopped[n] = true
				case errors.Is(err, context.DeadlineExceeded): // not queued
				case err != nil || v != n:
					t.Errorf("round %d: Ask(%d) = %v, %v", round, n, v, err)
				}
				mu.Unlock()
			}
		})
		if round%2 == 0 {
			r.Stop()
		} else {
			r.GracefulStop()
		}
		wait()
		waitClosed(t, r.Done(), "stop")
		letters := map[int]int{}
		for len(dead) > 0 {
			letters[(<-dead).Message.(int)]++
		}
		for n := range stopped {
			if letters[n] != 1 {
				t.Errorf("round %d: request %d failed with ErrStopped and left %d dead letters", round, n, letters[n])
			}
		}
		for n, count := range letters {
			if count != 1 || !stopped[n] && !gaveUp[n] {
				t.Errorf("round %d: %d dead letters for request %d (ErrStopped %t, gave up %t)", round, count, n, stopped[n], gaveUp[n])
			}
		}
	}
	if d := s.DroppedDeadLetters(); d != 0 {
		t.Fatalf("%d dead letters dropped: the subscriber's buffer is too small for the test", d)
	}
}

// TestAMessageGivenUpOnAndNeverReachedIsADeadLetter: a caller gives up on
// its message while it waits behind a long turn, and the actor stops
// before it reaches it. Ask reports the message given up, and it becomes
// a dead letter, unanswered: the one case where a given-up message never
// reaches the actor, which a caller that leaves its message's bookkeeping
// to the actor must allow for.
func TestAMessageGivenUpOnAndNeverReachedIsADeadLetter(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	dead := make(chan DeadLetter, 1)
	s.SubscribeDeadLetters(dead)
	entered, release := make(chan struct{}), make(chan struct{})
	var handled atomic.Int32
	r := spawnFunc(t, s, blockOrCount(entered, release, &handled))
	if err := r.Send("block"); err != nil {
		t.Fatal(err)
	}
	<-entered
	ctx, cancel := context.WithCancel(context.Background())
	type result struct {
		gaveUp bool
		err    error
	}
	asked := make(chan result, 1)
	go func() {
		_, gaveUp, err := r.Ask(ctx, "m", false)
		asked <- result{gaveUp, err}
	}()
	// The actor's goroutine wrote its queue's tail before it entered the
	// handler, and waits there: a read is safe.
	waitFor(t, testTimeout, func() bool { return !r.userHead.empty(r.userTail.stub) }, "the message queued")
	cancel()
	if res := recv(t, asked, "Ask"); !res.gaveUp || !errors.Is(res.err, context.Canceled) {
		t.Fatalf("Ask = gave up %t, %v; want true, Canceled", res.gaveUp, res.err)
	}
	r.Stop()
	close(release)
	waitClosed(t, r.Done(), "the stop")
	if dl := recv(t, dead, "the dead letter"); dl.Message != "m" || !errors.Is(dl.Reason, ErrStopped) {
		t.Fatalf("dead letter = %+v, want m, ErrStopped", dl)
	}
	if handled.Load() != 0 {
		t.Fatal("the stopped actor handled the message")
	}
}
