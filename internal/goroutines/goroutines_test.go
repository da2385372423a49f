package goroutines

import (
	"sync"
	"testing"
)

// TestPeakSeesGoroutinesThatWait checks that Peak counts goroutines that
// are there when it is stopped.
func TestPeakSeesGoroutinesThatWait(t *testing.T) {
	stop := Peak()
	const n = 100
	var started, done sync.WaitGroup
	release := make(chan struct{})
	for range n {
		started.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			started.Done()
			<-release
		}()
	}
	started.Wait()
	got := stop() // reads once more while they wait
	close(release)
	done.Wait()
	if got < n {
		t.Fatalf("Peak = %d with %d goroutines waiting", got, n)
	}
}
