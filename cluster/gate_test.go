package cluster

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestGateClosesWhenCallsLeave(t *testing.T) {
	g := newGate()
	for range 2 {
		if !g.enter() {
			t.Fatal("an open gate refused a call")
		}
	}
	closed := make(chan error, 1)
	go func() { closed <- g.close(context.Background()) }()
	waitFor(t, waitTimeout, "the gate to close", func() bool { return g.state.Load()&gateClosed != 0 })
	if g.enter() {
		t.Fatal("a closed gate let a call in")
	}
	g.leave()
	select {
	case err := <-closed:
		t.Fatalf("close returned %v with a call still in", err)
	default:
	}
	g.leave()
	if err := receive(t, closed, "close"); err != nil {
		t.Fatalf("close = %v", err)
	}
	// Closing again returns at once, and a refused call leaves it idle.
	if err := g.close(context.Background()); err != nil || g.enter() {
		t.Fatalf("second close = %v, or a call got in", err)
	}
}

func TestGateCloseEmptyAndDeadline(t *testing.T) {
	if err := newGate().close(context.Background()); err != nil {
		t.Fatalf("close of an idle gate = %v", err)
	}
	g := newGate()
	g.enter()
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	if err := g.close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("close with a call in = %v, want DeadlineExceeded", err)
	}
}

// TestGateConcurrent races calls against close: close must return only
// once every call it let in has left.
func TestGateConcurrent(t *testing.T) {
	for range 20 {
		g := newGate()
		var in, total atomic.Int64
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for g.enter() {
					in.Add(1)
					total.Add(1)
					in.Add(-1)
					g.leave()
				}
			}()
		}
		waitFor(t, waitTimeout, "calls before the close", func() bool { return total.Load() >= 100 })
		if err := g.close(context.Background()); err != nil {
			t.Fatal(err)
		}
		if n := in.Load(); n != 0 {
			t.Fatalf("close returned with %d calls in", n)
		}
		wg.Wait()
	}
}
