// Package storagetest is the conformance suite for storage.Store
// implementations. Every store of protograin runs it, and so should a user's
// own store:
//
//	func TestConformance(t *testing.T) {
//		storagetest.Run(t, func(t *testing.T) storage.Store {
//			s := mystore.Open(...)
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
//
// It must not import the cluster or runtime packages.
package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/protograin/protograin/cluster/storage"
)

// NewStore returns a fresh, empty store for one test and arranges its Close
// with t.Cleanup. Run calls it once per subtest, possibly from parallel
// subtests. Close must be idempotent: some subtests close the store
// themselves.
type NewStore func(t *testing.T) storage.Store

// Run runs the conformance suite against the stores newStore makes.
func Run(t *testing.T, newStore NewStore) {
	tests := []struct {
		name string
		run  func(t *testing.T, s storage.Store)
	}{
		{"EmptyLoad", testEmptyLoad},
		{"CommitAndReload", testCommitAndReload},
		{"VersionsRiseByOne", testVersionsRiseByOne},
		{"Conflict", testConflict},
		{"ConflictChangesNothing", testConflictChangesNothing},
		{"InvalidCommitChangesNothing", testInvalidCommitChangesNothing},
		{"ConcurrentCommitters", testConcurrentCommitters},
		{"Remove", testRemove},
		{"RemoveLastEntryKeepsVersion", testRemoveLastEntryKeepsVersion},
		{"LaterChangeWins", testLaterChangeWins},
		{"LargeValues", testLargeValues},
		{"ManyKeys", testManyKeys},
		{"GrainsAreSeparate", testGrainsAreSeparate},
		{"ValuesAreCopies", testValuesAreCopies},
		{"InvalidKeys", testInvalidKeys},
		{"Reminders", testReminders},
		{"RemindersPerKind", testRemindersPerKind},
		{"InvalidReminders", testInvalidReminders},
		{"CompleteReminder", testCompleteReminder},
		{"InvalidCompleteReminder", testInvalidCompleteReminder},
		{"Closed", testClosed},
		{"CloseWhileBusy", testCloseWhileBusy},
		{"CanceledContext", testCanceledContext},
		{"NotCommitted", testNotCommitted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, newStore(t))
		})
	}
}

// grainA is the grain most tests use.
func grainA() storage.Key { return storage.Key{Kind: "test.Counter", Identity: "a"} }

func set(key string, value string) storage.Change {
	return storage.Change{Key: key, Value: []byte(value)}
}

func remove(key string) storage.Change {
	return storage.Change{Key: key, Remove: true}
}

func mustCommit(t *testing.T, s storage.Store, key storage.Key, expected storage.Version, changes ...storage.Change) storage.Version {
	t.Helper()
	v, err := s.Commit(context.Background(), key, expected, changes)
	if err != nil {
		t.Fatalf("Commit(%s, %d): %v", key, expected, err)
	}
	if v != expected+1 {
		t.Fatalf("Commit(%s, %d) returned version %d, want %d", key, expected, v, expected+1)
	}
	return v
}

// wantState loads key and checks its entries and version.
func wantState(t *testing.T, s storage.Store, key storage.Key, want map[string]string, wantVersion storage.Version) {
	t.Helper()
	got, v, err := s.Load(context.Background(), key)
	if err != nil {
		t.Fatalf("Load(%s): %v", key, err)
	}
	if got == nil {
		t.Fatalf("Load(%s) returned a nil map", key)
	}
	if v != wantVersion {
		t.Errorf("Load(%s) version = %d, want %d", key, v, wantVersion)
	}
	gotStrings := make(map[string]string, len(got))
	for k, b := range got {
		if b == nil {
			t.Errorf("Load(%s) entry %q is nil, want a non-nil slice", key, k)
		}
		gotStrings[k] = string(b)
	}
	if want == nil {
		want = map[string]string{}
	}
	if !maps.Equal(gotStrings, want) {
		t.Errorf("Load(%s) entries = %v, want %v", key, gotStrings, want)
	}
}

func testEmptyLoad(t *testing.T, s storage.Store) {
	wantState(t, s, grainA(), nil, 0)
	wantState(t, s, storage.Key{Kind: "test.Counter"}, nil, 0) // empty identity
}

