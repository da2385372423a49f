package runtime

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
)

// logActor records the strings it receives and answers a Request with
// everything recorded so far.
type logActor struct{ got []string }

func (a *logActor) Receive(c *Context) {
	switch m := c.Message().(type) {
	case string:
		a.got = append(a.got, m)
	case int:
		if c.IsRequest() {
			c.Respond(slices.Clone(a.got))
		}
	}
}

// received asks r, a logActor, for what it has recorded. The Request goes
// straight to the mailbox, not through a Batch, so it also shows what was
// delivered before it.
func received(t *testing.T, r *Ref) []string {
	t.Helper()
	got, err := r.Request(ctxTimeout(t), 0)
	if err != nil {
		t.Fatalf("Request: %v", err)
	}
	return got.([]string)
}

func TestBatchDeliversOnFlushInOrder(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	newLog := func() *Ref { return spawn(t, s, Props{New: func() Actor { return &logActor{} }}) }
	a, b := newLog(), newLog()

	var batch Batch
	batch.Flush() // an empty batch: nothing happens
	for _, m := range []string{"a1", "a2", "a3"} {
		if err := batch.Add(a, m); err != nil {
			t.Fatal(err)
		}
	}
	if got := received(t, a); len(got) != 0 {
		t.Fatalf("before Flush, a received %q", got)
	}
	// A message for another actor flushes a's run first.
	if err := batch.Add(b, "b1"); err != nil {
		t.Fatal(err)
	}
	if got, want := received(t, a), []string{"a1", "a2", "a3"}; !slices.Equal(got, want) {
		t.Fatalf("a received %q after an Add for b; want %q", got, want)
	}
	if err := batch.Add(a, "a4"); err != nil { // flushes b's run
		t.Fatal(err)
	}
	if got, want := received(t, b), []string{"b1"}; !slices.Equal(got, want) {
		t.Fatalf("b received %q; want %q", got, want)
	}
	batch.Flush()
	batch.Flush() // nothing left: no second delivery
	if got, want := received(t, a), []string{"a1", "a2", "a3", "a4"}; !slices.Equal(got, want) {
		t.Fatalf("a received %q; want %q", got, want)
	}
	// Actors fed by a Batch return their free queue nodes as runs, for
	// Batches; others do not (see envelopePool.put).
	sent := newLog()
	if err := sent.Send("s"); err != nil {
		t.Fatal(err)
	}
	if !a.fedInRuns.Load() || !b.fedInRuns.Load() || sent.fedInRuns.Load() {
		t.Fatalf("fedInRuns: a %v, b %v, sent %v; want true, true, false", a.fedInRuns.Load(), b.fedInRuns.Load(), sent.fedInRuns.Load())
	}
}

func TestBatchErrors(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	letters := make(chan DeadLetter, 4)
	s.SubscribeDeadLetters(letters)
	stopped := spawnFunc(t, s, func(*Context) {})
	waitClosed(t, stopped.Stop(), "stop")

	var batch Batch
	if err := batch.Add(nil, "x"); !errors.Is(err, ErrStopped) {
		t.Fatalf("Add to a nil Ref = %v; want ErrStopped", err)
	}
	if err := batch.Add(stopped, nil); !errors.Is(err, ErrNilMessage) {
		t.Fatalf("Add of nil = %v; want ErrNilMessage", err)
	}
	if err := batch.Add(stopped, "late"); !errors.Is(err, ErrStopped) {
		t.Fatalf("Add to a stopped actor = %v; want ErrStopped", err)
	}
	if dl := recv(t, letters, "dead letter"); dl.To != stopped || dl.Message != "late" || !errors.Is(dl.Reason, ErrStopped) {
		t.Fatalf("dead letter = %+v", dl)
	}
	batch.Flush() // the failed Adds collected nothing
	select {
	case dl := <-letters:
		t.Fatalf("unexpected dead letter %+v", dl)
	default:
	}
}

