package state

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/protograin/protograin/cluster/storage"
)

// record is the exactly-once record of one client: the sequence number of
// its last call, the reply to it, and when it was recorded (a tick of the
// buffer's clock) for eviction.
type record struct {
	seq   uint64
	stamp uint64
	reply []byte
}

// recordFormat is the first byte of an encoded record, so the encoding can
// change later without misreading old records.
const recordFormat = 1

// encode returns the record as stored: the format byte, seq and stamp as
// uvarints, then the reply.
func (r record) encode() []byte {
	b := make([]byte, 0, 1+2*binary.MaxVarintLen64+len(r.reply))
	b = append(b, recordFormat)
	b = binary.AppendUvarint(b, r.seq)
	b = binary.AppendUvarint(b, r.stamp)
	return append(b, r.reply...)
}

// decodeRecord reads a record written by encode. The reply is copied.
func decodeRecord(b []byte) (record, error) {
	if len(b) == 0 {
		return record{}, errors.New("empty record")
	}
	if b[0] != recordFormat {
		return record{}, fmt.Errorf("record format %d, this build reads %d", b[0], recordFormat)
	}
	b = b[1:]
	seq, n := binary.Uvarint(b)
	if n <= 0 {
		return record{}, errors.New("bad sequence number")
	}
	b = b[n:]
	stamp, n := binary.Uvarint(b)
	if n <= 0 {
		return record{}, errors.New("bad stamp")
	}
	return record{seq: seq, stamp: stamp, reply: clone(b[n:])}, nil
}

// lookup returns the client's record, buffered or committed.
func (b *Buffer) lookup(clientID string) (record, bool) {
	if r, ok := b.pendingClients[clientID]; ok {
		return r, true
	}
	r, ok := b.clients[clientID]
	return r, ok
}

// Seen reports whether the call seq of clientID already ran, by the rules
// in the package doc: for the recorded seq it returns a copy of the
// recorded reply and true; for a new call, nil and false; for a seq lower
// than the recorded one, an error wrapping ErrStaleSequence. Buffered
// records count. Seen changes nothing.
func (b *Buffer) Seen(clientID string, seq uint64) (reply []byte, ok bool, err error) {
	if err := checkClientID(clientID); err != nil {
		return nil, false, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	r, found := b.lookup(clientID)
	switch {
	case !found || seq > r.seq:
		return nil, false, nil
	case seq == r.seq:
		return clone(r.reply), true, nil
	default:
		return nil, false, b.stale(clientID, seq, r.seq)
	}
}

// Record buffers reply as the reply to call seq of clientID, replacing the
// client's earlier record; the next Flush commits it with the state. seq
// must be higher than the recorded one: recording the same call twice, or
// an older one, returns an error wrapping ErrStaleSequence.
func (b *Buffer) Record(clientID string, seq uint64, reply []byte) error {
	if err := checkClientID(clientID); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if r, found := b.lookup(clientID); found && seq <= r.seq {
		return b.stale(clientID, seq, r.seq)
	}
	b.clock++
	b.pendingClients[clientID] = record{seq: seq, stamp: b.clock, reply: clone(reply)}
	return nil
}

func (b *Buffer) stale(clientID string, seq, recorded uint64) error {
	return fmt.Errorf("%w: grain %s, client %q: call %d, but call %d is already recorded", ErrStaleSequence, b.key, clientID, seq, recorded)
}

// CheckClientID reports whether Seen and Record accept id as a client ID:
// it must be non-empty and make a valid storage key under ReservedPrefix
// (valid UTF-8, no NUL, not too long). Errors wrap storage.ErrInvalid.
func CheckClientID(id string) error { return checkClientID(id) }

// checkClientID is CheckClientID.
func checkClientID(id string) error {
	if id == "" {
		return fmt.Errorf("state: %w: empty client ID", storage.ErrInvalid)
	}
	if err := (storage.Change{Key: clientPrefix + id}).Validate(); err != nil {
		return fmt.Errorf("state: client ID %q: %w", id, err)
	}
	return nil
}