func testCommitAndReload(t *testing.T, s storage.Store) {
	v := mustCommit(t, s, grainA(), 0, set("count", "1"), set("name", "alice"))
	wantState(t, s, grainA(), map[string]string{"count": "1", "name": "alice"}, v)

	v = mustCommit(t, s, grainA(), v, set("count", "2"), remove("name"), set("empty", ""))
	wantState(t, s, grainA(), map[string]string{"count": "2", "empty": ""}, v)
}

func testVersionsRiseByOne(t *testing.T, s storage.Store) {
	var v storage.Version
	for i := range 5 {
		v = mustCommit(t, s, grainA(), v, set("i", fmt.Sprint(i)))
	}
	// An empty commit checks and raises the version too.
	mustCommit(t, s, grainA(), v)
	wantState(t, s, grainA(), map[string]string{"i": "4"}, 6)
	empty := storage.Key{Kind: "test.Counter", Identity: "empty"}
	mustCommit(t, s, empty, 0)
	wantState(t, s, empty, nil, 1)
}

func testConflict(t *testing.T, s storage.Store) {
	ctx := context.Background()
	v := mustCommit(t, s, grainA(), 0, set("k", "first"))
	for _, expected := range []storage.Version{0, v + 1, v + 100} {
		_, err := s.Commit(ctx, grainA(), expected, []storage.Change{set("k", "stale")})
		if !errors.Is(err, storage.ErrConflict) {
			t.Fatalf("Commit with expected version %d over version %d: err = %v, want ErrConflict", expected, v, err)
		}
		for _, part := range []string{grainA().Kind, grainA().Identity} {
			if !strings.Contains(err.Error(), part) {
				t.Errorf("conflict error %q does not name the grain (%q missing)", err, part)
			}
		}
	}
	wantState(t, s, grainA(), map[string]string{"k": "first"}, v)

	// A commit on a grain that was never written expects version zero.
	_, err := s.Commit(ctx, storage.Key{Kind: "test.Counter", Identity: "new"}, 1, []storage.Change{set("k", "v")})
	if !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("Commit with expected version 1 on a new grain: err = %v, want ErrConflict", err)
	}
	wantState(t, s, storage.Key{Kind: "test.Counter", Identity: "new"}, nil, 0)
}

func testConflictChangesNothing(t *testing.T, s storage.Store) {
	v := mustCommit(t, s, grainA(), 0, set("a", "1"), set("b", "2"))
	stale := []storage.Change{set("a", "x"), remove("b"), set("c", "3")}
	if _, err := s.Commit(context.Background(), grainA(), v-1, stale); !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("stale Commit: err = %v, want ErrConflict", err)
	}
	wantState(t, s, grainA(), map[string]string{"a": "1", "b": "2"}, v)
}

// testInvalidCommitChangesNothing checks that a commit with one bad change
// among good ones is refused whole.
func testInvalidCommitChangesNothing(t *testing.T, s storage.Store) {
	v := mustCommit(t, s, grainA(), 0, set("a", "1"))
	bad := []storage.Change{set("a", "2"), set("b", "2"), set("", "empty key")}
	_, err := s.Commit(context.Background(), grainA(), v, bad)
	if !errors.Is(err, storage.ErrInvalid) {
		t.Fatalf("Commit with an empty entry key: err = %v, want ErrInvalid", err)
	}
	wantState(t, s, grainA(), map[string]string{"a": "1"}, v)
}

// testConcurrentCommitters races committers with the same expected version,
// on a new grain (version zero) and on an existing one: exactly one wins, and
// none of the losers' changes shows.
func testConcurrentCommitters(t *testing.T, s storage.Store) {
	const racers = 8
	key := storage.Key{Kind: "test.Counter", Identity: "raced"}
	want := map[string]string{}
	var version storage.Version
	for round := range 3 {
		winners := race(t, s, key, version, racers, round)
		if len(winners) != 1 {
			t.Fatalf("round %d: %d of %d racing commits at version %d won, want exactly 1", round, len(winners), racers, version)
		}
		version++
		want["winner"] = winners[0]
		want[winners[0]] = "x"
		wantState(t, s, key, want, version)
	}
}

