package cluster

import (
	"context"
	"errors"
	goruntime "runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestGateClosesWhenCallsLeave(t *testing.T) {
	g := newGate()
	var tickets []gateTicket
	for range 2 {
		ticket, ok := g.enter()
		if !ok {
			t.Fatal("an open gate refused a call")
		}
		tickets = append(tickets, ticket)
	}
	closed := make(chan error, 1)
	go func() { closed <- g.close(context.Background()) }()
	waitFor(t, waitTimeout, "the gate to close", g.closed.Load)
	if _, ok := g.enter(); ok {
		t.Fatal("a closed gate let a call in")
	}
	g.leave(tickets[0])
	select {
	case err := <-closed:
		t.Fatalf("close returned %v with a call still in", err)
	default:
	}
	g.leave(tickets[1])
	if err := receive(t, closed, "close"); err != nil {
		t.Fatalf("close = %v", err)
	}
	// Closing again returns at once, and a refused call leaves it idle.
	if err := g.close(context.Background()); err != nil {
		t.Fatalf("second close = %v", err)
	}
	if _, ok := g.enter(); ok {
		t.Fatal("a call got in after the second close")
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

// TestGateStripes checks that the gate has a power of two of stripes, at
// least one per processor, that calls from different goroutines spread
// over them, and that each call counts in the stripe of its ticket.
func TestGateStripes(t *testing.T) {
	g := newGate()
	n := len(g.stripes)
	if n&(n-1) != 0 || n < goruntime.GOMAXPROCS(0) {
		t.Fatalf("%d stripes for GOMAXPROCS %d, want a power of two at least as large", n, goruntime.GOMAXPROCS(0))
	}
	const callers = 64
	tickets := make(chan gateTicket, callers)
	var wg sync.WaitGroup
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ticket, ok := g.enter()
			if !ok {
				t.Error("an open gate refused a call")
			}
			tickets <- ticket
		}()
	}
	wg.Wait()
	close(tickets)
	used := make(map[gateTicket]int)
	for ticket := range tickets {
		used[ticket]++
	}
	if n > 1 && len(used) < 2 {
		t.Fatalf("%d goroutines all entered by stripe(s) %v", callers, used)
	}
	for ticket, count := range used {
		if got := g.stripes[ticket].n.Load(); got != int64(count) {
			t.Fatalf("stripe %d counts %d calls, want %d", ticket, got, count)
		}
		for range count {
			g.leave(ticket)
		}
	}
	if !g.empty() {
		t.Fatal("the gate is not empty after every call left")
	}
}

// TestGateConcurrent races calls against close: close must return only
// once every call it let in has left, and refused calls must leave no
// count behind.
func TestGateConcurrent(t *testing.T) {
	for range 50 {
		g := newGate()
		var in, total atomic.Int64
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					ticket, ok := g.enter()
					if !ok {
						return
					}
					in.Add(1)
					total.Add(1)
					goruntime.Gosched() // let close run while calls are in
					in.Add(-1)
					g.leave(ticket)
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
		if !g.empty() {
			t.Fatal("a refused call left its count behind")
		}
	}
}
