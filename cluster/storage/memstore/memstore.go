package memstore

import (
	"context"
	"sync"

	"github.com/protograin/protograin/cluster/storage"
	"github.com/protograin/protograin/cluster/storage/internal/storeutil"
)

// Store is an in-memory storage.Store, safe for concurrent use. The zero
// value is not usable; call New.
type Store struct {
	mu        sync.RWMutex
	closed    bool
	grains    map[storage.Key]*grain
	reminders map[reminderKey]storage.Reminder
}

type grain struct {
	version storage.Version
	entries map[string][]byte
}

type reminderKey struct {
	grain storage.Key
	name  string
}

// New returns an empty store.
func New() *Store {
	return &Store{
		grains:    make(map[storage.Key]*grain),
		reminders: make(map[reminderKey]storage.Reminder),
	}
}

var _ storage.Store = (*Store)(nil)

// Load implements storage.Store.
func (s *Store) Load(ctx context.Context, key storage.Key) (map[string][]byte, storage.Version, error) {
	if err := storeutil.CheckKey(ctx, key); err != nil {
		return nil, 0, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, 0, storage.ErrClosed
	}
	entries := make(map[string][]byte)
	g, ok := s.grains[key]
	if !ok {
		return entries, 0, nil
	}
	for k, v := range g.entries {
		entries[k] = storeutil.Clone(v)
	}
	return entries, g.version, nil
}

// Commit implements storage.Store.
func (s *Store) Commit(ctx context.Context, key storage.Key, expected storage.Version, changes []storage.Change) (storage.Version, error) {
	if err := storeutil.CheckCommit(ctx, key, changes); err != nil {
		return 0, err
	}
	effect := storeutil.Coalesce(changes)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, storage.ErrClosed
	}
	g, ok := s.grains[key]
	if !ok {
		g = &grain{entries: make(map[string][]byte)}
	}
	if g.version != expected {
		return 0, storeutil.Conflict(key, expected, g.version)
	}
	for _, k := range effect.Remove {
		delete(g.entries, k)
	}
	for k, v := range effect.Set {
		g.entries[k] = v
	}
	g.version++
	s.grains[key] = g
	return g.version, nil
}

// SaveReminder implements storage.Store.
func (s *Store) SaveReminder(ctx context.Context, r storage.Reminder) error {
	if err := storeutil.CheckReminder(ctx, r); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return storage.ErrClosed
	}
	r.Due = r.Due.UTC()
	s.reminders[reminderKey{r.Grain, r.Name}] = r
	return nil
}

// DeleteReminder implements storage.Store.
func (s *Store) DeleteReminder(ctx context.Context, key storage.Key, name string) error {
	if err := storeutil.CheckReminderKey(ctx, key, name); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return storage.ErrClosed
	}
	delete(s.reminders, reminderKey{key, name})
	return nil
}

// CompleteReminder implements storage.Store.
func (s *Store) CompleteReminder(ctx context.Context, fired storage.Reminder, next *storage.Reminder) (bool, error) {
	if err := storeutil.CheckCompleteReminder(ctx, fired, next); err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false, storage.ErrClosed
	}
	k := reminderKey{fired.Grain, fired.Name}
	if r, ok := s.reminders[k]; !ok || !r.Due.Equal(fired.Due) || r.Period != fired.Period {
		return false, nil
	}
	if next == nil {
		delete(s.reminders, k)
		return true, nil
	}
	n := *next
	n.Due = n.Due.UTC()
	s.reminders[k] = n
	return true, nil
}

// ListReminders implements storage.Store.
func (s *Store) ListReminders(ctx context.Context, kind string) ([]storage.Reminder, error) {
	if err := storeutil.CheckKind(ctx, kind); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, storage.ErrClosed
	}
	var out []storage.Reminder
	for k, r := range s.reminders {
		if k.grain.Kind == kind {
			out = append(out, r)
		}
	}
	storeutil.SortReminders(out)
	return out, nil
}

// Close implements storage.Store. It drops everything the store held.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.grains = nil
	s.reminders = nil
	return nil
}
