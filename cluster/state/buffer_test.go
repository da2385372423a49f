package state_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/protograin/protograin/cluster/state"
	"github.com/protograin/protograin/cluster/storage"
	"github.com/protograin/protograin/cluster/storage/boltstore"
	"github.com/protograin/protograin/cluster/storage/memstore"
	"github.com/protograin/protograin/cluster/storage/pgstore/pgtest"
)

var grain = storage.Key{Kind: "test.Counter", Identity: "a"}

// eachStore runs test against a fresh store of every kind: the buffer's
// rules must hold whatever the store. PostgreSQL joins when
// PROTOGRAIN_POSTGRES_DSN is set (see pgtest).
func eachStore(t *testing.T, test func(t *testing.T, s storage.Store)) {
	t.Run("memstore", func(t *testing.T) {
		t.Parallel()
		s := memstore.New()
		t.Cleanup(func() { s.Close() })
		test(t, s)
	})
	t.Run("boltstore", func(t *testing.T) {
		t.Parallel()
		s, err := boltstore.Open(filepath.Join(t.TempDir(), "state.db"), boltstore.Config{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		test(t, s)
	})
	t.Run("pgstore", func(t *testing.T) {
		t.Parallel()
		test(t, pgtest.Open(t, 2))
	})
}

func load(t *testing.T, s storage.Store, cfg state.Config) *state.Buffer {
	t.Helper()
	b, err := state.Load(context.Background(), s, grain, cfg)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return b
}

func mustSet(t *testing.T, b *state.Buffer, key, value string) {
	t.Helper()
	if err := b.Set(key, []byte(value)); err != nil {
		t.Fatalf("Set(%q): %v", key, err)
	}
}

func mustFlush(t *testing.T, b *state.Buffer) {
	t.Helper()
	if err := b.Flush(context.Background()); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if b.Dirty() {
		t.Fatal("Dirty after a successful Flush")
	}
}

// wantEntries checks the user entries b shows, through Keys and Get.
func wantEntries(t *testing.T, b *state.Buffer, want map[string]string) {
	t.Helper()
	var wantKeys []string
	for k := range want {
		wantKeys = append(wantKeys, k)
	}
	slices.Sort(wantKeys)
	if got := b.Keys(); !slices.Equal(got, wantKeys) {
		t.Fatalf("Keys() = %q, want %q", got, wantKeys)
	}
	for k, v := range want {
		got, err := b.Get(k)
		if err != nil || string(got) != v {
			t.Errorf("Get(%q) = %q, %v; want %q", k, got, err, v)
		}
	}
}

// wantStored checks the entries in the store under grain.
func wantStored(t *testing.T, s storage.Store, want map[string]string) {
	t.Helper()
	got, _, err := s.Load(context.Background(), grain)
	if err != nil {
		t.Fatal(err)
	}
	gotStrings := map[string]string{}
	for k, v := range got {
		gotStrings[k] = string(v)
	}
	if want == nil {
		want = map[string]string{}
	}
	if fmt.Sprint(gotStrings) != fmt.Sprint(want) {
		t.Fatalf("store holds %q, want %q", gotStrings, want)
	}
}

func TestReadsSeeBufferedWrites(t *testing.T) {
	eachStore(t, func(t *testing.T, s storage.Store) {
		b := load(t, s, state.Config{})
		if b.Dirty() || len(b.Keys()) != 0 || b.Version() != 0 {
			t.Fatalf("new grain: Dirty %v, Keys %q, Version %d; want clean, none, 0", b.Dirty(), b.Keys(), b.Version())
		}
		mustSet(t, b, "name", "alice")
		mustSet(t, b, "count", "1")
		mustSet(t, b, "count", "2")
		wantEntries(t, b, map[string]string{"name": "alice", "count": "2"})
		if !b.Dirty() {
			t.Fatal("not Dirty after Set")
		}
		wantStored(t, s, nil) // nothing reaches the store before Flush

		mustFlush(t, b)
		if err := b.Remove("name"); err != nil {
			t.Fatal(err)
		}
		if v, ok := b.TryGet("name"); ok {
			t.Fatalf("TryGet of a removed key = %q, true", v)
		}
		if _, err := b.Get("name"); !errors.Is(err, state.ErrNotFound) {
			t.Fatalf("Get of a removed key: err = %v, want ErrNotFound", err)
		}
		wantEntries(t, b, map[string]string{"count": "2"})
		wantStored(t, s, map[string]string{"name": "alice", "count": "2"})
	})
}

func TestFlushCommitsAllChangesAtOnce(t *testing.T) {
	eachStore(t, func(t *testing.T, s storage.Store) {
		b := load(t, s, state.Config{})
		mustSet(t, b, "a", "1")
		mustSet(t, b, "b", "2")
		mustFlush(t, b)
		if b.Version() != 1 {
			t.Fatalf("Version after the first Flush = %d, want 1", b.Version())
		}
		mustSet(t, b, "a", "10")
		mustSet(t, b, "c", "3")
		if err := b.Remove("b"); err != nil {
			t.Fatal(err)
		}
		mustFlush(t, b)
		if b.Version() != 2 {
			t.Fatalf("Version after the second Flush = %d, want 2", b.Version())
		}
		wantStored(t, s, map[string]string{"a": "10", "c": "3"})
		wantEntries(t, load(t, s, state.Config{}), map[string]string{"a": "10", "c": "3"})

		// A clean Flush does not touch the store.
		mustFlush(t, b)
		if _, v, _ := s.Load(context.Background(), grain); v != 2 {
			t.Fatalf("a Flush with nothing buffered moved the stored version to %d", v)
		}
	})
}

// TestStaleActivationIsRejected plays two activations of one grain, as
// after a split brain: the one that flushes second loses and keeps its
// changes unflushed, and the store keeps the winner's state.
func TestStaleActivationIsRejected(t *testing.T) {
	eachStore(t, func(t *testing.T, s storage.Store) {
		first := load(t, s, state.Config{})
		second := load(t, s, state.Config{})

		mustSet(t, first, "owner", "first")
		mustFlush(t, first)

		mustSet(t, second, "owner", "second")
		mustSet(t, second, "extra", "x")
		if err := second.Record("client-1", 1, []byte("reply")); err != nil {
			t.Fatal(err)
		}
		err := second.Flush(context.Background())
		if !errors.Is(err, storage.ErrConflict) {
			t.Fatalf("stale Flush: err = %v, want storage.ErrConflict", err)
		}
		if !strings.Contains(err.Error(), grain.Identity) || !strings.Contains(err.Error(), grain.Kind) {
			t.Errorf("conflict error %q does not name the grain", err)
		}
		if !second.Dirty() {
			t.Fatal("the stale buffer lost its changes")
		}
		wantEntries(t, second, map[string]string{"owner": "second", "extra": "x"})
		wantStored(t, s, map[string]string{"owner": "first"})

		// Retrying does not help: the buffer is stale for good.
		if err := second.Flush(context.Background()); !errors.Is(err, storage.ErrConflict) {
			t.Fatalf("second stale Flush: err = %v, want storage.ErrConflict", err)
		}
		second.Discard()
		if second.Dirty() {
			t.Fatal("Dirty after Discard")
		}
		wantEntries(t, second, map[string]string{})
	})
}

func TestFailedFlushKeepsChanges(t *testing.T) {
	eachStore(t, func(t *testing.T, s storage.Store) {
		b := load(t, s, state.Config{})
		mustSet(t, b, "a", "1")
		if err := b.Record("c", 7, []byte("r")); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := b.Flush(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("Flush with a canceled context: err = %v, want context.Canceled", err)
		}
		if !b.Dirty() || b.Version() != 0 {
			t.Fatalf("after a failed Flush: Dirty %v, Version %d; want dirty at 0", b.Dirty(), b.Version())
		}
		wantStored(t, s, nil)

		mustFlush(t, b)
		again := load(t, s, state.Config{})
		wantEntries(t, again, map[string]string{"a": "1"})
		if reply, ok, err := again.Seen("c", 7); !ok || err != nil || string(reply) != "r" {
			t.Fatalf("Seen after the retried Flush = %q, %v, %v; want the recorded reply", reply, ok, err)
		}
	})
}

func TestDirty(t *testing.T) {
	b := load(t, memstore.New(), state.Config{})
	mustSet(t, b, "new", "1")
	if err := b.Remove("new"); err != nil {
		t.Fatal(err)
	}
	if b.Dirty() {
		t.Fatal("Set then Remove of a key never flushed left the buffer dirty")
	}
	if err := b.Remove("never-set"); err != nil || b.Dirty() {
		t.Fatalf("Remove of a missing key: err %v, Dirty %v; want nil, clean", err, b.Dirty())
	}
	if _, _, err := b.Seen("c", 1); err != nil || b.Dirty() {
		t.Fatalf("Seen: err %v, Dirty %v; want nil, clean", err, b.Dirty())
	}
	if err := b.Record("c", 1, nil); err != nil || !b.Dirty() {
		t.Fatalf("Record: err %v, Dirty %v; want nil, dirty", err, b.Dirty())
	}
	b.Discard()
	if _, ok, _ := b.Seen("c", 1); ok || b.Dirty() {
		t.Fatalf("after Discard: recorded call still seen (%v) or buffer dirty (%v)", ok, b.Dirty())
	}
}

func TestValuesAreCopies(t *testing.T) {
	b := load(t, memstore.New(), state.Config{})
	v := []byte("original")
	if err := b.Set("k", v); err != nil {
		t.Fatal(err)
	}
	copy(v, "CHANGED!")
	got, _ := b.TryGet("k")
	got[0] = 'X'
	wantEntries(t, b, map[string]string{"k": "original"})

	if err := b.Record("c", 1, v); err != nil {
		t.Fatal(err)
	}
	v[0] = 'Y'
	reply, _, _ := b.Seen("c", 1)
	reply[1] = 'Z'
	if reply, _, _ := b.Seen("c", 1); string(reply) != "CHANGED!" {
		t.Fatalf("recorded reply = %q, want the value at Record time", reply)
	}
}

func TestReservedPrefixIsRefused(t *testing.T) {
	s := memstore.New()
	b := load(t, s, state.Config{})
	for _, key := range []string{state.ReservedPrefix, state.ReservedPrefix + "client/c", state.ReservedPrefix + "mine"} {
		if err := b.Set(key, []byte("x")); !errors.Is(err, state.ErrReservedKey) {
			t.Errorf("Set(%q): err = %v, want ErrReservedKey", key, err)
		}
		if err := b.Remove(key); !errors.Is(err, state.ErrReservedKey) {
			t.Errorf("Remove(%q): err = %v, want ErrReservedKey", key, err)
		}
		if _, err := b.Get(key); !errors.Is(err, state.ErrReservedKey) {
			t.Errorf("Get(%q): err = %v, want ErrReservedKey", key, err)
		}
	}
	if b.Dirty() {
		t.Fatal("refused calls left the buffer dirty")
	}

	// Client records are entries under the prefix, hidden from Keys and Get.
	if err := b.Record("c", 1, []byte("reply")); err != nil {
		t.Fatal(err)
	}
	mustSet(t, b, "user", "u")
	mustFlush(t, b)
	b = load(t, s, state.Config{})
	wantEntries(t, b, map[string]string{"user": "u"})
	if _, ok := b.TryGet(state.ReservedPrefix + "client/c"); ok {
		t.Fatal("TryGet reached a client record")
	}
}

func TestInvalidKeys(t *testing.T) {
	b := load(t, memstore.New(), state.Config{})
	for _, key := range []string{"", "a\x00b", "\xff", strings.Repeat("k", storage.MaxNameLen+1)} {
		if err := b.Set(key, nil); !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("Set(%q): err = %v, want storage.ErrInvalid", key, err)
		}
		if err := b.Remove(key); !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("Remove(%q): err = %v, want storage.ErrInvalid", key, err)
		}
		if _, err := b.Get(key); !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("Get(%q): err = %v, want storage.ErrInvalid", key, err)
		}
	}
	for _, id := range []string{"", "c\x00", strings.Repeat("c", storage.MaxNameLen)} {
		if _, _, err := b.Seen(id, 1); !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("Seen(%q): err = %v, want storage.ErrInvalid", id, err)
		}
		if err := b.Record(id, 1, nil); !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("Record(%q): err = %v, want storage.ErrInvalid", id, err)
		}
	}
	if b.Dirty() {
		t.Fatal("refused calls left the buffer dirty")
	}
}

