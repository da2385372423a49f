package runtime

import (
	goruntime "runtime"
	"sync"
	"sync/atomic"
)

// parkedPerProc is how many idle workers a System keeps per GOMAXPROCS.
const parkedPerProc = 8

// workers runs actors' turns on goroutines that outlive a turn.
//
// The trick: starting a goroutine per turn (go r.run()) costs a newproc
// and, worse, the stack growth of every turn: a fresh goroutine starts with
// a small stack and copies it each time a handler's call depth outgrows it
// (runtime.copystack was about 30% of the CPU of a local grain call). A
// worker that finishes a turn parks instead of exiting, up to a bound, and
// the next actor that is scheduled is handed to a parked worker, whose
// stack has already grown. When none is parked a new one starts, as before.
// Parked workers belong to the System, not to actors: an idle actor still
// holds no goroutine.
type workers struct {
	handoff   chan *Ref // unbuffered: a send succeeds only into a parked worker
	parked    atomic.Int32
	maxParked int32
	closed    atomic.Bool // set when the System closes: workers stop parking
	closeOnce sync.Once
}

func (w *workers) init() {
	w.handoff = make(chan *Ref)
	w.maxParked = int32(parkedPerProc * goruntime.GOMAXPROCS(0))
}

// start runs r's turn on a parked worker, or on a new one.
func (w *workers) start(r *Ref) {
	select {
	case w.handoff <- r:
	default:
		go w.loop(r)
	}
}

// loop runs turns until there are enough parked workers or the System
// closes. A parked worker waits on the handoff channel alone (a select
// with a stop channel as well locked both channels on every handoff, and
// the stop channel was shared by all workers); close wakes parked workers
// with a nil actor instead.
func (w *workers) loop(r *Ref) {
	for r != nil {
		r.run()
		// Counted as parked before the closed check, so that close, which
		// waits for the count to drop, cannot miss a worker about to park.
		if w.parked.Add(1) > w.maxParked || w.closed.Load() {
			w.parked.Add(-1)
			return
		}
		r = <-w.handoff
		w.parked.Add(-1)
	}
}

// close makes parked workers exit, and running ones exit after their turn.
// Actors scheduled later still run, each on a goroutine of its own.
func (w *workers) close() {
	w.closeOnce.Do(func() {
		w.closed.Store(true)
		for w.parked.Load() > 0 {
			select {
			case w.handoff <- nil: // wakes one parked worker, which exits
			default: // one is between counting itself and parking
				goruntime.Gosched()
			}
		}
	})
}
