package state

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/protograin/protograin/cluster/storage"
)

// ReservedPrefix starts every entry key this package stores for itself;
// user keys may not start with it.
const ReservedPrefix = "__protograin/"

// clientPrefix starts the entry key of each client's exactly-once record.
const clientPrefix = ReservedPrefix + "client/"

// DefaultMaxClients is the number of clients a grain remembers when
// Config.MaxClients is zero.
const DefaultMaxClients = 1024

// ErrNotFound is returned by Get for a key that has no entry.
var ErrNotFound = errors.New("state: entry not found")

// ErrReservedKey is returned for user keys that start with ReservedPrefix.
var ErrReservedKey = errors.New("state: reserved key")

// ErrStaleSequence is returned by Seen and Record for a sequence number
// below the client's window (see the package doc): a retry of a call whose
// reply may no longer be kept. Record also returns it for a call already
// recorded.
var ErrStaleSequence = errors.New("state: stale sequence number")

// ErrReplyLost is returned by Seen for a call recorded by RecordUnanswered
// and never answered by Record: the call committed changes of its own (it
// flushed while it ran), and its reply was lost before it was recorded (the
// node failed, or the commit after the call did). The call must not run
// again, and its reply cannot be given.
var ErrReplyLost = errors.New("state: the call ran, but its reply was lost")

// ErrCorrupt is returned by Load when an exactly-once record in the store
// cannot be read.
var ErrCorrupt = errors.New("state: corrupt record")

// Config configures a Buffer. The zero Config is ready to use.
type Config struct {
	// MaxClients is how many clients' exactly-once records the grain keeps;
	// Flush evicts the least recently recorded beyond it (see the package
	// doc). Zero means DefaultMaxClients; negative values are refused.
	MaxClients int
	// WindowPerClient is how many of each client's latest calls the grain
	// keeps replies for: calls of one client may commit out of order as
	// long as none is overtaken by this many later ones, which would make
	// it stale (see the package doc). It must exceed the number of calls
	// one client may have in flight to one grain at once. Zero means
	// DefaultWindowPerClient; negative values are refused.
	WindowPerClient int
}

// Buffer is the state of one grain as its activation sees it: the entries
// loaded from a store plus the changes buffered since. Make one with Load.
type Buffer struct {
	store      storage.Store
	key        storage.Key
	maxClients int
	window     int // Config.WindowPerClient

	mu      sync.Mutex
	version storage.Version
	// entries and clients are the committed state, as of version.
	entries map[string][]byte
	clients map[string]record
	// reserved holds entries under ReservedPrefix this version does not
	// use; they are never changed.
	reserved map[string]bool
	// message is the committed typed state message, if hasMessage.
	message    []byte
	hasMessage bool
	// pending and pendingClients are buffered, not yet committed, and so
	// is pendingMessage if messagePending.
	pending        map[string]change
	pendingClients map[string]record
	pendingMessage []byte
	messagePending bool
	// clock orders Record calls for eviction: each Record takes the next
	// tick, and records keep theirs across activations.
	clock uint64
	// flushes counts successful flushes, so that Rollback can tell a Mark
	// taken before the last one.
	flushes uint64
}

// change is one buffered change to a user entry.
type change struct {
	value  []byte
	remove bool
}

// Load reads the state of grain key from store and returns a Buffer over it.
func Load(ctx context.Context, store storage.Store, key storage.Key, cfg Config) (*Buffer, error) {
	b, err := New(store, key, cfg)
	if err != nil {
		return nil, err
	}
	entries, version, err := store.Load(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("state: load grain %s: %w", key, err)
	}
	return b, b.fill(entries, version)
}

// LoadStored is Load for a caller that keeps no Buffer for a grain the
// store has nothing for: it returns nil, and no error, when Load would
// return an Empty Buffer. The trick: most grains of kinds without a typed
// state message have nothing stored, and the Buffer Load would make for
// them, only to be dropped, was the largest allocation of an activation
// (bench/grains BenchmarkActivation, the host's allocation profile).
func LoadStored(ctx context.Context, store storage.Store, key storage.Key, cfg Config) (*Buffer, error) {
	if _, _, err := checkConfig(cfg); err != nil {
		return nil, err
	}
	entries, version, err := store.Load(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("state: load grain %s: %w", key, err)
	}
	if version == 0 && len(entries) == 0 {
		return nil, nil
	}
	b, err := New(store, key, cfg)
	if err != nil {
		return nil, err
	}
	return b, b.fill(entries, version)
}

// fill files what the store returned for a new Buffer.
func (b *Buffer) fill(entries map[string][]byte, version storage.Version) error {
	b.version = version
	for k, v := range entries {
		if err := b.loadEntry(k, v); err != nil {
			return fmt.Errorf("state: load grain %s: %w", b.key, err)
		}
	}
	return nil
}

