package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/protograin/protograin/cluster/storage"
	"github.com/protograin/protograin/cluster/storage/internal/storeutil"
)

// ErrLocked is returned by Open when another process, or another Store in
// this process, has the file open.
var ErrLocked = errors.New("boltstore: database file is locked")

// ErrCorrupt is returned when the file holds a record this package cannot
// read: a file written by something else, or damaged. A damaged page makes
// bbolt panic; Open and the Store's methods turn that panic into an error
// wrapping ErrCorrupt that names the file and the panic (see Store for what
// the Store does next). Check such a file with the bbolt command (bbolt
// check) and repair it or restore it from a backup.
var ErrCorrupt = errors.New("boltstore: corrupt database")

// DefaultLockTimeout is how long Open waits for the file lock when
// Config.LockTimeout is zero.
const DefaultLockTimeout = time.Second

// Config configures a Store. The zero Config is ready to use.
type Config struct {
	// LockTimeout is how long Open waits for the file lock while another
	// process holds it, before it fails with ErrLocked. Zero means
	// DefaultLockTimeout; a negative value means Open tries once and does
	// not wait.
	LockTimeout time.Duration

	// FileMode is the permission of a file Open creates. Zero means 0o600:
	// grain state is private to the node's user.
	FileMode os.FileMode

	// Logger receives the reminder records that ListReminders skips because
	// they do not decode, at error level. Nil means slog.Default().
	Logger *slog.Logger
}

// layoutVersion is the version of the file layout described in the package
// doc, stored in the meta bucket so a future layout can tell old files.
const layoutVersion = "1"

// Bucket and key names; converted to []byte where bbolt wants them.
const (
	bucketMeta      = "meta"
	bucketGrains    = "grains"
	bucketVersions  = "versions"
	bucketReminders = "reminders"
	metaLayout      = "layout"
)

// Store is a storage.Store kept in one bbolt file. It is safe for
// concurrent use. Commits that wait at once share a transaction and its
// sync (see group.go), since bbolt has a single writer.
//
// A damaged page makes bbolt panic. Every method recovers such a panic and
// returns an error wrapping ErrCorrupt instead. bbolt rolls back the
// transaction that panicked, so none of its changes take effect. After a
// panic in a read transaction the Store goes on: bbolt's state is intact,
// and grains whose pages are intact still load. After a panic in a write
// transaction (Commit, SaveReminder, DeleteReminder, CompleteReminder) the
// Store refuses every later write with an error wrapping ErrCorrupt, while
// reads go on so that intact grains can still be loaded and copied out:
// writing on into a file known to be damaged risks spreading the damage
// (bbolt overwrites the pages its free list names, and a damaged file may
// name pages still in use). The file needs checking and repair (bbolt
// check, a backup) before it is used again. If a panic struck bbolt's own
// clean-up, so that the transaction still holds bbolt's locks, reads are
// refused too, and Close leaves the file open and locked until the process
// exits rather than wait for those locks forever.
type Store struct {
	path string
	log  *slog.Logger

	// mu guards closed. Operations hold it for reading while they run, so
	// Close (which holds it for writing) waits for them and later
	// operations see closed instead of a closed bbolt handle.
	mu     sync.RWMutex
	closed bool
	db     *bolt.DB

	// writes carries every write to the committer (runCommitter), which
	// closes committerDone when Close has closed writes.
	writes        chan *pending
	committerDone chan struct{}
	// groups counts the committer's transactions, for tests.
	groups atomic.Uint64

	// failMu guards the fields below, which describe the first panic that
	// made the Store refuse operations.
	failMu sync.Mutex
	// noWrites, once set, makes every later write fail.
	noWrites string
	// stuck, once set, makes every later operation fail: a transaction
	// that panicked was left open and holds bbolt's locks, so Close must
	// not call bbolt's Close, which would wait for them.
	stuck string
}

var _ storage.Store = (*Store)(nil)

