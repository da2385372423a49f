package redisstore

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/protograin/protograin/cluster/storage"
	"github.com/protograin/protograin/cluster/storage/internal/storeutil"
)

// DefaultPrefix is the key prefix of a store whose Config.Prefix is empty.
const DefaultPrefix = "protograin"

// Config configures Open.
type Config struct {
	// URL is the server's address, as go-redis' ParseURL reads it:
	// "redis://user:password@host:6379/0", "rediss://..." for TLS, or
	// "unix:///run/redis.sock?db=0" for a socket. Required unless Client
	// is set, and refused beside it.
	URL string

	// Client, if not nil, is the client the store uses instead of making
	// one from URL: a cluster or sentinel client, or one configured beyond
	// what a URL says. The store does not close it. Its retries are safe
	// for Commit (a repeated script finds its own commit and succeeds);
	// a repeated CompleteReminder that had taken effect reports false.
	// Set its ContextTimeoutEnabled, as the store does for a client of its
	// own, so that a call's context bounds the wait for its reply.
	Client redis.UniversalClient

	// Prefix goes before the store's keys, with a colon. Empty means
	// DefaultPrefix. Stores with different prefixes on one server are
	// independent, as long as neither prefix is the other's followed by a
	// colon.
	Prefix string

	// Logger receives the reminder records that ListReminders skips
	// because they do not decode (written by something other than this
	// store). Nil means slog.Default().
	Logger *slog.Logger
}

// Store is a storage.Store in Redis. It is safe for concurrent use.
type Store struct {
	client redis.UniversalClient
	owned  bool // the store made client, and closes it
	prefix string
	log    *slog.Logger

	// mu is held for reading by every call under way, and for writing by
	// Close, which so waits for them.
	mu     sync.RWMutex
	closed bool
}

var _ storage.Store = (*Store)(nil)

// Open connects to the server that cfg names and checks that it answers.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	s := &Store{client: cfg.Client, prefix: cfg.Prefix, log: cfg.Logger}
	if s.prefix == "" {
		s.prefix = DefaultPrefix
	}
	if strings.IndexByte(s.prefix, 0) >= 0 {
		return nil, fmt.Errorf("redisstore: prefix %q holds a NUL byte", s.prefix)
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	switch {
	case cfg.Client != nil && cfg.URL != "":
		return nil, errors.New("redisstore: Config sets both URL and Client")
	case cfg.Client == nil:
		if cfg.URL == "" {
			return nil, errors.New("redisstore: Config sets neither URL nor Client")
		}
		opts, err := redis.ParseURL(cfg.URL)
		if err != nil {
			return nil, fmt.Errorf("redisstore: %w", err)
		}
		// A command is sent once: a write retried after a broken
		// connection may have taken effect the first time (see Commit's
		// token for a client of the caller's, which may retry).
		opts.MaxRetries = -1
		// A call's context bounds its wait for the reply too, not only
		// the client's ReadTimeout: a node's CommitTimeout holds.
		opts.ContextTimeoutEnabled = true
		s.client, s.owned = redis.NewClient(opts), true
	}
	if err := s.client.Ping(ctx).Err(); err != nil {
		if s.owned {
			s.client.Close()
		}
		return nil, fmt.Errorf("redisstore: ping the server: %w", err)
	}
	return s, nil
}

// Close implements storage.Store: it waits for the calls under way, and
// closes the client the store made (not Config.Client).
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.owned {
		if err := s.client.Close(); err != nil {
			return fmt.Errorf("redisstore: close: %w", err)
		}
	}
	return nil
}

// begin starts a call, which must end with s.mu.RUnlock, or returns
// storage.ErrClosed after Close.
func (s *Store) begin() error {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return storage.ErrClosed
	}
	return nil
}

// listPage is how many fields ListReminders asks HSCAN for at a time: a
// hint the server follows roughly, large enough that a listing takes few
// round trips, small enough that each reply is brief work for the server.
const listPage = 1000

// The fields of a grain's hash.
const (
	versionField = "v"  // the version, in decimal; missing means 0
	tokenField   = "t"  // the token of the last commit (see Commit)
	entryPrefix  = "e:" // before each entry's key
)

// grainKey is the key of the hash that holds key's grain.
func (s *Store) grainKey(key storage.Key) string {
	return s.prefix + ":s:" + key.Kind + "\x00" + key.Identity
}

// remindersKey is the key of the hash that holds the reminders of kind.
func (s *Store) remindersKey(kind string) string {
	return s.prefix + ":r:" + kind
}

