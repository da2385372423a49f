package runtime

import (
	"context"
	"errors"
	"fmt"
	goruntime "runtime"
	"slices"
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

// queuedUser counts the user messages queued for r. Only call it while
// r's current handler is blocked, so that nothing pops meanwhile.
func queuedUser(r *Ref) int {
	n := 0
	for e := (*envelope)(atomic.LoadPointer(&r.userTail.stub.next)); e != nil; e = (*envelope)(atomic.LoadPointer(&e.next)) {
		n++
	}
	return n
}

// TestStopDuringInlineTurnFailsQueuedRequests: Stop from another goroutine
// while a caller runs the actor's turn. The caller gets its own reply; the
// requests queued behind it, of every kind (no deadline, a deadline,
// RequestInline), fail with ErrStopped and become dead letters; nobody
// waits for a deadline.
func TestStopDuringInlineTurnFailsQueuedRequests(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	dl := make(chan DeadLetter, 64)
	s.SubscribeDeadLetters(dl)
	entered, release := make(chan struct{}), make(chan struct{})
	r := spawnFunc(t, s, func(c *Context) {
		if m, ok := c.Message().(string); ok {
			if m == "hold" {
				close(entered)
				<-release
			}
			c.Respond("re:" + m)
		}
	})
	waitFor(t, testTimeout, func() bool { return r.status.Load() == idle }, "actor idle")
	own := make(chan error, 1)
	go func() {
		v, err := r.Request(context.Background(), "hold")
		if err == nil && v != "re:hold" {
			err = fmt.Errorf("reply %v, want re:hold", v)
		}
		own <- err
	}()
	recv(t, entered, "the caller's turn to begin")
	const n = 6
	errs := make(chan error, n)
	for i := range n {
		go func() {
			var err error
			switch i % 3 {
			case 0:
				_, err = r.Request(context.Background(), fmt.Sprint("bg", i))
			case 1:
				_, err = r.Request(ctxTimeout(t), fmt.Sprint("dl", i))
			default:
				_, err = r.RequestInline(ctxTimeout(t), fmt.Sprint("in", i))
			}
			errs <- err
		}()
	}
	waitFor(t, testTimeout, func() bool { return queuedUser(r) == n }, "the requests to queue")
	r.Stop()
	close(release)
	if err := recv(t, own, "the caller's reply"); err != nil {
		t.Fatalf("the caller's request: %v", err)
	}
	for range n {
		if err := recv(t, errs, "a queued request"); !errors.Is(err, ErrStopped) {
			t.Fatalf("queued request = %v, want ErrStopped", err)
		}
	}
	for range n {
		if d := recv(t, dl, "a dead letter"); d.To != r || !errors.Is(d.Reason, ErrStopped) {
			t.Fatalf("dead letter %+v, want one to the actor for ErrStopped", d)
		}
	}
	waitClosed(t, r.Done(), "stop")
}

// TestBackoffHoldsMessagesQueuedDuringInlineTurn: a second failure within
// the restart window, in a turn the caller runs, waits for its backoff. The
// messages the handler queued before it panicked, and a later caller's
// request, wait for the restart too (the later caller runs no turn of a
// suspended actor), then go to the new instance in order.
func TestBackoffHoldsMessagesQueuedDuringInlineTurn(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	s := newTestSystem(t, Config{Clock: clock, Supervisor: NewOneForOne(StrategyConfig{
		MaxRestarts: -1,
		Backoff:     Backoff{Initial: 100 * time.Millisecond, Jitter: -1},
	})})
	log := &eventLog{}
	var r *Ref
	var instances atomic.Int32
	r = spawn(t, s, Props{New: func() Actor {
		n := instances.Add(1)
		return ActorFunc(func(c *Context) {
			switch m := c.Message().(type) {
			case *Started:
				log.add("started#%d", n)
			case string:
				switch m {
				case "send-boom":
					for i := range 3 {
						if err := r.Send(fmt.Sprintf("q%d", i)); err != nil {
							panic(err)
						}
					}
					panic("boom")
				case "boom":
					panic("boom")
				default:
					log.add("%s#%d", m, n)
					c.Respond(m)
				}
			}
		})
	}})
	waitFor(t, testTimeout, func() bool { return r.status.Load() == idle && log.count("started#1") == 1 }, "actor idle")
	if _, err := r.Request(context.Background(), "boom"); !errors.Is(err, ErrPanic) {
		t.Fatalf("first boom = %v, want ErrPanic", err)
	}
	waitFor(t, testTimeout, func() bool { return r.status.Load() == idle && log.count("started#2") == 1 }, "the first restart")
	// The second failure within the window: the restart waits 100ms.
	if _, err := r.Request(context.Background(), "send-boom"); !errors.Is(err, ErrPanic) {
		t.Fatalf("second boom = %v, want ErrPanic", err)
	}
	waitFor(t, testTimeout, func() bool { return clock.Pending() == 1 }, "the backoff timer")
	late := make(chan any, 1)
	go func() {
		v, err := r.Request(context.Background(), "late")
		if err != nil {
			late <- err
			return
		}
		late <- v
	}()
	waitFor(t, testTimeout, func() bool { return r.status.Load() == idle && queuedUser(r) == 4 }, "the late request to queue")
	if ev := log.snapshot(); len(ev) != 2 {
		t.Fatalf("handled %v during the backoff; want the two starts only", ev)
	}
	clock.Advance(100 * time.Millisecond)
	if v := recv(t, late, "the late reply"); v != "late" {
		t.Fatalf("late request = %v, want late", v)
	}
	want := []string{"started#1", "started#2", "started#3", "q0#3", "q1#3", "q2#3", "late#3"}
	if got := log.snapshot(); !slices.Equal(got, want) {
		t.Fatalf("handled %v, want %v", got, want)
	}
}

// TestRestartLimitInInlineTurnFailsQueuedRequests: the failure that
// exhausts the restart limit happens in a turn the caller runs, while other
// requests wait behind it. The caller gets its *PanicError, the waiting
// requests fail with ErrStopped and become dead letters, and the actor
// stops.
func TestRestartLimitInInlineTurnFailsQueuedRequests(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{Supervisor: NewOneForOne(StrategyConfig{MaxRestarts: 1, Backoff: Backoff{Initial: -1}})})
	dl := make(chan DeadLetter, 16)
	s.SubscribeDeadLetters(dl)
	entered, release := make(chan struct{}, 1), make(chan struct{})
	r := spawnFunc(t, s, func(c *Context) {
		switch c.Message() {
		case "hold-boom":
			entered <- struct{}{}
			<-release
			panic("boom")
		case "boom":
			panic("boom")
		}
	})
	waitFor(t, testTimeout, func() bool { return r.status.Load() == idle }, "actor idle")
	if _, err := r.Request(context.Background(), "boom"); !errors.Is(err, ErrPanic) {
		t.Fatalf("first boom = %v, want ErrPanic", err)
	}
	waitFor(t, testTimeout, func() bool { return r.status.Load() == idle }, "actor idle after its restart")
	own := make(chan error, 1)
	go func() { _, err := r.Request(context.Background(), "hold-boom"); own <- err }()
	recv(t, entered, "the caller's turn to begin")
	const n = 4
	errs := make(chan error, n)
	for i := range n {
		go func() {
			ctx := context.Background()
			if i%2 == 1 {
				ctx = ctxTimeout(t)
			}
			_, err := r.Request(ctx, fmt.Sprint("q", i))
			errs <- err
		}()
	}
	waitFor(t, testTimeout, func() bool { return queuedUser(r) == n }, "the requests to queue")
	close(release)
	if err := recv(t, own, "the caller's reply"); !errors.Is(err, ErrPanic) {
		t.Fatalf("the caller's request = %v, want ErrPanic", err)
	}
	for range n {
		if err := recv(t, errs, "a queued request"); !errors.Is(err, ErrStopped) {
			t.Fatalf("queued request = %v, want ErrStopped", err)
		}
		if d := recv(t, dl, "a dead letter"); !errors.Is(d.Reason, ErrStopped) {
			t.Fatalf("dead letter %+v, want one for ErrStopped", d)
		}
	}
	waitClosed(t, r.Done(), "the stop after the restart limit")
}

