package state

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/protograin/protograin/cluster/storage"
)

// DefaultWindowPerClient is the number of calls per client whose replies a
// grain keeps when Config.WindowPerClient is zero. A call is refused as
// stale once 64 later calls of its client were recorded first (see the
// package doc), so a client with fewer than 64 state-changing calls
// outstanding to one grain at once never sees that; since a grain runs one
// call at a time, more than that towards one grain is a queue, not
// throughput. The window is also the cost: a client's record holds up to
// this many replies and is rewritten by each commit that records one.
const DefaultWindowPerClient = 64

// record is the exactly-once record of one client: the replies to its
// latest calls, the floor below which calls are stale, and when it was last
// recorded (a tick of the buffer's clock) for eviction. Records are
// replaced, never changed in place: a committed record may be shared with
// the buffered one derived from it.
type record struct {
	stamp uint64
	// floor is the lowest sequence number that is not stale for a reason
	// other than the window: one above the highest call dropped from it.
	floor uint64
	// calls are the recorded calls by ascending seq. A call does not change
	// once recorded, so records share them: each commit after a call makes
	// a new record of a window of up to Config.WindowPerClient calls (see
	// with), and copying pointers copies a fifth of the bytes.
	calls []*call
}

// call is one recorded call and its reply.
type call struct {
	seq   uint64
	reply []byte
	// unanswered marks a call recorded by RecordUnanswered: it took
	// effect, and its reply is not known (reply is nil).
	unanswered bool
}

// Formats of an encoded record: its first byte, so the encoding can change
// without misreading old records.
const (
	// recordFormatLast holds one call: seq, stamp, reply. Every call
	// below the recorded one is stale. Read, never written.
	recordFormatLast = 1
	// recordFormatWindow holds a window of calls (see encode).
	recordFormatWindow = 2
	// recordFormatUnanswered is recordFormatWindow with each reply's
	// length stored plus one, zero marking a call recorded unanswered. It
	// is written only for a record that holds such a call, so that builds
	// that read only the first two formats read every other record.
	recordFormatUnanswered = 3
)

// find returns the index of the call seq in r.calls, or where it would go,
// and whether it is there.
func (r record) find(seq uint64) (int, bool) {
	return slices.BinarySearchFunc(r.calls, seq, func(c *call, seq uint64) int {
		return cmp.Compare(c.seq, seq)
	})
}

// lowEdge returns the lowest sequence number that is not stale with a
// window of w calls: nothing below the floor, and once w calls are
// recorded, nothing below the w-th highest of them, since it would be
// dropped from the window as soon as it was recorded.
func (r record) lowEdge(w int) uint64 {
	edge := r.floor
	if n := len(r.calls); n >= w {
		edge = max(edge, r.calls[n-w].seq)
	}
	return edge
}

// with returns a copy of r with c added, or put in place of the call with
// its seq, and the window trimmed to its w highest calls, raising the floor
// over those it drops.
func (r record) with(c call, w int) record {
	i, found := r.find(c.seq)
	calls := make([]*call, 0, len(r.calls)+1)
	calls = append(calls, r.calls[:i]...)
	calls = append(calls, &c)
	if found {
		i++ // replaced
	}
	calls = append(calls, r.calls[i:]...)
	if drop := len(calls) - w; drop > 0 {
		// seq+1 cannot overflow: a dropped call is below a kept one.
		r.floor = max(r.floor, calls[drop-1].seq+1)
		calls = calls[drop:]
	}
	r.calls = calls
	return r
}

