package runtime

import (
	"context"
	"errors"
	"fmt"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Tests of the caller-run turn (Ref.runInline): a Request whose context
// can never end, to an idle actor, runs the actor's turn on the caller's
// goroutine. Each test checks that the turn behaves exactly as on a worker.

// goid returns the current goroutine's id, parsed from its stack header
// ("goroutine 42 [running]:"). Tests use it to see where a turn ran.
func goid() uint64 {
	var buf [64]byte
	n := goruntime.Stack(buf[:], false)
	f := strings.Fields(string(buf[:n]))
	id, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		panic("runtime test: cannot parse goroutine id from " + string(buf[:n]))
	}
	return id
}

// event is one message an actor handled and the goroutine it ran on.
type event struct {
	msg string
	g   uint64
}

// recorder collects events from an actor's handler.
type recorder struct {
	mu     sync.Mutex
	events []event
}

func (rec *recorder) add(msg string) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	rec.events = append(rec.events, event{msg, goid()})
}

func (rec *recorder) get() []event {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]event(nil), rec.events...)
}

// msgs returns the messages recorded, in order.
func (rec *recorder) msgs() []string {
	var out []string
	for _, e := range rec.get() {
		out = append(out, e.msg)
	}
	return out
}

// name turns the messages the tests use into strings for the recorder.
func name(msg any) string {
	switch m := msg.(type) {
	case string:
		return m
	case *Started:
		return "Started"
	case *Stopping:
		return "Stopping"
	case *Stopped:
		return "Stopped"
	case *Restarting:
		return "Restarting"
	}
	return typeName(msg)
}

// recordingProps returns Props of an actor that records every message and
// answers requests with "re:" + the message; "boom" panics.
func recordingProps(rec *recorder) Props {
	return Props{New: func() Actor {
		return ActorFunc(func(c *Context) {
			rec.add(name(c.Message()))
			switch c.Message() {
			case "boom":
				panic("boom")
			case "stop-me":
				c.Respond("re:stop-me")
				c.Self().Stop()
			default:
				if s, ok := c.Message().(string); ok {
					c.Respond("re:" + s)
				}
			}
		})
	}}
}

// waitIdle waits until r has handled everything sent so far and is idle,
// so that the next Request finds it idle. rec must hold want events then.
func waitIdle(t *testing.T, r *Ref, rec *recorder, want int) {
	t.Helper()
	waitFor(t, testTimeout, func() bool { return len(rec.get()) >= want && r.status.Load() == idle }, "actor idle")
}

// pushRaw queues a message without scheduling the actor, as if a producer
// had pushed it and not yet scheduled it; the next turn must handle it.
func pushRaw(h *queueHead, s *System, msg any) { h.push(s.envelopes.get(msg, nil)) }

func TestRequestRunsTurnOnIdleActorInCaller(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	rec := &recorder{}
	r := spawn(t, s, recordingProps(rec))
	waitIdle(t, r, rec, 1)

	me := goid()
	v, err := r.Request(context.Background(), "a")
	if err != nil || v != "re:a" {
		t.Fatalf("Request = %v, %v; want re:a", v, err)
	}
	ev := rec.get()
	if last := ev[len(ev)-1]; last.msg != "a" || last.g != me {
		t.Fatalf("request handled as %+v; want on the caller's goroutine %d", last, me)
	}

	// A context that can end must not run the turn in the caller: the
	// caller has to be free to return at its deadline.
	waitIdle(t, r, rec, 2)
	v, err = r.Request(ctxTimeout(t), "b")
	if err != nil || v != "re:b" {
		t.Fatalf("Request = %v, %v; want re:b", v, err)
	}
	ev = rec.get()
	if last := ev[len(ev)-1]; last.msg != "b" || last.g == me {
		t.Fatalf("request with a deadline handled as %+v; want on a worker, not %d", last, me)
	}
}

