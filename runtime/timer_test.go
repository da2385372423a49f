package runtime

import (
	"errors"
	"sync"
	"testing"
	"time"
)

// timerActor arms timers on request and reports the messages they send.
func timerProps(fired chan<- string, timers chan<- *Timer) Props {
	return Props{New: func() Actor {
		return ActorFunc(func(c *Context) {
			switch m := c.Message().(type) {
			case string:
				switch m {
				case "after":
					timers <- c.SendAfter(time.Second, "tick-after")
				case "every":
					timers <- c.SendEvery(time.Second, "tick-every")
				case "boom":
					panic("boom")
				case "tick-after", "tick-every":
					fired <- m
				}
			}
		})
	}}
}

func TestSendAfterAndSendEvery(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	s := newTestSystem(t, Config{Clock: clock})
	fired, timers := make(chan string, 10), make(chan *Timer, 10)
	r := spawn(t, s, timerProps(fired, timers))

	if err := r.Send("after"); err != nil {
		t.Fatal(err)
	}
	after := recv(t, timers, "timer")
	clock.Advance(time.Second)
	if m := recv(t, fired, "SendAfter"); m != "tick-after" {
		t.Fatalf("fired %q", m)
	}
	if after.Stop() {
		t.Fatal("Stop of a fired SendAfter timer reported true")
	}

	if err := r.Send("every"); err != nil {
		t.Fatal(err)
	}
	every := recv(t, timers, "timer")
	for i := range 3 {
		clock.Advance(time.Second)
		if m := recv(t, fired, "SendEvery"); m != "tick-every" {
			t.Fatalf("tick %d: fired %q", i, m)
		}
	}
	if !every.Stop() {
		t.Fatal("Stop of a running SendEvery timer reported false")
	}
	if clock.Pending() != 0 {
		t.Fatal("stopped timer still armed")
	}
}

// TestTimersCancelledOnStopAndRestart checks that the clock timers are
// disarmed, and that a timer message already queued is dropped.
func TestTimersCancelledOnStopAndRestart(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"stop", "restart"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			clock := newFakeClock()
			s := newTestSystem(t, Config{Clock: clock})
			dead := make(chan DeadLetter, 10)
			s.SubscribeDeadLetters(dead)
			fired, timers := make(chan string, 10), make(chan *Timer, 10)
			r := spawn(t, s, timerProps(fired, timers))
			for _, m := range []string{"after", "every"} {
				if err := r.Send(m); err != nil {
					t.Fatal(err)
				}
				recv(t, timers, "timer")
			}
			if clock.Pending() != 2 {
				t.Fatalf("pending timers = %d, want 2", clock.Pending())
			}
			switch how {
			case "stop":
				waitClosed(t, r.Stop(), "stop")
			case "restart":
				if _, err := r.Request(ctxTimeout(t), "boom"); !errors.Is(err, ErrPanic) {
					t.Fatal(err)
				}
				if err := r.Send("after"); err != nil { // a timer of the new instance
					t.Fatal(err)
				}
				recv(t, timers, "new timer")
			}
			want := map[string]int{"stop": 0, "restart": 1}[how]
			waitFor(t, testTimeout, func() bool { return clock.Pending() == want }, "timers cancelled")
			clock.Advance(time.Hour)
			if how == "restart" {
				if m := recv(t, fired, "new instance's timer"); m != "tick-after" {
					t.Fatalf("fired %q", m)
				}
				// Nothing else: the old timers were cancelled. A request
				// after the tick proves no other tick is queued ahead.
				if _, err := r.Request(ctxTimeout(t), "after"); !errors.Is(err, ErrNoReply) {
					t.Fatal(err)
				}
			}
			select {
			case m := <-fired:
				t.Fatalf("cancelled timer fired %q", m)
			case dl := <-dead:
				t.Fatalf("cancelled timer produced dead letter %+v", dl)
			default:
			}
		})
	}
}

// TestStoppedTimerMessageAlreadyQueuedIsDropped stops a timer whose message
// is already in the mailbox, behind a blocked handler.
func TestStoppedTimerMessageAlreadyQueuedIsDropped(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	s := newTestSystem(t, Config{Clock: clock})
	entered, release := make(chan struct{}), make(chan struct{})
	fired := make(chan string, 10)
	timers := make(chan *Timer, 1)
	r := spawnFunc(t, s, func(c *Context) {
		switch c.Message() {
		case "arm":
			timers <- c.SendAfter(time.Second, "tick")
		case "block":
			close(entered)
			<-release
		case "tick":
			fired <- "tick"
		case "ping":
			c.Respond("pong")
		}
	})
	if err := r.Send("arm"); err != nil {
		t.Fatal(err)
	}
	tm := recv(t, timers, "timer")
	if err := r.Send("block"); err != nil {
		t.Fatal(err)
	}
	<-entered
	clock.Advance(time.Second) // "tick" is queued behind "block"
	// The one-shot timer has fired, so Stop reports false, but its queued
	// message must still be dropped.
	tm.Stop()
	close(release)
	if v, err := r.Request(ctxTimeout(t), "ping"); err != nil || v != "pong" {
		t.Fatal(v, err)
	}
	select {
	case <-fired:
		t.Fatal("message of a stopped timer was delivered")
	default:
	}
}