// encode returns the record as stored, in recordFormatWindow: the format
// byte, then as uvarints the stamp, the floor and the number of calls, then
// per call by ascending seq the seq's distance from the previous one (from
// zero for the first), the reply's length and the reply. A record that
// holds an unanswered call is stored in recordFormatUnanswered instead.
func (r record) encode() []byte {
	format := byte(recordFormatWindow)
	for _, c := range r.calls {
		if c.unanswered {
			format = recordFormatUnanswered
		}
	}
	// The reply's length as stored: see the formats.
	replyLen := func(c *call) uint64 {
		switch {
		case format == recordFormatWindow:
			return uint64(len(c.reply))
		case c.unanswered:
			return 0
		}
		return uint64(len(c.reply)) + 1
	}
	// The exact size, so that the record, written after every call that
	// commits, is one allocation of the bytes it needs.
	size := 1 + uvarintLen(r.stamp) + uvarintLen(r.floor) + uvarintLen(uint64(len(r.calls)))
	prev := uint64(0)
	for _, c := range r.calls {
		size += uvarintLen(c.seq-prev) + uvarintLen(replyLen(c)) + len(c.reply)
		prev = c.seq
	}
	b := make([]byte, 0, size)
	b = append(b, format)
	b = binary.AppendUvarint(b, r.stamp)
	b = binary.AppendUvarint(b, r.floor)
	b = binary.AppendUvarint(b, uint64(len(r.calls)))
	prev = 0
	for _, c := range r.calls {
		b = binary.AppendUvarint(b, c.seq-prev)
		b = binary.AppendUvarint(b, replyLen(c))
		b = append(b, c.reply...)
		prev = c.seq
	}
	return b
}

// uvarintLen is the length of x as binary.AppendUvarint writes it: seven
// bits a byte.
func uvarintLen(x uint64) int { return (bits.Len64(x|1) + 6) / 7 }

// decodeRecord reads a record written by encode, or by an earlier build in
// recordFormatLast. Replies are copied.
func decodeRecord(b []byte) (record, error) {
	if len(b) == 0 {
		return record{}, errors.New("empty record")
	}
	d := decoder{b: b[1:]}
	var r record
	switch b[0] {
	case recordFormatLast:
		seq := d.uvarint("sequence number")
		r.stamp = d.uvarint("stamp")
		if d.err == nil {
			// The old rule, kept: every call below the recorded one
			// is stale.
			r.floor = seq
			r.calls = []*call{{seq: seq, reply: clone(d.b)}}
		}
	case recordFormatWindow, recordFormatUnanswered:
		r = d.window(b[0] == recordFormatUnanswered)
		if d.err == nil && len(d.b) > 0 {
			d.err = fmt.Errorf("%d bytes after the last call", len(d.b))
		}
	default:
		return record{}, fmt.Errorf("record format %d, this build reads %d to %d", b[0], recordFormatLast, recordFormatUnanswered)
	}
	if d.err != nil {
		return record{}, d.err
	}
	return r, nil
}

// decoder reads uvarints and byte strings, keeping the first error.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = fmt.Errorf("bad %s", what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes(what string) []byte {
	return d.take(what, d.uvarint(what+" length"))
}

// take reads n bytes, copied.
func (d *decoder) take(what string, n uint64) []byte {
	if d.err == nil && n > uint64(len(d.b)) {
		d.err = fmt.Errorf("%s of %d bytes, %d left", what, n, len(d.b))
	}
	if d.err != nil {
		return nil
	}
	v := clone(d.b[:n])
	d.b = d.b[n:]
	return v
}

// reply reads a call's reply: in recordFormatUnanswered (unanswered set) a
// length stored plus one, zero for an unanswered call.
func (d *decoder) reply(unanswered bool) call {
	if !unanswered {
		return call{reply: d.bytes("reply")}
	}
	n := d.uvarint("reply length")
	if d.err != nil || n == 0 {
		return call{unanswered: true}
	}
	return call{reply: d.take("reply", n-1)}
}