func TestInlineTurnHandlesSystemMessagesFirst(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	rec := &recorder{}
	r := spawn(t, s, recordingProps(rec))
	waitIdle(t, r, rec, 1)

	pushRaw(&r.userHead, s, "queued")
	pushRaw(&r.sysHead, s, sysRestart{})
	me := goid()
	if v, err := r.Request(context.Background(), "req"); err != nil || v != "re:req" {
		t.Fatalf("Request = %v, %v", v, err)
	}
	want := []string{"Started", "Restarting", "Started", "queued", "req"}
	got := rec.get()
	if strings.Join(rec.msgs(), ",") != strings.Join(want, ",") {
		t.Fatalf("handled %v; want %v", rec.msgs(), want)
	}
	for _, e := range got[1:] {
		if e.g != me {
			t.Fatalf("%s ran on goroutine %d; want the caller's %d", e.msg, e.g, me)
		}
	}
}

func TestInlineTurnRespectsThroughput(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	rec := &recorder{}
	p := recordingProps(rec)
	p.Throughput = 2
	r := spawn(t, s, p)
	waitIdle(t, r, rec, 1)

	for _, m := range []string{"m1", "m2", "m3"} {
		pushRaw(&r.userHead, s, m)
	}
	me := goid()
	if v, err := r.Request(context.Background(), "req"); err != nil || v != "re:req" {
		t.Fatalf("Request = %v, %v", v, err)
	}
	got := rec.get()
	if strings.Join(rec.msgs(), ",") != "Started,m1,m2,m3,req" {
		t.Fatalf("handled %v", rec.msgs())
	}
	// The caller runs Throughput messages, then a worker takes the rest.
	for i, e := range got[1:] {
		if inCaller := e.g == me; inCaller != (i < 2) {
			t.Fatalf("%s ran on goroutine %d (caller %d); want only m1 and m2 in the caller", e.msg, e.g, me)
		}
	}
}

// TestInlineTurnEndsWithTheCallersRequest: a message another producer
// queues while the caller runs the turn of its request goes to a worker,
// and the caller returns once its own handler has. Here that message
// blocks until the caller's Request returned: the caller used to handle it
// in its turn, and so never returned.
func TestInlineTurnEndsWithTheCallersRequest(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	returned := make(chan struct{})
	later := make(chan uint64, 1)
	var r *Ref
	r = spawnFunc(t, s, func(c *Context) {
		switch c.Message() {
		case "req":
			if err := r.Send("later"); err != nil {
				c.RespondError(err)
				return
			}
			c.Respond("re:req")
		case "later":
			<-returned
			later <- goid()
		}
	})
	release := sync.OnceFunc(func() { close(returned) })
	t.Cleanup(release) // before the system shuts down, should the test fail
	waitFor(t, testTimeout, func() bool { return r.status.Load() == idle }, "actor idle")
	caller := make(chan uint64, 1)
	done := make(chan error, 1)
	go func() {
		caller <- goid()
		v, err := r.RequestInline(ctxTimeout(t), "req")
		if err == nil && v != "re:req" {
			err = fmt.Errorf("reply %v, want re:req", v)
		}
		done <- err
	}()
	if err := recv(t, done, "the caller's Request to return while a later message blocks"); err != nil {
		t.Fatal(err)
	}
	release()
	if g, me := recv(t, later, "the later message"), <-caller; g == me {
		t.Fatalf("the later message ran on the caller's goroutine %d", g)
	}
}

func TestInlineTurnPanicIsSupervised(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		directive Directive
		want      []string // messages handled, after the first Started
		alive     bool
	}{
		{Restart, []string{"boom", "Restarting", "Started", "after"}, true},
		{Resume, []string{"boom", "after"}, true},
		{Stop, []string{"boom", "Stopping", "Stopped"}, false},
	} {
		t.Run(tc.directive.String(), func(t *testing.T) {
			t.Parallel()
			decided := make(chan *Failure, 1)
			s := newTestSystem(t, Config{Supervisor: NewOneForOne(StrategyConfig{
				Decider: func(f *Failure) Directive { decided <- f; return tc.directive },
			})})
			rec := &recorder{}
			r := spawn(t, s, recordingProps(rec))
			waitIdle(t, r, rec, 1)

			_, err := r.Request(context.Background(), "boom")
			var pe *PanicError
			if !errors.Is(err, ErrPanic) || !errors.As(err, &pe) || pe.Value != "boom" {
				t.Fatalf("Request(boom) = %v; want a *PanicError with boom", err)
			}
			if f := recv(t, decided, "decision"); f.Who != r || f.Message != "boom" {
				t.Fatalf("decider saw %+v", f)
			}
			if !tc.alive {
				waitClosed(t, r.Done(), "stop")
				if _, err := r.Request(context.Background(), "after"); !errors.Is(err, ErrStopped) {
					t.Fatalf("Request after Stop = %v; want ErrStopped", err)
				}
			} else if v, err := r.Request(context.Background(), "after"); err != nil || v != "re:after" {
				t.Fatalf("Request after %s = %v, %v", tc.directive, v, err)
			}
			if got := strings.Join(rec.msgs()[1:], ","); got != strings.Join(tc.want, ",") {
				t.Fatalf("handled %s; want %v", got, tc.want)
			}
		})
	}
}

