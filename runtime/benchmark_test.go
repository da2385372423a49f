package runtime

import (
	"context"
	"testing"
	"time"
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
