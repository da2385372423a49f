package state

import "bytes"

// messageKey is the entry that holds a grain's typed state message, encoded.
// The state package stores the bytes; encoding them is the caller's business
// (the cluster marshals the proto message deterministically).
const messageKey = ReservedPrefix + "message"

// Message returns a copy of the encoded typed state message, the buffered
// one if SetMessage changed it, and whether the grain has one.
func (b *Buffer) Message() ([]byte, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	v, ok := b.currentMessage()
	if !ok {
		return nil, false
	}
	return clone(v), true
}

// currentMessage returns the message as the buffer sees it, without copying.
func (b *Buffer) currentMessage() ([]byte, bool) {
	if b.messagePending {
		return b.pendingMessage, true
	}
	return b.message, b.hasMessage
}

// SetMessage buffers a copy of v as the encoded typed state message, to be
// committed with the other changes by the next Flush, and reports whether
// that changed anything: bytes equal to the current message buffer nothing,
// so a call that left the message as it was does not make the buffer dirty.
func (b *Buffer) SetMessage(v []byte) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if cur, ok := b.currentMessage(); ok && bytes.Equal(cur, v) {
		return false
	}
	if b.hasMessage && bytes.Equal(b.message, v) {
		// Back to what is committed: nothing left to write.
		b.pendingMessage, b.messagePending = nil, false
		return true
	}
	b.pendingMessage, b.messagePending = clone(v), true
	return true
}
