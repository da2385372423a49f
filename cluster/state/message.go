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

// RebaseMessage makes v the bytes of the committed typed state message in
// place of those loaded or flushed, without buffering a change: the store
// keeps the bytes it has until a change to the message is flushed. v must
// be another encoding of the same message, one the caller made by decoding
// the committed bytes and encoding the result; the Buffer cannot check
// that. Message then returns v, and SetMessage(v) changes nothing.
//
// It is for a caller whose encoding of an unchanged message may differ
// from the stored bytes: the cluster encodes deterministically, which puts
// the fields its version of the message does not know (written by a newer
// version of the .proto) after the known ones, where the version that
// wrote them put them in field order. Without it, the first SetMessage of
// such a message would buffer a change, and a grain that only read its
// state would write it back.
//
// It reports whether it replaced the committed bytes: it does nothing when
// v equals them, when no message is committed, or when a change to the
// message is buffered (whose bytes then are not the committed ones).
func (b *Buffer) RebaseMessage(v []byte) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.hasMessage || b.messagePending || bytes.Equal(b.message, v) {
		return false
	}
	b.message = clone(v)
	return true
}