// TestInlineTurnPanicErrorComesBeforeRestart: when the handler of a
// request panics, the caller has its *PanicError before the actor
// restarts, whether a worker or the caller ran the turn. The restarted
// instance's Started waits until the caller's Request has returned: a
// caller that ran the restart in its own turn never returned.
func TestInlineTurnPanicErrorComesBeforeRestart(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		inline bool
	}{{"worker", false}, {"caller", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newTestSystem(t, Config{})
			returned := make(chan struct{})
			sawReturn := make(chan bool, 1)
			var instances atomic.Int32
			r := spawn(t, s, Props{New: func() Actor {
				n := instances.Add(1)
				return ActorFunc(func(c *Context) {
					switch c.Message().(type) {
					case *Started:
						if n == 2 { // the restarted instance
							select {
							case <-returned:
								sawReturn <- true
							case <-time.After(testTimeout / 2):
								sawReturn <- false
							}
						}
					case string:
						panic("boom")
					}
				})
			}})
			waitFor(t, testTimeout, func() bool { return r.status.Load() == idle }, "actor idle")
			ctx := ctxTimeout(t)
			if tc.inline {
				ctx = context.Background()
			}
			_, err := r.Request(ctx, "boom")
			close(returned)
			if !errors.Is(err, ErrPanic) {
				t.Fatalf("Request = %v, want ErrPanic", err)
			}
			if !recv(t, sawReturn, "the restarted instance's Started") {
				t.Fatal("the restarted instance's Started ran before the caller's Request returned")
			}
		})
	}
}

// TestRestartedActorCanCallItsCaller is the same as an actor program meets
// it: actor X asks top-level actor A without a deadline, so X runs A's
// turn; A panics, and its new instance's Started asks X something. X must
// have its *PanicError and return first, then answer A. When X ran A's
// restart, A's Started waited for X, and X for A's Started.
func TestRestartedActorCanCallItsCaller(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	var x *Ref
	askedX := make(chan error, 1)
	var instances atomic.Int32
	a := spawn(t, s, Props{New: func() Actor {
		n := instances.Add(1)
		return ActorFunc(func(c *Context) {
			switch c.Message().(type) {
			case *Started:
				if n == 2 {
					ctx, cancel := context.WithTimeout(context.Background(), testTimeout/2)
					defer cancel()
					_, err := x.Request(ctx, "hello")
					askedX <- err
				}
			case string:
				panic("boom")
			}
		})
	}})
	x = spawnFunc(t, s, func(c *Context) {
		switch c.Message() {
		case "go":
			_, err := a.Request(context.Background(), "boom")
			c.Respond(err)
		case "hello":
			c.Respond("hi")
		}
	})
	waitFor(t, testTimeout, func() bool { return a.status.Load() == idle }, "actor idle")
	v, err := x.Request(ctxTimeout(t), "go")
	if err != nil {
		t.Fatal(err)
	}
	if e, _ := v.(error); !errors.Is(e, ErrPanic) {
		t.Fatalf("X's request to A = %v, want ErrPanic", v)
	}
	if err := recv(t, askedX, "A's Started to ask X"); err != nil {
		t.Fatalf("the restarted A asked X: %v; want an answer (A's restart ran inside X's handler)", err)
	}
}

