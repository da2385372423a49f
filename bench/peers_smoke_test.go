package bench

import (
	"context"
	"sync"
	"testing"
	"time"
)

// scenarioTimeout bounds each scenario of TestPeers. The scenarios take
// milliseconds; the bound only turns a lost message into a failure instead
// of a hung test.
const scenarioTimeout = 30 * time.Second

// within runs f and fails t if f does not return within timeout.
func within(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- f() }()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(timeout):
		t.Fatalf("scenario did not finish within %v", timeout)
	}
}

// TestPeers runs every scenario on every peer at a tiny size, so that an
// adapter that loses a message or answers wrongly fails here, under -race,
// rather than hanging or flattering a benchmark.
func TestPeers(t *testing.T) {
	for _, p := range peers() {
		t.Run(p.name, func(t *testing.T) {
			t.Run("pingpong", func(t *testing.T) {
				sys := p.newSystem(t)
				t.Cleanup(sys.close)
				ps, err := sys.newPairs(3, 7)
				if err != nil {
					t.Fatal(err)
				}
				// 20 rounds in batches of 7 end with a partial batch; a
				// second run reuses the pairs as the benchmark's reruns do.
				for _, rounds := range []int{20, 1} {
					within(t, scenarioTimeout, func() error { ps.run(rounds); return nil })
				}
				within(t, scenarioTimeout, func() error { ps.stop(); return nil })
			})
			t.Run("request", func(t *testing.T) {
				sys := p.newSystem(t)
				t.Cleanup(sys.close)
				r, err := sys.newEcho()
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), scenarioTimeout)
				t.Cleanup(cancel)
				within(t, scenarioTimeout, func() error { return concurrentRequests(ctx, t, r, 4, 50) })
				within(t, scenarioTimeout, func() error { r.stop(); return nil })
			})
			t.Run("spawnstop", func(t *testing.T) {
				sys := p.newSystem(t)
				t.Cleanup(sys.close)
				spawnStop := sys.spawner()
				within(t, scenarioTimeout, func() error {
					for range 20 {
						if err := spawnStop(); err != nil {
							return err
						}
					}
					return nil
				})
			})
			t.Run("idle", func(t *testing.T) {
				sys := p.newSystem(t)
				t.Cleanup(sys.close)
				set := sys.newIdle(100)
				within(t, scenarioTimeout, func() error { return spawnIdle(set, 100) })
				set.stop()
			})
		})
	}
}

// concurrentRequests sends n requests from each of callers goroutines and
// checks that every response is the request itself.
func concurrentRequests(ctx context.Context, t *testing.T, r requester, callers, n int) error {
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for range n {
				msg := &ping{}
				resp, err := r.request(ctx, msg)
				if err != nil {
					t.Error(err)
					return
				}
				if resp != any(msg) {
					t.Errorf("echo answered %#v, want the request back", resp)
					return
				}
			}
		})
	}
	wg.Wait()
	return nil
}

// TestPingerState checks the batching shared by all pingers: it sends
// exactly the rounds asked for, never more than a batch in flight, and
// reports the end of the run once, after the last pong.
func TestPingerState(t *testing.T) {
	tests := []struct {
		name          string
		batch, rounds int
	}{
		{"one", 100, 1},
		{"partial batch", 7, 20},
		{"whole batches", 5, 20},
		{"batch of one", 1, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doneCalls := 0
			s := pingerState{batch: tt.batch}
			inflight := s.start(&serve{rounds: tt.rounds, done: func() { doneCalls++ }})
			sent := inflight
			for inflight > 0 {
				if inflight > tt.batch {
					t.Fatalf("%d pings in flight, batch is %d", inflight, tt.batch)
				}
				inflight--
				n := s.pong()
				if n > 0 && inflight != 0 {
					t.Fatalf("sent %d pings while %d pongs were outstanding", n, inflight)
				}
				inflight += n
				sent += n
			}
			if sent != tt.rounds {
				t.Errorf("sent %d pings, want %d", sent, tt.rounds)
			}
			if doneCalls != 1 {
				t.Errorf("done called %d times, want 1", doneCalls)
			}
		})
	}
}
