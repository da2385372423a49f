package state

import (
	"bytes"
	"maps"
)

// Mark is the content of a Buffer's buffered changes at one moment, taken
// with Mark and restored with Rollback. The zero Mark stands for a buffer
// with nothing buffered.
type Mark struct {
	pending        map[string]change
	pendingClients map[string]record
	pendingMessage []byte
	messagePending bool
	flushes        uint64 // the buffer's flush count when taken
}

// Mark returns a mark of what is buffered now, for Rollback. Taking a mark
// of a clean buffer costs nothing; otherwise it copies the buffered
// changes (not their values, which the buffer never changes in place).
//
// A grain's runtime takes one before each call, so that a failed call drops
// its own changes and keeps those of earlier calls still waiting for a
// manual flush.
func (b *Buffer) Mark() Mark {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.dirty() {
		return Mark{flushes: b.flushes}
	}
	return Mark{
		flushes:        b.flushes,
		pending:        maps.Clone(b.pending),
		pendingClients: maps.Clone(b.pendingClients),
		pendingMessage: b.pendingMessage,
		messagePending: b.messagePending,
	}
}

// Rollback drops the changes, typed state message and exactly-once records
// buffered since m was taken, keeping those buffered before. With the zero
// Mark it is Discard. A Flush since m was taken makes its changes committed:
// Rollback then restores nothing that Flush committed, and drops only what
// was buffered after it, like Discard.
func (b *Buffer) Rollback(m Mark) {
	b.mu.Lock()
	defer b.mu.Unlock()
	clear(b.pending)
	clear(b.pendingClients)
	b.pendingMessage, b.messagePending = nil, false
	if m.flushes != b.flushes {
		return // what m holds was committed since
	}
	for k, c := range m.pending {
		put(&b.pending, k, c)
	}
	for id, r := range m.pendingClients {
		put(&b.pendingClients, id, r)
	}
	b.pendingMessage, b.messagePending = m.pendingMessage, m.messagePending
}

// Changed reports whether anything changed since m was taken: a Flush, or
// buffered changes, typed state message or exactly-once records that
// differ from m's. Dirty does not tell that: a change that undoes one
// buffered before m (a Remove of a key only Set since the last Flush, a
// message set back to what is committed) can leave the buffer clean, and a
// Flush leaves it clean too.
func (b *Buffer) Changed(m Mark) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if m.flushes != b.flushes || m.messagePending != b.messagePending || !bytes.Equal(m.pendingMessage, b.pendingMessage) ||
		len(m.pending) != len(b.pending) || len(m.pendingClients) != len(b.pendingClients) {
		return true
	}
	for k, c := range b.pending {
		if mc, ok := m.pending[k]; !ok || mc.remove != c.remove || !bytes.Equal(mc.value, c.value) {
			return true
		}
	}
	for id, r := range b.pendingClients {
		// Each Record gives the client's record a new clock stamp.
		if mr, ok := m.pendingClients[id]; !ok || mr.stamp != r.stamp {
			return true
		}
	}
	return false
}

// FlushedSince reports whether a Flush succeeded since m was taken: what
// was buffered then, or since, may be committed.
func (b *Buffer) FlushedSince(m Mark) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return m.flushes != b.flushes
}