// race runs n concurrent commits at expected and returns the names of those
// that succeeded. Every failure must be a conflict.
func race(t *testing.T, s storage.Store, key storage.Key, expected storage.Version, n, round int) []string {
	t.Helper()
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		winners []string
		start   = make(chan struct{})
	)
	for i := range n {
		name := fmt.Sprintf("round-%d-racer-%d", round, i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, err := s.Commit(context.Background(), key, expected, []storage.Change{set("winner", name), set(name, "x")})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				winners = append(winners, name)
			case !errors.Is(err, storage.ErrConflict):
				t.Errorf("%s: err = %v, want nil or ErrConflict", name, err)
			}
		}()
	}
	close(start)
	wg.Wait()
	return winners
}

func testRemove(t *testing.T, s storage.Store) {
	v := mustCommit(t, s, grainA(), 0, set("a", "1"), set("b", "2"))
	v = mustCommit(t, s, grainA(), v, remove("a"), remove("never-set"))
	wantState(t, s, grainA(), map[string]string{"b": "2"}, v)
}

func testRemoveLastEntryKeepsVersion(t *testing.T, s storage.Store) {
	v := mustCommit(t, s, grainA(), 0, set("a", "1"))
	v = mustCommit(t, s, grainA(), v, remove("a"))
	wantState(t, s, grainA(), nil, v)
	// The version did not go back to zero, so an activation that loaded the
	// empty grain before anything was committed is still refused.
	if _, err := s.Commit(context.Background(), grainA(), 0, []storage.Change{set("a", "stale")}); !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("Commit at version 0 after the last entry was removed: err = %v, want ErrConflict", err)
	}
	mustCommit(t, s, grainA(), v, set("a", "again"))
}

func testLaterChangeWins(t *testing.T, s storage.Store) {
	v := mustCommit(t, s, grainA(), 0, set("a", "1"), set("a", "2"), set("b", "1"), remove("b"), remove("c"), set("c", "3"))
	wantState(t, s, grainA(), map[string]string{"a": "2", "c": "3"}, v)
}

