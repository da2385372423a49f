package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/protograin/protograin/cluster/state"
	"github.com/protograin/protograin/cluster/storage"
)

// stamp names one call for exactly-once delivery: the client that made it
// and that client's sequence number for it. The zero stamp means none (calls
// made by hooks and reminders of grains, whose node stamps them afresh).
type stamp struct {
	client string
	seq    uint64
}

// check reports a stamp a grain could not record, as a bad request.
func (s stamp) check() error {
	if s.seq == 0 {
		return newError(codes.InvalidArgument, ErrBadRequest, "cluster: call ID %q/0: sequence numbers start at 1", s.client)
	}
	if err := state.CheckClientID(s.client); err != nil {
		return newError(codes.InvalidArgument, ErrBadRequest, "cluster: call ID: %v", err)
	}
	return nil
}

// innerStamp derives the stamp of the n-th call (from 1) a grain makes while
// handling a call stamped outer. It depends only on the outer stamp, the
// calling grain and n, so when the outer call runs again (its reply was
// lost, its flush failed) its inner calls carry the same stamps as the first
// time and their callees recognise them. The client ID is a hash so that
// its length does not grow along chains of calls.
func innerStamp(outer stamp, caller actKey, n uint64) stamp {
	h := sha256.New()
	var seq [8]byte
	binary.BigEndian.PutUint64(seq[:], outer.seq)
	for _, s := range []string{outer.client, string(seq[:]), caller.kind, caller.identity} {
		var l [8]byte
		binary.BigEndian.PutUint64(l[:], uint64(len(s)))
		h.Write(l[:]) // length-prefixed, so that no two tuples hash alike
		h.Write([]byte(s))
	}
	return stamp{client: "grain:" + hex.EncodeToString(h.Sum(nil)[:16]), seq: n}
}

// marshalDeterministic encodes state messages and recorded replies so that
// equal messages give equal bytes: an unchanged state message then changes
// nothing in the buffer.
func marshalDeterministic(m proto.Message) ([]byte, error) {
	return proto.MarshalOptions{Deterministic: true}.Marshal(m)
}

// grainState is one activation's durable state: the buffer loaded from the
// node's store and, for kinds that name one, the typed state message. It is
// the State a grain sees.
//
// The typed message is the grain's to change in place; after each call the
// cluster encodes it and hands the bytes to the buffer, which keeps them only
// if they differ from what it has (sync). A failed call restores it from the
// buffer (rollback).
//
// An activation of a kind without a typed state message whose grain has
// nothing stored keeps no grainState until its grain touches State (see
// activation.touchState): most grains of stateless kinds never do, and an
// empty Buffer costs each idle grain some 270 bytes. The methods the
// cluster calls around a call (begin, sync, rollback, failure, seen, changed,
// flush, discard) therefore accept a nil *grainState, which is a state with
// nothing in it: a new Buffer at the zero version.
type grainState struct {
	n   *Node // whose store and CommitTimeout Flush commits with
	key storage.Key
	buf *state.Buffer
	msg proto.Message // nil when the kind has none
	// mark is what was buffered when the current call began: a failed
	// call rolls back to it (begin, rollback).
	mark state.Mark
	// call is the stamp of the call in progress if its effects are
	// recorded (a method that is not ReadOnly, with a stamp), for Flush;
	// zero in any other turn (begin).
	call stamp

	mu sync.Mutex
	// broken is set when a commit failed: the activation's state is stale
	// (a version conflict) or uncertain (any other commit error but one
	// that committed nothing, storage.ErrNotCommitted), so the activation
	// must be deactivated without flushing and its pending calls sent to
	// the next activation.
	broken error
}

// noState is the State of a stateless worker (Kind.StatelessWorkers):
// several activations of its identity run at once, on every node that
// calls it, so it has no state to keep. Reads find nothing, and writes and
// Flush fail with ErrBadRequest, saying why.
type noState struct{ key actKey }

