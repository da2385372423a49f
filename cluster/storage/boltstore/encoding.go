package boltstore

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/protograin/protograin/cluster/storage"
)

// appendString appends s with its length as a uvarint before it, so that
// concatenated strings cannot be split two ways.
func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// readString reads a string written by appendString and returns the rest.
func readString(b []byte) (string, []byte, error) {
	n, size := binary.Uvarint(b)
	if size <= 0 || n > uint64(len(b)-size) {
		return "", nil, fmt.Errorf("%w: bad length prefix in key %q", ErrCorrupt, b)
	}
	end := size + int(n)
	return string(b[size:end]), b[end:], nil
}

// grainKey is the key of a grain in the grains and versions buckets: the
// length-prefixed kind, then the identity.
func grainKey(k storage.Key) []byte {
	b := appendString(make([]byte, 0, 2+len(k.Kind)+len(k.Identity)), k.Kind)
	return append(b, k.Identity...)
}

// reminderKey is the key of a reminder: the length-prefixed kind, so that
// one kind's reminders share a prefix, then the length-prefixed identity,
// then the name.
func reminderKey(k storage.Key, name string) []byte {
	b := appendString(nil, k.Kind)
	b = appendString(b, k.Identity)
	return append(b, name...)
}

// reminderValueLen is the size of a reminder's value: due time and period,
// both as big-endian int64 nanoseconds.
const reminderValueLen = 16

func encodeReminder(r storage.Reminder) []byte {
	b := make([]byte, 0, reminderValueLen)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Due.UnixNano()))
	return binary.BigEndian.AppendUint64(b, uint64(r.Period))
}

func decodeReminder(k, v []byte) (storage.Reminder, error) {
	var r storage.Reminder
	kind, rest, err := readString(k)
	if err != nil {
		return r, err
	}
	identity, name, err := readString(rest)
	if err != nil {
		return r, err
	}
	if len(v) != reminderValueLen {
		return r, fmt.Errorf("%w: reminder %q of grain %q/%q: value of %d bytes, want %d", ErrCorrupt, name, kind, identity, len(v), reminderValueLen)
	}
	r.Grain = storage.Key{Kind: kind, Identity: identity}
	r.Name = string(name)
	r.Due = time.Unix(0, int64(binary.BigEndian.Uint64(v))).UTC()
	r.Period = time.Duration(binary.BigEndian.Uint64(v[8:]))
	return r, nil
}
