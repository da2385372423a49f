package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
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

// hungRequester dials n's transport as a peer named "hung", with a node's
// windows, sends it reqs, and then reads nothing: a process that hung
// after sending calls.
func hungRequester(t *testing.T, n *Node, reqs []frame) {
	t.Helper()
	cc, err := grpc.NewClient(n.GRPCAddr(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(flowWindow),
		grpc.WithInitialConnWindowSize(flowWindow),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{}), grpc.MaxCallSendMsgSize(64<<20), grpc.MaxCallRecvMsgSize(64<<20)),
	)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
		cancel()
		_ = cc.Close()
	})
	stream, err := cc.NewStream(ctx, &transportDesc().Streams[0], streamMethod)
	if err != nil {
		t.Fatal(err)
	}
	hello := appendFrame(nil, &frame{typ: frameHello, node: "hung", message: "127.0.0.1:1"})
	if err := stream.SendMsg(&hello); err != nil {
		t.Fatal(err)
	}
	for i := range reqs {
		b := appendFrame(nil, &reqs[i])
		if err := stream.SendMsg(&b); err != nil {
			t.Fatal(err)
		}
	}
}

// TestShutdownBesideAPeerThatReadsNothing lets a peer call a node for
// replies of a megabyte each and then read nothing, so that the replies
// wait for room in the stream: the node's graceful Shutdown, without a
// deadline, must still deactivate its grains and return. It waited for the
// replies in the gate of requests being served, and then in the gRPC
// server's GracefulStop for the stream that could not end, both for good.
func TestShutdownBesideAPeerThatReadsNothing(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.MaxPendingBytes = 256 << 10
	h := newHooks(cfg.NodeName)
	cfg.Kinds = []*Kind{newEchoKind(h, time.Hour)}
	n := startNode(t, cfg)
	payload, err := proto.Marshal(wrapperspb.String(strings.Repeat("x", 1<<20)))
	if err != nil {
		t.Fatal(err)
	}
	var reqs []frame
	for i := range 8 {
		reqs = append(reqs, frame{typ: frameRequest, id: uint64(i + 1), kind: echoKind, identity: "big", method: methodString, payload: payload})
	}
	hungRequester(t, n, reqs)
	waitFor(t, waitTimeout, "a reply to wait for room in the stream", func() bool {
		for _, c := range n.transport.openConns() {
			c.mu.Lock()
			waits := c.peer == "hung" && c.space != nil
			c.mu.Unlock()
			if waits {
				return true
			}
		}
		return false
	})
	done := make(chan error, 1)
	go func() { done <- n.Shutdown(context.Background()) }()
	if err := receive(t, done, "Shutdown beside a peer that reads nothing"); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	select {
	case <-h.deactivated:
	default:
		t.Error("the grain was not deactivated: the shutdown was not graceful")
	}
}

// slowDialProxy listens on loopback and, for each connection, waits delay
// before it connects it to the address set with the returned function (a
// healthy peer on a slow network, or a TLS handshake under load), then
// pipes both ways.
func slowDialProxy(t *testing.T, delay time.Duration) (addr string, setTarget func(string)) {
	t.Helper()
	lis, hold := heldListener(t)
	var target atomic.Pointer[string]
	go func() {
		for {
			in, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				time.Sleep(delay) // the simulated network's latency, not a wait for an outcome
				to := target.Load()
				if to == nil {
					_ = in.Close()
					return
				}
				out, err := net.Dial("tcp", *to)
				if err != nil {
					_ = in.Close()
					return
				}
				hold(in, out)
				go func() { _, _ = io.Copy(out, in); _ = out.Close() }()
				go func() { _, _ = io.Copy(in, out); _ = in.Close() }()
			}()
		}
	}()
	return lis.Addr().String(), func(to string) { target.Store(&to) }
}

