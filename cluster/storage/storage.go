package storage

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// ErrConflict is returned by Commit when the grain's stored version is not
// the expected one: another activation committed since this one loaded.
// Errors wrap it and name the grain; test with errors.Is.
var ErrConflict = errors.New("storage: version conflict")

// ErrNotCommitted is wrapped by the errors of Commit, and of
// CompleteReminder, when the store knows that the call changed nothing: it
// failed before the store started (its context was done), or before the
// write could take effect (no connection to the database could be had, the
// transaction's work failed before its COMMIT was sent, it gave up waiting
// for a lock). Such a failure may pass: the same call made again later can
// succeed. Test with errors.Is.
//
// A store returns it only where that is certain. An error that wraps
// neither it nor ErrConflict may or may not have taken effect, which costs
// its caller more: the cluster then drops the activation and its buffered
// changes, as its state is uncertain.
var ErrNotCommitted = errors.New("storage: nothing committed")

// ErrClosed is returned by every Store method called after Close.
var ErrClosed = errors.New("storage: store closed")

// ErrInvalid is returned for arguments a Store cannot accept: an empty kind,
// an over-long or malformed name, an empty entry key, a bad reminder. Errors
// wrap it and say what is wrong. The store is left unchanged.
var ErrInvalid = errors.New("storage: invalid argument")

// MaxNameLen is the longest kind, identity, entry key or reminder name a
// Store accepts, in bytes. The bound keeps composite keys well inside the
// index limits of the stores (PostgreSQL refuses btree rows over ~2.7 KB).
const MaxNameLen = 512

// Version is the version of a grain's stored state, its ETag. Zero means
// nothing was ever committed for the grain. Each successful Commit returns
// the expected version plus one.
type Version uint64

// Key names one grain: its kind (the fully qualified proto service name) and
// its identity within the kind.
type Key struct {
	Kind     string
	Identity string
}

// String returns the key as kind/identity, quoted, for error messages.
func (k Key) String() string {
	return strconv.Quote(k.Kind) + "/" + strconv.Quote(k.Identity)
}

// Validate reports whether a Store accepts k: the kind must be non-empty, and
// both kind and identity valid UTF-8 without NUL bytes (PostgreSQL text cannot
// hold them, and proto strings carrying identities must be UTF-8 anyway), at
// most MaxNameLen bytes. The identity may be empty.
func (k Key) Validate() error {
	if k.Kind == "" {
		return fmt.Errorf("%w: empty grain kind", ErrInvalid)
	}
	if err := checkName("grain kind", k.Kind); err != nil {
		return err
	}
	return checkName("grain identity", k.Identity)
}

// Change is one change to a grain's entries: set Key to Value, or remove Key
// when Remove is true (Value is then ignored). A nil Value sets an empty one.
type Change struct {
	Key    string
	Value  []byte
	Remove bool
}

// Validate reports whether a Store accepts c: its key must be non-empty,
// valid UTF-8 without NUL bytes and at most MaxNameLen bytes.
func (c Change) Validate() error {
	if c.Key == "" {
		return fmt.Errorf("%w: empty entry key", ErrInvalid)
	}
	return checkName("entry key", c.Key)
}

// Reminder is a durable timer of one grain: it is due at Due, then every
// Period after that. A zero Period means it fires once. A grain has at most
// one reminder per Name.
type Reminder struct {
	Grain  Key
	Name   string
	Due    time.Time
	Period time.Duration
}

// Validate reports whether a Store accepts r: a valid grain key, a non-empty
// name following the rules of Key.Validate, a Due time that Go can represent
// in Unix nanoseconds (years 1678 to 2262; stores keep it to the nanosecond),
// and a Period that is not negative.
func (r Reminder) Validate() error {
	if err := r.Grain.Validate(); err != nil {
		return err
	}
	if r.Name == "" {
		return fmt.Errorf("%w: empty reminder name for grain %s", ErrInvalid, r.Grain)
	}
	if err := checkName("reminder name", r.Name); err != nil {
		return err
	}
	if r.Due.IsZero() || !representable(r.Due) {
		return fmt.Errorf("%w: reminder %q of grain %s: due time %v out of range", ErrInvalid, r.Name, r.Grain, r.Due)
	}
	if r.Period < 0 {
		return fmt.Errorf("%w: reminder %q of grain %s: negative period %v", ErrInvalid, r.Name, r.Grain, r.Period)
	}
	return nil
}

