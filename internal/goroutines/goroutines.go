// Package goroutines samples how many goroutines a process runs, for the
// benchmarks of the runtime and the cluster that report a peak.
package goroutines

import (
	goruntime "runtime"
	"time"
)

// Peak reads the number of goroutines every 100 µs until the returned
// function is called, which reads it once more and returns the highest
// number read. Goroutines that come and go between two readings are not
// seen; the benchmarks that use it look for thousands that live for
// milliseconds.
func Peak() (stop func() int) {
	done, exited := make(chan struct{}), make(chan struct{})
	peak := 0
	go func() {
		defer close(exited)
		tick := time.NewTicker(100 * time.Microsecond)
		defer tick.Stop()
		for {
			peak = max(peak, goruntime.NumGoroutine())
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return func() int {
		close(done)
		<-exited
		return max(peak, goruntime.NumGoroutine())
	}
}