// New returns a Buffer over the state of grain key with nothing in it, at
// the zero version: what Load returns for a grain the store has nothing
// for, without reading the store. An activation that found nothing stored
// and kept no Buffer makes one with New when its grain first touches its
// state.
func New(store storage.Store, key storage.Key, cfg Config) (*Buffer, error) {
	maxClients, window, err := checkConfig(cfg)
	if err != nil {
		return nil, err
	}
	// The maps are made on first write (see put).
	return &Buffer{store: store, key: key, maxClients: maxClients, window: window}, nil
}

// checkConfig validates cfg and returns its MaxClients and WindowPerClient
// with the defaults applied.
func checkConfig(cfg Config) (maxClients, window int, err error) {
	if cfg.MaxClients < 0 {
		return 0, 0, fmt.Errorf("state: Config.MaxClients is %d; want zero (for %d) or more", cfg.MaxClients, DefaultMaxClients)
	}
	maxClients = cfg.MaxClients
	if maxClients == 0 {
		maxClients = DefaultMaxClients
	}
	if window, err = windowPerClient(cfg); err != nil {
		return 0, 0, err
	}
	return maxClients, window, nil
}

// Empty reports whether b holds nothing at all, committed or buffered, at
// the zero version: no entry, exactly-once record or typed message. Such a
// Buffer is equal to a new one (New), so an activation can drop it and make
// a new one when it needs it.
func (b *Buffer) Empty() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.version == 0 && len(b.entries) == 0 && len(b.clients) == 0 && len(b.reserved) == 0 &&
		!b.hasMessage && !b.dirty()
}

// loadEntry files one loaded entry as user state, a client record or an
// unknown reserved entry.
func (b *Buffer) loadEntry(k string, v []byte) error {
	switch {
	case strings.HasPrefix(k, clientPrefix):
		r, err := decodeRecord(v)
		if err != nil {
			return fmt.Errorf("%w: client %q: %w", ErrCorrupt, strings.TrimPrefix(k, clientPrefix), err)
		}
		put(&b.clients, strings.TrimPrefix(k, clientPrefix), r)
		b.clock = max(b.clock, r.stamp)
	case k == messageKey:
		b.message, b.hasMessage = v, true
	case strings.HasPrefix(k, ReservedPrefix):
		put(&b.reserved, k, true)
	default:
		put(&b.entries, k, v)
	}
	return nil
}

// Key returns the grain whose state this is.
func (b *Buffer) Key() storage.Key { return b.key }

// Version returns the version of the state as last loaded or flushed.
func (b *Buffer) Version() storage.Version {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.version
}

// Get returns a copy of the value of key, including buffered changes. It
// returns an error wrapping ErrNotFound if there is no such entry.
func (b *Buffer) Get(key string) ([]byte, error) {
	if err := checkUserKey(key); err != nil {
		return nil, err
	}
	v, ok := b.TryGet(key)
	if !ok {
		return nil, fmt.Errorf("%w: grain %s has no entry %q", ErrNotFound, b.key, key)
	}
	return v, nil
}