func testLargeValues(t *testing.T, s storage.Store) {
	big := make([]byte, 4<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	v := mustCommit(t, s, grainA(), 0, storage.Change{Key: "big", Value: big}, storage.Change{Key: "nil", Value: nil})
	got, gotV, err := s.Load(context.Background(), grainA())
	if err != nil {
		t.Fatal(err)
	}
	if gotV != v || !bytes.Equal(got["big"], big) {
		t.Fatalf("Load: version %d, big value of %d bytes equal=%v; want version %d and the %d bytes written",
			gotV, len(got["big"]), bytes.Equal(got["big"], big), v, len(big))
	}
	if b, ok := got["nil"]; !ok || b == nil || len(b) != 0 {
		t.Fatalf("entry set to a nil value: present=%v value=%#v, want an empty non-nil slice", ok, b)
	}
	name := strings.Repeat("n", storage.MaxNameLen)
	long := storage.Key{Kind: strings.Repeat("k", storage.MaxNameLen), Identity: strings.Repeat("i", storage.MaxNameLen)}
	v = mustCommit(t, s, long, 0, set(name, "longest names"))
	wantState(t, s, long, map[string]string{name: "longest names"}, v)
}

func testManyKeys(t *testing.T, s storage.Store) {
	const n = 2000
	changes := make([]storage.Change, n)
	want := make(map[string]string, n)
	for i := range changes {
		k := fmt.Sprintf("key-%05d", i)
		changes[i] = set(k, fmt.Sprint(i))
		want[k] = fmt.Sprint(i)
	}
	v := mustCommit(t, s, grainA(), 0, changes...)
	wantState(t, s, grainA(), want, v)

	var removals []storage.Change
	for i := 0; i < n; i += 2 {
		k := fmt.Sprintf("key-%05d", i)
		removals = append(removals, remove(k))
		delete(want, k)
	}
	v = mustCommit(t, s, grainA(), v, removals...)
	wantState(t, s, grainA(), want, v)
}

// testGrainsAreSeparate writes grains whose names would collide in a store
// that joined kind and identity carelessly.
func testGrainsAreSeparate(t *testing.T, s storage.Store) {
	grains := []storage.Key{
		{Kind: "a", Identity: "b/c"},
		{Kind: "a/b", Identity: "c"},
		{Kind: "a", Identity: "bc"},
		{Kind: "ab", Identity: "c"},
		{Kind: "a", Identity: ""},
		{Kind: "a", Identity: "b"},
		{Kind: "b", Identity: "b"},
		{Kind: "é", Identity: "日本"},
	}
	for i, g := range grains {
		mustCommit(t, s, g, 0, set("who", fmt.Sprint(i)))
	}
	for i, g := range grains {
		wantState(t, s, g, map[string]string{"who": fmt.Sprint(i)}, 1)
	}
}

func testValuesAreCopies(t *testing.T, s storage.Store) {
	value := []byte("original")
	changes := []storage.Change{{Key: "k", Value: value}}
	v := mustCommit(t, s, grainA(), 0, changes...)
	copy(value, "CHANGED!")
	changes[0].Key = "other"

	got, _, err := s.Load(context.Background(), grainA())
	if err != nil {
		t.Fatal(err)
	}
	got["k"][0] = 'X'
	got["added"] = []byte("x")
	wantState(t, s, grainA(), map[string]string{"k": "original"}, v)
}

func testInvalidKeys(t *testing.T, s storage.Store) {
	ctx := context.Background()
	long := strings.Repeat("x", storage.MaxNameLen+1)
	badKeys := map[string]storage.Key{
		"empty kind":            {Kind: "", Identity: "a"},
		"NUL in kind":           {Kind: "k\x00", Identity: "a"},
		"NUL in identity":       {Kind: "k", Identity: "a\x00b"},
		"invalid UTF-8":         {Kind: "k", Identity: "\xff"},
		"kind too long":         {Kind: long, Identity: "a"},
		"identity too long":     {Kind: "k", Identity: long},
		"invalid UTF-8 in kind": {Kind: "\xc3", Identity: "a"},
	}
	for name, key := range badKeys {
		if _, _, err := s.Load(ctx, key); !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("Load with %s: err = %v, want ErrInvalid", name, err)
		}
		if _, err := s.Commit(ctx, key, 0, []storage.Change{set("a", "1")}); !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("Commit with %s: err = %v, want ErrInvalid", name, err)
		}
	}
	badChanges := map[string]storage.Change{
		"empty entry key":    set("", "v"),
		"NUL in entry key":   set("a\x00", "v"),
		"invalid UTF-8 key":  set("\xfe", "v"),
		"entry key too long": set(long, "v"),
		"bad key in removal": remove("\x00"),
	}
	for name, c := range badChanges {
		_, err := s.Commit(ctx, grainA(), 0, []storage.Change{c})
		if !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("Commit with %s: err = %v, want ErrInvalid", name, err)
		}
	}
	wantState(t, s, grainA(), nil, 0)
}

func reminder(identity, name string, due time.Time, period time.Duration) storage.Reminder {
	return storage.Reminder{Grain: storage.Key{Kind: "test.Timer", Identity: identity}, Name: name, Due: due, Period: period}
}

// due is a fixed time with nanoseconds, in a non-UTC zone, to check that
// stores keep the instant to the nanosecond and return it in UTC.
func due(offset time.Duration) time.Time {
	zone := time.FixedZone("UTC+3", 3*60*60)
	return time.Date(2026, 11, 22, 4, 5, 6, 123456789, zone).Add(offset)
}

func wantReminders(t *testing.T, s storage.Store, kind string, want ...storage.Reminder) {
	t.Helper()
	got, err := s.ListReminders(context.Background(), kind)
	if err != nil {
		t.Fatalf("ListReminders(%q): %v", kind, err)
	}
	if len(got) != len(want) {
		t.Fatalf("ListReminders(%q) = %v, want %v", kind, got, want)
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Grain != w.Grain || g.Name != w.Name || !g.Due.Equal(w.Due) || g.Period != w.Period {
			t.Errorf("ListReminders(%q)[%d] = %+v, want %+v", kind, i, g, w)
		}
		if g.Due.Location() != time.UTC {
			t.Errorf("ListReminders(%q)[%d].Due is in %v, want UTC", kind, i, g.Due.Location())
		}
	}
}