// Load implements storage.Store.
func (s *Store) Load(ctx context.Context, key storage.Key) (map[string][]byte, storage.Version, error) {
	if err := storeutil.CheckKey(ctx, key); err != nil {
		return nil, 0, err
	}
	if err := s.begin(); err != nil {
		return nil, 0, err
	}
	defer s.mu.RUnlock()
	fields, err := s.client.HGetAll(ctx, s.grainKey(key)).Result()
	if err != nil {
		return nil, 0, fmt.Errorf("redisstore: load grain %s: %w", key, err)
	}
	entries := make(map[string][]byte, len(fields))
	var version storage.Version
	for f, value := range fields {
		switch {
		case strings.HasPrefix(f, entryPrefix):
			entries[f[len(entryPrefix):]] = []byte(value)
		case f == versionField:
			if version, err = parseVersion(value); err != nil {
				return nil, 0, fmt.Errorf("redisstore: load grain %s: %w", key, err)
			}
		case f == tokenField:
		default:
			return nil, 0, fmt.Errorf("redisstore: load grain %s: field %q of key %q was not written by this store", key, f, s.grainKey(key))
		}
	}
	return entries, version, nil
}

// parseVersion reads a stored version.
func parseVersion(s string) (storage.Version, error) {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stored version %q is not a number", s)
	}
	return storage.Version(v), nil
}

// commitScript applies a Commit to the grain's hash, KEYS[1]: if its
// version is ARGV[1], it sets the ARGV[4] field and value pairs that
// follow, deletes the fields after them, and sets the version to ARGV[2]
// and the token to ARGV[3]; it answers {1} then, and {0, the stored
// version} otherwise. A hash whose version is already ARGV[2] under token
// ARGV[3] is this commit's, run before (a client that retried a command
// whose reply it lost): it answers {1} again and writes nothing. Fields go
// to HSET and HDEL in groups, as Lua's unpack has a bounded stack.
var commitScript = redis.NewScript(`
local stored = redis.call('HGET', KEYS[1], 'v') or '0'
if stored ~= ARGV[1] then
	if stored == ARGV[2] and redis.call('HGET', KEYS[1], 't') == ARGV[3] then
		return {1}
	end
	return {0, stored}
end
local sets = tonumber(ARGV[4])
local first, last = 5, 4 + 2 * sets
for i = first, last, 200 do
	redis.call('HSET', KEYS[1], unpack(ARGV, i, math.min(i + 199, last)))
end
for i = last + 1, #ARGV, 200 do
	redis.call('HDEL', KEYS[1], unpack(ARGV, i, math.min(i + 199, #ARGV)))
end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 't', ARGV[3])
return {1}
`)

// Commit implements storage.Store.
func (s *Store) Commit(ctx context.Context, key storage.Key, expected storage.Version, changes []storage.Change) (storage.Version, error) {
	if err := storeutil.CheckCommit(ctx, key, changes); err != nil {
		return 0, err
	}
	if err := s.begin(); err != nil {
		return 0, err
	}
	defer s.mu.RUnlock()
	effect := storeutil.Coalesce(changes)
	next := expected + 1
	args := make([]any, 0, 4+2*len(effect.Set)+len(effect.Remove))
	args = append(args, strconv.FormatUint(uint64(expected), 10), strconv.FormatUint(uint64(next), 10), newToken(), len(effect.Set))
	for k, v := range effect.Set {
		args = append(args, entryPrefix+k, v)
	}
	for _, k := range effect.Remove {
		args = append(args, entryPrefix+k)
	}
	reply, err := commitScript.Run(ctx, s.client, []string{s.grainKey(key)}, args...).Slice()
	if err != nil {
		return 0, s.writeFailed(fmt.Errorf("redisstore: commit grain %s: %w", key, err))
	}
	if ok, _ := reply[0].(int64); ok == 1 {
		return next, nil
	}
	stored, err := parseVersion(fmt.Sprint(reply[1]))
	if err != nil {
		return 0, fmt.Errorf("redisstore: commit grain %s: %w", key, err)
	}
	return 0, storeutil.Conflict(key, expected, stored)
}

// newToken returns a token that tells one Commit from the others: 128
// random bits, so that no two commits of a grain share one.
func newToken() string {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(b[8:], rand.Uint64())
	return hex.EncodeToString(b[:])
}

// writeFailed returns err, the failure of a write, wrapping
// storage.ErrNotCommitted when the write cannot have reached the server:
// no connection could be had for it.
func (s *Store) writeFailed(err error) error {
	var op *net.OpError
	if (errors.As(err, &op) && op.Op == "dial") || errors.Is(err, redis.ErrPoolTimeout) {
		return storeutil.NotCommitted(err)
	}
	return err
}

// reminderField is the field of r in its kind's hash.
func reminderField(grain storage.Key, name string) string {
	return grain.Identity + "\x00" + name
}