// TestAForwardToASlowDialingHealthyOwnerArrives: C joins a healthy
// cluster behind a network on which a connection takes 700 ms to open. A,
// whose view is behind the join, sends a message to B, the grain's owner
// before C joined, which forwards it to C on a first, slow dial. The
// message must reach C: a forward that gave up on a dial after half a
// second (a bound this stop tried against hung owners, and took back)
// passed C by and, with B the owner without C, dropped it.
func TestAForwardToASlowDialingHealthyOwnerArrives(t *testing.T) {
	t.Parallel()
	nodes, _, _ := recorderClusterOf(t, 3, 2, -1, nil)
	b, a := nodes[0], nodes[2] // a hosts nothing
	proxy, setTarget := slowDialProxy(t, 700*time.Millisecond)
	cfg := testConfig(t)
	cfg.NodeName += "-slow"
	cfg.GRPCAdvertiseAddr = proxy
	cfg.Seeds = []string{b.GossipAddr()}
	recC := newRecorder()
	cfg.Kinds = []*Kind{newRecorderKind(recC, -1)}
	c := startNode(t, cfg)
	setTarget(c.GRPCAddr())
	waitConverged(t, append(slices.Clone(nodes), c), 4)
	id := ownedNextBy(t, b, c.Name(), b.Name(), "slowdial")
	sendForwardedRecord(t, a, b, id, 1, oneWaySent) // as A's view, behind C's join, places it
	waitValues(t, recC, id, []int64{1})
}

// TestAForwardToAHungOwnerHoldsUpNoOtherOwner: a node forwards two
// messages that came to it on one stream, the first to an owner whose dial
// hangs (alive in its view, at a listener that accepts and never answers),
// the second to a healthy owner. The second must arrive while the first
// still waits: forwarded from the stream's lane, it waited behind the
// first for the dial's DialTimeout, an hour here.
func TestAForwardToAHungOwnerHoldsUpNoOtherOwner(t *testing.T) {
	t.Parallel()
	nodes, recs, _ := recorderClusterOf(t, 3, 2, -1, func(cfg *Config) {
		cfg.DialTimeout = time.Hour
		cfg.DefaultCallTimeout = time.Hour
	})
	b, c, a := nodes[0], nodes[1], nodes[2] // a hosts nothing
	hung := hungListener(t)
	holdView(t, b, func(members []Member) []Member {
		return append(members, Member{Name: "hung", GRPCAddr: hung, Kinds: []string{recorderKind}, Status: StatusAlive})
	})
	ownedInB := func(owner, prefix string) string {
		for i := range 10000 {
			id := fmt.Sprintf("%s-%d", prefix, i)
			if m, _ := b.Owner(recorderKind, id); m.Name == owner {
				return id
			}
		}
		t.Fatalf("no identity that %s's view places on %s", b.Name(), owner)
		return ""
	}
	toHung, toC := ownedInB("hung", "to-hung"), ownedInB(c.Name(), "to-c")
	sendForwardedRecord(t, a, b, toHung, 1, oneWaySent)
	sendForwardedRecord(t, a, b, toC, 2, oneWaySent)
	waitValues(t, recs[c.Name()], toC, []int64{2})
}

// TestForwardsKeepTheirOrder: messages a node forwards for one grain, from
// one peer, reach the grain in the order the peer sent them, through the
// owner's forward queue as they did through the stream's lane.
func TestForwardsKeepTheirOrder(t *testing.T) {
	t.Parallel()
	nodes, recs, _ := recorderClusterOf(t, 3, 2, -1, nil)
	b, c, a := nodes[0], nodes[1], nodes[2] // a hosts nothing
	id := recorderOwnedBy(t, nodes, c, "forward-order")
	const messages = 300
	for v := range int64(messages) {
		sendForwardedRecord(t, a, b, id, v, oneWaySent) // as a view that places it on b would
	}
	waitValues(t, recs[c.Name()], id, sequence(0, messages-1))
}