func (s noState) err() error {
	return newError(codes.FailedPrecondition, ErrBadRequest,
		"cluster: grain %s/%s is a stateless worker (Kind.StatelessWorkers) and has no state", s.key.kind, s.key.identity)
}

// Get implements State: it finds nothing, and says why.
func (s noState) Get(string) ([]byte, error) { return nil, s.err() }

// TryGet implements State: it finds nothing.
func (noState) TryGet(string) ([]byte, bool) { return nil, false }

// Set implements State: it fails.
func (s noState) Set(string, []byte) error { return s.err() }

// Remove implements State: it fails.
func (s noState) Remove(string) error { return s.err() }

// Keys implements State: there are none.
func (noState) Keys() []string { return nil }

// Message implements State: there is none.
func (noState) Message() proto.Message { return nil }

// Flush implements State: it fails.
func (s noState) Flush(context.Context) error { return s.err() }

// loadState loads the state of grain key for an activation of kind k from
// n's store. It returns nil, and no error, for a kind without a typed state
// message when the store has nothing for the grain (see grainState).
func loadState(ctx context.Context, n *Node, key actKey, k *Kind) (*grainState, error) {
	st, err := loadBuffer(ctx, n, key, k.NewState == nil)
	if st == nil || k.NewState == nil {
		return st, err
	}
	st.msg = k.NewState()
	if b, ok := st.buf.Message(); ok {
		if err := proto.Unmarshal(b, st.msg); err != nil {
			return nil, newError(codes.FailedPrecondition, ErrStateUndecodable,
				"cluster: decode the state message of grain %s/%s: %v; it was written by another version of the message, or is damaged, and is left as it is",
				key.kind, key.identity, err)
		}
		st.rebase()
	}
	return st, nil
}

// loadBuffer loads the stored state of grain key from n's store, without
// decoding its typed message: what loadState does first, and all that a
// look at the grain's exactly-once records needs. With orNil it returns
// nil, and no error, when the store has nothing for the grain.
func loadBuffer(ctx context.Context, n *Node, key actKey, orNil bool) (*grainState, error) {
	sk := storage.Key{Kind: key.kind, Identity: key.identity}
	var buf *state.Buffer
	var err error
	if orNil {
		buf, err = state.LoadStored(ctx, n.store, sk, n.cfg.State)
	} else {
		buf, err = state.Load(ctx, n.store, sk, n.cfg.State)
	}
	switch {
	case errors.Is(err, state.ErrCorrupt):
		// Damaged bytes, not a store outage: retrying does not help.
		return nil, newError(codes.FailedPrecondition, ErrStateUndecodable,
			"cluster: load the state of grain %s/%s: %v; it is damaged, and is left as it is", key.kind, key.identity, err)
	case err != nil:
		return nil, newError(codes.Unavailable, ErrStateUnavailable, "cluster: load the state of grain %s/%s: %v", key.kind, key.identity, err)
	case buf == nil:
		return nil, nil
	}
	return &grainState{n: n, key: sk, buf: buf}, nil
}

// rebase makes the encoding of the typed message, just decoded from the
// buffer's committed bytes, the committed message where the two differ
// (state.Buffer.RebaseMessage): it is the same message, not a change to
// commit. They differ when another version of the message wrote it: the
// fields this version does not know are kept in the message, and its
// deterministic encoding puts them after the known ones, where the other
// version put them in field order. Unless rebased, the first sync would
// buffer that encoding as a change, and a grain that only served read-only
// calls would commit on deactivation, at every activation after a version
// change. The store keeps its bytes until the message really changes; that
// commit writes the unknown fields too. An encoding error is left to the
// first sync, which fails the call.
func (s *grainState) rebase() {
	if b, err := marshalDeterministic(s.msg); err == nil {
		s.buf.RebaseMessage(b)
	}
}