// representable reports whether t survives a round trip through UnixNano.
func representable(t time.Time) bool {
	return time.Unix(0, t.UnixNano()).Equal(t)
}

// Store keeps grain state and reminders durably. Implementations are safe
// for concurrent use. Values passed in and returned are copies: callers may
// change them afterwards without affecting the store.
//
// Every method returns ErrInvalid for bad arguments, ErrClosed after Close,
// and the context's error (wrapped) when ctx is done before the store acted;
// Commit and CompleteReminder wrap ErrNotCommitted with it.
type Store interface {
	// Load returns the entries of grain key and their version. A grain with
	// nothing committed has no entries and version zero. The map is never
	// nil.
	Load(ctx context.Context, key Key) (map[string][]byte, Version, error)

	// Commit applies changes to grain key, all of them or none, if the
	// grain's stored version is expected, and returns the new version,
	// expected+1. Changes apply in order, so a later change of the same
	// entry wins; removing a missing entry is not an error. An empty list
	// still checks and raises the version. If the stored version differs,
	// Commit changes nothing and returns an error wrapping ErrConflict.
	//
	// An error that wraps ErrNotCommitted says that the commit changed
	// nothing and may be tried again. Any other error (besides ErrConflict)
	// can leave it unknown whether the commit happened (a lost reply from
	// a database server); a later Commit with the same expected version
	// then tells, by succeeding or not. A store that cannot tell returns
	// an error without ErrNotCommitted: that is always correct, only more
	// costly for the caller (see ErrNotCommitted).
	Commit(ctx context.Context, key Key, expected Version, changes []Change) (Version, error)

	// SaveReminder creates the reminder r.Name of grain r.Grain, or replaces
	// it.
	SaveReminder(ctx context.Context, r Reminder) error

	// DeleteReminder deletes the reminder name of grain key. Deleting a
	// reminder that does not exist is not an error.
	DeleteReminder(ctx context.Context, key Key, name string) error

	// CompleteReminder records the outcome of a firing of fired, if no other
	// writer changed the reminder since it was read: when the store holds
	// the reminder fired.Name of grain fired.Grain with exactly fired's Due
	// and Period, it replaces it with *next (the next due time of a
	// periodic reminder) or, when next is nil, deletes it (a one-shot
	// reminder), and reports true. Otherwise (the reminder was replaced or
	// deleted meanwhile) it changes nothing and reports false: the other
	// write stands, and a deleted reminder is not recreated. The check and
	// the write are one atomic step. next, if not nil, must name the same
	// grain and reminder as fired. An error that wraps ErrNotCommitted
	// says that it changed nothing, as for Commit.
	CompleteReminder(ctx context.Context, fired Reminder, next *Reminder) (bool, error)

	// ListReminders returns the reminders of every grain of kind, ordered by
	// identity then name (byte-wise), with Due in UTC. The cluster calls it
	// at start-up and when grain ownership moves.
	ListReminders(ctx context.Context, kind string) ([]Reminder, error)

	// Close releases the store. Calls that are under way finish first;
	// later calls return ErrClosed. Close is idempotent.
	Close() error
}

// checkName reports whether s may be stored as a kind, identity, entry key or
// reminder name; what names the role of s in the error.
func checkName(what, s string) error {
	switch {
	case len(s) > MaxNameLen:
		return fmt.Errorf("%w: %s of %d bytes is longer than %d (it begins %.40q)", ErrInvalid, what, len(s), MaxNameLen, s)
	case !utf8.ValidString(s):
		return fmt.Errorf("%w: %s %q is not valid UTF-8", ErrInvalid, what, s)
	case strings.IndexByte(s, 0) >= 0:
		return fmt.Errorf("%w: %s %q contains a NUL byte", ErrInvalid, what, s)
	}
	return nil
}
