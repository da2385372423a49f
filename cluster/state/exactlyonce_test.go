package state_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/protograin/protograin/cluster/state"
	"github.com/protograin/protograin/cluster/storage"
	"github.com/protograin/protograin/cluster/storage/memstore"
)

// wantSeen checks what Seen says about call seq of client.
func wantSeen(t *testing.T, b *state.Buffer, client string, seq uint64, wantReply string, wantOK bool) {
	t.Helper()
	reply, ok, err := b.Seen(client, seq)
	if err != nil || ok != wantOK || string(reply) != wantReply {
		t.Fatalf("Seen(%q, %d) = %q, %v, %v; want %q, %v, nil", client, seq, reply, ok, err, wantReply, wantOK)
	}
}

func mustRecord(t *testing.T, b *state.Buffer, client string, seq uint64, reply string) {
	t.Helper()
	if err := b.Record(client, seq, []byte(reply)); err != nil {
		t.Fatalf("Record(%q, %d): %v", client, seq, err)
	}
}

// wantStale checks that Seen and Record refuse call seq of client as stale.
func wantStale(t *testing.T, b *state.Buffer, client string, seq uint64) {
	t.Helper()
	if _, _, err := b.Seen(client, seq); !errors.Is(err, state.ErrStaleSequence) {
		t.Fatalf("Seen(%q, %d): err = %v, want ErrStaleSequence", client, seq, err)
	} else if !strings.Contains(err.Error(), fmt.Sprintf("%q", client)) {
		t.Errorf("error %q does not name the client", err)
	}
	if err := b.Record(client, seq, []byte("late")); !errors.Is(err, state.ErrStaleSequence) {
		t.Fatalf("Record(%q, %d): err = %v, want ErrStaleSequence", client, seq, err)
	}
}

// TestSeenRules checks the rules for a client that calls in order: a new
// call, a retry of the last one, and retries of earlier ones, which now
// find their replies too.
func TestSeenRules(t *testing.T) {
	eachStore(t, func(t *testing.T, s storage.Store) {
		b := load(t, s, state.Config{})
		wantSeen(t, b, "c", 0, "", false) // unknown client: a new call
		mustRecord(t, b, "c", 5, "five")
		wantSeen(t, b, "c", 5, "five", true) // buffered records count
		wantSeen(t, b, "c", 6, "", false)    // the next call is new
		wantSeen(t, b, "c", 4, "", false)    // so is an earlier one not recorded
		mustFlush(t, b)

		// A new activation sees the committed record.
		b = load(t, s, state.Config{})
		wantSeen(t, b, "c", 5, "five", true)
		wantSeen(t, b, "other", 5, "", false)
		mustRecord(t, b, "c", 6, "six")
		wantSeen(t, b, "c", 6, "six", true)
		wantSeen(t, b, "c", 5, "five", true) // an older retry keeps its reply
	})
}

func TestRecordRefusesARecordedCall(t *testing.T) {
	b := load(t, memstore.New(), state.Config{})
	mustRecord(t, b, "c", 5, "five")
	mustRecord(t, b, "c", 4, "four")
	for _, seq := range []uint64{5, 4} {
		if err := b.Record("c", seq, []byte("again")); !errors.Is(err, state.ErrStaleSequence) {
			t.Errorf("Record(c, %d) twice: err = %v, want ErrStaleSequence", seq, err)
		}
	}
	wantSeen(t, b, "c", 5, "five", true)
	wantSeen(t, b, "c", 4, "four", true)
	mustFlush(t, b)
	if err := b.Record("c", 5, []byte("again")); !errors.Is(err, state.ErrStaleSequence) {
		t.Errorf("Record(c, 5) after its flush: err = %v, want ErrStaleSequence", err)
	}
}

// TestOutOfOrderCommits is the case the window exists for: calls 1 to 4 of
// one client run concurrently and commit in the order 4, 2, 3, 1, each in
// its own flush. Every one is accepted, and a retry of each gets its own
// reply, in this activation and the next.
func TestOutOfOrderCommits(t *testing.T) {
	eachStore(t, func(t *testing.T, s storage.Store) {
		b := load(t, s, state.Config{WindowPerClient: 4})
		for _, seq := range []uint64{4, 2, 3, 1} {
			wantSeen(t, b, "node", seq, "", false)
			mustSet(t, b, fmt.Sprint("k", seq), "v")
			mustRecord(t, b, "node", seq, fmt.Sprint("r", seq))
			mustFlush(t, b)
		}
		for _, b := range []*state.Buffer{b, load(t, s, state.Config{WindowPerClient: 4})} {
			for seq := uint64(1); seq <= 4; seq++ {
				wantSeen(t, b, "node", seq, fmt.Sprint("r", seq), true)
			}
			wantSeen(t, b, "node", 5, "", false)
			wantStale(t, b, "node", 0) // overtaken by four later calls

		}
	})
}

