package cluster

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/protograin/protograin/cluster/state"
	"github.com/protograin/protograin/cluster/storage"
)

// Typed state across versions of its message, as during a rolling upgrade:
// the stored bytes were written by another version of the .proto than the
// one the grain's node was built with. The tests write those bytes into the
// store behind the grain's back, with protowire.

// commitMessageBehind commits raw as the encoded typed state message of
// grain kind/identity, as a node running another version of the message
// would, and returns the version it committed.
func commitMessageBehind(t *testing.T, store storage.Store, kind, identity string, raw []byte) storage.Version {
	t.Helper()
	return commitBehind(t, store, kind, identity, raw, nil)
}

// storedMessage returns the encoded typed state message stored for grain
// kind/identity, and the grain's version.
func storedMessage(t *testing.T, store storage.Store, kind, identity string) ([]byte, storage.Version) {
	t.Helper()
	b, err := state.Load(context.Background(), store, storage.Key{Kind: kind, Identity: identity}, state.Config{})
	if err != nil {
		t.Fatal(err)
	}
	raw, ok := b.Message()
	if !ok {
		t.Fatalf("no state message stored for %s/%s", kind, identity)
	}
	return raw, b.Version()
}

// ownerField is a field a newer version of the account's state message
// added: the account's Int64Value, whose only field is 1, does not know it.
const ownerField = 7

// newerBalance is the account's state (balance 10) as a newer version of
// its message writes it: with the owner field, before field 1. (A newer
// version writes in field order; a field it added sits before one this
// version knows when its number is lower.) Decoded here, the owner is kept
// as an unknown field, and the deterministic encoding puts it after the
// known field 1: other bytes for the same message.
func newerBalance() []byte {
	var b []byte
	b = protowire.AppendTag(b, ownerField, protowire.BytesType)
	b = protowire.AppendString(b, "alice")
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	return protowire.AppendVarint(b, 10)
}

// wantOwnerKept fails t unless the stored state message of the account
// decodes to balance want and keeps the newer version's owner field.
func wantOwnerKept(t *testing.T, store storage.Store, kind, identity string, want int64) {
	t.Helper()
	raw, _ := storedMessage(t, store, kind, identity)
	var v wrapperspb.Int64Value
	if err := proto.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	owner := ""
	for u := v.ProtoReflect().GetUnknown(); len(u) > 0; {
		num, typ, n := protowire.ConsumeTag(u)
		if n < 0 {
			t.Fatalf("stored state %x: %v", raw, protowire.ParseError(n))
		}
		u = u[n:]
		if num == ownerField && typ == protowire.BytesType {
			s, m := protowire.ConsumeString(u)
			if m < 0 {
				t.Fatalf("stored state %x: %v", raw, protowire.ParseError(m))
			}
			owner = s
		}
		n = protowire.ConsumeFieldValue(num, typ, u)
		if n < 0 {
			t.Fatalf("stored state %x: %v", raw, protowire.ParseError(n))
		}
		u = u[n:]
	}
	if v.GetValue() != want || owner != "alice" {
		t.Fatalf("stored state %x: balance %d, owner %q; want %d and the newer version's owner %q kept", raw, v.GetValue(), owner, want, "alice")
	}
}

// readOnlyTraffic makes calls to the account that change nothing: read-only
// ones, and one that is not read-only but leaves state as it was.
func readOnlyTraffic(t *testing.T, n *Node, kind, identity string, want int64) {
	t.Helper()
	for range 3 {
		if got := balance(t, n, kind, identity); got != want {
			t.Fatalf("balance %d, want %d", got, want)
		}
	}
	if _, err := n.Invoke(context.Background(), accountCall(kind, methodTouch, identity, "")); err != nil {
		t.Fatalf("Touch: %v", err)
	}
}

