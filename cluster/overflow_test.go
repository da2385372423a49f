package cluster

import (
	"context"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The overflow test kind: a grain that can be held in a one-way message
// while others queue behind it.
const (
	sinkKind       = "test.Sink"
	methodSinkHold = "/test.Sink/Hold" // Int64Value v → Empty; 0 holds the grain until the test releases it, other values are counted
	methodSinkGot  = "/test.Sink/Got"  // Empty → Int64Value: how many values other than 0 the grain was sent
)

// sink observes the sink grains of a node.
type sink struct {
	held    chan struct{} // a value as a Hold(0) begins
	release chan struct{} // closed by the test: every Hold(0) returns
	once    sync.Once
	got     atomic.Int64
}

func newSink() *sink {
	return &sink{held: make(chan struct{}, 1), release: make(chan struct{})}
}

func (s *sink) releaseHeld() { s.once.Do(func() { close(s.release) }) }

func newSinkKind(s *sink) *Kind {
	hold := func(_ any, _ GrainContext, req proto.Message) (proto.Message, error) {
		if req.(*wrapperspb.Int64Value).GetValue() == 0 {
			s.held <- struct{}{}
			<-s.release
		} else {
			s.got.Add(1)
		}
		return &emptypb.Empty{}, nil
	}
	got := func(_ any, _ GrainContext, _ proto.Message) (proto.Message, error) {
		return wrapperspb.Int64(s.got.Load()), nil
	}
	return &Kind{
		Name: sinkKind,
		New:  func(string) any { return struct{}{} },
		Methods: []Method{
			{Name: methodSinkHold, NewRequest: newInt64, Handle: hold},
			{Name: methodSinkGot, NewRequest: func() proto.Message { return new(emptypb.Empty) }, Handle: got, ReadOnly: true},
		},
	}
}

func holdCall(identity string, v int64) Call {
	return Call{Kind: sinkKind, Identity: identity, Method: methodSinkHold, Request: wrapperspb.Int64(v)}
}

// sinkCluster starts size nodes that host the sink kind, with
// MaxQueuedOneWay set to max, and returns them with their sinks and logs.
func sinkCluster(t *testing.T, size, max int) ([]*Node, map[string]*sink, map[string]*logLines) {
	t.Helper()
	sinks := map[string]*sink{}
	logs := map[string]*logLines{}
	var mu sync.Mutex
	nodes := startCluster(t, size, func(name string) []*Kind {
		mu.Lock()
		defer mu.Unlock()
		sinks[name] = newSink()
		return []*Kind{newSinkKind(sinks[name])}
	}, withLogs(logs, false, func(cfg *Config) { cfg.MaxQueuedOneWay = max }))
	// Before the nodes close, which waits for the grains' turns.
	t.Cleanup(func() {
		for _, s := range sinks {
			s.releaseHeld()
		}
	})
	return nodes, sinks, logs
}

// holdGrain sends Hold(0) to identity through n and waits until the grain
// holds.
func holdGrain(t *testing.T, n *Node, s *sink, identity string) {
	t.Helper()
	if err := n.Send(context.Background(), holdCall(identity, 0)); err != nil {
		t.Fatalf("Send(Hold(0)): %v", err)
	}
	receive(t, s.held, "the grain to hold")
}

// sinkGot asks the sink grain, with a call, how many values it was sent.
// The call queues behind the one-way messages sent before it.
func sinkGot(t *testing.T, c Caller, identity string) int64 {
	t.Helper()
	resp, err := c.Invoke(context.Background(), Call{Kind: sinkKind, Identity: identity, Method: methodSinkGot, Request: &emptypb.Empty{},
		NewResponse: func() proto.Message { return new(wrapperspb.Int64Value) }})
	if err != nil {
		t.Fatalf("Got: %v", err)
	}
	return resp.(*wrapperspb.Int64Value).GetValue()
}

var droppedAttr = regexp.MustCompile(` dropped=(\d+)`)

// droppedLogged sums the one-way messages l's lines say were dropped for
// a full mailbox.
func droppedLogged(l *logLines) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	sum := 0
	for _, line := range l.lines {
		if m := droppedAttr.FindStringSubmatch(line); m != nil && strings.Contains(line, "waited for their grain already") {
			n, _ := strconv.Atoi(m[1])
			sum += n
		}
	}
	return sum
}