func TestSendEveryRejectsNonPositiveInterval(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	r := spawnFunc(t, s, func(c *Context) {
		if c.Message() == "every0" {
			defer func() { c.Respond(recover() != nil) }()
			c.SendEvery(0, "x")
		}
	})
	if v, err := r.Request(ctxTimeout(t), "every0"); err != nil || v != true {
		t.Fatalf("SendEvery(0) did not panic: %v, %v", v, err)
	}
}

func TestTimerIntoFullMailboxIsDeadLetter(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	s := newTestSystem(t, Config{Clock: clock})
	dead := make(chan DeadLetter, 10)
	s.SubscribeDeadLetters(dead)
	entered, release := make(chan struct{}), make(chan struct{})
	r := spawn(t, s, Props{
		Mailbox: MailboxConfig{Capacity: 1}, // MailboxBlock: timers still never block
		New: func() Actor {
			return ActorFunc(func(c *Context) {
				switch c.Message() {
				case "arm":
					c.SendAfter(time.Second, "tick")
				case "block":
					close(entered)
					<-release
				}
			})
		},
	})
	if err := r.Send("arm"); err != nil {
		t.Fatal(err)
	}
	if err := r.Send("block"); err != nil {
		t.Fatal(err)
	}
	<-entered
	if err := r.Send("fill"); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second)
	dl := recv(t, dead, "dead letter")
	if dl.Message != "tick" || !errors.Is(dl.Reason, ErrMailboxFull) {
		t.Fatalf("dead letter = %+v", dl)
	}
	close(release)
}

// TestTimersStartedWhileStoppingAreNotArmed: SendEvery and SendAfter in the
// *Stopping handler run after the actor's timers were cancelled: they arm
// nothing, which would fire for good after the actor and its System are
// gone, their messages go to the dead letters, and the Timers they return
// are stopped already.
func TestTimersStartedWhileStoppingAreNotArmed(t *testing.T) {
	clk := newFakeClock()
	s := NewSystem(Config{Clock: clk, Logger: testLogger(t)})
	dead := make(chan DeadLetter, 4)
	s.SubscribeDeadLetters(dead)
	stopped := make(chan bool, 1)
	spawnFunc(t, s, func(c *Context) {
		if _, ok := c.Message().(*Stopping); ok {
			c.SendEvery(time.Millisecond, "tick") // never stopped by the actor
			stopped <- c.SendAfter(time.Millisecond, "once").Stop()
		}
	})
	if err := s.Shutdown(ctxTimeout(t)); err != nil {
		t.Fatal(err)
	}
	if n := clk.Pending(); n != 0 {
		t.Fatalf("%d timers armed after Shutdown", n)
	}
	if recv(t, stopped, "Stop's result") {
		t.Fatal("Stop of a timer started while stopping reported it cancelled a live timer")
	}
	for _, want := range []string{"tick", "once"} {
		if d := recv(t, dead, "a dead letter"); d.Message != want || !errors.Is(d.Reason, ErrStopped) {
			t.Fatalf("dead letter %v (%v), want %q (ErrStopped)", d.Message, d.Reason, want)
		}
	}
}

// TestATimerThatFiredBeforeARestartIsDropped: a one-shot timer that fired
// while its instance was busy has its message queued when that instance
// fails; the restart cancels the old instance's timers, so the new
// instance must not get it.
func TestATimerThatFiredBeforeARestartIsDropped(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	s := newTestSystem(t, Config{Clock: clock})
	entered, release := make(chan struct{}), make(chan struct{})
	fired := make(chan string, 10)
	timers := make(chan *Timer, 1)
	r := spawnFunc(t, s, func(c *Context) {
		switch c.Message() {
		case "arm":
			timers <- c.SendAfter(time.Second, "tick")
		case "block":
			close(entered)
			<-release
			panic("boom")
		case "tick":
			fired <- "tick"
		case "ping":
			c.Respond("pong")
		}
	})
	if err := r.Send("arm"); err != nil {
		t.Fatal(err)
	}
	recv(t, timers, "timer")
	if err := r.Send("block"); err != nil {
		t.Fatal(err)
	}
	<-entered
	clock.Advance(time.Second) // "tick" is queued behind "block"
	close(release)             // the restart comes before "tick"
	if v, err := r.Request(ctxTimeout(t), "ping"); err != nil || v != "pong" {
		t.Fatal(v, err)
	}
	select {
	case m := <-fired:
		t.Fatalf("the new instance got %q, from a timer of the instance that failed", m)
	default:
	}
}

