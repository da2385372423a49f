package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
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
// read: a file written by something else, or damaged.
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
// concurrent use; commits are serialized by bbolt's single writer.
type Store struct {
	path string

	// mu guards closed. Operations hold it for reading while they run, so
	// Close (which holds it for writing) waits for them and later
	// operations see closed instead of a closed bbolt handle.
	mu     sync.RWMutex
	closed bool
	db     *bolt.DB
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
	db, err := bolt.Open(path, mode, &bolt.Options{Timeout: timeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s is in use by another process or store (%s)", ErrLocked, path, waited(cfg.LockTimeout))
	}
	if err != nil {
		return nil, fmt.Errorf("boltstore: open %s: %w", path, err)
	}
	if err := db.Update(initLayout); err != nil {
		db.Close()
		return nil, fmt.Errorf("boltstore: open %s: %w", path, err)
	}
	return &Store{path: path, db: db}, nil
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

// view runs fn in a read-only transaction unless the store is closed.
func (s *Store) view(fn func(tx *bolt.Tx) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return storage.ErrClosed
	}
	return s.db.View(fn)
}

// update runs fn in a read-write transaction unless the store is closed or
// ctx ended while it waited for bbolt's writer lock.
func (s *Store) update(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return storage.ErrClosed
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		if err := ctx.Err(); err != nil {
			return storeutil.Canceled(err)
		}
		return fn(tx)
	})
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
		b := tx.Bucket([]byte(bucketGrains)).Bucket(gk)
		if b == nil {
			return nil
		}
		// Values point into the memory map only while tx is open: copy.
		return b.ForEach(func(k, v []byte) error {
			entries[string(k)] = storeutil.Clone(v)
			return nil
		})
	})
	if err != nil {
		return nil, 0, fmt.Errorf("boltstore: load grain %s: %w", key, err)
	}
	return entries, version, nil
}

// Commit implements storage.Store.
func (s *Store) Commit(ctx context.Context, key storage.Key, expected storage.Version, changes []storage.Change) (storage.Version, error) {
	if err := storeutil.CheckCommit(ctx, key, changes); err != nil {
		return 0, err
	}
	effect := storeutil.Coalesce(changes)
	gk := grainKey(key)
	next := expected + 1
	err := s.update(ctx, func(tx *bolt.Tx) error {
		stored, err := readVersion(tx, gk)
		if err != nil {
			return err
		}
		if stored != expected {
			return storeutil.Conflict(key, expected, stored)
		}
		if err := applyEntries(tx.Bucket([]byte(bucketGrains)), gk, effect); err != nil {
			return err
		}
		return tx.Bucket([]byte(bucketVersions)).Put(gk, binary.BigEndian.AppendUint64(nil, uint64(next)))
	})
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
	b := grains.Bucket(gk)
	if b == nil && len(effect.Set) == 0 {
		return nil
	}
	if b == nil {
		var err error
		if b, err = grains.CreateBucket(gk); err != nil {
			return err
		}
	}
	for _, k := range effect.Remove {
		if err := b.Delete([]byte(k)); err != nil {
			return err
		}
	}
	for k, v := range effect.Set {
		if err := b.Put([]byte(k), v); err != nil {
			return err
		}
	}
	if k, _ := b.Cursor().First(); k == nil {
		return grains.DeleteBucket(gk)
	}
	return nil
}

func readVersion(tx *bolt.Tx, gk []byte) (storage.Version, error) {
	b := tx.Bucket([]byte(bucketVersions)).Get(gk)
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
	err := s.update(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucketReminders)).Put(reminderKey(r.Grain, r.Name), encodeReminder(r))
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
	err := s.update(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucketReminders)).Delete(reminderKey(key, name))
	})
	if err != nil {
		return fmt.Errorf("boltstore: delete reminder %q of grain %s: %w", name, key, err)
	}
	return nil
}

// ListReminders implements storage.Store.
func (s *Store) ListReminders(ctx context.Context, kind string) ([]storage.Reminder, error) {
	if err := storeutil.CheckKind(ctx, kind); err != nil {
		return nil, err
	}
	prefix := appendString(nil, kind)
	var out []storage.Reminder
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket([]byte(bucketReminders)).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			r, err := decodeReminder(k, v)
			if err != nil {
				return err
			}
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("boltstore: list reminders of kind %q: %w", kind, err)
	}
	// Keys sort by identity length first; the interface promises byte order.
	storeutil.SortReminders(out)
	return out, nil
}

// Close implements storage.Store. It waits for operations under way.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("boltstore: close %s: %w", s.path, err)
	}
	return nil
}
