package cluster

import (
	"sync"
	"sync/atomic"
	"testing"
)

func TestGoPoolRunsParksAndStops(t *testing.T) {
	p := newGoPool()
	var ran atomic.Int64
	var wg sync.WaitGroup
	for round := range 3 {
		n := 4 * p.lot.Max() // more than can park, so some exit
		wg.Add(n)
		for range n {
			p.run(taskFunc(func() { ran.Add(1); wg.Done() }))
		}
		wg.Wait()
		if got := ran.Load(); got != int64((round+1)*n) {
			t.Fatalf("ran %d functions, want %d", got, (round+1)*n)
		}
		waitFor(t, waitTimeout, "a goroutine to park", func() bool { return p.lot.Parked() > 0 })
		if got := p.lot.Parked(); got > p.lot.Max() {
			t.Fatalf("%d parked, over the bound %d", got, p.lot.Max())
		}
	}
	p.close()
	if got := p.lot.Parked(); got != 0 {
		t.Fatalf("%d parked after close", got)
	}
	// Functions still run after the stop, each on a goroutine that exits.
	done := make(chan struct{})
	p.run(taskFunc(func() { close(done) }))
	receive(t, done, "a function run after the stop")
}

// taskFunc makes a func() a task.
type taskFunc func()

func (f taskFunc) run() { f() }