// TryGet returns a copy of the value of key, including buffered changes,
// and whether there is such an entry. A key Set would refuse has none.
func (b *Buffer) TryGet(key string) ([]byte, bool) {
	if checkUserKey(key) != nil {
		return nil, false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if c, ok := b.pending[key]; ok {
		if c.remove {
			return nil, false
		}
		return clone(c.value), true
	}
	v, ok := b.entries[key]
	if !ok {
		return nil, false
	}
	return clone(v), true
}

// Set buffers setting key to a copy of value.
func (b *Buffer) Set(key string, value []byte) error {
	if err := checkUserKey(key); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	put(&b.pending, key, change{value: clone(value)})
	return nil
}

// Remove buffers removing key. Removing a missing key is not an error.
func (b *Buffer) Remove(key string) error {
	if err := checkUserKey(key); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, committed := b.entries[key]; committed {
		put(&b.pending, key, change{remove: true})
	} else {
		// Nothing to remove in the store: forget a buffered Set instead
		// of sending a removal, so Set then Remove leaves nothing dirty.
		delete(b.pending, key)
	}
	return nil
}

// Keys returns the keys of the user entries, including buffered changes,
// sorted.
func (b *Buffer) Keys() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	keys := make(map[string]bool, len(b.entries)+len(b.pending))
	for k := range b.entries {
		keys[k] = true
	}
	for k, c := range b.pending {
		keys[k] = !c.remove
	}
	var out []string
	for k, present := range keys {
		if present {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// Dirty reports whether changes, a typed state message or exactly-once
// records are buffered.
func (b *Buffer) Dirty() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.dirty()
}

func (b *Buffer) dirty() bool {
	return len(b.pending) > 0 || len(b.pendingClients) > 0 || b.messagePending
}

// Discard drops the buffered changes, typed state message and exactly-once
// records. It does not refresh the loaded state: a buffer whose Flush failed
// with storage.ErrConflict stays stale.
func (b *Buffer) Discard() {
	b.mu.Lock()
	defer b.mu.Unlock()
	clear(b.pending)
	clear(b.pendingClients)
	b.pendingMessage, b.messagePending = nil, false
}

// Flush commits the buffered changes and exactly-once records to the store
// in one atomic commit, with the version check described in the package
// doc. With nothing buffered it returns nil without calling the store. On
// error everything stays buffered. An error wrapping storage.ErrConflict
// means another activation committed first and nothing was committed; after
// any other error the commit may or may not have happened (see the package
// doc).
func (b *Buffer) Flush(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.dirty() {
		return nil
	}
	changes, evicted := b.changes()
	version, err := b.store.Commit(ctx, b.key, b.version, changes)
	if err != nil {
		return fmt.Errorf("state: flush: %w", err)
	}
	b.applyFlushed(version, evicted)
	return nil
}

// changes lists the buffered changes as store changes, plus the removal of
// the records Flush evicts, and returns the evicted client IDs.
func (b *Buffer) changes() ([]storage.Change, map[string]bool) {
	changes := make([]storage.Change, 0, len(b.pending)+len(b.pendingClients))
	for _, k := range sortedKeys(b.pending) {
		c := b.pending[k]
		changes = append(changes, storage.Change{Key: k, Value: c.value, Remove: c.remove})
	}
	if b.messagePending {
		changes = append(changes, storage.Change{Key: messageKey, Value: b.pendingMessage})
	}
	evicted := b.evictions()
	for _, id := range sortedKeys(b.pendingClients) {
		if !evicted[id] {
			changes = append(changes, storage.Change{Key: clientPrefix + id, Value: b.pendingClients[id].encode()})
		}
	}
	for _, id := range slices.Sorted(maps.Keys(evicted)) {
		if _, committed := b.clients[id]; committed {
			changes = append(changes, storage.Change{Key: clientPrefix + id, Remove: true})
		}
	}
	return changes, evicted
}

// sortedKeys returns the keys of m in order. A flush after a call usually
// has one changed entry and one client, which need no sorting, and each
// flush asks twice: those are taken without the sort's allocations.
func sortedKeys[V any](m map[string]V) []string {
	if len(m) > 1 {
		return slices.Sorted(maps.Keys(m))
	}
	for k := range m {
		return []string{k}
	}
	return nil
}

// evictions returns the clients whose records the next flush removes to
// keep at most maxClients: the oldest by last Record, then by client ID.
func (b *Buffer) evictions() map[string]bool {
	if len(b.clients)+len(b.pendingClients) <= b.maxClients {
		return nil // even if no pending client is a committed one
	}
	all := make(map[string]record, len(b.clients)+len(b.pendingClients))
	maps.Copy(all, b.clients)
	maps.Copy(all, b.pendingClients)
	excess := len(all) - b.maxClients
	if excess <= 0 {
		return nil
	}
	ids := slices.Collect(maps.Keys(all))
	slices.SortFunc(ids, func(x, y string) int {
		if c := cmp.Compare(all[x].stamp, all[y].stamp); c != 0 {
			return c
		}
		return strings.Compare(x, y)
	})
	evicted := make(map[string]bool, excess)
	for _, id := range ids[:excess] {
		evicted[id] = true
	}
	return evicted
}

// applyFlushed makes the buffered changes the committed state at version.
func (b *Buffer) applyFlushed(version storage.Version, evicted map[string]bool) {
	for k, c := range b.pending {
		if c.remove {
			delete(b.entries, k)
		} else {
			put(&b.entries, k, c.value)
		}
	}
	for id, r := range b.pendingClients {
		put(&b.clients, id, r)
	}
	for id := range evicted {
		delete(b.clients, id)
	}
	if b.messagePending {
		b.message, b.hasMessage = b.pendingMessage, true
	}
	clear(b.pending)
	clear(b.pendingClients)
	b.pendingMessage, b.messagePending = nil, false
	b.version = version
	b.flushes++
}

// checkUserKey reports whether key may name a user entry.
func checkUserKey(key string) error {
	if strings.HasPrefix(key, ReservedPrefix) {
		return fmt.Errorf("%w: %q starts with %q, which is kept for protograin's own entries", ErrReservedKey, key, ReservedPrefix)
	}
	if err := (storage.Change{Key: key}).Validate(); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	return nil
}

// clone copies b; the copy of nil is an empty value, as stores return it.
func clone(b []byte) []byte {
	return append(make([]byte, 0, len(b)), b...)
}

// put sets (*m)[k] = v, making the map on its first write. A Buffer starts
// with nil maps, which read as empty, so that the state of a grain that
// holds nothing costs no map: five empty maps were 240 bytes of every idle
// activation.
func put[K comparable, V any](m *map[K]V, k K, v V) {
	if *m == nil {
		*m = make(map[K]V)
	}
	(*m)[k] = v
}
