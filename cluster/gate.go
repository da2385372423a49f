package cluster

import (
	"context"
	"sync"
	"sync/atomic"
)

// gate counts the calls a node is serving so that a graceful shutdown can
// refuse new ones and wait for the running ones.
//
// Every call enters and leaves it, so it is one atomic word rather than a
// mutex: with a mutex, 64 local callers convoyed behind whichever of them
// was descheduled while holding it (a third of the mutex wait time of a
// local-call benchmark). The word holds the number of calls in and, once
// closed, gateClosed.
type gate struct {
	state    atomic.Int64
	idle     chan struct{} // closed when closed and no call is in
	idleOnce sync.Once
}

// gateClosed is the bit of gate.state set by close; the count is below it.
const gateClosed = 1 << 62

func newGate() *gate { return &gate{idle: make(chan struct{})} }

// enter counts a call in; it reports false once the gate is closed.
func (g *gate) enter() bool {
	if g.state.Add(1)&gateClosed != 0 {
		// Closed: undo the count, which may make the gate idle.
		g.leave()
		return false
	}
	return true
}

// leave counts a call out.
func (g *gate) leave() {
	if g.state.Add(-1) == gateClosed {
		g.setIdle()
	}
}

func (g *gate) setIdle() { g.idleOnce.Do(func() { close(g.idle) }) }

// close refuses new calls and waits for the running ones or ctx.
func (g *gate) close(ctx context.Context) error {
	if g.state.Or(gateClosed) == 0 {
		g.setIdle() // closed with no call in: nobody else will
	}
	select {
	case <-g.idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
