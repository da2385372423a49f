package state_test

import (
	"context"
	"errors"
	"testing"

	"github.com/protograin/protograin/cluster/state"
	"github.com/protograin/protograin/cluster/storage"
	"github.com/protograin/protograin/cluster/storage/memstore"
)

func TestRollbackKeepsEarlierChanges(t *testing.T) {
	eachStore(t, func(t *testing.T, s storage.Store) {
		b := load(t, s, state.Config{})
		mustSet(t, b, "committed", "1")
		mustFlush(t, b)

		// An earlier call, not flushed yet.
		mustSet(t, b, "a", "1")
		b.SetMessage([]byte("m1"))
		mustRecord(t, b, "c", 1, "one")
		m := b.Mark()

		// A call that fails.
		mustSet(t, b, "a", "2")
		mustSet(t, b, "b", "2")
		if err := b.Remove("committed"); err != nil {
			t.Fatal(err)
		}
		b.SetMessage([]byte("m2"))
		mustRecord(t, b, "c", 2, "two")
		mustRecord(t, b, "d", 1, "d-one")
		b.Rollback(m)

		wantEntries(t, b, map[string]string{"committed": "1", "a": "1"})
		wantMessage(t, b, "m1", true)
		wantSeen(t, b, "c", 1, "one", true)
		wantSeen(t, b, "c", 2, "", false)
		wantSeen(t, b, "d", 1, "", false)
		mustFlush(t, b)
		b = load(t, s, state.Config{})
		wantEntries(t, b, map[string]string{"committed": "1", "a": "1"})
		wantMessage(t, b, "m1", true)
	})
}

func TestRollbackToACleanMarkIsDiscard(t *testing.T) {
	b := load(t, memstore.New(), state.Config{})
	m := b.Mark()
	mustSet(t, b, "a", "1")
	b.SetMessage([]byte("m"))
	mustRecord(t, b, "c", 1, "one")
	b.Rollback(m)
	if b.Dirty() {
		t.Fatal("Dirty after rolling back to a clean mark")
	}
	wantMessage(t, b, "", false)
}

// A mark taken before a Flush cannot bring back what the Flush committed:
// Rollback drops only what came after.
func TestRollbackAfterFlush(t *testing.T) {
	b := load(t, memstore.New(), state.Config{})
	mustSet(t, b, "a", "1")
	m := b.Mark()
	mustFlush(t, b)
	mustSet(t, b, "b", "2")
	b.Rollback(m)
	if b.Dirty() {
		t.Fatal("Rollback past a Flush buffered the flushed changes again")
	}
	wantEntries(t, b, map[string]string{"a": "1"})
}

// TestChangedSinceAMark: Changed tells a change since the mark even where
// the buffer ends clean (a change undoing one buffered before the mark, a
// Flush), and no change where the buffer ends as the mark has it.
func TestChangedSinceAMark(t *testing.T) {
	for _, tc := range []struct {
		name   string
		before func(b *state.Buffer) // buffered before the mark
		after  func(b *state.Buffer) // between the mark and Changed
		want   bool
	}{
		{"nothing", nil, nil, false},
		{"a Set", nil, func(b *state.Buffer) { mustSet(t, b, "a", "1") }, true},
		{"a Set back to the mark's value", func(b *state.Buffer) { mustSet(t, b, "a", "1") },
			func(b *state.Buffer) { mustSet(t, b, "a", "2"); mustSet(t, b, "a", "1") }, false},
		{"a Remove that leaves the buffer clean", func(b *state.Buffer) { mustSet(t, b, "a", "1") },
			func(b *state.Buffer) {
				if err := b.Remove("a"); err != nil {
					t.Fatal(err)
				}
			}, true},
		{"the message set back to the committed one", func(b *state.Buffer) { b.SetMessage([]byte("m2")) },
			func(b *state.Buffer) { b.SetMessage([]byte("m1")) }, true},
		{"the message set to what the mark has", func(b *state.Buffer) { b.SetMessage([]byte("m2")) },
			func(b *state.Buffer) { b.SetMessage([]byte("m2")) }, false},
		{"a Flush", func(b *state.Buffer) { mustSet(t, b, "a", "1") }, func(b *state.Buffer) { mustFlush(t, b) }, true},
		{"a Flush of a clean buffer, which commits nothing", nil, func(b *state.Buffer) { mustFlush(t, b) }, false},
		{"a Record", nil, func(b *state.Buffer) { mustRecord(t, b, "c", 1, "one") }, true},
		{"a Record of a client with one buffered", func(b *state.Buffer) { mustRecord(t, b, "c", 1, "one") },
			func(b *state.Buffer) { mustRecord(t, b, "c", 2, "two") }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := load(t, memstore.New(), state.Config{})
			b.SetMessage([]byte("m1"))
			mustFlush(t, b)
			if tc.before != nil {
				tc.before(b)
			}
			m := b.Mark()
			if tc.after != nil {
				tc.after(b)
			}
			if got := b.Changed(m); got != tc.want {
				t.Fatalf("Changed = %v, want %v (Dirty %v)", got, tc.want, b.Dirty())
			}
		})
	}
}

// TestFlushedSince: only a Flush that succeeded since the mark counts; one
// that failed, or one with nothing to commit, does not.
func TestFlushedSince(t *testing.T) {
	s := memstore.New()
	b := load(t, s, state.Config{})
	m := b.Mark()
	mustFlush(t, b) // nothing buffered: no commit
	if b.FlushedSince(m) {
		t.Fatal("FlushedSince after a Flush with nothing buffered")
	}
	mustSet(t, b, "k", "1")
	if _, err := s.Commit(context.Background(), b.Key(), 0, nil); err != nil {
		t.Fatal(err) // another activation commits first
	}
	if err := b.Flush(context.Background()); !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("Flush behind another commit: %v, want ErrConflict", err)
	}
	if b.FlushedSince(m) {
		t.Fatal("FlushedSince after a Flush that failed")
	}
	b = load(t, s, state.Config{})
	m = b.Mark()
	mustSet(t, b, "k", "2")
	mustFlush(t, b)
	if !b.FlushedSince(m) {
		t.Fatal("FlushedSince is false after a Flush that committed")
	}
	if b.FlushedSince(b.Mark()) {
		t.Fatal("FlushedSince of a mark taken after the Flush")
	}
}
