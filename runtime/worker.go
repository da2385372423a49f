package runtime

import (
	goruntime "runtime"
	"sync"
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
//
// Parked workers wait in a stack, each on a channel of its own. They used
// to wait together on one unbuffered channel, but every hand-off and every
// park then took that channel's lock, and a park holds it until the worker
// has left its processor: with 64 local grain callers on 2 cores the lock's
// spinning (runtime.lock2, procyield) was 11% of the CPU of bench/grains
// LocalCalls. The stack's mutex is held for a push or a pop only, and a
// worker's own channel is shared with nobody but the one starter that
// popped it. The stack is last in, first out: the worker parked last has
// the warmest stack and caches.
type workers struct {
	mu        sync.Mutex
	parked    []worker // guarded by mu
	closed    bool     // guarded by mu; set when the System closes: workers stop parking
	maxParked int
}

// worker is a parked worker's inbox: the next actor to run, or nil to exit.
// Its capacity of one lets start hand over without waiting for the worker.
type worker chan *Ref

func (w *workers) init() {
	w.maxParked = parkedPerProc * goruntime.GOMAXPROCS(0)
	w.parked = make([]worker, 0, w.maxParked)
}

// start runs r's turn on a parked worker, or on a new one.
func (w *workers) start(r *Ref) {
	w.mu.Lock()
	if n := len(w.parked); n > 0 {
		wk := w.parked[n-1]
		w.parked[n-1] = nil
		w.parked = w.parked[:n-1]
		w.mu.Unlock()
		wk <- r // never blocks: popped, so nobody else sends to it
		return
	}
	w.mu.Unlock()
	go w.loop(r)
}

// loop runs turns until there are enough parked workers or the System
// closes; close wakes parked workers with a nil actor.
func (w *workers) loop(r *Ref) {
	var wk worker
	for r != nil {
		r.run()
		w.mu.Lock()
		if w.closed || len(w.parked) >= w.maxParked {
			w.mu.Unlock()
			return
		}
		if wk == nil {
			wk = make(worker, 1)
		}
		w.parked = append(w.parked, wk)
		w.mu.Unlock()
		r = <-wk
	}
}

// parkedCount returns how many workers are parked.
func (w *workers) parkedCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.parked)
}

// close makes parked workers exit, and running ones exit after their turn.
// Actors scheduled later still run, each on a goroutine of its own.
func (w *workers) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	for i, wk := range w.parked {
		wk <- nil
		w.parked[i] = nil
	}
	w.parked = w.parked[:0]
}