func TestNegativeMaxClients(t *testing.T) {
	_, err := state.Load(context.Background(), memstore.New(), grain, state.Config{MaxClients: -1})
	if err == nil || !strings.Contains(err.Error(), "MaxClients") {
		t.Fatalf("Load with MaxClients -1: err = %v, want an error naming MaxClients", err)
	}
}

func TestLoadErrors(t *testing.T) {
	s := memstore.New()
	if _, err := state.Load(context.Background(), s, storage.Key{}, state.Config{}); !errors.Is(err, storage.ErrInvalid) {
		t.Fatalf("Load with an empty key: err = %v, want storage.ErrInvalid", err)
	}
	s.Close()
	if _, err := state.Load(context.Background(), s, grain, state.Config{}); !errors.Is(err, storage.ErrClosed) {
		t.Fatalf("Load from a closed store: err = %v, want storage.ErrClosed", err)
	}
}

// TestUnknownReservedEntriesAreKept checks that entries a later version
// might keep under the reserved prefix survive this version's flushes.
func TestUnknownReservedEntriesAreKept(t *testing.T) {
	s := memstore.New()
	future := state.ReservedPrefix + "future"
	if _, err := s.Commit(context.Background(), grain, 0, []storage.Change{{Key: future, Value: []byte("f")}}); err != nil {
		t.Fatal(err)
	}
	b := load(t, s, state.Config{})
	wantEntries(t, b, map[string]string{})
	mustSet(t, b, "a", "1")
	mustFlush(t, b)
	wantStored(t, s, map[string]string{future: "f", "a": "1"})
}

