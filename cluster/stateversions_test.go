package cluster

import (
	"bytes"
	"context"
	"testing"
	"time"

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
	other, err := state.Load(context.Background(), store, storage.Key{Kind: kind, Identity: identity}, state.Config{})
	if err != nil {
		t.Fatal(err)
	}
	other.SetMessage(raw)
	if err := other.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	return other.Version()
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