// TestBatchStopBeforeFlush stops the actor between Add and Flush: the
// messages become dead letters, as those of a Send racing with Stop do.
func TestBatchStopBeforeFlush(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	letters := make(chan DeadLetter, 4)
	s.SubscribeDeadLetters(letters)
	r := spawn(t, s, Props{New: func() Actor { return &logActor{} }})

	var batch Batch
	for _, m := range []string{"one", "two"} {
		if err := batch.Add(r, m); err != nil {
			t.Fatal(err)
		}
	}
	waitClosed(t, r.Stop(), "stop")
	batch.Flush()
	for _, want := range []string{"one", "two"} {
		if dl := recv(t, letters, "dead letter"); dl.To != r || dl.Message != want || !errors.Is(dl.Reason, ErrStopped) {
			t.Fatalf("dead letter = %+v; want %q", dl, want)
		}
	}
}

// TestBatchBoundedMailbox checks that a message for a bounded mailbox is
// sent at once, in its slot, after the run collected before it.
func TestBatchBoundedMailbox(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	block, release := make(chan struct{}), make(chan struct{})
	seen := make(chan string, 8)
	bounded := spawn(t, s, Props{
		New: func() Actor {
			return ActorFunc(func(c *Context) {
				m, ok := c.Message().(string)
				if !ok {
					return // lifecycle messages
				}
				if m == "block" {
					close(block)
					<-release
				}
				seen <- m
			})
		},
		Mailbox: MailboxConfig{Capacity: 2, Overflow: MailboxFail},
	})
	other := spawn(t, s, Props{New: func() Actor { return &logActor{} }})

	var batch Batch
	if err := batch.Add(other, "o1"); err != nil {
		t.Fatal(err)
	}
	if err := batch.Add(bounded, "block"); err != nil {
		t.Fatal(err)
	}
	if got, want := received(t, other), []string{"o1"}; !slices.Equal(got, want) {
		t.Fatalf("other received %q; want %q", got, want)
	}
	recv(t, block, "the bounded actor's first message, without a Flush")
	for _, m := range []string{"b1", "b2"} { // "block" left its slot when it was taken
		if err := batch.Add(bounded, m); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Add(bounded, "b3"); !errors.Is(err, ErrMailboxFull) {
		t.Fatalf("Add to a full MailboxFail mailbox = %v; want ErrMailboxFull", err)
	}
	close(release)
	for _, want := range []string{"block", "b1", "b2"} {
		if got := recv(t, seen, want); got != want {
			t.Fatalf("bounded received %q; want %q", got, want)
		}
	}
}

// TestBatchConcurrentProducers runs batches from several goroutines into
// one actor, next to plain Sends: every message arrives once, and each
// producer's messages in the order it added them.
func TestBatchConcurrentProducers(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	r := spawn(t, s, Props{New: func() Actor { return &logActor{} }})
	const producers, perProducer, run = 4, 500, 7

	var wg sync.WaitGroup
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var batch Batch
			for i := range perProducer {
				m := fmt.Sprintf("%d/%d", p, i)
				var err error
				if p == 0 {
					err = r.Send(m) // one producer without a Batch
				} else {
					err = batch.Add(r, m)
				}
				if err != nil {
					t.Error(err)
					return
				}
				if i%run == run-1 {
					batch.Flush()
				}
			}
			batch.Flush()
		}()
	}
	wg.Wait()
	got := received(t, r)
	if len(got) != producers*perProducer {
		t.Fatalf("received %d messages; want %d", len(got), producers*perProducer)
	}
	next := make([]int, producers)
	for _, m := range got {
		var p, i int
		if _, err := fmt.Sscanf(m, "%d/%d", &p, &i); err != nil {
			t.Fatal(err)
		}
		if i != next[p] {
			t.Fatalf("producer %d: got message %d, want %d", p, i, next[p])
		}
		next[p]++
	}
}