func testReminders(t *testing.T, s storage.Store) {
	ctx := context.Background()
	wantReminders(t, s, "test.Timer")

	r1 := reminder("b", "tick", due(0), time.Minute)
	r2 := reminder("a", "once", due(time.Hour), 0)
	r3 := reminder("a", "daily", due(-time.Hour), 24*time.Hour)
	for _, r := range []storage.Reminder{r1, r2, r3} {
		if err := s.SaveReminder(ctx, r); err != nil {
			t.Fatalf("SaveReminder(%+v): %v", r, err)
		}
	}
	wantReminders(t, s, "test.Timer", r3, r2, r1)

	// Saving again replaces.
	r1.Due, r1.Period = due(2*time.Hour), time.Second
	if err := s.SaveReminder(ctx, r1); err != nil {
		t.Fatal(err)
	}
	wantReminders(t, s, "test.Timer", r3, r2, r1)

	if err := s.DeleteReminder(ctx, r2.Grain, r2.Name); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteReminder(ctx, r2.Grain, r2.Name); err != nil {
		t.Fatalf("deleting a missing reminder: %v, want nil", err)
	}
	wantReminders(t, s, "test.Timer", r3, r1)

	// Reminders do not touch grain state.
	wantState(t, s, r1.Grain, nil, 0)
}

func testRemindersPerKind(t *testing.T, s storage.Store) {
	ctx := context.Background()
	var byKind = map[string][]storage.Reminder{}
	for _, kind := range []string{"k", "k2", "kk", "k/x", "é"} {
		for _, id := range []string{"", "x", "x/y"} {
			r := storage.Reminder{Grain: storage.Key{Kind: kind, Identity: id}, Name: "r-" + kind, Due: due(0)}
			if err := s.SaveReminder(ctx, r); err != nil {
				t.Fatal(err)
			}
			byKind[kind] = append(byKind[kind], r)
		}
	}
	for kind, want := range byKind {
		wantReminders(t, s, kind, want...)
	}
	wantReminders(t, s, "missing")
}

func testInvalidReminders(t *testing.T, s storage.Store) {
	ctx := context.Background()
	good := reminder("a", "tick", due(0), time.Second)
	bad := map[string]func(r *storage.Reminder){
		"empty kind":      func(r *storage.Reminder) { r.Grain.Kind = "" },
		"NUL in identity": func(r *storage.Reminder) { r.Grain.Identity = "\x00" },
		"empty name":      func(r *storage.Reminder) { r.Name = "" },
		"NUL in name":     func(r *storage.Reminder) { r.Name = "a\x00" },
		"name too long":   func(r *storage.Reminder) { r.Name = strings.Repeat("n", storage.MaxNameLen+1) },
		"zero due":        func(r *storage.Reminder) { r.Due = time.Time{} },
		"due in year 1":   func(r *storage.Reminder) { r.Due = time.Date(1, 1, 2, 0, 0, 0, 0, time.UTC) },
		"due in 3000":     func(r *storage.Reminder) { r.Due = time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC) },
		"negative period": func(r *storage.Reminder) { r.Period = -time.Second },
	}
	for name, change := range bad {
		r := good
		change(&r)
		if err := s.SaveReminder(ctx, r); !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("SaveReminder with %s: err = %v, want ErrInvalid", name, err)
		}
	}
	if err := s.DeleteReminder(ctx, good.Grain, ""); !errors.Is(err, storage.ErrInvalid) {
		t.Errorf("DeleteReminder with an empty name: err = %v, want ErrInvalid", err)
	}
	if _, err := s.ListReminders(ctx, ""); !errors.Is(err, storage.ErrInvalid) {
		t.Errorf("ListReminders with an empty kind: err = %v, want ErrInvalid", err)
	}
	wantReminders(t, s, good.Grain.Kind)
}

