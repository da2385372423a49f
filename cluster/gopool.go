package cluster

import (
	goruntime "runtime"
	"sync"
)

// goPool runs functions on goroutines that are kept between them, for the
// requests a conn serves.
//
// The trick: a goroutine per request (go fn()) costs a newproc and the
// growth of a fresh, small stack to what serving a call needs (on the host
// of a cross-node benchmark, newproc and copystack were 6% and 8% of the
// CPU). A goroutine that finishes parks instead of exiting, up to a bound,
// and the next request is handed to it with its stack already grown; when
// none is parked, a new goroutine starts, so a slow grain never holds up
// other requests.
//
// Parked goroutines wait in a stack, each on a channel of its own, as the
// runtime's workers do. They used to wait together on one unbuffered
// channel and on the pool's stop channel, so every hand-off and every park
// locked both channels, shared by all parked goroutines: that select was
// 7.4% of the host's CPU in bench/grains RemoteCalls/callers=64. The
// stack's mutex is held for a push or a pop only. The stack is last in,
// first out: the goroutine parked last has the warmest stack and caches.
type goPool struct {
	mu        sync.Mutex
	parked    []chan func() // guarded by mu; each parked goroutine's inbox, capacity 1
	closed    bool          // guarded by mu; set by close: goroutines stop parking
	maxParked int
}

// parkedPerProc is how many idle goroutines a goPool keeps per GOMAXPROCS.
//
// It must cover the requests a busy peer has in flight, not just the
// cores: with 8 per core (16 here) and 64 callers on the peer, most of the
// goroutines that served a burst exited and the next burst started fresh
// ones, whose stack growth (newstack/copystack) was still 9.7% of the host's
// CPU in bench/grains RemoteCalls/callers=64; with 128 per core it is 0.6%.
// An idle parked goroutine costs little: the GC shrinks its stack to a few
// KiB.
const parkedPerProc = 128

func newGoPool() *goPool {
	return &goPool{maxParked: parkedPerProc * goruntime.GOMAXPROCS(0)}
}

// run runs fn on a parked goroutine, or on a new one.
func (p *goPool) run(fn func()) {
	p.mu.Lock()
	if n := len(p.parked); n > 0 {
		inbox := p.parked[n-1]
		p.parked[n-1] = nil
		p.parked = p.parked[:n-1]
		p.mu.Unlock()
		inbox <- fn // never blocks: popped, so nobody else sends to it
		return
	}
	p.mu.Unlock()
	go p.loop(fn)
}

// loop runs functions until enough goroutines are parked or the pool
// closes; close wakes parked goroutines with a nil function.
func (p *goPool) loop(fn func()) {
	var inbox chan func()
	for fn != nil {
		fn()
		fn = nil // let what it holds be collected while parked
		p.mu.Lock()
		if p.closed || len(p.parked) >= p.maxParked {
			p.mu.Unlock()
			return
		}
		if inbox == nil {
			inbox = make(chan func(), 1)
		}
		p.parked = append(p.parked, inbox)
		p.mu.Unlock()
		fn = <-inbox
	}
}

// parkedCount returns how many goroutines are parked.
func (p *goPool) parkedCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.parked)
}

// close makes parked goroutines exit, and running ones exit after their
// function. Functions run later still run, each on a goroutine of its own.
func (p *goPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for i, inbox := range p.parked {
		inbox <- nil
		p.parked[i] = nil
	}
	p.parked = p.parked[:0]
}