// reminderValue is the value of r in its kind's hash: Due in Unix
// nanoseconds and Period in nanoseconds, eight bytes each, big-endian.
func reminderValue(r storage.Reminder) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(r.Due.UnixNano()))
	binary.BigEndian.PutUint64(b[8:], uint64(r.Period))
	return string(b[:])
}

// SaveReminder implements storage.Store.
func (s *Store) SaveReminder(ctx context.Context, r storage.Reminder) error {
	if err := storeutil.CheckReminder(ctx, r); err != nil {
		return err
	}
	if err := s.begin(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	if err := s.client.HSet(ctx, s.remindersKey(r.Grain.Kind), reminderField(r.Grain, r.Name), reminderValue(r)).Err(); err != nil {
		return fmt.Errorf("redisstore: save reminder %q of grain %s: %w", r.Name, r.Grain, err)
	}
	return nil
}

// DeleteReminder implements storage.Store.
func (s *Store) DeleteReminder(ctx context.Context, key storage.Key, name string) error {
	if err := storeutil.CheckReminderKey(ctx, key, name); err != nil {
		return err
	}
	if err := s.begin(); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	if err := s.client.HDel(ctx, s.remindersKey(key.Kind), reminderField(key, name)).Err(); err != nil {
		return fmt.Errorf("redisstore: delete reminder %q of grain %s: %w", name, key, err)
	}
	return nil
}

// completeScript replaces field ARGV[1] of the hash KEYS[1] with ARGV[3],
// or deletes it when ARGV[3] is empty, if its value is ARGV[2]; it answers
// 1 then, and 0 otherwise.
var completeScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then
	return 0
end
if ARGV[3] == '' then
	redis.call('HDEL', KEYS[1], ARGV[1])
else
	redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
end
return 1
`)

// CompleteReminder implements storage.Store.
func (s *Store) CompleteReminder(ctx context.Context, fired storage.Reminder, next *storage.Reminder) (bool, error) {
	if err := storeutil.CheckCompleteReminder(ctx, fired, next); err != nil {
		return false, err
	}
	if err := s.begin(); err != nil {
		return false, err
	}
	defer s.mu.RUnlock()
	replacement := ""
	if next != nil {
		replacement = reminderValue(*next)
	}
	done, err := completeScript.Run(ctx, s.client, []string{s.remindersKey(fired.Grain.Kind)},
		reminderField(fired.Grain, fired.Name), reminderValue(fired), replacement).Int()
	if err != nil {
		return false, s.writeFailed(fmt.Errorf("redisstore: complete reminder %q of grain %s: %w", fired.Name, fired.Grain, err))
	}
	return done == 1, nil
}

// ListReminders implements storage.Store. A record that does not decode is
// skipped and logged to Config.Logger. The kind's hash is read a page at a
// time (HSCAN), so that a kind with millions of reminders does not hold the
// server, single-threaded, for the whole reply as HGETALL would; a
// reminder saved or deleted while the listing runs may or may not be in it,
// as with any listing that races a write.
func (s *Store) ListReminders(ctx context.Context, kind string) ([]storage.Reminder, error) {
	if err := storeutil.CheckKind(ctx, kind); err != nil {
		return nil, err
	}
	if err := s.begin(); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	key := s.remindersKey(kind)
	// HSCAN may return a field more than once (when the hash grows or
	// shrinks during the scan), so the fields are collected in a map.
	fields := make(map[string]string)
	for cursor := uint64(0); ; {
		page, next, err := s.client.HScan(ctx, key, cursor, "", listPage).Result()
		if err != nil {
			return nil, fmt.Errorf("redisstore: list reminders of kind %q: %w", kind, err)
		}
		for i := 0; i+1 < len(page); i += 2 {
			fields[page[i]] = page[i+1]
		}
		if cursor = next; cursor == 0 {
			break
		}
	}
	rs := make([]storage.Reminder, 0, len(fields))
	for f, value := range fields {
		identity, name, ok := strings.Cut(f, "\x00")
		if !ok || len(value) != 16 {
			s.log.Warn("redisstore: skipped a reminder record that does not decode",
				"key", key, "field", f, "bytes", len(value))
			continue
		}
		rs = append(rs, storage.Reminder{
			Grain:  storage.Key{Kind: kind, Identity: identity},
			Name:   name,
			Due:    time.Unix(0, int64(binary.BigEndian.Uint64([]byte(value[:8])))).UTC(),
			Period: time.Duration(binary.BigEndian.Uint64([]byte(value[8:]))),
		})
	}
	storeutil.SortReminders(rs)
	return rs, nil
}