// completeReminder calls CompleteReminder and checks its report.
func completeReminder(t *testing.T, s storage.Store, fired storage.Reminder, next *storage.Reminder, want bool) {
	t.Helper()
	got, err := s.CompleteReminder(context.Background(), fired, next)
	if err != nil {
		t.Fatalf("CompleteReminder(%+v, %+v): %v", fired, next, err)
	}
	if got != want {
		t.Errorf("CompleteReminder(%+v, %+v) = %v, want %v", fired, next, got, want)
	}
}

func testCompleteReminder(t *testing.T, s storage.Store) {
	ctx := context.Background()
	save := func(r storage.Reminder) {
		t.Helper()
		if err := s.SaveReminder(ctx, r); err != nil {
			t.Fatalf("SaveReminder(%+v): %v", r, err)
		}
	}

	// The stored reminder is the fired one: replaced by next.
	fired := reminder("a", "tick", due(0), time.Minute)
	save(fired)
	next := fired
	next.Due = due(time.Minute)
	completeReminder(t, s, fired, &next, true)
	wantReminders(t, s, "test.Timer", next)

	// Replaced meanwhile (a new due time, then a new period): false, and
	// the other writer's reminder stays.
	completeReminder(t, s, fired, &storage.Reminder{Grain: fired.Grain, Name: fired.Name, Due: due(time.Hour)}, false)
	wantReminders(t, s, "test.Timer", next)
	other := next
	other.Period = time.Second
	save(other)
	later := next
	later.Due = due(2 * time.Minute)
	completeReminder(t, s, next, &later, false)
	completeReminder(t, s, next, nil, false)
	wantReminders(t, s, "test.Timer", other)

	// Deleted meanwhile: false, and not recreated.
	if err := s.DeleteReminder(ctx, other.Grain, other.Name); err != nil {
		t.Fatal(err)
	}
	completeReminder(t, s, other, &later, false)
	wantReminders(t, s, "test.Timer")

	// A one-shot reminder: next nil deletes it; the other reminders of the
	// grain and of other grains stay.
	once := reminder("a", "once", due(0), 0)
	keep := reminder("a", "keep", due(0), 0)
	elsewhere := reminder("b", "once", due(0), 0)
	save(once)
	save(keep)
	save(elsewhere)
	completeReminder(t, s, once, nil, true)
	wantReminders(t, s, "test.Timer", keep, elsewhere)
	completeReminder(t, s, once, nil, false) // deleted already

	// The due time is compared to the nanosecond, whatever its location.
	fine := reminder("c", "fine", due(time.Nanosecond).In(time.FixedZone("x", 3600)), time.Hour)
	save(fine)
	off := fine
	off.Due = fine.Due.Add(-time.Nanosecond)
	completeReminder(t, s, off, nil, false)
	completeReminder(t, s, fine, nil, true)
	wantReminders(t, s, "test.Timer", keep, elsewhere)
}

func testInvalidCompleteReminder(t *testing.T, s storage.Store) {
	ctx := context.Background()
	fired := reminder("a", "tick", due(0), time.Minute)
	if err := s.SaveReminder(ctx, fired); err != nil {
		t.Fatal(err)
	}
	bad := map[string]func(fired, next *storage.Reminder){
		"empty name":           func(f, _ *storage.Reminder) { f.Name = "" },
		"zero due":             func(f, _ *storage.Reminder) { f.Due = time.Time{} },
		"next of another name": func(_, n *storage.Reminder) { n.Name = "other" },
		"next of another grain": func(_, n *storage.Reminder) {
			n.Grain.Identity = "b"
		},
		"next with a negative period": func(_, n *storage.Reminder) { n.Period = -time.Second },
	}
	for name, change := range bad {
		f, n := fired, fired
		n.Due = due(time.Hour)
		change(&f, &n)
		if _, err := s.CompleteReminder(ctx, f, &n); !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("CompleteReminder with %s: err = %v, want ErrInvalid", name, err)
		}
	}
	wantReminders(t, s, "test.Timer", fired)
}

