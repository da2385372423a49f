package cluster

import (
	goruntime "runtime"

	"github.com/protograin/protograin/internal/parking"
)

// goPool runs tasks on goroutines that are kept between them, for the
// requests a conn serves.
//
// The trick: a goroutine per request (go fn()) costs a newproc and the
// growth of a fresh, small stack to what serving a call needs (on the host
// of a cross-node benchmark, newproc and copystack were 6% and 8% of the
// CPU). A goroutine that finishes parks instead of exiting, up to a bound
// (see package parking for how they wait), and the next request is handed
// to it with its stack already grown; when none is parked, a new goroutine
// starts, so a slow grain never holds up other requests.
type goPool struct {
	lot parking.Lot[task]
}

// task is work for a goPool.
//
// An interface rather than a func(): a request's *servedCall goes in as it
// is, where its method value s.run was a 16-byte allocation per served
// call.
type task interface{ run() }

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
	p := &goPool{}
	p.lot.Init(parkedPerProc * goruntime.GOMAXPROCS(0))
	return p
}

// run runs t on a parked goroutine, or on a new one.
func (p *goPool) run(t task) {
	if !p.lot.Hand(t) {
		go p.loop(t)
	}
}

// loop runs tasks until enough goroutines are parked or the pool closes.
func (p *goPool) loop(t task) {
	var inbox chan task
	for ok := true; ok; t, ok = p.lot.Park(&inbox) {
		t.run()
		t = nil // let what it holds be collected while parked
	}
}

// close makes parked goroutines exit, and running ones exit after their
// task. Tasks run later still run, each on a goroutine of its own.
func (p *goPool) close() { p.lot.Close() }