// TestReadOnlyCallsOnStateOfAnotherVersionWriteNothing: a grain whose
// stored state a newer version of its message wrote, which encodes
// differently here, serves calls that change nothing and is passivated
// without writing to the store; a call that changes state afterwards
// commits the newer version's field along. The passivation committed the
// re-encoding, though nothing changed: read-only traffic wrote to the
// store, once per activation while versions alternated.
func TestReadOnlyCallsOnStateOfAnotherVersionWriteNothing(t *testing.T) {
	eachStore(t, func(t *testing.T, store storage.Store) {
		nodes, _ := bankCluster(t, 1, store, 50*time.Millisecond, nil)
		n := nodes[0]
		stored := newerBalance()
		version := commitMessageBehind(t, store, accountKind, "newer", stored)

		readOnlyTraffic(t, n, accountKind, "newer", 10)
		waitFor(t, waitTimeout, "the passivation", func() bool { return n.acts.count() == 0 })
		raw, v := storedMessage(t, store, accountKind, "newer")
		if v != version || !bytes.Equal(raw, stored) {
			t.Fatalf("calls that changed nothing, and the passivation, wrote %x at version %d over %x at version %d", raw, v, stored, version)
		}

		if got := deposit(t, n, accountKind, "newer", 5); got != 15 {
			t.Fatalf("Deposit(5) replied %d, want 15", got)
		}
		if _, v := storedMessage(t, store, accountKind, "newer"); v == version {
			t.Fatal("Deposit(5) committed nothing")
		}
		wantOwnerKept(t, store, accountKind, "newer", 15)
	})
}

// TestShutdownAfterReadOnlyCallsOnStateOfAnotherVersionWritesNothing: as
// above, deactivated by the node's Shutdown.
func TestShutdownAfterReadOnlyCallsOnStateOfAnotherVersionWritesNothing(t *testing.T) {
	eachStore(t, func(t *testing.T, store storage.Store) {
		nodes, _ := bankCluster(t, 1, store, -1, nil)
		n := nodes[0]
		stored := newerBalance()
		version := commitMessageBehind(t, store, accountKind, "newer", stored)

		readOnlyTraffic(t, n, accountKind, "newer", 10)
		if n.acts.count() != 1 {
			t.Fatalf("%d activations before Shutdown, want the grain's", n.acts.count())
		}
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if err := n.Shutdown(ctx); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		raw, v := storedMessage(t, store, accountKind, "newer")
		if v != version || !bytes.Equal(raw, stored) {
			t.Fatalf("calls that changed nothing, and the Shutdown, wrote %x at version %d over %x at version %d", raw, v, stored, version)
		}
	})
}

// The note kind: its typed state message is a StringValue, which another
// version of the message declared bytes (a BytesValue: the same field 1,
// the same wire type).
const (
	noteKind        = "test.Note"
	methodReadNote  = "/test.Note/Read"  // read-only; StringValue → StringValue, the note
	methodWriteNote = "/test.Note/Write" // StringValue → StringValue; sets the note
)

func newNoteKind() *Kind {
	note := func(ctx GrainContext) *wrapperspb.StringValue { return ctx.State().Message().(*wrapperspb.StringValue) }
	return &Kind{
		Name:     noteKind,
		NewState: func() proto.Message { return new(wrapperspb.StringValue) },
		New:      func(string) any { return struct{}{} },
		Methods: []Method{
			{Name: methodReadNote, NewRequest: newString, ReadOnly: true,
				Handle: func(_ any, ctx GrainContext, _ proto.Message) (proto.Message, error) {
					return wrapperspb.String(note(ctx).GetValue()), nil
				}},
			{Name: methodWriteNote, NewRequest: newString,
				Handle: func(_ any, ctx GrainContext, req proto.Message) (proto.Message, error) {
					note(ctx).Value = req.(*wrapperspb.StringValue).GetValue()
					return req, nil
				}},
		},
	}
}

// wantUndecodable fails t unless err says that the grain's state message
// does not decode, and not that the store is unavailable: retrying does
// not help.
func wantUndecodable(t *testing.T, what string, err error) {
	t.Helper()
	if status.Code(err) != codes.FailedPrecondition || !errors.Is(err, ErrStateUndecodable) || errors.Is(err, ErrStateUnavailable) ||
		!strings.Contains(err.Error(), "decode the state message") {
		t.Fatalf("%s: %v (code %v); want FailedPrecondition and ErrStateUndecodable (not ErrStateUnavailable), saying the state message does not decode",
			what, err, status.Code(err))
	}
}