// TestPeriodicTicksCoalesce: a SendEvery timer has at most one tick in the
// mailbox, as a time.Ticker has in its channel. An actor that is busy (or
// suspended through a restart's backoff) while periods pass then finds one
// tick, not one per period: in a bounded mailbox those took the room of
// other messages, and those past the capacity were dead letters.
func TestPeriodicTicksCoalesce(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	s := newTestSystem(t, Config{Clock: clock})
	dead := make(chan DeadLetter, 10)
	s.SubscribeDeadLetters(dead)
	entered, release := make(chan struct{}), make(chan struct{})
	unblock := sync.OnceFunc(func() { close(release) })
	t.Cleanup(unblock) // before the System's Close, should the test fail with the actor blocked
	ticks := make(chan string, 10)
	r := spawn(t, s, Props{
		Mailbox: MailboxConfig{Capacity: 3, Overflow: MailboxFail},
		New: func() Actor {
			return ActorFunc(func(c *Context) {
				switch c.Message() {
				case "every":
					c.SendEvery(time.Second, "tick")
					c.Respond("armed")
				case "block":
					close(entered)
					<-release
				case "tick":
					ticks <- "tick"
				case "sync":
					c.Respond("synced")
				}
			})
		},
	})
	if _, err := r.Request(ctxTimeout(t), "every"); err != nil {
		t.Fatal(err)
	}
	if err := r.Send("block"); err != nil {
		t.Fatal(err)
	}
	<-entered
	for range 5 {
		clock.Advance(time.Second)
	}
	if err := r.Send("room"); err != nil {
		t.Fatalf("Send after 5 periods of a busy actor = %v; want room beside one tick", err)
	}
	unblock()
	if _, err := r.Request(ctxTimeout(t), "sync"); err != nil {
		t.Fatal(err)
	}
	if n := len(ticks); n != 1 {
		t.Fatalf("the actor got %d ticks queued while it was busy; want 1", n)
	}
	<-ticks
	clock.Advance(time.Second)
	recv(t, ticks, "the tick after the actor took the queued one")
	select {
	case d := <-dead:
		t.Fatalf("dead letter %v (%v); want none", d.Message, d.Reason)
	default:
	}
}

// TestTimerStopFromAnotherGoroutine pins what Timer.Stop promises off the
// actor's goroutine: the one tick the actor took from its mailbox before
// Stop cancelled the timer is still delivered, after Stop has returned
// here; none follows it. The middleware holds the tick after the actor has
// taken it and found the timer live, the window Stop cannot close.
func TestTimerStopFromAnotherGoroutine(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	s := newTestSystem(t, Config{Clock: clock})
	taken, release := make(chan struct{}), make(chan struct{})
	unblock := sync.OnceFunc(func() { close(release) })
	t.Cleanup(unblock)
	ticks := make(chan string, 10)
	timers := make(chan *Timer, 1)
	var held sync.Once
	r := spawn(t, s, Props{
		Middleware: []Middleware{func(next ReceiveFunc) ReceiveFunc {
			return func(c *Context) {
				if c.Message() == "tick" {
					held.Do(func() { close(taken); <-release })
				}
				next(c)
			}
		}},
		New: func() Actor {
			return ActorFunc(func(c *Context) {
				switch c.Message() {
				case "every":
					timers <- c.SendEvery(time.Second, "tick")
				case "tick":
					ticks <- "tick"
				case "sync":
					c.Respond("synced")
				}
			})
		},
	})
	if err := r.Send("every"); err != nil {
		t.Fatal(err)
	}
	tm := recv(t, timers, "the timer")
	clock.Advance(time.Second)
	<-taken
	if !tm.Stop() {
		t.Fatal("Stop of a live SendEvery timer reported false")
	}
	clock.Advance(time.Second)
	unblock()
	if _, err := r.Request(ctxTimeout(t), "sync"); err != nil {
		t.Fatal(err)
	}
	if n := len(ticks); n != 1 {
		t.Fatalf("%d ticks delivered; want the one taken before Stop", n)
	}
	if n := clock.Pending(); n != 0 {
		t.Fatalf("%d clock timers armed after Stop", n)
	}
}