// Open opens the store in the file at path, creating the file if needed.
func Open(path string, cfg Config) (*Store, error) {
	timeout := cfg.LockTimeout
	switch {
	case timeout == 0:
		timeout = DefaultLockTimeout
	case timeout < 0:
		// bbolt treats zero as "wait forever"; the shortest positive
		// timeout makes it try once.
		timeout = time.Nanosecond
	}
	mode := cfg.FileMode
	if mode == 0 {
		mode = 0o600
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	db, err := openDB(path, mode, timeout)
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s is in use by another process or store (%s)", ErrLocked, path, waited(cfg.LockTimeout))
	}
	if err != nil {
		return nil, fmt.Errorf("boltstore: open %s: %w", path, err)
	}
	s := &Store{
		path:          path,
		log:           logger,
		db:            db,
		writes:        make(chan *pending, maxGroup),
		committerDone: make(chan struct{}),
	}
	go s.runCommitter()
	if err := s.write(context.Background(), nil, initLayout); err != nil {
		s.Close()
		return nil, fmt.Errorf("boltstore: open %s: %w", path, err)
	}
	return s, nil
}

// openDB opens the bbolt file at path. bbolt reads the file's free list
// while it opens it and panics if that page is damaged; openDB returns an
// error wrapping ErrCorrupt instead, and unlocks and closes the file so that
// a repair tool or a later Open can lock it. The memory map bbolt made stays
// until the process exits: bbolt gives no handle to unmap it.
func openDB(path string, mode os.FileMode, timeout time.Duration) (db *bolt.DB, err error) {
	var file *os.File
	openFile := func(name string, flag int, perm os.FileMode) (*os.File, error) {
		f, err := os.OpenFile(name, flag, perm)
		file = f
		return f, err
	}
	defer func() {
		if p := recover(); p != nil {
			if file != nil {
				unlockFile(file)
				file.Close()
			}
			db, err = nil, fmt.Errorf("%w: %s: panic while bbolt opened it: %v", ErrCorrupt, path, p)
		}
	}()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	return bolt.Open(path, mode, &bolt.Options{Timeout: timeout, OpenFile: openFile})
}

func waited(lockTimeout time.Duration) string {
	switch {
	case lockTimeout < 0:
		return "Config.LockTimeout is negative: did not wait"
	case lockTimeout == 0:
		lockTimeout = DefaultLockTimeout
	}
	return fmt.Sprintf("waited %v for its lock", lockTimeout)
}

// initLayout creates the buckets of a new file and checks the layout
// version of an existing one.
func initLayout(tx *bolt.Tx) error {
	meta := tx.Bucket([]byte(bucketMeta))
	if meta == nil {
		if len(bucketNames(tx)) > 0 {
			return fmt.Errorf("%w: buckets %q but no %q bucket: not a protograin store", ErrCorrupt, bucketNames(tx), bucketMeta)
		}
		var err error
		if meta, err = tx.CreateBucket([]byte(bucketMeta)); err != nil {
			return err
		}
		if err := meta.Put([]byte(metaLayout), []byte(layoutVersion)); err != nil {
			return err
		}
	}
	if got := string(meta.Get([]byte(metaLayout))); got != layoutVersion {
		return fmt.Errorf("%w: layout version %q, this build reads %q", ErrCorrupt, got, layoutVersion)
	}
	for _, name := range []string{bucketGrains, bucketVersions, bucketReminders} {
		if _, err := tx.CreateBucketIfNotExists([]byte(name)); err != nil {
			return err
		}
	}
	return nil
}

func bucketNames(tx *bolt.Tx) []string {
	var names []string
	tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
		names = append(names, string(name))
		return nil
	})
	return names
}

// Path returns the path of the store's file.
func (s *Store) Path() string { return s.path }

// view runs fn in a read-only transaction unless the store is closed or
// refuses reads. A panic of bbolt (a damaged page) becomes an error wrapping
// ErrCorrupt.
func (s *Store) view(fn func(tx *bolt.Tx) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.usable(false); err != nil {
		return err
	}
	return s.guarded(false, s.db.View, fn)
}

