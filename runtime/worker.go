package runtime

import (
	goruntime "runtime"

	"github.com/protograin/protograin/internal/parking"
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
// stack has already grown (see package parking for how they wait). When
// none is parked a new one starts, as before. Parked workers belong to the
// System, not to actors: an idle actor still holds no goroutine.
type workers struct {
	lot parking.Lot[*Ref]
}

func (w *workers) init() { w.lot.Init(parkedPerProc * goruntime.GOMAXPROCS(0)) }

// start runs r's turn on a parked worker, or on a new one.
func (w *workers) start(r *Ref) {
	if !w.lot.Hand(r) {
		go w.loop(r)
	}
}

// loop runs turns until there are enough parked workers or the System
// closes.
func (w *workers) loop(r *Ref) {
	var inbox chan *Ref
	for ok := true; ok; r, ok = w.lot.Park(&inbox) {
		r.run()
	}
}

// close makes parked workers exit, and running ones exit after their turn.
// Actors scheduled later still run, each on a goroutine of its own.
func (w *workers) close() { w.lot.Close() }
