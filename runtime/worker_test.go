package runtime

import (
	goruntime "runtime"
	"testing"
)

// TestWorkersParkAndExit checks that workers park after their turns, no
// more than workers.lot.Max() of them, that parked workers run later turns, and
// that they all exit when the System closes.
func TestWorkersParkAndExit(t *testing.T) {
	before := goruntime.NumGoroutine()
	s := NewSystem(Config{Logger: testLogger(t)})
	var counter actorCounter
	props := Props{New: func() Actor { return ActorFunc(counter.onStarted) }}
	const n = 200
	refs := make([]*Ref, 0, n)
	for range n {
		r, err := s.Spawn(props)
		if err != nil {
			t.Fatal(err)
		}
		refs = append(refs, r)
	}
	waitFor(t, testTimeout, func() bool { return counter.load() == n }, "all actors started")
	waitFor(t, testTimeout, func() bool { return s.workers.lot.Parked() > 0 }, "a worker to park")
	// Every actor is idle now; more turns reuse the parked workers.
	for round := 1; round <= 3; round++ {
		for _, r := range refs {
			if err := r.Send(round); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, testTimeout, func() bool { return counter.handled.Load() == int64(round*n) }, "all messages handled")
		if p := s.workers.lot.Parked(); p > s.workers.lot.Max() {
			t.Fatalf("%d parked workers, over the bound of %d", p, s.workers.lot.Max())
		}
	}
	s.Close()
	waitFor(t, testTimeout, func() bool { return s.workers.lot.Parked() == 0 }, "parked workers to exit")
	waitFor(t, testTimeout, func() bool { return goruntime.NumGoroutine() <= before+2 }, "the System's goroutines to exit")

}
