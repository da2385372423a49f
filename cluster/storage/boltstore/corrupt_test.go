package boltstore_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/protograin/protograin/cluster/storage"
	"github.com/protograin/protograin/cluster/storage/boltstore"
	"github.com/protograin/protograin/internal/logrecord"
)

// These tests damage store files the way a bad disk or a stray write would,
// and check that the damage comes back as errors wrapping ErrCorrupt rather
// than as a panic (which would take the whole node down) or as silently
// wrong data.

// Offsets in a bbolt file (go.etcd.io/bbolt/internal/common, little-endian
// on the platforms we run on). Every page starts with a 16-byte header: id
// (8 bytes), flags (2), count (2), overflow (4). The two meta pages, 0 and
// 1, follow it with magic (4), version (4), page size (4), flags (4), root
// bucket (16), free list page id (8), high water mark (8) and txid (8).
const (
	pageFlagsOffset    = 8
	metaPageSizeOffset = 16 + 8
	metaFreelistOffset = 16 + 32
	metaTxidOffset     = 16 + 48
	badPageFlags       = 0x40 // no page type bbolt knows
)

// filePageSize returns the page size recorded in the bbolt file b.
func filePageSize(t *testing.T, b []byte) int {
	t.Helper()
	if len(b) < metaPageSizeOffset+4 {
		t.Fatalf("file of %d bytes is too short for a bbolt file", len(b))
	}
	return int(binary.LittleEndian.Uint32(b[metaPageSizeOffset:]))
}

// damagePages gives every page of the bbolt file at path that contains
// marker flags of no known page type, as a bit flip in a page header
// would. Old copies of a page that bbolt freed are damaged too; they are
// not read. It fails the test if no page contains marker.
func damagePages(t *testing.T, path string, marker []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ps := filePageSize(t, b)
	damaged := 0
	for off := 0; ; {
		i := bytes.Index(b[off:], marker)
		if i < 0 {
			break
		}
		page := (off + i) / ps * ps
		binary.LittleEndian.PutUint16(b[page+pageFlagsOffset:], badPageFlags)
		damaged++
		off = page + ps
	}
	if damaged == 0 {
		t.Fatalf("no page of %s contains %q", path, marker)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// editFile changes the bbolt file at path directly, bypassing the store, in
// one transaction.
func editFile(t *testing.T, path string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(fn)
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("edit %s: %v", path, err)
	}
}

// wantCorrupt fails the test unless err wraps ErrCorrupt and its message
// holds each of parts.
func wantCorrupt(t *testing.T, what string, err error, parts ...string) {
	t.Helper()
	if !errors.Is(err, boltstore.ErrCorrupt) {
		t.Fatalf("%s: err = %v, want ErrCorrupt", what, err)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("%s: error %q does not say %q", what, err, p)
		}
	}
}

