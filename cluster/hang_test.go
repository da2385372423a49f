package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// These tests come from an audit of members that hang (a paused process
// keeps its sockets open, reads nothing and answers nothing): each held a
// healthy node, or what it sends, without a bound before its fix.

// addPaused adds to n's view, held until the test ends, a member named
// "paused" hosting echoKind at a transport that answers a stream's hello
// and reads nothing after it.
func addPaused(t *testing.T, n *Node) {
	t.Helper()
	addr := startStalledPeer(t)
	holdView(t, n, func(members []Member) []Member {
		return append(members, Member{Name: "paused", GRPCAddr: addr, Kinds: []string{echoKind}, Status: StatusAlive})
	})
}

// echoIdentity returns the first identity of echoKind that each node's
// view places on the owner named with it.
func echoIdentity(t *testing.T, prefix string, placed map[*Node]string) string {
	t.Helper()
	for i := range 10000 {
		id := fmt.Sprintf("%s-%d", prefix, i)
		all := true
		for n, owner := range placed {
			if m, _ := n.Owner(echoKind, id); m.Name != owner {
				all = false
				break
			}
		}
		if all {
			return id
		}
	}
	t.Fatalf("no identity placed as %v", placed)
	return ""
}

// TestSendWithoutADeadlineToAPausedOwnerEndsAtTheDefault sends one-way
// messages of a megabyte, with context.Background(), to an owner that reads
// nothing: once its stream's window and the queue are full, Send must
// return at DefaultCallTimeout, as a local message's activation does. It
// waited for room for good.
func TestSendWithoutADeadlineToAPausedOwnerEndsAtTheDefault(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.DefaultCallTimeout = 300 * time.Millisecond
	cfg.MaxPendingBytes = 1 << 20
	cfg.Kinds = []*Kind{newEchoKind(newHooks(cfg.NodeName), time.Hour)}
	n := startNode(t, cfg)
	addPaused(t, n)
	id := echoIdentity(t, "paused", map[*Node]string{n: "paused"})
	big := strings.Repeat("x", 1<<20)
	done := make(chan error, 1)
	go func() {
		for range 100 { // far more than the window and the queue hold
			if err := n.Send(context.Background(), stringCall(methodString, id, big)); err != nil {
				done <- err
				return
			}
		}
		done <- errors.New("a hundred megabytes handed to a member that reads nothing")
	}()
	if err := receive(t, done, "Send to the paused owner to fail"); status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("Send to the paused owner: %v, want DeadlineExceeded", err)
	}
}

// TestAForwardToAPausedOwnerDoesNotHoldTheLane lets a send b, whose view
// has a paused member, ten one-way messages of a megabyte for a grain that
// b's view places there (so that b forwards them, until the paused
// member's stream is full), and then one for a grain of b's own, on the
// same stream. A forward now waits for room for forwardPatience, and the
// forwards after it not at all, so the last message runs soon; each
// forward used to wait for room for DefaultCallTimeout, holding the lane.
func TestAForwardToAPausedOwnerDoesNotHoldTheLane(t *testing.T) {
	t.Parallel()
	nodes, _ := echoCluster(t, 2, time.Hour, func(cfg *Config) { cfg.MaxPendingBytes = 1 << 20 })
	a, b := nodes[0], nodes[1]
	addPaused(t, b)
	toPaused := echoIdentity(t, "to-paused", map[*Node]string{a: b.Name(), b: "paused"})
	mine := echoIdentity(t, "mine", map[*Node]string{a: b.Name(), b: b.Name()})
	big := strings.Repeat("x", 1<<20)
	for range 10 {
		if err := a.Send(t.Context(), stringCall(methodString, toPaused, big)); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Send(t.Context(), addCall(mine, 1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, waitTimeout, "the message behind the forwards to run", func() bool {
		resp, err := b.Invoke(t.Context(), addCall(mine, 0))
		return err == nil && resp.(*wrapperspb.Int64Value).GetValue() == 1
	})
}