// usable returns an error if the store is closed or, after an earlier
// panic, refuses the operation (a write if write is set). The caller holds
// s.mu.
func (s *Store) usable(write bool) error {
	if s.closed {
		return storage.ErrClosed
	}
	return s.refused(write)
}

// guarded runs fn in a transaction of run (bbolt's View or Update; write
// says which), turning a panic of bbolt into an error wrapping ErrCorrupt.
func (s *Store) guarded(write bool, run func(func(*bolt.Tx) error) error, fn func(tx *bolt.Tx) error) (err error) {
	var tx *bolt.Tx
	defer func() {
		if p := recover(); p != nil {
			err = s.panicked(p, tx, write)
		}
	}()
	// A damaged page can also hold a page number past the end of the
	// memory map: without this, reading it would crash the process.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	return run(func(t *bolt.Tx) error {
		tx = t
		return fn(t)
	})
}

// panicked records the panic p of bbolt in transaction tx (nil if the panic
// came before the transaction began) and returns the error to report.
func (s *Store) panicked(p any, tx *bolt.Tx, write bool) error {
	what := "read"
	if write {
		what = "write"
	}
	desc := fmt.Sprintf("panic in a %s transaction: %v", what, p)
	// bbolt's Update and View roll back a transaction whose function
	// panics, which releases its locks and clears its DB. A transaction
	// that still has its DB was not closed: its locks stay held.
	stuck := tx == nil || tx.DB() != nil
	s.failMu.Lock()
	defer s.failMu.Unlock()
	if (write || stuck) && s.noWrites == "" {
		s.noWrites = desc
	}
	if stuck && s.stuck == "" {
		s.stuck = desc
	}
	return fmt.Errorf("%w: %s: %s", ErrCorrupt, s.path, desc)
}

// refused returns an error wrapping ErrCorrupt if an earlier panic made the
// store refuse the operation, a write if write is set.
func (s *Store) refused(write bool) error {
	s.failMu.Lock()
	defer s.failMu.Unlock()
	switch {
	case s.stuck != "":
		return fmt.Errorf("%w: %s: refused since an earlier %s left bbolt's locks held", ErrCorrupt, s.path, s.stuck)
	case write && s.noWrites != "":
		return fmt.Errorf("%w: %s: writes refused since an earlier %s", ErrCorrupt, s.path, s.noWrites)
	}
	return nil
}

// topBucket returns the top-level bucket name, which Open created.
func topBucket(tx *bolt.Tx, name string) (*bolt.Bucket, error) {
	b := tx.Bucket([]byte(name))
	if b == nil {
		return nil, fmt.Errorf("%w: no %q bucket", ErrCorrupt, name)
	}
	return b, nil
}

// Load implements storage.Store.
func (s *Store) Load(ctx context.Context, key storage.Key) (map[string][]byte, storage.Version, error) {
	if err := storeutil.CheckKey(ctx, key); err != nil {
		return nil, 0, err
	}
	gk := grainKey(key)
	entries := make(map[string][]byte)
	var version storage.Version
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		if version, err = readVersion(tx, gk); err != nil {
			return err
		}
		grains, err := topBucket(tx, bucketGrains)
		if err != nil {
			return err
		}
		b, err := entryBucket(grains, gk)
		if b == nil || err != nil {
			return err
		}
		// Values point into the memory map only while tx is open: copy.
		return b.ForEach(func(k, v []byte) error {
			if v == nil {
				// bbolt's nil value is a nested bucket, which this
				// package never writes there: read as an empty entry,
				// it would hide the damage.
				return entryErr(string(k), berrors.ErrIncompatibleValue)
			}
			entries[string(k)] = storeutil.Clone(v)
			return nil
		})
	})
	if err != nil {
		return nil, 0, fmt.Errorf("boltstore: load grain %s: %w", key, err)
	}
	return entries, version, nil
}

