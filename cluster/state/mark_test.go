package state_test

import (
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
