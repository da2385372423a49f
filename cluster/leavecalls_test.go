package cluster

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

// TestCallsSurviveALeave calls grains of two hosts without pause, from
// several goroutines of a node that hosts nothing, while one host leaves
// gracefully (Shutdown). Nobody fails, so no call may fail: those the
// leaver refuses, and those on a stream that said bye, are placed again.
func TestCallsSurviveALeave(t *testing.T) {
	t.Parallel()
	const grains, callers, afterLeave = 16, 4, 200
	nodes, _ := echoCluster(t, 3, -1, nil)
	b, c := nodes[1], nodes[2] // nodes[0] hosts the grains that stay
	ids := make([]string, grains)
	for i := range ids {
		ids[i] = fmt.Sprintf("leavecall-%d", i)
	}
	var left atomic.Bool
	var calls atomic.Int64
	errs := make(chan error, callers)
	var wg sync.WaitGroup
	for w := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			after := 0
			for i := w; after < afterLeave; i++ {
				if left.Load() {
					after++
				}
				ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
				_, err := c.Invoke(ctx, addCall(ids[i%grains], 1))
				cancel()
				if err != nil {
					errs <- fmt.Errorf("call %d to %s: %w", i, ids[i%grains], err)
					return
				}
				calls.Add(1)
			}
		}()
	}
	waitFor(t, waitTimeout, "calls on their way", func() bool { return calls.Load() > 200 })
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := b.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown of the leaving node: %v", err)
	}
	left.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d calls", calls.Load())
}