// TestInlineTurnsOneAtATimeUnderFailures mixes turns run by callers, by
// workers and nested in other turns, with timers, panics that the root
// restarts or resumes (concurrently, for two top-level actors), and a stop
// racing all of it: no two handlers of one actor overlap (the
// unsynchronised counters let -race see it too), and every request
// returns.
func TestInlineTurnsOneAtATimeUnderFailures(t *testing.T) {
	t.Parallel()
	var decisions atomic.Int32
	s := newTestSystem(t, Config{Supervisor: NewOneForOne(StrategyConfig{
		MaxRestarts: -1,
		Backoff:     Backoff{Initial: -1},
		Decider: func(*Failure) Directive {
			if decisions.Add(1)%2 == 0 {
				return Resume
			}
			return Restart
		},
	})})
	var overlaps atomic.Int32
	type guard struct {
		in    atomic.Int32
		count int // only touched by the actor
	}
	enter := func(g *guard) (leave func()) {
		if !g.in.CompareAndSwap(0, 1) {
			overlaps.Add(1)
		}
		g.count++
		return func() { g.in.Store(0) }
	}
	gb, ga := &guard{}, &guard{}
	b := spawn(t, s, Props{Throughput: 3, New: func() Actor {
		return ActorFunc(func(c *Context) {
			defer enter(gb)()
			switch m := c.Message().(type) {
			case *Started:
				c.SendEvery(200*time.Microsecond, "tick")
			case int:
				if m%97 == 0 {
					panic("boom")
				}
				c.Respond(m)
			}
		})
	}})
	a := spawn(t, s, Props{Throughput: 2, New: func() Actor {
		return ActorFunc(func(c *Context) {
			defer enter(ga)()
			switch m := c.Message().(type) {
			case *Started:
				c.SendAfter(time.Millisecond, "tick")
			case int:
				if m%89 == 0 {
					panic("boom")
				}
				if m%3 == 0 {
					v, err := b.Request(context.Background(), m) // nested, maybe on this goroutine
					if err != nil {
						c.RespondError(err)
						return
					}
					c.Respond(v)
					return
				}
				c.Respond(m)
			case string:
				if m == "tick" {
					c.SendAfter(time.Millisecond, "tick")
				}
			}
		})
	}})
	const goroutines, each = 8, 300
	var wg sync.WaitGroup
	bad := make(chan error, goroutines*each)
	var stopped atomic.Bool
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				m := g*each + i + 1
				var err error
				var v any
				switch g % 4 {
				case 0:
					v, err = a.Request(context.Background(), m)
				case 1:
					v, err = a.Request(ctxTimeout(t), m)
				case 2:
					v, err = a.RequestInline(ctxTimeout(t), m)
				default:
					v, err = b.Request(context.Background(), m)
				}
				switch {
				case err == nil && v != m:
					bad <- fmt.Errorf("reply %v to %d", v, m)
				case err != nil && !errors.Is(err, ErrPanic) && !(stopped.Load() && errors.Is(err, ErrStopped)):
					bad <- fmt.Errorf("request %d: %w", m, err)
				}
			}
		}()
	}
	// Stop both actors while requests are still in flight.
	wg.Add(1)
	go func() {
		defer wg.Done()
		waitFor(t, testTimeout, func() bool { return decisions.Load() >= 10 }, "some failures")
		stopped.Store(true)
		a.Stop()
		b.GracefulStop()
	}()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	waitClosed(t, done, "every request to return")
	close(bad)
	for err := range bad {
		t.Error(err)
	}
	waitClosed(t, a.Done(), "a to stop")
	waitClosed(t, b.Done(), "b to stop")
	if n := overlaps.Load(); n != 0 {
		t.Fatalf("%d handlers overlapped another of the same actor", n)
	}
}

// TestWorkerTurnCarriesOnPastThroughput pins what Props.Throughput means
// for a worker: at Throughput user messages its turn yields the processor
// and carries on with the same actor, on the same goroutine, until the
// mailbox is empty (only a caller's turn ends there; see
// TestInlineTurnRespectsThroughput).
func TestWorkerTurnCarriesOnPastThroughput(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	rec := &recorder{}
	p := recordingProps(rec)
	p.Throughput = 2
	r := spawn(t, s, p)
	waitIdle(t, r, rec, 1)
	for i := range 7 {
		pushRaw(&r.userHead, s, fmt.Sprint("m", i))
	}
	r.schedule()
	waitFor(t, testTimeout, func() bool { return len(rec.get()) == 8 }, "every message handled")
	ev := rec.get()[1:]
	for _, e := range ev {
		if e.g != ev[0].g {
			t.Fatalf("the turn's messages ran on more than one goroutine: %+v", ev)
		}
	}
}