// TestInlineTurnLeavesTerminatedToAWorker: a *Terminated queued while the
// caller runs the watcher's turn is handled by a worker, after the
// caller's Request returned. Here the watched actor stops during the
// caller's request (its own turn, run by the same goroutine, stops it).
func TestInlineTurnLeavesTerminatedToAWorker(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	rec := &recorder{}
	w := spawn(t, s, recordingProps(rec))
	waitIdle(t, w, rec, 1)
	returned := make(chan struct{})
	sawReturn := make(chan bool, 1)
	a := spawnFunc(t, s, func(c *Context) {
		switch m := c.Message().(type) {
		case *Started:
			c.Watch(w)
		case *Terminated:
			select {
			case <-returned:
				sawReturn <- true
			case <-time.After(testTimeout / 2):
				sawReturn <- false
			}
		case string:
			_, err := w.Request(context.Background(), "stop-me")
			if err != nil {
				c.RespondError(err)
				return
			}
			// *Terminated is queued for a before w's Done closes.
			select {
			case <-w.Done():
				c.Respond("re:" + m)
			case <-time.After(testTimeout / 2):
				c.RespondError(errors.New("w did not stop"))
			}
		}
	})
	waitFor(t, testTimeout, func() bool { return a.status.Load() == idle }, "watcher idle")
	v, err := a.Request(context.Background(), "kill")
	close(returned)
	if err != nil || v != "re:kill" {
		t.Fatalf("Request = %v, %v", v, err)
	}
	if !recv(t, sawReturn, "the watcher's *Terminated") {
		t.Fatal("*Terminated ran on the caller before its Request returned")
	}
}

func TestInlineTurnChildFailureEscalates(t *testing.T) {
	t.Parallel()
	parentSaw := make(chan *Failure, 1)
	s := newTestSystem(t, Config{Supervisor: NewOneForOne(StrategyConfig{
		Decider: func(f *Failure) Directive { parentSaw <- f; return Stop },
	})})
	rec := &recorder{}
	children := make(chan *Ref, 1)
	parent := spawn(t, s, Props{
		New: func() Actor {
			return ActorFunc(func(c *Context) {
				if _, ok := c.Message().(*Started); ok {
					child, err := c.Spawn(recordingProps(rec))
					if err != nil {
						panic(err)
					}
					children <- child
				}
			})
		},
		Supervisor: NewOneForOne(StrategyConfig{Decider: func(*Failure) Directive { return Escalate }}),
	})
	child := recv(t, children, "child")
	waitIdle(t, child, rec, 1)
	if _, err := child.Request(context.Background(), "boom"); !errors.Is(err, ErrPanic) {
		t.Fatalf("Request(boom) = %v; want ErrPanic", err)
	}
	f := recv(t, parentSaw, "escalated failure")
	if f.Who != parent || f.Cause == nil || f.Cause.Who != child {
		t.Fatalf("root saw %+v; want the parent escalating the child's failure", f)
	}
	waitClosed(t, parent.Done(), "parent stop")
	waitClosed(t, child.Done(), "child stop")
}

func TestInlineTurnMiddleware(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	rec, seen := &recorder{}, &recorder{}
	p := recordingProps(rec)
	p.Middleware = []Middleware{func(next ReceiveFunc) ReceiveFunc {
		return func(c *Context) {
			seen.add("mw:" + name(c.Message()))
			next(c)
		}
	}}
	r := spawn(t, s, p)
	waitIdle(t, r, rec, 1)
	me := goid()
	if v, err := r.Request(context.Background(), "req"); err != nil || v != "re:req" {
		t.Fatalf("Request = %v, %v", v, err)
	}
	got := seen.get()
	if len(got) != 2 || got[1].msg != "mw:req" || got[1].g != me {
		t.Fatalf("middleware saw %+v; want mw:Started, then mw:req on the caller's goroutine %d", got, me)
	}
}

// TestInlineTurnStopsActor: a handler that stops its actor in a turn the
// caller runs gets the stop done, by a worker: the caller's turn ends with
// its request, and the stop, queued after it, runs user code (*Stopping,
// *Stopped) that the caller must not wait for.
func TestInlineTurnStopsActor(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	rec := &recorder{}
	r := spawn(t, s, recordingProps(rec))
	waitIdle(t, r, rec, 1)
	me := goid()
	if v, err := r.Request(context.Background(), "stop-me"); err != nil || v != "re:stop-me" {
		t.Fatalf("Request = %v, %v", v, err)
	}
	waitClosed(t, r.Done(), "the stop the handler asked for")
	if got := strings.Join(rec.msgs(), ","); got != "Started,stop-me,Stopping,Stopped" {
		t.Fatalf("handled %s", got)
	}
	for _, e := range rec.get()[2:] {
		if e.g == me {
			t.Fatalf("%s ran on the caller's goroutine %d; want a worker", e.msg, me)
		}
	}
}