// TestDamagedPageIsAnError damages the page holding one grain's entries and
// the page holding one reminder. bbolt panics when it reaches such a page;
// the store must return an error wrapping ErrCorrupt, naming the file and
// the panic, from Load, ListReminders, Commit and SaveReminder alike. After
// the panic of a read the store goes on; after the panic of a write it
// refuses writes, but still reads intact grains.
func TestDamagedPageIsAnError(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "grains.db")
	s := open(t, path, boltstore.Config{})

	// Enough grains and reminders to fill several pages each. Grain keys
	// sort byte-wise, so g100 is near the start of the grains bucket and
	// g99 at its end: they are on different pages.
	const n = 200
	grainMarker := []byte("DAMAGE-ME-GRAIN")
	reminderMarker := "damage-me-reminder"
	due := time.Unix(1000, 0).UTC()
	for i := range n {
		key := storage.Key{Kind: "test.Counter", Identity: fmt.Sprint("g", i)}
		value := bytes.Repeat([]byte{'x'}, 100)
		if i == 100 {
			value = append(grainMarker, value...)
		}
		if _, err := s.Commit(ctx, key, 0, []storage.Change{{Key: "k", Value: value}}); err != nil {
			t.Fatal(err)
		}
		name := "tick"
		if i == 100 {
			name = reminderMarker
		}
		r := storage.Reminder{Grain: storage.Key{Kind: "test.Timer", Identity: fmt.Sprint("r", i)}, Name: name, Due: due}
		if err := s.SaveReminder(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	damagePages(t, path, grainMarker)
	damagePages(t, path, []byte(reminderMarker))

	s = open(t, path, boltstore.Config{})
	damaged := storage.Key{Kind: "test.Counter", Identity: "g100"}
	intact := storage.Key{Kind: "test.Counter", Identity: "g99"}

	// Reads that reach the damage fail; other reads and writes go on.
	_, _, err := s.Load(ctx, damaged)
	wantCorrupt(t, "Load of the damaged grain", err, path, "panic", "unexpected type/flags")
	_, err = s.ListReminders(ctx, "test.Timer")
	wantCorrupt(t, "ListReminders of the damaged kind", err, path, "panic")
	got, v, err := s.Load(ctx, intact)
	if err != nil || v != 1 || len(got["k"]) != 100 {
		t.Fatalf("Load of an intact grain after a read hit the damage: %d entries at version %d, %v; want k at version 1", len(got), v, err)
	}
	if _, err := s.Commit(ctx, intact, 1, []storage.Change{{Key: "k", Value: []byte("after")}}); err != nil {
		t.Fatalf("Commit of an intact grain after a read hit the damage: %v", err)
	}

	// A write that reaches the damage fails, and so does every later write.
	_, err = s.Commit(ctx, damaged, 1, []storage.Change{{Key: "k", Value: []byte("new")}})
	wantCorrupt(t, "Commit of the damaged grain", err, path, "panic in a write transaction")
	_, err = s.Commit(ctx, intact, 2, []storage.Change{{Key: "k", Value: []byte("refused")}})
	wantCorrupt(t, "Commit of an intact grain after a write hit the damage", err, path, "writes refused")
	err = s.SaveReminder(ctx, storage.Reminder{Grain: intact, Name: "tick", Due: due})
	wantCorrupt(t, "SaveReminder after a write hit the damage", err, "writes refused")
	err = s.DeleteReminder(ctx, intact, "tick")
	wantCorrupt(t, "DeleteReminder after a write hit the damage", err, "writes refused")

	// Intact grains can still be read, to be copied out.
	got, v, err = s.Load(ctx, intact)
	if err != nil || v != 2 || string(got["k"]) != "after" {
		t.Fatalf("Load of an intact grain after a write hit the damage: %q at version %d, %v; want k=after at version 2", got, v, err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close after the damage: %v", err)
	}
}

// TestPageNumberPastTheFileIsAnError damages the branch pages of the file
// so that they point to a page far past the end of the file. bbolt reads
// such a page without checking its number, from an address outside its
// memory map: the store must turn the fault into an error wrapping
// ErrCorrupt, where the Go runtime would otherwise crash the process.
func TestPageNumberPastTheFileIsAnError(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "grains.db")
	s := open(t, path, boltstore.Config{})
	// Enough grains to need a branch page above the leaves.
	for i := range 200 {
		key := storage.Key{Kind: "test.Counter", Identity: fmt.Sprint("g", i)}
		if _, err := s.Commit(ctx, key, 0, []storage.Change{{Key: "k", Value: bytes.Repeat([]byte{'x'}, 100)}}); err != nil {
			t.Fatal(err)
		}
	}
	b, ps := closeAndRead(t, s, path)
	// A branch page (flags 0x01) lists its children after the header as
	// 16-byte elements: key position (4), key size (4), page id (8). The
	// first child gets page 1<<30, terabytes past the end of the file (and
	// past its memory map) yet below the bound of bbolt's page array.
	const branchPage, farPage = 0x01, 1 << 30
	damaged := 0
	for page := 2 * ps; page+ps <= len(b); page += ps {
		if binary.LittleEndian.Uint16(b[page+pageFlagsOffset:]) == branchPage {
			binary.LittleEndian.PutUint64(b[page+16+8:], farPage)
			damaged++
		}
	}
	if damaged == 0 {
		t.Fatal("no branch page in the file")
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}

	s = open(t, path, boltstore.Config{})
	// g0 has the smallest key: it is under the first child of the branch.
	_, _, err := s.Load(ctx, storage.Key{Kind: "test.Counter", Identity: "g0"})
	wantCorrupt(t, "Load of a grain under a page past the file", err, path, "panic")
	_, err = s.Commit(ctx, storage.Key{Kind: "test.Counter", Identity: "g0"}, 1, nil)
	wantCorrupt(t, "Commit of a grain under a page past the file", err, path, "panic")
}

// TestDamagedFreelistIsAnError damages the page that holds bbolt's free
// list, which bbolt reads, and panics on, while it opens the file. Open must
// return an error wrapping ErrCorrupt, and release the file: a second Open
// gives the same error, not ErrLocked.
func TestDamagedFreelistIsAnError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "grains.db")
	s := open(t, path, boltstore.Config{})
	if _, err := s.Commit(context.Background(), storage.Key{Kind: "test.Counter", Identity: "a"}, 0, []storage.Change{{Key: "k", Value: []byte("v")}}); err != nil {
		t.Fatal(err)
	}
	b, ps := closeAndRead(t, s, path)
	meta := 0 // the meta page of the latest transaction is the current one
	if binary.LittleEndian.Uint64(b[ps+metaTxidOffset:]) > binary.LittleEndian.Uint64(b[metaTxidOffset:]) {
		meta = ps
	}
	freelist := int(binary.LittleEndian.Uint64(b[meta+metaFreelistOffset:]))
	binary.LittleEndian.PutUint16(b[freelist*ps+pageFlagsOffset:], badPageFlags)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}

	for i := range 2 {
		s, err := boltstore.Open(path, boltstore.Config{LockTimeout: -1})
		if err == nil {
			s.Close()
		}
		wantCorrupt(t, fmt.Sprintf("Open %d of a file with a damaged free list", i+1), err, path, "panic")
	}
}