// Commit implements storage.Store. The commits of several goroutines that
// wait at once share one transaction, in which each is checked and applied
// on its own: one's conflict does not fail the others (see group.go).
func (s *Store) Commit(ctx context.Context, key storage.Key, expected storage.Version, changes []storage.Change) (storage.Version, error) {
	if err := storeutil.CheckCommit(ctx, key, changes); err != nil {
		return 0, err
	}
	effect := storeutil.Coalesce(changes)
	gk := grainKey(key)
	next := expected + 1
	err := s.write(ctx,
		func(tx *bolt.Tx) error { return checkVersion(tx, key, gk, expected) },
		func(tx *bolt.Tx) error { return writeCommit(tx, gk, effect, next) })
	if errors.Is(err, storage.ErrConflict) {
		return 0, err
	}
	if err != nil {
		return 0, fmt.Errorf("boltstore: commit grain %s: %w", key, err)
	}
	return next, nil
}

// applyEntries applies effect to the nested bucket of grain gk, creating it
// for the first entry and dropping it with the last: the grain's version,
// kept in its own bucket, outlives its entries.
func applyEntries(grains *bolt.Bucket, gk []byte, effect storeutil.Coalesced) error {
	b, err := entryBucket(grains, gk)
	if err != nil {
		return err
	}
	if b == nil && len(effect.Set) == 0 {
		return nil
	}
	if b == nil {
		if b, err = grains.CreateBucket(gk); err != nil {
			return err
		}
	}
	for _, k := range effect.Remove {
		if err := b.Delete([]byte(k)); err != nil {
			return entryErr(k, err)
		}
	}
	for k, v := range effect.Set {
		if err := b.Put([]byte(k), v); err != nil {
			return entryErr(k, err)
		}
	}
	if k, _ := b.Cursor().First(); k == nil {
		return grains.DeleteBucket(gk)
	}
	return nil
}

// entryErr returns the error for bbolt's err on the grain's entry k: a
// bucket in the entry's place (bbolt's ErrIncompatibleValue) is damage,
// which this package never writes.
func entryErr(k string, err error) error {
	if errors.Is(err, berrors.ErrIncompatibleValue) {
		return fmt.Errorf("%w: entry %q of the grain is a bucket, not a value (%w)", ErrCorrupt, k, err)
	}
	return err
}

// entryBucket returns the nested bucket of grain gk in grains, or nil if
// the grain has no entries. A plain value in its place is an error wrapping
// ErrCorrupt: read as no entries, it would start the grain from empty state.
func entryBucket(grains *bolt.Bucket, gk []byte) (*bolt.Bucket, error) {
	if b := grains.Bucket(gk); b != nil {
		return b, nil
	}
	if v := grains.Get(gk); v != nil {
		return nil, fmt.Errorf("%w: the entries of the grain are a plain value of %d bytes, not a bucket", ErrCorrupt, len(v))
	}
	return nil, nil
}

func readVersion(tx *bolt.Tx, gk []byte) (storage.Version, error) {
	versions, err := topBucket(tx, bucketVersions)
	if err != nil {
		return 0, err
	}
	b := versions.Get(gk)
	switch len(b) {
	case 0:
		return 0, nil
	case 8:
		return storage.Version(binary.BigEndian.Uint64(b)), nil
	default:
		return 0, fmt.Errorf("%w: version record of %d bytes, want 8", ErrCorrupt, len(b))
	}
}

// SaveReminder implements storage.Store.
func (s *Store) SaveReminder(ctx context.Context, r storage.Reminder) error {
	if err := storeutil.CheckReminder(ctx, r); err != nil {
		return err
	}
	err := s.write(ctx, nil, func(tx *bolt.Tx) error {
		b, err := topBucket(tx, bucketReminders)
		if err != nil {
			return err
		}
		return b.Put(reminderKey(r.Grain, r.Name), encodeReminder(r))
	})
	if err != nil {
		return fmt.Errorf("boltstore: save reminder %q of grain %s: %w", r.Name, r.Grain, err)
	}
	return nil
}

