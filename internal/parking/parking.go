// Package parking keeps idle goroutines for reuse.
//
// Starting a goroutine for every piece of work costs a newproc and, worse,
// the growth of a fresh, small stack to what the work needs, every time. A
// goroutine that has finished its work can park in a Lot instead of
// exiting, up to a bound, and the next piece of work is handed to it with
// its stack already grown. The runtime's workers (actors' turns) and the
// cluster's served requests both do this.
//
// Parked goroutines wait in a stack, each on a channel of its own. Waiting
// together on one shared channel made every hand-off and every park take
// that channel's lock, and a park holds it until the goroutine has left its
// processor: with 64 local grain callers on 2 cores the lock's spinning
// (runtime.lock2, procyield) was 11% of the CPU of bench/grains LocalCalls,
// and a select over a shared channel and a stop channel was 7.4% of a
// host's CPU in RemoteCalls. A Lot's mutex is held for a push or a pop only,
// and a goroutine's inbox is shared with nobody but the one Hand that
// popped it. The stack is last in, first out: the goroutine parked last has
// the warmest stack and caches.
package parking

import "sync"

// Lot is a bounded stack of parked goroutines, each waiting for a value of
// T to work on. Its zero value keeps no goroutine parked; Init sets the
// bound. A Lot must not be copied after first use.
type Lot[T any] struct {
	mu     sync.Mutex
	parked []chan T // guarded by mu; each parked goroutine's inbox, capacity 1
	closed bool     // guarded by mu; set by Close: goroutines stop parking
	max    int
}

// Init sets how many goroutines may be parked at once.
func (l *Lot[T]) Init(max int) {
	l.max = max
	l.parked = make([]chan T, 0, max)
}

// Max returns how many goroutines may be parked at once.
func (l *Lot[T]) Max() int { return l.max }

// Hand gives v to the goroutine parked last and reports true, or reports
// false when none is parked: the caller then starts a goroutine itself.
func (l *Lot[T]) Hand(v T) bool {
	l.mu.Lock()
	n := len(l.parked)
	if n == 0 {
		l.mu.Unlock()
		return false
	}
	inbox := l.parked[n-1]
	l.parked[n-1] = nil
	l.parked = l.parked[:n-1]
	l.mu.Unlock()
	inbox <- v // never blocks: popped, so nobody else sends to it
	return true
}

// Park parks the calling goroutine until Hand gives it a value, which it
// returns with true. It returns false at once when the Lot is full or
// closed, and false when Close wakes it: the goroutine should exit then.
// inbox is the goroutine's own channel, made on its first Park and kept by
// the caller between calls.
func (l *Lot[T]) Park(inbox *chan T) (T, bool) {
	l.mu.Lock()
	if l.closed || len(l.parked) >= l.max {
		l.mu.Unlock()
		var zero T
		return zero, false
	}
	if *inbox == nil {
		*inbox = make(chan T, 1)
	}
	l.parked = append(l.parked, *inbox)
	l.mu.Unlock()
	v, ok := <-*inbox
	return v, ok
}

// Parked returns how many goroutines are parked.
func (l *Lot[T]) Parked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.parked)
}

// Close wakes every parked goroutine to exit, and makes goroutines that
// finish their work later exit instead of parking. Calling it again does
// nothing more.
func (l *Lot[T]) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	for i, inbox := range l.parked {
		close(inbox)
		l.parked[i] = nil
	}
	l.parked = l.parked[:0]
}