func TestConcurrentUse(t *testing.T) {
	b := load(t, memstore.New(), state.Config{MaxClients: 4})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				key := fmt.Sprintf("g%d", g)
				if err := b.Set(key, []byte(fmt.Sprint(i))); err != nil {
					t.Error(err)
					return
				}
				b.TryGet(key)
				b.Keys()
				if err := b.Record(key, uint64(i), nil); err != nil {
					t.Error(err)
					return
				}
				if err := b.Flush(context.Background()); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	wantEntries(t, b, map[string]string{"g0": "49", "g1": "49", "g2": "49", "g3": "49"})
}

// A grain with nothing stored loads Empty; New makes the same without
// reading the store, and refuses a bad Config as Load does. Anything
// buffered or committed makes a Buffer not Empty, even after the grain's
// entries are removed again (the version stays).
func TestNewAndEmpty(t *testing.T) {
	s := memstore.New()
	if b := load(t, s, state.Config{}); !b.Empty() {
		t.Fatal("a grain with nothing stored does not load Empty")
	}
	if _, err := state.New(s, grain, state.Config{MaxClients: -1}); err == nil {
		t.Fatal("New accepted MaxClients -1")
	}
	b, err := state.New(s, grain, state.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if !b.Empty() || b.Version() != 0 {
		t.Fatalf("New: Empty %v, version %d; want an empty buffer at version 0", b.Empty(), b.Version())
	}
	mustSet(t, b, "k", "v")
	if b.Empty() {
		t.Fatal("a buffer with a change is Empty")
	}
	if err := b.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := b.Remove("k"); err != nil {
		t.Fatal(err)
	}
	if err := b.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if b.Empty() || load(t, s, state.Config{}).Empty() {
		t.Fatal("a grain whose entries were committed and removed is Empty")
	}
}

// LoadStored returns no Buffer where Load returns an Empty one, refuses a
// bad Config as Load does, and otherwise loads what Load loads: entries,
// and a version even when the entries were all removed.
func TestLoadStored(t *testing.T) {
	s := memstore.New()
	ctx := context.Background()
	if b, err := state.LoadStored(ctx, s, grain, state.Config{}); err != nil || b != nil {
		t.Fatalf("LoadStored of a grain with nothing stored = %v, %v; want nil, nil", b, err)
	}
	if _, err := state.LoadStored(ctx, s, grain, state.Config{WindowPerClient: -1}); err == nil {
		t.Fatal("LoadStored accepted WindowPerClient -1")
	}
	b := load(t, s, state.Config{})
	mustSet(t, b, "k", "v")
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := state.LoadStored(ctx, s, grain, state.Config{})
	if err != nil || got == nil {
		t.Fatalf("LoadStored = %v, %v; want a Buffer", got, err)
	}
	wantEntries(t, got, map[string]string{"k": "v"})
	if got.Version() != b.Version() {
		t.Fatalf("LoadStored: version %d, want %d", got.Version(), b.Version())
	}
	if err := b.Remove("k"); err != nil {
		t.Fatal(err)
	}
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := state.LoadStored(ctx, s, grain, state.Config{}); err != nil || got == nil || got.Empty() {
		t.Fatalf("LoadStored of a grain whose entries were removed = %v, %v; want a Buffer that is not Empty", got, err)
	}
}
