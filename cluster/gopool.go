package cluster

import (
	goruntime "runtime"
	"sync/atomic"
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
type goPool struct {
	handoff   chan func() // unbuffered: a send succeeds only into a parked goroutine
	parked    atomic.Int32
	maxParked int32
	stop      <-chan struct{} // closed when the owner closes: parked goroutines exit
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

func newGoPool(stop <-chan struct{}) *goPool {
	return &goPool{handoff: make(chan func()), maxParked: int32(parkedPerProc * goruntime.GOMAXPROCS(0)), stop: stop}
}

// run runs fn on a parked goroutine, or on a new one.
func (p *goPool) run(fn func()) {
	select {
	case p.handoff <- fn:
	default:
		go p.loop(fn)
	}
}

func (p *goPool) loop(fn func()) {
	for {
		fn()
		fn = nil // let what it holds be collected while parked
		if p.parked.Add(1) > p.maxParked {
			p.parked.Add(-1)
			return
		}
		select {
		case fn = <-p.handoff:
			p.parked.Add(-1)
		case <-p.stop:
			p.parked.Add(-1)
			return
		}
	}
}