func TestInlineTurnsNest(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	rec := &recorder{}
	inner := spawn(t, s, recordingProps(rec))
	waitIdle(t, inner, rec, 1)
	outerG := make(chan uint64, 1)
	outer := spawnFunc(t, s, func(c *Context) {
		if c.Message() != "call" {
			return
		}
		outerG <- goid()
		v, err := inner.Request(context.Background(), "nested")
		if err != nil {
			c.RespondError(err)
			return
		}
		c.Respond(v)
	})
	v, err := outer.Request(ctxTimeout(t), "call")
	if err != nil || v != "re:nested" {
		t.Fatalf("Request = %v, %v", v, err)
	}
	g := recv(t, outerG, "outer goroutine")
	if last := rec.get()[1]; last.msg != "nested" || last.g != g {
		t.Fatalf("inner handled %+v; want nested inside the outer turn on goroutine %d", last, g)
	}
}

// TestInlineTurnsOneAtATime has callers that run turns themselves race with
// senders and with callers that wait for workers: the actor must never see
// two messages at once. Besides the in-flight check, the unsynchronised
// counter makes -race report any overlap.
func TestInlineTurnsOneAtATime(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	var inFlight atomic.Int32
	var overlaps atomic.Int32
	count := 0 // only touched by the actor
	r := spawnFunc(t, s, func(c *Context) {
		if !inFlight.CompareAndSwap(0, 1) {
			overlaps.Add(1)
		}
		if _, ok := c.Message().(int); ok {
			count++
			c.Respond(count)
		}
		inFlight.Store(0)
	})
	const goroutines, each = 8, 500
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				var err error
				switch g % 3 {
				case 0:
					_, err = r.Request(context.Background(), i)
				case 1:
					_, err = r.Request(ctxTimeout(t), i)
				default:
					err = r.Send(i)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	v, err := r.Request(context.Background(), -1)
	if err != nil {
		t.Fatal(err)
	}
	if v != goroutines*each+1 {
		t.Fatalf("actor counted %v messages; want %d", v, goroutines*each+1)
	}
	if n := overlaps.Load(); n != 0 {
		t.Fatalf("%d messages overlapped another", n)
	}
}

// TestRequestInlineWithDeadline checks RequestInline: with a context that
// can end, an idle actor's turn runs on the caller's goroutine, while a
// busy actor is waited for under the context, as with Request.
func TestRequestInlineWithDeadline(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	rec := &recorder{}
	r := spawn(t, s, recordingProps(rec))
	waitIdle(t, r, rec, 1)

	me := goid()
	v, err := r.RequestInline(ctxTimeout(t), "a")
	if err != nil || v != "re:a" {
		t.Fatalf("RequestInline = %v, %v; want re:a", v, err)
	}
	if last := rec.get()[1]; last.msg != "a" || last.g != me {
		t.Fatalf("request handled as %+v; want on the caller's goroutine %d", last, me)
	}

	// A busy actor: the caller waits for a worker's turn and gives up at
	// its deadline.
	entered, release := make(chan struct{}), make(chan struct{})
	busy := spawnFunc(t, s, func(c *Context) {
		switch c.Message() {
		case "hold":
			close(entered)
			<-release
		case "b":
			c.Respond("re:b")
		}
	})
	if err := busy.Send("hold"); err != nil {
		t.Fatal(err)
	}
	recv(t, entered, "the actor to be busy")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := busy.RequestInline(ctx, "b"); !errors.Is(err, context.Canceled) {
		t.Fatalf("RequestInline with an ended context = %v, want Canceled", err)
	}
	short, stop := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer stop()
	if _, err := busy.RequestInline(short, "b"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("RequestInline to a busy actor = %v, want DeadlineExceeded", err)
	}
	close(release)
	if v, err := busy.RequestInline(ctxTimeout(t), "b"); err != nil || v != "re:b" {
		t.Fatalf("RequestInline after the actor was released = %v, %v; want re:b", v, err)
	}
}