// TestUndecodableStateIsNotTransient: a stored state message that does
// not decode as the kind's message fails every call, on the owner and from
// another node, with ErrStateUndecodable (FailedPrecondition), and leaves
// what is stored as it was. It failed with ErrStateUnavailable
// (Unavailable), the error of a store outage that callers are told to
// retry, though no retry can succeed while a node of this version owns the
// grain.
func TestUndecodableStateIsNotTransient(t *testing.T) {
	undecodable := map[string][]byte{
		// Another version declared field 1 bytes and stored bytes that
		// are not UTF-8; this one declares it string.
		"not UTF-8": protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), []byte{0xff, 0xfe}),
		// Damaged: a length past the end.
		"truncated": {0x0a, 0x05, 'a'},
	}
	eachStore(t, func(t *testing.T, store storage.Store) {
		nodes := startCluster(t, 2, func(string) []*Kind { return []*Kind{newNoteKind()} }, func(cfg *Config) { cfg.Store = store })
		owner, other := nodes[0], nodes[1]
		ctx := context.Background()
		for name, raw := range undecodable {
			id := accountOwnedBy(t, owner, noteKind, strings.ReplaceAll(name, " ", "-"))
			key := storage.Key{Kind: noteKind, Identity: id}
			commitMessageBehind(t, store, noteKind, id, raw)
			before, version, err := store.Load(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			for _, caller := range []*Node{owner, other, owner} {
				for _, method := range []string{methodReadNote, methodWriteNote} {
					_, err := caller.Invoke(ctx, Call{Kind: noteKind, Identity: id, Method: method,
						Request: wrapperspb.String("x"), NewResponse: newString})
					wantUndecodable(t, name+": "+method+" from "+caller.Name(), err)
				}
			}
			if n := owner.acts.count(); n != 0 {
				t.Fatalf("%s: %d activations kept on the owner, want none", name, n)
			}
			after, v, err := store.Load(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			if v != version || !maps.EqualFunc(before, after, bytes.Equal) {
				t.Fatalf("%s: the failed calls changed what is stored: version %d -> %d, entries %q -> %q", name, version, v, before, after)
			}
		}
	})
}

// TestARollbackThatCannotDecodeTheMessageIsNotTransient: a rollback that
// cannot restore the typed message from the bytes it goes back to (which
// cannot happen to bytes that were decoded or encoded here) breaks the
// state with ErrStateUndecodable, not with a store outage's error.
func TestARollbackThatCannotDecodeTheMessageIsNotTransient(t *testing.T) {
	key := storage.Key{Kind: noteKind, Identity: "rollback"}
	buf, err := state.New(nil, key, state.Config{})
	if err != nil {
		t.Fatal(err)
	}
	buf.SetMessage([]byte{0x0a, 0x02, 0xff, 0xfe}) // field 1, not UTF-8
	st := &grainState{key: key, buf: buf, msg: new(wrapperspb.StringValue), mark: buf.Mark()}
	st.rollback()
	err = st.failure()
	if status.Code(err) != codes.FailedPrecondition || !errors.Is(err, ErrStateUndecodable) || errors.Is(err, ErrStateUnavailable) ||
		!strings.Contains(err.Error(), "restore its state message") {
		t.Fatalf("failure after the rollback: %v (code %v); want FailedPrecondition and ErrStateUndecodable, saying the message was not restored",
			err, status.Code(err))
	}
}

// TestADamagedExactlyOnceRecordIsNotTransient: an exactly-once record
// whose stored bytes do not decode fails the grain's calls with
// ErrStateUndecodable (FailedPrecondition), as a damaged state message
// does, and leaves what is stored as it was. It failed with
// ErrStateUnavailable, which callers are told to retry.
func TestADamagedExactlyOnceRecordIsNotTransient(t *testing.T) {
	eachStore(t, func(t *testing.T, store storage.Store) {
		nodes, _ := bankCluster(t, 1, store, -1, nil)
		n := nodes[0]
		ctx := context.Background()
		key := storage.Key{Kind: accountKind, Identity: "damaged-record"}
		version, err := store.Commit(ctx, key, 0, []storage.Change{{Key: state.ReservedPrefix + "client/c1", Value: []byte{0xff}}})
		if err != nil {
			t.Fatal(err)
		}
		_, err = n.Invoke(ctx, depositCall(accountKind, key.Identity, 5))
		if status.Code(err) != codes.FailedPrecondition || !errors.Is(err, ErrStateUndecodable) || errors.Is(err, ErrStateUnavailable) ||
			!strings.Contains(err.Error(), "damaged") {
			t.Fatalf("a deposit to a grain with a damaged exactly-once record: %v (code %v); want FailedPrecondition and ErrStateUndecodable, saying it is damaged",
				err, status.Code(err))
		}
		if _, v, err := store.Load(ctx, key); err != nil || v != version {
			t.Fatalf("after the failed call: version %d (%v), want %d: what is stored changed", v, err, version)
		}
	})
}