// TestWindowEviction checks the window rule: a client keeps the replies of
// its W highest recorded calls; a call below them is stale, in this
// activation and the next, and a gap inside the window is still new.
func TestWindowEviction(t *testing.T) {
	eachStore(t, func(t *testing.T, s storage.Store) {
		cfg := state.Config{WindowPerClient: 3}
		b := load(t, s, cfg)
		for _, seq := range []uint64{1, 2, 4, 6} { // 1 is dropped
			mustRecord(t, b, "c", seq, fmt.Sprint("r", seq))
		}
		wantStale(t, b, "c", 1) // its reply is gone
		wantStale(t, b, "c", 0)
		wantSeen(t, b, "c", 3, "", false) // a gap, overtaken by two only
		mustFlush(t, b)

		b = load(t, s, cfg)
		wantStale(t, b, "c", 1)
		for _, seq := range []uint64{2, 4, 6} {
			wantSeen(t, b, "c", seq, fmt.Sprint("r", seq), true)
		}
		mustRecord(t, b, "c", 3, "r3") // late but inside: 2 goes
		wantStale(t, b, "c", 2)
		wantSeen(t, b, "c", 3, "r3", true)
		wantSeen(t, b, "c", 5, "", false)
		mustRecord(t, b, "c", 100, "r100") // a jump: 3 goes
		wantStale(t, b, "c", 3)
		wantSeen(t, b, "c", 4, "r4", true)
		wantSeen(t, b, "c", 5, "", false) // overtaken by 6 and 100 only
		wantSeen(t, b, "c", 99, "", false)
		mustFlush(t, b)
		wantStoredClients(t, s, 1)
	})
}

// TestWindowSizeChanges checks activations whose window differs from the
// one that recorded: a smaller one still answers the calls stored, and trims
// them at its first Record; a larger one keeps calls that a smaller window
// dropped stale.
func TestWindowSizeChanges(t *testing.T) {
	s := memstore.New()
	b := load(t, s, state.Config{WindowPerClient: 4})
	for seq := uint64(1); seq <= 6; seq++ { // keeps 3..6; 1 and 2 are stale
		mustRecord(t, b, "c", seq, fmt.Sprint("r", seq))
	}
	mustFlush(t, b)

	small := load(t, s, state.Config{WindowPerClient: 2})
	wantSeen(t, small, "c", 3, "r3", true) // still stored, so still answered
	wantStale(t, small, "c", 2)
	mustRecord(t, small, "c", 7, "r7") // trims to 6 and 7
	wantStale(t, small, "c", 5)
	wantSeen(t, small, "c", 6, "r6", true)
	mustFlush(t, small)

	large := load(t, s, state.Config{WindowPerClient: 10})
	wantStale(t, large, "c", 5) // dropped by the smaller window: stays stale
	wantSeen(t, large, "c", 6, "r6", true)
	wantSeen(t, large, "c", 7, "r7", true)
	wantSeen(t, large, "c", 8, "", false)
}

// TestRecordsCommitWithState checks that a reply is durable exactly when its
// call's state changes are: a refused flush commits neither.
func TestRecordsCommitWithState(t *testing.T) {
	eachStore(t, func(t *testing.T, s storage.Store) {
		winner := load(t, s, state.Config{})
		stale := load(t, s, state.Config{})
		mustSet(t, winner, "x", "w")
		mustFlush(t, winner)

		mustSet(t, stale, "x", "s")
		mustRecord(t, stale, "c", 1, "reply")
		if err := stale.Flush(context.Background()); !errors.Is(err, storage.ErrConflict) {
			t.Fatalf("stale Flush: err = %v, want ErrConflict", err)
		}
		fresh := load(t, s, state.Config{})
		wantSeen(t, fresh, "c", 1, "", false)
		wantEntries(t, fresh, map[string]string{"x": "w"})

		mustSet(t, fresh, "x", "f")
		mustRecord(t, fresh, "c", 1, "reply")
		mustFlush(t, fresh)
		again := load(t, s, state.Config{})
		wantSeen(t, again, "c", 1, "reply", true)
		wantEntries(t, again, map[string]string{"x": "f"})
	})
}