// Get implements State.
func (s *grainState) Get(key string) ([]byte, error) { return s.buf.Get(key) }

// TryGet implements State.
func (s *grainState) TryGet(key string) ([]byte, bool) { return s.buf.TryGet(key) }

// Set implements State.
func (s *grainState) Set(key string, value []byte) error { return s.buf.Set(key, value) }

// Remove implements State.
func (s *grainState) Remove(key string) error { return s.buf.Remove(key) }

// Keys implements State.
func (s *grainState) Keys() []string { return s.buf.Keys() }

// Message implements State.
func (s *grainState) Message() proto.Message { return s.msg }

// Flush implements State: it commits the typed message and every buffered
// change now. A version conflict (or any commit error whose outcome is
// unknown) also dooms the activation: the cluster deactivates it after the
// current call, and the call fails with the flush's error whatever the
// grain returns. A commit the store refused without committing anything
// fails with an error wrapping ErrStateUnavailable and
// storage.ErrNotCommitted, and leaves everything buffered and the
// activation usable: a call that returns the error has no effect (its own
// changes are rolled back), and the changes of earlier calls wait for the
// next commit.
//
// A stamped call that flushes what it changed commits it before its reply
// is known, so the commit records the call as unanswered
// (state.Buffer.RecordUnanswered): if the reply is then lost before it is
// recorded after the call (the node fails, or the commit after the call
// does), a retry under the stamp is refused with ErrStaleCall instead of
// applying the call twice.
//
// Flush commits as the commit after a call does (see Node.commitState):
// with ctx's values but not its deadline or cancellation, within
// Config.CommitTimeout, or until the node closes. A grain flushes with its
// call's context (ctx.State().Flush(ctx)), and that caller may have given
// up by then: a commit it cut short would leave its outcome unknown, which
// costs the activation and, in FlushManual mode, drops the changes of
// earlier calls that were acknowledged and waited for this flush, though
// the store never failed. A grain that must not wait for the store past
// its caller's deadline checks ctx before it flushes.
func (s *grainState) Flush(ctx context.Context) error {
	if err := s.sync(); err != nil {
		return err
	}
	if s.call.seq != 0 && s.buf.Dirty() {
		if err := s.buf.RecordUnanswered(s.call.client, s.call.seq); err != nil {
			return staleCallError(actKey{kind: s.key.Kind, identity: s.key.Identity}, err)
		}
	}
	return s.n.commitState(ctx, s)
}

// sync hands the typed message's current encoding to the buffer, which
// keeps it only if it changed.
func (s *grainState) sync() error {
	if s == nil || s.msg == nil {
		return nil
	}
	b, err := marshalDeterministic(s.msg)
	if err != nil {
		return status.Errorf(codes.Internal, "cluster: grain %s: encode its state message: %v", s.key, err)
	}
	if len(b) == 0 {
		// An empty message where none was ever stored is no change: a
		// fresh grain's first read-mostly call does not write.
		if _, stored := s.buf.Message(); !stored {
			return nil
		}
	}
	s.buf.SetMessage(b)
	return nil
}

// flush commits the buffer, marking the state broken if that fails with
// an outcome that leaves it stale or uncertain. A commit that committed
// nothing (storage.ErrNotCommitted) does not break it: the buffer keeps
// everything (state.Buffer.Flush keeps it on any error), and the version
// it loaded is still the stored one as far as this activation knows. So
// a flush that fails while failure stays nil committed nothing.
func (s *grainState) flush(ctx context.Context) error {
	if s == nil {
		return nil // nothing to commit
	}
	err := s.buf.Flush(ctx)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, storage.ErrConflict):
		err = newError(codes.Aborted, ErrStaleActivation,
			"cluster: grain %s: stale activation: another activation committed its state first; this one is deactivated and its changes dropped (%v)",
			s.key, err)
	case errors.Is(err, storage.ErrNotCommitted):
		return newError(codes.Unavailable, errStateNotCommitted,
			"cluster: grain %s: commit state: %v; nothing was committed, and the activation keeps what it had buffered",
			s.key, err)
	default:
		err = newError(codes.Unavailable, ErrStateUnavailable,
			"cluster: grain %s: commit state: %v; the activation is deactivated, and a retry with the same call ID tells whether the call took effect",
			s.key, err)
	}
	s.mu.Lock()
	if s.broken == nil {
		s.broken = err
	}
	s.mu.Unlock()
	return err
}

