package runtime

import (
	"context"
	"testing"
	"time"

	"github.com/protograin/protograin/internal/goroutines"
)

// The runtime's own micro-benchmarks, to keep the hot paths honest. The
// side-by-side comparisons with other actor libraries live in bench/.

// BenchmarkRequest measures a request/response round trip from one caller:
// the path a local grain call takes.
func BenchmarkRequest(b *testing.B) {
	s := NewSystem(Config{})
	b.Cleanup(s.Close)
	r, err := s.Spawn(Props{New: func() Actor { return ActorFunc(func(c *Context) { c.Respond(c.Message()) }) }})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	msg := any("ping")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Request(ctx, msg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRequestParallel measures round trips from 8 concurrent callers
// per GOMAXPROCS to one actor, with a context that never ends and with one
// deadline shared by all callers (as callers serving one request would).
func BenchmarkRequestParallel(b *testing.B) {
	b.Run("ctx=background", func(b *testing.B) { benchRequestParallel(b, context.Background()) })
	b.Run("ctx=shared-deadline", func(b *testing.B) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
		defer cancel()
		benchRequestParallel(b, ctx)
	})
}

func benchRequestParallel(b *testing.B, ctx context.Context) {
	s := NewSystem(Config{})
	b.Cleanup(s.Close)
	r, err := s.Spawn(Props{New: func() Actor { return ActorFunc(func(c *Context) { c.Respond(c.Message()) }) }})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		msg := any("ping")
		for pb.Next() {
			if _, err := r.Request(ctx, msg); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkSend measures one-way throughput into one actor.
func BenchmarkSend(b *testing.B) {
	s := NewSystem(Config{})
	b.Cleanup(s.Close)
	done := make(chan struct{})
	n := b.N
	r, err := s.Spawn(Props{New: func() Actor {
		count := 0
		return ActorFunc(func(c *Context) {
			if _, ok := c.Message().(int); ok {
				if count++; count == n {
					close(done)
				}
			}
		})
	}})
	if err != nil {
		b.Fatal(err)
	}
	msg := any(1)
	b.ReportAllocs()
	b.ResetTimer()
	for range n {
		if err := r.Send(msg); err != nil {
			b.Fatal(err)
		}
	}
	<-done
}

// BenchmarkShutdown measures Shutdown of a System of 100,000 idle
// top-level actors, per actor. Spawning them is not timed; the peak number
// of goroutines during Shutdown, read by a sampler, is reported as well,
// since stopping every actor at once once started a goroutine for nearly
// each of them (see stopTop).
func BenchmarkShutdown(b *testing.B) {
	const actors = 100_000
	props := Props{New: func() Actor { return ActorFunc(func(*Context) {}) }}
	var peak int
	for b.Loop() {
		b.StopTimer()
		s := NewSystem(Config{})
		for range actors {
			if _, err := s.Spawn(props); err != nil {
				b.Fatal(err)
			}
		}
		stopSampling := goroutines.Peak()
		b.StartTimer()
		if err := s.Shutdown(context.Background()); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		peak = max(peak, stopSampling())
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*actors), "ns/actor")
	b.ReportMetric(float64(peak), "peak-goroutines")
}