// TestAGrainThatFallsBehindItsPeersHoldsABoundedQueue: one-way messages
// from a peer to a grain that does not keep up wait in its mailbox only up
// to MaxQueuedOneWay; the rest are dropped and counted in the owner's log,
// a line a second at most. Before the bound, the owner queued all of them:
// a sender that outran its grain could take the owner's memory.
func TestAGrainThatFallsBehindItsPeersHoldsABoundedQueue(t *testing.T) {
	const max, sent = 500, 20_000
	nodes, sinks, logs := sinkCluster(t, 2, max)
	owner, sender := nodes[0], nodes[1]
	id := ownedInEveryView(t, nodes, owner, sinkKind, "sink")
	holdGrain(t, sender, sinks[owner.Name()], id)

	for range sent {
		if err := sender.Send(context.Background(), holdCall(id, 1)); err != nil {
			t.Fatalf("Send(Hold(1)): %v", err)
		}
	}
	// The held message is counted in until the grain counts a group of
	// messages out: max-1 more fit.
	const kept = max - 1
	waitFor(t, waitTimeout, "the owner to log every message it dropped", func() bool {
		return droppedLogged(logs[owner.Name()]) >= sent-kept
	})
	if got := droppedLogged(logs[owner.Name()]); got != sent-kept {
		t.Fatalf("the owner logged %d messages dropped, want %d", got, sent-kept)
	}
	// A line a second at most, and one a sweep (every 10 ms in tests):
	// far fewer than one a message.
	if lines := logs[owner.Name()].count("waited for their grain already"); lines*20 > sent-kept {
		t.Fatalf("the owner wrote %d lines about %d drops; want one a second and one a sweep at most", lines, sent-kept)
	}
	sinks[owner.Name()].releaseHeld()
	if got := sinkGot(t, sender, id); got != kept {
		t.Fatalf("the grain got %d messages, want the %d its mailbox had room for", got, kept)
	}
}

// TestSendToAGrainWithAFullMailboxFails: Send on the owner's node fails
// with ErrMailboxFull (ResourceExhausted) once MaxQueuedOneWay messages
// wait, and queues again once the grain has caught up.
func TestSendToAGrainWithAFullMailboxFails(t *testing.T) {
	const max = 300
	nodes, sinks, _ := sinkCluster(t, 1, max)
	n, s := nodes[0], sinks[nodes[0].Name()]
	holdGrain(t, n, s, "local")

	for i := range max - 1 {
		if err := n.Send(context.Background(), holdCall("local", 1)); err != nil {
			t.Fatalf("Send #%d of %d: %v", i+1, max-1, err)
		}
	}
	err := n.Send(context.Background(), holdCall("local", 1))
	if !errors.Is(err, ErrMailboxFull) || status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("Send to a full mailbox: %v, want ErrMailboxFull, ResourceExhausted", err)
	}
	if st := n.Stats(); st.Refused != 1 || st.DroppedOneWay != 0 {
		t.Fatalf("Stats after a Send to a full mailbox: %+v, want Refused 1 and nothing dropped", st)
	}
	s.releaseHeld()
	if got := sinkGot(t, n, "local"); got != max-1 {
		t.Fatalf("the grain got %d messages, want %d", got, max-1)
	}
	// Caught up: counted out, the mailbox takes as many again.
	for i := range max - oneWaysCountedOut {
		if err := n.Send(context.Background(), holdCall("local", 1)); err != nil {
			t.Fatalf("Send #%d after the grain caught up: %v", i+1, err)
		}
	}
	if got := sinkGot(t, n, "local"); got != 2*max-1-oneWaysCountedOut {
		t.Fatalf("the grain got %d messages, want %d", got, 2*max-1-oneWaysCountedOut)
	}
}

// TestANegativeMaxQueuedOneWayBoundsNothing: with MaxQueuedOneWay
// negative, a held grain's mailbox takes every message, more than the
// default bound.
func TestANegativeMaxQueuedOneWayBoundsNothing(t *testing.T) {
	const sent = DefaultMaxQueuedOneWay + 1000
	nodes, sinks, _ := sinkCluster(t, 1, -1)
	n, s := nodes[0], sinks[nodes[0].Name()]
	holdGrain(t, n, s, "unbounded")
	for range sent {
		if err := n.Send(context.Background(), holdCall("unbounded", 1)); err != nil {
			t.Fatalf("Send: %v", err)
		}
	}
	s.releaseHeld()
	if got := sinkGot(t, n, "unbounded"); got != sent {
		t.Fatalf("the grain got %d messages, want %d", got, sent)
	}
}
