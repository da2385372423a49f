package state_test

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"testing"

	"github.com/protograin/protograin/cluster/state"
	"github.com/protograin/protograin/cluster/storage/memstore"
)

// TestAgainstModel drives a Buffer with a seeded random mix of Set, Remove,
// Flush, Discard and reload, and checks after each step that it shows what a
// plain map model says, and that the store holds the last flushed state.
func TestAgainstModel(t *testing.T) {
	for seed := range uint64(20) {
		t.Run(fmt.Sprint("seed-", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 42))
			s := memstore.New()
			t.Cleanup(func() { s.Close() })
			b := load(t, s, state.Config{})
			committed := map[string]string{} // what the store should hold
			view := map[string]string{}      // what the buffer should show
			for step := range 200 {
				key := fmt.Sprint("k", rng.IntN(8))
				switch op := rng.IntN(10); {
				case op < 5:
					value := fmt.Sprint(step)
					mustSet(t, b, key, value)
					view[key] = value
				case op < 8:
					if err := b.Remove(key); err != nil {
						t.Fatal(err)
					}
					delete(view, key)
				case op < 9:
					mustFlush(t, b)
					committed = maps.Clone(view)
				default:
					if rng.IntN(2) == 0 {
						b.Discard()
					} else { // a new activation loses what was buffered
						b = load(t, s, state.Config{})
					}
					view = maps.Clone(committed)
				}
				wantEntries(t, b, view)
				// Dirty may be true with nothing changed (a Set to the
				// stored value), never false with something changed.
				if !b.Dirty() && !maps.Equal(view, committed) {
					t.Fatalf("step %d: clean buffer, but it shows %v over stored %v", step, view, committed)
				}
			}
			wantStored(t, s, committed)
		})
	}
}

// onceModel is what a client's exactly-once record should answer: every
// call recorded since the client was last evicted, with its reply, and the
// tick of its last Record.
type onceModel struct {
	calls map[uint64]string
	tick  int
}

// overtaken counts the recorded calls above seq.
func (m onceModel) overtaken(seq uint64) int {
	n := 0
	for s := range m.calls {
		if s > seq {
			n++
		}
	}
	return n
}

func cloneOnce(v map[string]onceModel) map[string]onceModel {
	out := make(map[string]onceModel, len(v))
	for id, m := range v {
		out[id] = onceModel{calls: maps.Clone(m.calls), tick: m.tick}
	}
	return out
}

// TestExactlyOnceAgainstModel drives Seen and Record with calls of three
// clients in random order, with Flush, Discard and reload between them,
// and checks every answer against the rule stated plainly: a recorded call
// overtaken by fewer than W recorded calls is a retry, any call overtaken by
// W or more is stale, the rest are new; beyond MaxClients a flush forgets
// the clients recorded least recently.
func TestExactlyOnceAgainstModel(t *testing.T) {
	const window, maxClients, seqs = 4, 2, 16
	cfg := state.Config{WindowPerClient: window, MaxClients: maxClients}
	clients := []string{"a", "b", "c"}
	for seed := range uint64(20) {
		t.Run(fmt.Sprint("seed-", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			s := memstore.New()
			t.Cleanup(func() { s.Close() })
			b := load(t, s, cfg)
			committed := map[string]onceModel{}
			view := map[string]onceModel{}
			tick := 0
			for step := range 300 {
				switch op := rng.IntN(10); {
				case op < 7:
					id, seq := clients[rng.IntN(len(clients))], uint64(rng.IntN(seqs))
					m, known := view[id]
					_, recorded := m.calls[seq]
					err := b.Record(id, seq, []byte(fmt.Sprint(step)))
					if recorded || (known && m.overtaken(seq) >= window) {
						if !errors.Is(err, state.ErrStaleSequence) {
							t.Fatalf("step %d: Record(%s, %d) = %v, want ErrStaleSequence", step, id, seq, err)
						}
						break
					}
					if err != nil {
						t.Fatalf("step %d: Record(%s, %d): %v", step, id, seq, err)
					}
					if !known {
						m = onceModel{calls: map[uint64]string{}}
					}
					tick++
					m.calls[seq], m.tick = fmt.Sprint(step), tick
					view[id] = m
				case op < 8:
					mustFlush(t, b)
					evictOldest(view, maxClients)
					committed = cloneOnce(view)
				default:
					if rng.IntN(2) == 0 {
						b.Discard()
					} else {
						b = load(t, s, cfg)
					}
					view = cloneOnce(committed)
				}
				checkOnce(t, step, b, clients, view, window, seqs)
			}
			checkOnce(t, -1, load(t, s, cfg), clients, committed, window, seqs)
		})
	}
}

// evictOldest drops the clients with the oldest ticks beyond max.
func evictOldest(view map[string]onceModel, max int) {
	for len(view) > max {
		oldest := ""
		for id, m := range view {
			if oldest == "" || m.tick < view[oldest].tick {
				oldest = id
			}
		}
		delete(view, oldest)
	}
}

// checkOnce asks Seen about every call of every client and compares.
func checkOnce(t *testing.T, step int, b *state.Buffer, clients []string, view map[string]onceModel, window int, seqs uint64) {
	t.Helper()
	for _, id := range clients {
		m, known := view[id]
		for seq := range seqs {
			reply, ok, err := b.Seen(id, seq)
			want, recorded := m.calls[seq]
			switch {
			case known && m.overtaken(seq) >= window:
				if !errors.Is(err, state.ErrStaleSequence) {
					t.Fatalf("step %d: Seen(%s, %d) = %q, %v, %v; want ErrStaleSequence", step, id, seq, reply, ok, err)
				}
			case recorded:
				if err != nil || !ok || string(reply) != want {
					t.Fatalf("step %d: Seen(%s, %d) = %q, %v, %v; want %q", step, id, seq, reply, ok, err, want)
				}
			default:
				if err != nil || ok {
					t.Fatalf("step %d: Seen(%s, %d) = %q, %v, %v; want a new call", step, id, seq, reply, ok, err)
				}
			}
		}
	}
}