// window reads the body of a recordFormatWindow record, or with unanswered
// of a recordFormatUnanswered one, and checks that its calls ascend and are
// not below the floor.
func (d *decoder) window(unanswered bool) record {
	r := record{stamp: d.uvarint("stamp"), floor: d.uvarint("floor")}
	n := d.uvarint("call count")
	// Each call takes at least two bytes: check before allocating.
	if d.err == nil && n > uint64(len(d.b))/2 {
		d.err = fmt.Errorf("%d calls in %d bytes", n, len(d.b))
	}
	if d.err != nil {
		return record{}
	}
	r.calls = make([]*call, 0, n)
	backing := make([]call, 0, n) // one allocation for the record's calls
	seq := uint64(0)
	for i := range n {
		delta := d.uvarint("sequence number")
		c := d.reply(unanswered)
		switch {
		case d.err != nil:
			return record{}
		case i > 0 && delta == 0:
			d.err = fmt.Errorf("call %d recorded twice", seq)
		case seq+delta < seq:
			d.err = errors.New("sequence number overflows")
		case i == 0 && delta < r.floor:
			d.err = fmt.Errorf("call %d is below the floor %d", delta, r.floor)
		}
		if d.err != nil {
			return record{}
		}
		seq += delta
		c.seq = seq
		backing = append(backing, c)
		r.calls = append(r.calls, &backing[len(backing)-1])
	}
	return r
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
// in the package doc: for a recorded call it returns a copy of its reply
// and true; for a call recorded unanswered (RecordUnanswered), an error
// wrapping ErrReplyLost; for a call below the client's window, an error
// wrapping ErrStaleSequence; for any other, a new call, nil and false.
// Buffered records count. Seen changes nothing.
func (b *Buffer) Seen(clientID string, seq uint64) (reply []byte, ok bool, err error) {
	if err := checkClientID(clientID); err != nil {
		return nil, false, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	r, found := b.lookup(clientID)
	if !found {
		return nil, false, nil
	}
	if i, ok := r.find(seq); ok {
		if r.calls[i].unanswered {
			return nil, false, fmt.Errorf("%w: grain %s, client %q: call %d committed changes while it ran, and its reply was not recorded",
				ErrReplyLost, b.key, clientID, seq)
		}
		return clone(r.calls[i].reply), true, nil
	}
	if seq < r.lowEdge(b.window) {
		return nil, false, b.stale(clientID, seq, r)
	}
	return nil, false, nil
}

// Record buffers reply as the reply to call seq of clientID, adding it to
// the client's window and dropping the lowest calls beyond
// Config.WindowPerClient; the next Flush commits it with the state. Calls
// may be recorded in any order, but recording a call already recorded, or
// one Seen calls stale, returns an error wrapping ErrStaleSequence. A call
// recorded unanswered gets its reply.
func (b *Buffer) Record(clientID string, seq uint64, reply []byte) error {
	return b.record(clientID, call{seq: seq, reply: clone(reply)})
}

// RecordUnanswered buffers that call seq of clientID took effect while its
// reply is not known yet, for a call that commits changes of its own before
// it returns (a Flush while it runs): if its reply is lost before Record
// gives it (the node fails, the commit after the call fails), Seen tells a
// retry that the call ran (ErrReplyLost) instead of letting it run again.
// A call already recorded, answered or not, is left as it is.
func (b *Buffer) RecordUnanswered(clientID string, seq uint64) error {
	return b.record(clientID, call{seq: seq, unanswered: true})
}

// record buffers c in the window of clientID (see Record).
func (b *Buffer) record(clientID string, c call) error {
	if err := checkClientID(clientID); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	r, _ := b.lookup(clientID)
	if i, ok := r.find(c.seq); ok {
		switch {
		case c.unanswered:
			return nil
		case !r.calls[i].unanswered:
			return fmt.Errorf("%w: grain %s, client %q: call %d is already recorded", ErrStaleSequence, b.key, clientID, c.seq)
		}
	} else if c.seq < r.lowEdge(b.window) {
		return b.stale(clientID, c.seq, r)
	}
	b.clock++
	r = r.with(c, b.window)
	r.stamp = b.clock
	put(&b.pendingClients, clientID, r)
	return nil
}

func (b *Buffer) stale(clientID string, seq uint64, r record) error {
	return fmt.Errorf("%w: grain %s, client %q: call %d is below the window, which starts at call %d", ErrStaleSequence, b.key, clientID, seq, r.lowEdge(b.window))
}

// windowPerClient returns the window size cfg asks for, with the default
// for zero.
func windowPerClient(cfg Config) (int, error) {
	switch {
	case cfg.WindowPerClient < 0:
		return 0, fmt.Errorf("state: Config.WindowPerClient is %d; want zero (for %d) or more", cfg.WindowPerClient, DefaultWindowPerClient)
	case cfg.WindowPerClient == 0:
		return DefaultWindowPerClient, nil
	}
	return cfg.WindowPerClient, nil
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
	if len(clientPrefix)+len(id) <= storage.MaxNameLen && utf8.ValidString(id) && strings.IndexByte(id, 0) < 0 {
		// The key would be valid: say so without building it, since
		// every call to a grain checks its client ID.
		return nil
	}
	if err := (storage.Change{Key: clientPrefix + id}).Validate(); err != nil {
		return fmt.Errorf("state: client ID %q: %w", id, err)
	}
	return nil
}