// recordErr returns the "err" attribute of r.
func recordErr(r slog.Record) error {
	var err error
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "err" {
			err, _ = a.Value.Any().(error)
		}
		return err == nil
	})
	return err
}

// TestUndecodableReminderIsSkipped damages the reminder record of one grain
// of a kind: ListReminders must still list the others, and log the damaged
// one at error level with an error wrapping ErrCorrupt that names it. Saving
// the reminder again repairs the record.
func TestUndecodableReminderIsSkipped(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "grains.db")
	s := open(t, path, boltstore.Config{})
	reminder := func(identity string) storage.Reminder {
		return storage.Reminder{Grain: storage.Key{Kind: "test.Timer", Identity: identity}, Name: "tick", Due: time.Unix(100, 0).UTC(), Period: time.Minute}
	}
	for _, id := range []string{"a", "b", "c"} {
		if err := s.SaveReminder(ctx, reminder(id)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	editFile(t, path, func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("reminders"))
		c := b.Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if bytes.HasSuffix(k, []byte("\x01btick")) { // identity "b", name "tick"
				return b.Put(bytes.Clone(k), []byte{1, 2, 3})
			}
		}
		return errors.New("no reminder record of grain b")
	})

	var log logrecord.Recorder
	s = open(t, path, boltstore.Config{Logger: slog.New(&log)})
	rs, err := s.ListReminders(ctx, "test.Timer")
	if err != nil {
		t.Fatalf("ListReminders beside a damaged record: %v", err)
	}
	if want := []storage.Reminder{reminder("a"), reminder("c")}; !slices.Equal(rs, want) {
		t.Fatalf("ListReminders beside a damaged record = %+v, want %+v", rs, want)
	}
	records := log.Take()
	if len(records) != 1 || records[0].Level != slog.LevelError {
		t.Fatalf("logged %d records (%v), want the damaged record at error level", len(records), records)
	}
	wantCorrupt(t, "logged error", recordErr(records[0]), `"tick"`, `"b"`, "value of 3 bytes")

	if err := s.SaveReminder(ctx, reminder("b")); err != nil {
		t.Fatal(err)
	}
	rs, err = s.ListReminders(ctx, "test.Timer")
	if want := []storage.Reminder{reminder("a"), reminder("b"), reminder("c")}; err != nil || !slices.Equal(rs, want) {
		t.Fatalf("ListReminders after saving the damaged reminder again = %+v, %v; want %+v", rs, err, want)
	}
	if records := log.Take(); len(records) != 0 {
		t.Errorf("logged %v after the repair, want nothing", records)
	}
}