// DeleteReminder implements storage.Store.
func (s *Store) DeleteReminder(ctx context.Context, key storage.Key, name string) error {
	if err := storeutil.CheckReminderKey(ctx, key, name); err != nil {
		return err
	}
	err := s.write(ctx, nil, func(tx *bolt.Tx) error {
		b, err := topBucket(tx, bucketReminders)
		if err != nil {
			return err
		}
		return b.Delete(reminderKey(key, name))
	})
	if err != nil {
		return fmt.Errorf("boltstore: delete reminder %q of grain %s: %w", name, key, err)
	}
	return nil
}

// CompleteReminder implements storage.Store. The comparison and the write
// are one bbolt transaction. A record of the reminder that does not decode
// is not the fired one: it is left alone, and false reported.
func (s *Store) CompleteReminder(ctx context.Context, fired storage.Reminder, next *storage.Reminder) (bool, error) {
	if err := storeutil.CheckCompleteReminder(ctx, fired, next); err != nil {
		return false, err
	}
	var done bool
	err := s.write(ctx, nil, func(tx *bolt.Tx) error {
		done = false
		b, err := topBucket(tx, bucketReminders)
		if err != nil {
			return err
		}
		k := reminderKey(fired.Grain, fired.Name)
		// Due and Period are stored as their nanoseconds, so comparing the
		// encoded values compares them exactly.
		if v := b.Get(k); v == nil || !bytes.Equal(v, encodeReminder(fired)) {
			return nil
		}
		done = true
		if next == nil {
			return b.Delete(k)
		}
		return b.Put(k, encodeReminder(*next))
	})
	if err != nil {
		return false, fmt.Errorf("boltstore: complete reminder %q of grain %s: %w", fired.Name, fired.Grain, err)
	}
	return done, nil
}

// ListReminders implements storage.Store. A reminder record that does not
// decode (a damaged file) is skipped and logged at error level to
// Config.Logger, with an error wrapping ErrCorrupt that names it: failing
// the whole listing would hide every other reminder of the kind, and keep a
// node that lists them at start-up from starting. Saving the reminder again,
// or deleting it, replaces the record.
func (s *Store) ListReminders(ctx context.Context, kind string) ([]storage.Reminder, error) {
	if err := storeutil.CheckKind(ctx, kind); err != nil {
		return nil, err
	}
	prefix := appendString(nil, kind)
	var out []storage.Reminder
	var skipped []error
	err := s.view(func(tx *bolt.Tx) error {
		b, err := topBucket(tx, bucketReminders)
		if err != nil {
			return err
		}
		c := b.Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			r, err := decodeReminder(k, v)
			if err != nil {
				skipped = append(skipped, err)
				continue
			}
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("boltstore: list reminders of kind %q: %w", kind, err)
	}
	for _, err := range skipped {
		s.log.LogAttrs(ctx, slog.LevelError, "boltstore: skipped a reminder record that does not decode",
			slog.String("file", s.path), slog.String("kind", kind), slog.Any("err", err))
	}
	// Keys sort by identity length first; the interface promises byte order.
	storeutil.SortReminders(out)
	return out, nil
}

// Close implements storage.Store. It waits for operations under way. If a
// panic left a transaction holding bbolt's locks, Close does not wait for
// them: it returns an error wrapping ErrCorrupt, and the file stays open and
// locked until the process exits.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	// No write is being sent, nor waits for its outcome (each holds s.mu
	// meanwhile): the committer has only withdrawn writes left, if any,
	// which it skips before it ends.
	close(s.writes)
	<-s.committerDone
	s.failMu.Lock()
	stuck := s.stuck
	s.failMu.Unlock()
	if stuck != "" {
		return fmt.Errorf("boltstore: close %s: %w: the file stays open and locked until the process exits, since an earlier %s left bbolt's locks held", s.path, ErrCorrupt, stuck)
	}
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("boltstore: close %s: %w", s.path, err)
	}
	return nil
}
