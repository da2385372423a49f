package parking

import (
	"sync"
	"testing"
	"time"
)

// waitFor polls cond until it holds, failing the test after a deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// TestLot checks that parked goroutines take handed values, that no more
// than the bound park, and that Close wakes them all to exit.
func TestLot(t *testing.T) {
	t.Parallel()
	var l Lot[int]
	l.Init(2)
	if l.Hand(1) {
		t.Fatal("Hand succeeded with no goroutine parked")
	}
	got := make(chan int, 16)
	var exited sync.WaitGroup
	loop := func(v int) {
		defer exited.Done()
		var inbox chan int
		for ok := true; ok; v, ok = l.Park(&inbox) {
			got <- v
		}
	}
	for i := range 3 {
		exited.Add(1)
		go loop(i)
	}
	for range 3 {
		<-got
	}
	// Two park; the third finds the lot full and exits.
	waitFor(t, "two goroutines to park", func() bool { return l.Parked() == 2 })
	if l.Parked() > l.Max() {
		t.Fatalf("%d parked, over the bound %d", l.Parked(), l.Max())
	}
	for v := 10; v < 12; v++ {
		if !l.Hand(v) {
			t.Fatalf("Hand(%d) found no parked goroutine", v)
		}
		if w := <-got; w != v {
			t.Fatalf("a parked goroutine got %d, want %d", w, v)
		}
	}
	waitFor(t, "the goroutines to park again", func() bool { return l.Parked() == 2 })
	l.Close()
	l.Close()
	exited.Wait()
	if l.Parked() != 0 || l.Hand(99) {
		t.Fatalf("after Close: %d parked, Hand took a value", l.Parked())
	}
	var inbox chan int
	if _, ok := l.Park(&inbox); ok {
		t.Fatal("Park after Close parked")
	}
}