// failure returns the error of the commit that broke the state, or nil.
func (s *grainState) failure() error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.broken
}

// begin marks the start of a turn (a call, one-way message, reminder or
// OnDeactivate) for rollback, and notes tracked, the stamp under which a
// call's effects are recorded (zero for any other turn), for Flush. It first
// hands the buffer what changed in the typed message since the last sync (in
// OnActivate, say), so that rolling this call back does not undo it. That
// costs one encoding of the message per call of a kind with typed state. An
// encoding error is not lost: the sync after the call meets it again and
// fails the call.
func (s *grainState) begin(tracked stamp) {
	if s == nil {
		return
	}
	_ = s.sync()
	s.mark = s.buf.Mark()
	s.call = tracked
}

// rollback drops the changes buffered since the call began, and restores
// the typed message to match: a failed call has no effect on state. Changes
// of earlier calls still waiting for a manual flush stay buffered.
func (s *grainState) rollback() {
	if s == nil {
		return
	}
	s.buf.Rollback(s.mark)
	if s.msg == nil {
		return
	}
	b, _ := s.buf.Message()
	if err := proto.Unmarshal(b, s.msg); err != nil {
		// The bytes were encoded by sync or loaded and decoded before,
		// so this cannot happen; if it does, the state is not to be
		// trusted any more. Bytes this version of the message does not
		// decode are no store outage to retry: ErrStateUndecodable, as
		// at activation (loadState).
		s.mu.Lock()
		if s.broken == nil {
			s.broken = newError(codes.FailedPrecondition, ErrStateUndecodable, "cluster: grain %s: restore its state message: %v", s.key, err)
		}
		s.mu.Unlock()
	}
}

// seen reports whether the grain recorded a reply for st, and returns it
// (see state.Buffer.Seen). A grain with no state recorded nothing.
func (s *grainState) seen(st stamp) ([]byte, bool, error) {
	if s == nil {
		return nil, false, nil
	}
	return s.buf.Seen(st.client, st.seq)
}

// changed reports whether the current call changed the state: it flushed,
// or what is buffered differs from what was when it began (see begin). A
// call can change state and leave the buffer clean: by flushing, or by
// undoing changes buffered before it.
func (s *grainState) changed() bool { return s != nil && s.buf.Changed(s.mark) }

// flushedInTurn reports whether the current turn committed anything
// itself (a Flush that succeeded since begin).
func (s *grainState) flushedInTurn() bool { return s != nil && s.buf.FlushedSince(s.mark) }

// discard drops what is buffered.
func (s *grainState) discard() {
	if s != nil {
		s.buf.Discard()
	}
}

// staleCallError maps an error of state.Buffer's Seen or Record.
func staleCallError(key actKey, err error) error {
	if errors.Is(err, state.ErrStaleSequence) || errors.Is(err, state.ErrReplyLost) {
		return newError(codes.FailedPrecondition, ErrStaleCall, "cluster: grain %s/%s: %v", key.kind, key.identity, err)
	}
	return newError(codes.InvalidArgument, ErrBadRequest, "cluster: grain %s/%s: %v", key.kind, key.identity, err)
}

// encodedReply is what an actor answers a call with when the reply's bytes
// are at hand: the reply recorded for the call's stamp (msg is nil), or a
// reply just encoded for its record. The remote path sends raw as it is.
type encodedReply struct {
	msg proto.Message
	raw []byte
}