// TestEvictionRule checks the documented rule: beyond MaxClients, Flush
// drops the records of the clients whose last Record is oldest, and the
// order survives reloads.
func TestEvictionRule(t *testing.T) {
	eachStore(t, func(t *testing.T, s storage.Store) {
		cfg := state.Config{MaxClients: 3}
		b := load(t, s, cfg)
		for i, c := range []string{"a", "b", "c"} {
			mustRecord(t, b, c, 1, fmt.Sprint(c, i))
			mustFlush(t, b)
		}
		// A new activation: the order of a, b, c must come from the store.
		b = load(t, s, cfg)
		mustRecord(t, b, "a", 2, "a again") // a is now the most recent
		mustRecord(t, b, "d", 1, "d")       // a fourth client: b goes
		mustFlush(t, b)

		b = load(t, s, cfg)
		wantSeen(t, b, "b", 1, "", false) // evicted: the retry would run again
		wantSeen(t, b, "a", 2, "a again", true)
		wantSeen(t, b, "c", 1, "c2", true)
		wantSeen(t, b, "d", 1, "d", true)
		wantStoredClients(t, s, 3)
	})
}

// TestEvictionWithinOneFlush records more new clients in one flush than
// MaxClients: the earliest recorded go, even though none was committed.
func TestEvictionWithinOneFlush(t *testing.T) {
	s := memstore.New()
	b := load(t, s, state.Config{MaxClients: 2})
	for _, c := range []string{"z", "y", "x", "w"} {
		mustRecord(t, b, c, 1, c)
	}
	mustFlush(t, b)
	b = load(t, s, state.Config{MaxClients: 2})
	wantSeen(t, b, "z", 1, "", false)
	wantSeen(t, b, "y", 1, "", false)
	wantSeen(t, b, "x", 1, "x", true)
	wantSeen(t, b, "w", 1, "w", true)
	wantStoredClients(t, s, 2)
}

// TestLoweredMaxClients checks that an activation with a lower limit than
// the previous one trims the records at its first flush.
func TestLoweredMaxClients(t *testing.T) {
	s := memstore.New()
	b := load(t, s, state.Config{})
	for i := range 10 {
		mustRecord(t, b, fmt.Sprint("c", i), 1, "r")
	}
	mustFlush(t, b)
	b = load(t, s, state.Config{MaxClients: 4})
	mustSet(t, b, "k", "v")
	mustFlush(t, b)
	wantStoredClients(t, s, 4)
	b = load(t, s, state.Config{})
	for i := range 6 { // the six oldest went
		wantSeen(t, b, fmt.Sprint("c", i), 1, "", false)
	}
	for i := 6; i < 10; i++ {
		wantSeen(t, b, fmt.Sprint("c", i), 1, "r", true)
	}
}

func TestDefaultMaxClients(t *testing.T) {
	s := memstore.New()
	b := load(t, s, state.Config{})
	for i := range state.DefaultMaxClients + 1 {
		mustRecord(t, b, fmt.Sprint("client-", i), 1, "")
	}
	mustFlush(t, b)
	wantStoredClients(t, s, state.DefaultMaxClients)
	wantSeen(t, load(t, s, state.Config{}), "client-0", 1, "", false)
}

func wantStoredClients(t *testing.T, s storage.Store, want int) {
	t.Helper()
	entries, _, err := s.Load(context.Background(), grain)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for k := range entries {
		if strings.HasPrefix(k, state.ReservedPrefix+"client/") {
			n++
		}
	}
	if n != want {
		t.Fatalf("store holds %d client records, want %d", n, want)
	}
}

func TestCorruptRecordFailsLoad(t *testing.T) {
	for name, value := range map[string]string{
		"empty":          "",
		"unknown format": "\x09\x01\x01",
		"truncated":      "\x01\x80",
		"bad window":     "\x02\x01\x00\x02\x05\x00\x00\x00", // call 5 twice
	} {
		t.Run(name, func(t *testing.T) {
			s := memstore.New()
			key := state.ReservedPrefix + "client/broken"
			if _, err := s.Commit(context.Background(), grain, 0, []storage.Change{{Key: key, Value: []byte(value)}}); err != nil {
				t.Fatal(err)
			}
			_, err := state.Load(context.Background(), s, grain, state.Config{})
			if !errors.Is(err, state.ErrCorrupt) || !strings.Contains(err.Error(), "broken") {
				t.Fatalf("Load over a corrupt record: err = %v, want ErrCorrupt naming the client", err)
			}
		})
	}
}