func testClosed(t *testing.T, s storage.Store) {
	ctx := context.Background()
	mustCommit(t, s, grainA(), 0, set("a", "1"))
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v, want nil", err)
	}
	r := reminder("a", "tick", due(0), 0)
	calls := map[string]error{}
	_, _, calls["Load"] = s.Load(ctx, grainA())
	_, calls["Commit"] = s.Commit(ctx, grainA(), 1, []storage.Change{set("a", "2")})
	calls["SaveReminder"] = s.SaveReminder(ctx, r)
	calls["DeleteReminder"] = s.DeleteReminder(ctx, r.Grain, r.Name)
	_, calls["CompleteReminder"] = s.CompleteReminder(ctx, r, nil)
	_, calls["ListReminders"] = s.ListReminders(ctx, r.Grain.Kind)
	for name, err := range calls {
		if !errors.Is(err, storage.ErrClosed) {
			t.Errorf("%s after Close: err = %v, want ErrClosed", name, err)
		}
	}
}

// testCloseWhileBusy closes the store while goroutines use it: every call
// must either succeed or fail with ErrClosed, never with anything else.
func testCloseWhileBusy(t *testing.T, s storage.Store) {
	const workers = 4
	var (
		wg      sync.WaitGroup
		started sync.WaitGroup
	)
	started.Add(workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := storage.Key{Kind: "test.Counter", Identity: fmt.Sprint("busy-", w)}
			var v storage.Version
			for i := 0; ; i++ {
				next, err := s.Commit(context.Background(), key, v, []storage.Change{set("i", fmt.Sprint(i))})
				if err == nil {
					v = next
					_, _, err = s.Load(context.Background(), key)
				}
				if i == 0 {
					started.Done()
				}
				if errors.Is(err, storage.ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("worker %d, call %d while closing: err = %v, want nil or ErrClosed", w, i, err)
					return
				}
			}
		}()
	}
	started.Wait() // every worker has made a call: Close lands mid-stream
	if err := s.Close(); err != nil {
		t.Errorf("Close while busy: %v", err)
	}
	wg.Wait()
}

func testCanceledContext(t *testing.T, s storage.Store) {
	v := mustCommit(t, s, grainA(), 0, set("a", "1"))
	r := reminder("a", "tick", due(0), 0)
	if err := s.SaveReminder(context.Background(), r); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	calls := map[string]error{}
	_, _, calls["Load"] = s.Load(ctx, grainA())
	_, calls["Commit"] = s.Commit(ctx, grainA(), v, []storage.Change{set("a", "2")})
	calls["SaveReminder"] = s.SaveReminder(ctx, reminder("b", "tick", due(0), 0))
	calls["DeleteReminder"] = s.DeleteReminder(ctx, r.Grain, r.Name)
	_, calls["CompleteReminder"] = s.CompleteReminder(ctx, r, nil)
	_, calls["ListReminders"] = s.ListReminders(ctx, r.Grain.Kind)
	for name, err := range calls {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a canceled context: err = %v, want context.Canceled", name, err)
		}
	}
	wantState(t, s, grainA(), map[string]string{"a": "1"}, v)
	wantReminders(t, s, r.Grain.Kind, r)
}

// testNotCommitted: a Commit or CompleteReminder whose context is done
// before the call changes nothing, and its error says so by wrapping
// storage.ErrNotCommitted, so that a caller may keep what it meant to
// commit and try again.
func testNotCommitted(t *testing.T, s storage.Store) {
	v := mustCommit(t, s, grainA(), 0, set("a", "1"))
	r := reminder("a", "tick", due(0), 0)
	if err := s.SaveReminder(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	for name, ctx := range map[string]context.Context{"canceled": canceled, "expired": expired} {
		_, err := s.Commit(ctx, grainA(), v, []storage.Change{set("a", "2")})
		if !errors.Is(err, storage.ErrNotCommitted) || !errors.Is(err, ctx.Err()) {
			t.Errorf("Commit with a %s context: err = %v, want one wrapping storage.ErrNotCommitted and %v", name, err, ctx.Err())
		}
		_, err = s.CompleteReminder(ctx, r, nil)
		if !errors.Is(err, storage.ErrNotCommitted) || !errors.Is(err, ctx.Err()) {
			t.Errorf("CompleteReminder with a %s context: err = %v, want one wrapping storage.ErrNotCommitted and %v", name, err, ctx.Err())
		}
	}
	wantState(t, s, grainA(), map[string]string{"a": "1"}, v)
	wantReminders(t, s, r.Grain.Kind, r)
}
