package runtime

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
)

func TestDeadLettersSubscribeAndUnsubscribe(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{LogDeadLetters: true})
	r := spawnFunc(t, s, func(c *Context) {})
	waitClosed(t, r.Stop(), "stop")

	a, b := make(chan DeadLetter, 4), make(chan DeadLetter, 4)
	unsubA := s.SubscribeDeadLetters(a)
	s.SubscribeDeadLetters(b)
	if err := r.Send("one"); !errors.Is(err, ErrStopped) {
		t.Fatalf("Send = %v, want ErrStopped", err)
	}
	for _, ch := range []chan DeadLetter{a, b} {
		dl := recv(t, ch, "dead letter")
		if dl.To != r || dl.Message != "one" || !errors.Is(dl.Reason, ErrStopped) {
			t.Fatalf("dead letter = %+v", dl)
		}
	}
	unsubA()
	unsubA() // idempotent
	if err := r.Send("two"); !errors.Is(err, ErrStopped) {
		t.Fatal(err)
	}
	if dl := recv(t, b, "dead letter"); dl.Message != "two" {
		t.Fatalf("dead letter = %+v", dl)
	}
	select {
	case dl := <-a:
		t.Fatalf("unsubscribed channel got %+v", dl)
	default:
	}
}

// TestDeadLettersNeverBlock fills a subscriber's channel: senders go on
// and the drops are counted.
func TestDeadLettersNeverBlock(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	r := spawnFunc(t, s, func(c *Context) {})
	waitClosed(t, r.Stop(), "stop")
	full := make(chan DeadLetter) // unbuffered and never read
	s.SubscribeDeadLetters(full)
	for range 100 {
		if err := r.Send("x"); !errors.Is(err, ErrStopped) {
			t.Fatal(err)
		}
	}
	if n := s.DroppedDeadLetters(); n != 100 {
		t.Fatalf("DroppedDeadLetters = %d, want 100", n)
	}
}

// TestRespondToSendIsNoop checks Respond on a message that was sent, not
// requested.
func TestRespondToSendIsNoop(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	r := spawnFunc(t, s, func(c *Context) {
		switch c.Message() {
		case "send":
			if c.IsRequest() {
				panic("a Send looks like a Request")
			}
			c.Respond("ignored")
			c.RespondError(errors.New("ignored"))
		case "req":
			c.Respond("ok")
		}
	})
	if err := r.Send("send"); err != nil {
		t.Fatal(err)
	}
	if v, err := r.Request(ctxTimeout(t), "req"); err != nil || v != "ok" {
		t.Fatal(v, err)
	}
}

// TestNoLetterAfterUnsubscribe: once unsubscribe returns, nothing is sent
// to the channel, so its owner may close it. Publishers that had loaded
// the subscribers before sent to it afterwards, and a closed channel made
// them panic: on an actor's goroutine, as it turned its queued messages
// into dead letters, that ended the process.
func TestNoLetterAfterUnsubscribe(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	r := spawnFunc(t, s, func(c *Context) {})
	waitClosed(t, r.Stop(), "stop")
	var done atomic.Bool
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if v := recover(); v != nil {
					t.Errorf("publishing a dead letter panicked: %v", v)
				}
			}()
			for !done.Load() {
				_ = r.Send("x") // ErrStopped and a dead letter
			}
		}()
	}
	for range 5000 {
		ch := make(chan DeadLetter, 1)
		unsubscribe := s.SubscribeDeadLetters(ch)
		unsubscribe()
		close(ch)
	}
	done.Store(true)
	wg.Wait()
}
