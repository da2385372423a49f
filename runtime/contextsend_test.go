package runtime

import (
	"errors"
	"sync"
	"testing"
)

// TestContextSendRelays has relays forward, with Context.Send, what many
// goroutines send them to one collector. The relays reuse the nodes their
// turns free, so every message must still arrive exactly once and in each
// producer's order, and each relay must keep no node once idle.
func TestContextSendRelays(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	const relays, producers, each = 3, 4, 2000
	type item struct{ producer, seq int }
	next := make([]int, producers)
	errs := make(chan error, 1)
	done := make(chan struct{})
	total := 0
	collector := spawnFunc(t, s, func(c *Context) {
		it, ok := c.Message().(item)
		if !ok {
			return
		}
		if it.seq < next[it.producer] {
			select {
			case errs <- errors.New("a message arrived twice or out of order"):
			default:
			}
		}
		next[it.producer] = it.seq + 1
		if total++; total == producers*each {
			close(done)
		}
	})
	refs := make([]*Ref, relays)
	for i := range refs {
		refs[i] = spawnFunc(t, s, func(c *Context) {
			if it, ok := c.Message().(item); ok {
				if err := c.Send(collector, it); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		})
	}
	var wg sync.WaitGroup
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			relay := refs[p%relays] // one relay per producer keeps its order
			for i := range each {
				if err := relay.Send(item{p, i}); err != nil {
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
		t.Fatalf("timed out with %d messages collected", total)
	}
	for _, r := range refs {
		waitFor(t, testTimeout, func() bool { return r.status.Load() == idle }, "relay idle")
		if r.ctx.spare.head != nil {
			t.Fatal("an idle relay keeps spare queue nodes")
		}
	}
}

func TestContextSendErrors(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	stopped := spawnFunc(t, s, func(*Context) {})
	waitClosed(t, stopped.Stop(), "stop")
	// A bounded mailbox of 1, full: its actor is blocked in a handler and
	// one more message waits.
	block, release := make(chan struct{}), make(chan struct{})
	full := spawn(t, s, Props{
		New: func() Actor {
			return ActorFunc(func(c *Context) {
				if c.Message() == "block" {
					close(block)
					<-release
				}
			})
		},
		Mailbox: MailboxConfig{Capacity: 1, Overflow: MailboxFail},
	})
	if err := full.Send("block"); err != nil {
		t.Fatal(err)
	}
	<-block
	defer close(release)
	if err := full.Send("waits"); err != nil {
		t.Fatal(err)
	}

	results := make(chan []error, 1)
	sender := spawnFunc(t, s, func(c *Context) {
		if c.Message() == "go" {
			results <- []error{c.Send(nil, 1), c.Send(stopped, 1), c.Send(full, nil), c.Send(full, 1)}
		}
	})
	if err := sender.Send("go"); err != nil {
		t.Fatal(err)
	}
	errs := recv(t, results, "errors")
	for i, want := range []error{ErrStopped, ErrStopped, ErrNilMessage, ErrMailboxFull} {
		if !errors.Is(errs[i], want) {
			t.Fatalf("error %d = %v; want %v", i, errs[i], want)
		}
	}
}