// damageGrain commits an entry to grain key in a new store, closes it, has
// damage change the file's grains bucket, holding the grain's entries under
// k, and opens the store again.
func damageGrain(t *testing.T, key storage.Key, damage func(grains *bolt.Bucket, k []byte) error) *boltstore.Store {
	t.Helper()
	path := filepath.Join(t.TempDir(), "grains.db")
	s := open(t, path, boltstore.Config{})
	if _, err := s.Commit(context.Background(), key, 0, []storage.Change{{Key: "balance", Value: []byte("100")}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	editFile(t, path, func(tx *bolt.Tx) error {
		grains := tx.Bucket([]byte("grains"))
		k, _ := grains.Cursor().First()
		if k == nil {
			return errors.New("no grain")
		}
		return damage(grains, bytes.Clone(k))
	})
	return open(t, path, boltstore.Config{})
}

// TestGrainEntriesTurnedValueIsCorrupt replaces the nested bucket holding a
// grain's entries by a plain value. Load must report ErrCorrupt rather than
// an empty grain at the stored version, from which the grain would start
// afresh; and Commit must not write over it either.
func TestGrainEntriesTurnedValueIsCorrupt(t *testing.T) {
	ctx := context.Background()
	key := storage.Key{Kind: "test.Account", Identity: "a"}
	s := damageGrain(t, key, func(grains *bolt.Bucket, k []byte) error {
		if err := grains.DeleteBucket(k); err != nil {
			return err
		}
		return grains.Put(k, []byte("garbage"))
	})
	got, v, err := s.Load(ctx, key)
	if err == nil {
		t.Fatalf("Load of a grain whose entries are a plain value = %q at version %d, want ErrCorrupt", got, v)
	}
	wantCorrupt(t, "Load", err, "plain value")
	// A commit that only removes entries would otherwise find no bucket,
	// change nothing and raise the version, as if all were well.
	_, err = s.Commit(ctx, key, 1, []storage.Change{{Key: "balance", Remove: true}})
	wantCorrupt(t, "Commit that removes an entry", err, "plain value")
	_, err = s.Commit(ctx, key, 1, []storage.Change{{Key: "balance", Value: []byte("50")}})
	wantCorrupt(t, "Commit that sets an entry", err, "plain value")
}

// closeAndRead closes s and returns the bytes of its file at path and the
// file's page size, for a test to damage.
func closeAndRead(t *testing.T, s *boltstore.Store, path string) ([]byte, int) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b, filePageSize(t, b)
}

// An entry of a grain that is a nested bucket, which this package never
// writes, is damage: Load would otherwise read it as an empty entry.
func TestGrainEntryTurnedBucketIsCorrupt(t *testing.T) {
	ctx := context.Background()
	key := storage.Key{Kind: "test.Account", Identity: "a"}
	s := damageGrain(t, key, func(grains *bolt.Bucket, k []byte) error {
		_, err := grains.Bucket(k).CreateBucket([]byte("owner"))
		return err
	})
	got, v, err := s.Load(ctx, key)
	if err == nil {
		t.Fatalf("Load of a grain with an entry that is a bucket = %q at version %d, want ErrCorrupt", got, v)
	}
	wantCorrupt(t, "Load", err, `entry "owner" of the grain is a bucket`)
	_, err = s.Commit(ctx, key, 1, []storage.Change{{Key: "owner", Value: []byte("bob")}})
	wantCorrupt(t, "Commit that sets the entry", err, `entry "owner" of the grain is a bucket`)
	_, err = s.Commit(ctx, key, 1, []storage.Change{{Key: "owner", Remove: true}})
	wantCorrupt(t, "Commit that removes the entry", err, `entry "owner" of the grain is a bucket`)
}
