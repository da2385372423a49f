package runtime

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestOrderingPerSender checks FIFO per sender and that an actor never
// handles two messages at once, with several senders and a small
// throughput so that the actor yields often.
func TestOrderingPerSender(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	const senders, perSender = 4, 2000
	type msg struct{ sender, seq int }
	var inside atomic.Int32
	next := make([]int, senders)
	errs := make(chan error, 1)
	done := make(chan struct{})
	total := 0
	r := spawn(t, s, Props{Throughput: 7, New: func() Actor {
		return ActorFunc(func(c *Context) {
			m, ok := c.Message().(msg)
			if !ok {
				return
			}
			if inside.Add(1) != 1 {
				errs <- errors.New("two messages handled at once")
			}
			defer inside.Add(-1)
			if m.seq != next[m.sender] {
				select {
				case errs <- errors.New("out of order"):
				default:
				}
			}
			next[m.sender] = m.seq + 1
			if total++; total == senders*perSender {
				close(done)
			}
		})
	}})
	var wg sync.WaitGroup
	for sender := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perSender {
				if err := r.Send(msg{sender, i}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case <-done:
	case err := <-errs:
		t.Fatal(err)
	case <-ctxTimeout(t).Done():
		t.Fatal("timed out")
	}
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
}

// TestNoLostWakeups hammers many actors from many goroutines and counts
// every message; a lost wake-up leaves a message stranded and the count
// short.
func TestNoLostWakeups(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	const actors, senders, perSender = 8, 16, 1000
	var count atomic.Int64
	refs := make([]*Ref, actors)
	for i := range refs {
		refs[i] = spawn(t, s, Props{Throughput: 1 + i, New: func() Actor {
			return ActorFunc(func(c *Context) {
				if _, ok := c.Message().(int); ok {
					count.Add(1)
				}
			})
		}})
	}
	var wg sync.WaitGroup
	for g := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perSender {
				if err := refs[(g+i)%actors].Send(i); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	const want = senders * perSender
	waitFor(t, testTimeout, func() bool { return count.Load() == want }, "all messages")
	// The actors must also still answer: each is idle and wakes again.
	for _, r := range refs {
		if err := r.Send(-1); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, testTimeout, func() bool { return count.Load() == want+actors }, "messages after idle")
}

// TestSystemMessagesFirst queues user messages behind a blocked handler,
// then stops the actor abruptly: the stop, a system message, overtakes
// them, so none is handled and all become dead letters.
func TestSystemMessagesFirst(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	dead := make(chan DeadLetter, 100)
	s.SubscribeDeadLetters(dead)
	entered, release := make(chan struct{}), make(chan struct{})
	var handled atomic.Int32
	r := spawnFunc(t, s, func(c *Context) {
		switch c.Message() {
		case "block":
			close(entered)
			<-release
		case "queued":
			handled.Add(1)
		}
	})
	if err := r.Send("block"); err != nil {
		t.Fatal(err)
	}
	<-entered
	for range 10 {
		if err := r.Send("queued"); err != nil {
			t.Fatal(err)
		}
	}
	stopped := r.Stop()
	close(release)
	waitClosed(t, stopped, "stop")
	if n := handled.Load(); n != 0 {
		t.Fatalf("%d queued messages were handled after Stop; want 0", n)
	}
	for range 10 {
		dl := recv(t, dead, "dead letter")
		if dl.To != r || dl.Message != "queued" || !errors.Is(dl.Reason, ErrStopped) {
			t.Fatalf("dead letter = %+v", dl)
		}
	}
}

func TestBoundedMailboxFail(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	dead := make(chan DeadLetter, 10)
	s.SubscribeDeadLetters(dead)
	entered, release := make(chan struct{}), make(chan struct{})
	var handled atomic.Int32
	r := spawn(t, s, Props{
		Mailbox: MailboxConfig{Capacity: 2, Overflow: MailboxFail},
		New:     func() Actor { return ActorFunc(blockOrCount(entered, release, &handled)) },
	})
	if err := r.Send("block"); err != nil {
		t.Fatal(err)
	}
	<-entered // "block" left the mailbox: two free slots
	for i := range 2 {
		if err := r.Send("m"); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	if err := r.Send("m"); !errors.Is(err, ErrMailboxFull) {
		t.Fatalf("third send = %v, want ErrMailboxFull", err)
	}
	if dl := recv(t, dead, "dead letter"); !errors.Is(dl.Reason, ErrMailboxFull) {
		t.Fatalf("dead letter reason = %v", dl.Reason)
	}
	if _, err := r.Request(ctxTimeout(t), "m"); !errors.Is(err, ErrMailboxFull) {
		t.Fatalf("request to full mailbox = %v, want ErrMailboxFull", err)
	}
	close(release)
	waitFor(t, testTimeout, func() bool { return handled.Load() == 2 }, "queued messages")
	if err := r.Send("m"); err != nil {
		t.Fatalf("send after draining: %v", err)
	}
	waitFor(t, testTimeout, func() bool { return handled.Load() == 3 }, "message after draining")
}

func TestBoundedMailboxBlock(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	entered, release := make(chan struct{}), make(chan struct{})
	var handled atomic.Int32
	r := spawn(t, s, Props{
		Mailbox: MailboxConfig{Capacity: 1},
		New:     func() Actor { return ActorFunc(blockOrCount(entered, release, &handled)) },
	})
	if err := r.Send("block"); err != nil {
		t.Fatal(err)
	}
	<-entered
	if err := r.Send("m"); err != nil { // fills the mailbox
		t.Fatal(err)
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r.SendContext(cancelled, "m"); !errors.Is(err, context.Canceled) {
		t.Fatalf("SendContext on full mailbox with cancelled ctx = %v, want context.Canceled", err)
	}
	sent := make(chan error, 1)
	go func() { sent <- r.Send("m") }() // waits for space
	close(release)
	if err := recv(t, sent, "blocked send"); err != nil {
		t.Fatalf("blocked send = %v", err)
	}
	waitFor(t, testTimeout, func() bool { return handled.Load() == 2 }, "both messages")
}

// TestBoundedMailboxBlockedSenderReleasedOnStop checks that a sender
// waiting for space gives up with ErrStopped when the actor stops.
func TestBoundedMailboxBlockedSenderReleasedOnStop(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	entered, release := make(chan struct{}), make(chan struct{})
	r := spawn(t, s, Props{
		Mailbox: MailboxConfig{Capacity: 1},
		New: func() Actor {
			return ActorFunc(func(c *Context) {
				if c.Message() == "block" {
					close(entered)
					<-release
				}
			})
		},
	})
	if err := r.Send("block"); err != nil {
		t.Fatal(err)
	}
	<-entered
	if err := r.Send("fill"); err != nil {
		t.Fatal(err)
	}
	sent := make(chan error, 1)
	go func() { sent <- r.Send("waiting") }()
	r.Stop()
	close(release)
	if err := recv(t, sent, "blocked send"); !errors.Is(err, ErrStopped) {
		t.Fatalf("blocked send = %v, want ErrStopped", err)
	}
}

func TestMiddlewareOrder(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	var mu sync.Mutex
	var trace []string
	record := func(s string) {
		mu.Lock()
		trace = append(trace, s)
		mu.Unlock()
	}
	mw := func(name string) Middleware {
		return func(next ReceiveFunc) ReceiveFunc {
			return func(c *Context) {
				if c.Message() == "m" {
					record(name + ">")
					defer record("<" + name)
				}
				next(c)
			}
		}
	}
	r := spawn(t, s, Props{
		Middleware: []Middleware{mw("a"), mw("b")},
		New: func() Actor {
			return ActorFunc(func(c *Context) {
				if c.Message() == "m" {
					record("actor")
					c.Respond("ok")
				}
			})
		},
	})
	if _, err := r.Request(ctxTimeout(t), "m"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"a>", "b>", "actor", "<b", "<a"}
	if len(trace) != len(want) {
		t.Fatalf("trace = %v, want %v", trace, want)
	}
	for i := range want {
		if trace[i] != want[i] {
			t.Fatalf("trace = %v, want %v", trace, want)
		}
	}
}

// TestMiddlewareSeesLifecycleAndSurvivesRestart checks that the chain, built
// once, reaches the new instance after a restart.
func TestMiddlewareSeesLifecycleAndSurvivesRestart(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	var started atomic.Int32
	instances := 0
	r := spawn(t, s, Props{
		Middleware: []Middleware{func(next ReceiveFunc) ReceiveFunc {
			return func(c *Context) {
				if _, ok := c.Message().(*Started); ok {
					started.Add(1)
				}
				next(c)
			}
		}},
		New: func() Actor {
			instances++
			id := instances
			return ActorFunc(func(c *Context) {
				switch c.Message() {
				case "panic":
					panic("boom")
				case "who":
					c.Respond(id)
				}
			})
		},
	})
	if _, err := r.Request(ctxTimeout(t), "panic"); !errors.Is(err, ErrPanic) {
		t.Fatalf("panic request = %v", err)
	}
	v, err := r.Request(ctxTimeout(t), "who")
	if err != nil || v != 2 {
		t.Fatalf("who = %v, %v; want the second instance", v, err)
	}
	if n := started.Load(); n != 2 {
		t.Fatalf("middleware saw %d Started, want 2", n)
	}
}

// TestNoLostWakeupsInBursts sends short bursts from concurrent goroutines
// and waits for each burst to be handled before the next. A lost wake-up
// strands the last message of a burst, since no later send comes to
// rescue it, so the wait times out.
func TestNoLostWakeupsInBursts(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	const rounds, senders = 3000, 3
	handled := make(chan struct{}, senders)
	r := spawnFunc(t, s, func(c *Context) {
		if _, ok := c.Message().(int); ok {
			handled <- struct{}{}
		}
	})
	start := make([]chan struct{}, senders)
	for i := range start {
		start[i] = make(chan struct{})
	}
	var wg sync.WaitGroup
	for g := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				<-start[g]
				if err := r.Send(i); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	timeout := time.NewTimer(testTimeout)
	defer timeout.Stop()
	for i := range rounds {
		for _, ch := range start {
			ch <- struct{}{}
		}
		for range senders {
			select {
			case <-handled:
			case <-timeout.C:
				t.Fatalf("round %d: a message was not handled", i)
			}
		}
	}
	wg.Wait()
}

// TestWakeupInIdleWindow sends a message at the worst moment: after the
// actor found its mailbox empty, before it went idle. The sender sees the
// actor running and does not schedule it; only the actor's re-check after
// going idle can pick the message up.
func TestWakeupInIdleWindow(t *testing.T) {
	t.Parallel()
	var armed atomic.Bool
	handled := make(chan string, 4)
	s := NewSystem(Config{Logger: testLogger(t)})
	s.beforeIdle = func(r *Ref) {
		if armed.CompareAndSwap(true, false) {
			if err := r.Send("in the window"); err != nil {
				t.Error(err)
			}
		}
	}
	t.Cleanup(s.Close)
	r := spawnFunc(t, s, func(c *Context) {
		if m, ok := c.Message().(string); ok {
			handled <- m
		}
	})
	armed.Store(true)
	if err := r.Send("first"); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{recv(t, handled, "a message"): true, recv(t, handled, "a message"): true}
	if !got["first"] || !got["in the window"] {
		t.Fatalf("handled %v", got)
	}
}