// TestClientEvictionTakesTheWholeWindow checks that the client limit counts
// clients, not calls: an evicted client loses every reply of its window, so
// all its calls are new again; and that recording an older call, late,
// counts as use of the client.
func TestClientEvictionTakesTheWholeWindow(t *testing.T) {
	eachStore(t, func(t *testing.T, s storage.Store) {
		cfg := state.Config{MaxClients: 2, WindowPerClient: 8}
		b := load(t, s, cfg)
		for seq := uint64(10); seq <= 14; seq++ {
			mustRecord(t, b, "a", seq, fmt.Sprint("a", seq))
		}
		mustRecord(t, b, "b", 1, "b1")
		mustRecord(t, b, "a", 3, "a3") // late, but the latest use: b is oldest
		mustRecord(t, b, "c", 1, "c1")
		mustFlush(t, b)

		b = load(t, s, cfg)
		wantSeen(t, b, "b", 1, "", false)
		wantSeen(t, b, "a", 3, "a3", true)
		wantSeen(t, b, "c", 1, "c1", true)
		mustRecord(t, b, "c", 2, "c2")
		mustRecord(t, b, "b", 1, "b1 again") // a is now the oldest
		mustFlush(t, b)

		b = load(t, s, cfg)
		for _, seq := range []uint64{0, 3, 10, 14, 15} {
			wantSeen(t, b, "a", seq, "", false)
		}
		wantSeen(t, b, "b", 1, "b1 again", true)
		wantSeen(t, b, "c", 1, "c1", true)
		wantSeen(t, b, "c", 2, "c2", true)
		wantStoredClients(t, s, 2)
	})
}

func TestDefaultWindowPerClient(t *testing.T) {
	s := memstore.New()
	b := load(t, s, state.Config{})
	for seq := uint64(1); seq <= state.DefaultWindowPerClient+1; seq++ {
		mustRecord(t, b, "c", seq, fmt.Sprint(seq))
	}
	mustFlush(t, b)
	b = load(t, s, state.Config{})
	wantStale(t, b, "c", 1)
	wantSeen(t, b, "c", 2, "2", true)
	wantSeen(t, b, "c", state.DefaultWindowPerClient+1, fmt.Sprint(state.DefaultWindowPerClient+1), true)
}

func TestNegativeWindowPerClient(t *testing.T) {
	_, err := state.Load(context.Background(), memstore.New(), grain, state.Config{WindowPerClient: -1})
	if err == nil || !strings.Contains(err.Error(), "WindowPerClient") {
		t.Fatalf("Load with WindowPerClient -1: err = %v, want one naming the field", err)
	}
}

// TestConcurrentCallsOfOneClient runs what the cluster does for calls of one
// client in flight at once, each in its own goroutine: Seen, Record and
// Flush, in whatever order they get the buffer. All of them must be
// accepted, once, and each keep its own reply.
func TestConcurrentCallsOfOneClient(t *testing.T) {
	eachStore(t, func(t *testing.T, s storage.Store) {
		const calls = 32
		b := load(t, s, state.Config{WindowPerClient: calls})
		errs := make(chan error, calls)
		for seq := uint64(1); seq <= calls; seq++ {
			go func() {
				errs <- func() error {
					if _, seen, err := b.Seen("node", seq); err != nil || seen {
						return fmt.Errorf("Seen(%d) = %v, %v before it ran", seq, seen, err)
					}
					if err := b.Record("node", seq, []byte(fmt.Sprint("r", seq))); err != nil {
						return err
					}
					return b.Flush(context.Background())
				}()
			}()
		}
		for range calls {
			if err := <-errs; err != nil {
				t.Error(err)
			}
		}
		b = load(t, s, state.Config{WindowPerClient: calls})
		for seq := uint64(1); seq <= calls; seq++ {
			wantSeen(t, b, "node", seq, fmt.Sprint("r", seq), true)
		}
	})
}

