package cluster

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Tests of members whose kinds differ while the gossip catches up: a node
// restarted at its old address with other kinds, or running another
// version of a kind, during a rolling upgrade.

// staleCallIsPlacedAgain checks a call that from's stale view places on a
// member that does not serve it: the member answers that it does not own
// the grain, not that the kind or method is unknown, so Invoke retries it
// until its deadline instead of failing it for good; and once from's view
// is the true one (fresh), the call succeeds.
func staleCallIsPlacedAgain(t *testing.T, from *Node, fresh func(), call Call) {
	t.Helper()
	// Long enough for the first attempt's answer on a busy machine: a
	// deadline that ends before it fails the call without "does not own".
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := from.Invoke(ctx, call)
	if status.Code(err) == codes.Unimplemented || errors.Is(err, ErrUnknownKind) || errors.Is(err, ErrUnknownMethod) {
		t.Fatalf("a call placed by a stale view: %v; want it retried as not the owner's, until its deadline", err)
	}
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "does not own") || !strings.Contains(err.Error(), "gave up retrying") {
		t.Fatalf("a call placed by a stale view: %v; want ErrUnavailable, not the owner's, retried until its deadline", err)
	}
	fresh()
	if _, err := from.Invoke(context.Background(), call); err != nil {
		t.Fatalf("the call once the view is fresh: %v", err)
	}
}

// TestACallPlacedOnAMemberThatNoLongerHostsTheKindIsPlacedAgain: b came
// back at its address without the echo kind, and a's view still has b's
// old tags. b answered such calls with ErrUnknownKind (Unimplemented),
// which Invoke does not retry, though the kind is hosted by a.
func TestACallPlacedOnAMemberThatNoLongerHostsTheKindIsPlacedAgain(t *testing.T) {
	nodes := startCluster(t, 2, func(name string) []*Kind {
		if strings.HasSuffix(name, "-n0") {
			return []*Kind{newEchoKind(newHooks(name), 0)}
		}
		return nil
	}, nil)
	a, b := nodes[0], nodes[1]
	setView := holdViews(t, a)
	truth := a.Members()
	stale := func(ms []Member) []Member {
		for i := range ms {
			if ms[i].Name == b.Name() {
				ms[i].Kinds = []string{echoKind}
			}
		}
		return ms
	}
	setView(stale)
	id := placedOn(t, echoKind, "g", map[*Node]string{a: b.Name()})
	staleCallIsPlacedAgain(t, a, func() { setView(func([]Member) []Member { return truth }) }, addCall(id, 1))
}

// TestACallForAMethodTheFormerOwnerLacksIsPlacedAgain: a's view lags
// behind a join, and places a call to a method that only the newer
// version of the kind has on the member that owned the grain before the
// join, which runs the older version. That member answered
// ErrUnknownMethod (Unimplemented), not retried, though the grain's owner
// has the method; only the owner may say that a method is unknown.
func TestACallForAMethodTheFormerOwnerLacksIsPlacedAgain(t *testing.T) {
	nodes := startCluster(t, 3, func(name string) []*Kind {
		k := newEchoKind(newHooks(name), 0)
		if strings.HasSuffix(name, "-n1") { // the older version
			k.Methods = slices.DeleteFunc(k.Methods, func(m Method) bool { return m.Name == methodString })
		}
		return []*Kind{k}
	}, nil)
	a, old, c := nodes[0], nodes[1], nodes[2]
	setView := holdViews(t, a)
	truth := a.Members()
	setView(func(ms []Member) []Member {
		return slices.DeleteFunc(ms, func(m Member) bool { return m.Name == c.Name() })
	})
	id := placedOn(t, echoKind, "g", map[*Node]string{a: old.Name(), old: c.Name()})
	staleCallIsPlacedAgain(t, a, func() { setView(func([]Member) []Member { return truth }) }, stringCall(methodString, id, "x"))
	// The owner of the older version says so, naming itself.
	oldID := ownedInEveryView(t, nodes, old, echoKind, "older")
	_, err := a.Invoke(context.Background(), stringCall(methodString, oldID, "x"))
	if !errors.Is(err, ErrUnknownMethod) || !strings.Contains(err.Error(), old.Name()) {
		t.Fatalf("a call to a method its owner lacks: %v; want ErrUnknownMethod naming %s", err, old.Name())
	}
}

// TestAMessageForAKindItsReceiverDoesNotHostIsForwarded: a one-way message
// that a stale view placed on a member that does not host the kind (it
// came back at its address without it) is forwarded to the owner that
// member sees, not dropped as for an unknown kind.
func TestAMessageForAKindItsReceiverDoesNotHostIsForwarded(t *testing.T) {
	hs := map[string]*hooks{}
	nodes := startCluster(t, 3, func(name string) []*Kind {
		if strings.HasSuffix(name, "-n1") {
			return nil
		}
		hs[name] = newHooks(name)
		return []*Kind{newEchoKind(hs[name], 0)}
	}, nil)
	for _, h := range hs {
		h.releaseHeld()
	}
	a, b, c := nodes[0], nodes[1], nodes[2]
	setView := holdViews(t, a)
	setView(func(ms []Member) []Member {
		for i := range ms {
			if ms[i].Name == b.Name() {
				ms[i].Kinds = []string{echoKind}
			}
		}
		return ms
	})
	// An identity a's stale view places on b, and b's (true) one on c.
	id := placedOn(t, echoKind, "m", map[*Node]string{a: b.Name(), b: c.Name()})
	if err := a.Send(context.Background(), addCall(id, 5)); err != nil {
		t.Fatalf("Send: %v", err)
	}
	waitFor(t, waitTimeout, "the message to reach the grain on c", func() bool {
		return add(t, c, id, 0) == 5
	})
}
