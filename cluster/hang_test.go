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
)

// These tests come from an audit of members that hang (a paused process
// keeps its sockets open, reads nothing and answers nothing): each held a
// healthy node, or what it sends, without a bound before its fix.

// pausedOwner adds to n's view, held until the test ends, a member named
// "paused" hosting echoKind at a transport that answers a stream's hello
// and reads nothing after it, and returns an identity n places on it.
func pausedOwner(t *testing.T, n *Node) string {
	t.Helper()
	addr := startStalledPeer(t)
	holdView(t, n, func(members []Member) []Member {
		return append(members, Member{Name: "paused", GRPCAddr: addr, Kinds: []string{echoKind}, Status: StatusAlive})
	})
	for i := range 10000 {
		id := fmt.Sprintf("paused-%d", i)
		if m, _ := n.Owner(echoKind, id); m.Name == "paused" {
			return id
		}
	}
	t.Fatal("no identity placed on the paused member")
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
	id := pausedOwner(t, n)
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