// TestRecordOfAnEarlierBuild loads a client record as the previous build
// stored it (one call, format 1): its reply is answered, older calls stay
// stale, and the next commit rewrites it as a window.
func TestRecordOfAnEarlierBuild(t *testing.T) {
	eachStore(t, func(t *testing.T, s storage.Store) {
		old := []byte{1, 5, 9} // format 1, seq 5, stamp 9
		old = append(old, "five"...)
		key := state.ReservedPrefix + "client/c"
		if _, err := s.Commit(context.Background(), grain, 0, []storage.Change{{Key: key, Value: old}}); err != nil {
			t.Fatal(err)
		}
		b := load(t, s, state.Config{})
		wantSeen(t, b, "c", 5, "five", true)
		wantStale(t, b, "c", 4)
		wantSeen(t, b, "c", 6, "", false)
		mustRecord(t, b, "c", 7, "seven")
		mustFlush(t, b)

		b = load(t, s, state.Config{})
		wantSeen(t, b, "c", 5, "five", true)
		wantSeen(t, b, "c", 7, "seven", true)
		wantSeen(t, b, "c", 6, "", false)
		wantStale(t, b, "c", 4)
		entries, _, err := s.Load(context.Background(), grain)
		if err != nil {
			t.Fatal(err)
		}
		if v := entries[key]; len(v) == 0 || v[0] != 2 {
			t.Fatalf("record after a commit = %x, want format 2", v)
		}
	})
}

// wantReplyLost checks that Seen tells a retry of call seq of client that
// the call ran and its reply is lost.
func wantReplyLost(t *testing.T, b *state.Buffer, client string, seq uint64) {
	t.Helper()
	reply, ok, err := b.Seen(client, seq)
	if !errors.Is(err, state.ErrReplyLost) || ok || reply != nil {
		t.Fatalf("Seen(%q, %d) = %q, %v, %v; want ErrReplyLost", client, seq, reply, ok, err)
	}
}

// TestAnUnansweredCallIsNotNew: a call recorded unanswered (it flushed while
// it ran) is not a new call to a retry, in the buffer and after a flush and
// a new load alike, until Record gives its reply; recording it unanswered
// again, or after its reply, changes nothing.
func TestAnUnansweredCallIsNotNew(t *testing.T) {
	eachStore(t, func(t *testing.T, s storage.Store) {
		b := load(t, s, state.Config{})
		mustRecord(t, b, "c", 1, "one")
		if err := b.RecordUnanswered("c", 2); err != nil {
			t.Fatalf("RecordUnanswered(c, 2): %v", err)
		}
		wantReplyLost(t, b, "c", 2)
		wantSeen(t, b, "c", 1, "one", true)
		mustFlush(t, b)

		// The node failed before the call's reply was recorded.
		b = load(t, s, state.Config{})
		wantReplyLost(t, b, "c", 2)
		wantSeen(t, b, "c", 1, "one", true)
		wantSeen(t, b, "c", 3, "", false)
		if err := b.RecordUnanswered("c", 2); err != nil {
			t.Fatalf("RecordUnanswered(c, 2) again: %v", err)
		}
		if b.Dirty() {
			t.Fatal("recording an unanswered call again made the buffer dirty")
		}

		// The same activation goes on to record the reply.
		mustRecord(t, b, "c", 2, "two")
		wantSeen(t, b, "c", 2, "two", true)
		if err := b.Record("c", 2, []byte("again")); !errors.Is(err, state.ErrStaleSequence) {
			t.Fatalf("Record(c, 2) after its reply: err = %v, want ErrStaleSequence", err)
		}
		mustFlush(t, b)
		if err := b.RecordUnanswered("c", 2); err != nil || b.Dirty() {
			t.Fatalf("RecordUnanswered(c, 2) after its reply: %v, dirty %v; want nil and nothing buffered", err, b.Dirty())
		}
		b = load(t, s, state.Config{})
		wantSeen(t, b, "c", 2, "two", true)
	})
}

// TestAnUnansweredCallKeepsTheWindow: unanswered calls take their place in
// the client's window like answered ones, and one below it is stale.
func TestAnUnansweredCallKeepsTheWindow(t *testing.T) {
	b := load(t, memstore.New(), state.Config{WindowPerClient: 2})
	for seq := uint64(1); seq <= 3; seq++ {
		if err := b.RecordUnanswered("c", seq); err != nil {
			t.Fatalf("RecordUnanswered(c, %d): %v", seq, err)
		}
	}
	wantStale(t, b, "c", 1)
	if err := b.RecordUnanswered("c", 1); !errors.Is(err, state.ErrStaleSequence) {
		t.Fatalf("RecordUnanswered(c, 1) below the window: err = %v, want ErrStaleSequence", err)
	}
	wantReplyLost(t, b, "c", 2)
	wantReplyLost(t, b, "c", 3)
	mustRecord(t, b, "c", 2, "two") // a reply in place of its mark keeps the window
	wantSeen(t, b, "c", 2, "two", true)
	wantReplyLost(t, b, "c", 3)
}
