// Package storeutil holds what the Store implementations of protograin share:
// argument checks, change coalescing and the wording of common errors, so
// the three stores fail the same way on the same input.
//
// It must not import the cluster or runtime packages.
package storeutil

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/protograin/protograin/cluster/storage"
)

// CheckCommit validates the arguments of Store.Commit, all of them before
// anything is written, and checks that ctx is not done (an error wrapping
// storage.ErrNotCommitted, see NotStarted).
func CheckCommit(ctx context.Context, key storage.Key, changes []storage.Change) error {
	if err := ctx.Err(); err != nil {
		return NotStarted(err)
	}
	if err := key.Validate(); err != nil {
		return err
	}
	for i, c := range changes {
		if err := c.Validate(); err != nil {
			return fmt.Errorf("change %d of grain %s: %w", i, key, err)
		}
	}
	return nil
}

// CheckKey validates a grain key and checks that ctx is not done.
func CheckKey(ctx context.Context, key storage.Key) error {
	if err := ctx.Err(); err != nil {
		return Canceled(err)
	}
	return key.Validate()
}

// CheckReminderKey validates the arguments of Store.DeleteReminder.
func CheckReminderKey(ctx context.Context, key storage.Key, name string) error {
	if err := CheckKey(ctx, key); err != nil {
		return err
	}
	// A reminder with a placeholder due time validates the name by the same
	// rules as SaveReminder.
	return storage.Reminder{Grain: key, Name: name, Due: time.Unix(1, 0)}.Validate()
}

// CheckKind validates the kind argument of Store.ListReminders.
func CheckKind(ctx context.Context, kind string) error {
	return CheckKey(ctx, storage.Key{Kind: kind})
}

// CheckReminder validates the argument of Store.SaveReminder.
func CheckReminder(ctx context.Context, r storage.Reminder) error {
	if err := ctx.Err(); err != nil {
		return Canceled(err)
	}
	return r.Validate()
}

// CheckCompleteReminder validates the arguments of Store.CompleteReminder:
// fired and next must be valid reminders, of the same grain and name. A
// done ctx is an error wrapping storage.ErrNotCommitted (see NotStarted).
func CheckCompleteReminder(ctx context.Context, fired storage.Reminder, next *storage.Reminder) error {
	if err := ctx.Err(); err != nil {
		return NotStarted(err)
	}
	if err := fired.Validate(); err != nil {
		return err
	}
	if next == nil {
		return nil
	}
	if err := next.Validate(); err != nil {
		return err
	}
	if next.Grain != fired.Grain || next.Name != fired.Name {
		return fmt.Errorf("%w: next reminder %q of grain %s is not the fired one, %q of grain %s",
			storage.ErrInvalid, next.Name, next.Grain, fired.Name, fired.Grain)
	}
	return nil
}

// Canceled wraps the error of a done context.
func Canceled(err error) error {
	return fmt.Errorf("storage: %w", err)
}

// NotStarted wraps the error of a context that was done before a write
// began, and storage.ErrNotCommitted: the write changed nothing.
func NotStarted(err error) error {
	return NotCommitted(Canceled(err))
}

// NotCommitted wraps err, the error of a write the store knows changed
// nothing, and storage.ErrNotCommitted.
func NotCommitted(err error) error {
	return fmt.Errorf("%w (%w)", err, storage.ErrNotCommitted)
}

// Conflict returns the error wrapping storage.ErrConflict for a commit to key
// that expected one version and found another.
func Conflict(key storage.Key, expected, stored storage.Version) error {
	return fmt.Errorf("%w: grain %s: expected version %d, stored version %d (another activation committed since this one loaded)",
		storage.ErrConflict, key, expected, stored)
}

// Coalesced is a list of changes reduced to its effect: the entries to set
// and the entries to remove, disjoint, each key once.
type Coalesced struct {
	Set    map[string][]byte
	Remove []string
}

// Coalesce reduces changes to their effect; a later change of a key wins.
// Values are copied, so the caller's slices may change afterwards.
func Coalesce(changes []storage.Change) Coalesced {
	last := make(map[string]int, len(changes))
	for i, c := range changes {
		last[c.Key] = i
	}
	out := Coalesced{Set: make(map[string][]byte, len(last))}
	for i, c := range changes {
		if last[c.Key] != i {
			continue
		}
		if c.Remove {
			out.Remove = append(out.Remove, c.Key)
			continue
		}
		out.Set[c.Key] = Clone(c.Value)
	}
	return out
}

// Clone copies b; the copy of nil or empty is an empty, non-nil slice, so a
// stored empty value reads back as present.
func Clone(b []byte) []byte {
	return append(make([]byte, 0, len(b)), b...)
}

// SortReminders orders reminders as Store.ListReminders promises: by
// identity, then name, byte-wise.
func SortReminders(rs []storage.Reminder) {
	sort.Slice(rs, func(i, j int) bool {
		if c := strings.Compare(rs[i].Grain.Identity, rs[j].Grain.Identity); c != 0 {
			return c < 0
		}
		return rs[i].Name < rs[j].Name
	})
}
