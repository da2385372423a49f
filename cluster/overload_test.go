package cluster

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// These tests hold what a node keeps for one-way messages it cannot
// deliver at once (a grain that activates, an owner that hangs) to a
// bound, and what a grain that cannot activate costs to one attempt and
// one line. Each failed before the lanes were per grain and bounded.

// The lane test kind: grains whose activation a test can hold.
const (
	laneKind        = "test.Lane"
	methodLanePut   = "/test.Lane/Put"   // StringValue → Empty; counted
	methodLaneProbe = "/test.Lane/Probe" // StringValue → the same value
)

// laneSink observes the lane grains of a node.
type laneSink struct {
	heldPrefix string        // identities with this prefix wait in OnActivate until activate closes, or their context ends
	activate   chan struct{} // closed: held activations go on
	activating chan string   // an identity as its OnActivate begins
	ran        atomic.Int64  // Puts run
}

func newLaneSink(heldPrefix string) *laneSink {
	return &laneSink{heldPrefix: heldPrefix, activate: make(chan struct{}), activating: make(chan string, 16)}
}

type laneGrain struct {
	s        *laneSink
	identity string
}

// OnActivate holds a held identity's activation, as a slow one (a state
// load from a store under load, a warm-up) does.
func (g *laneGrain) OnActivate(ctx GrainContext) error {
	if !strings.HasPrefix(g.identity, g.s.heldPrefix) {
		return nil
	}
	g.s.activating <- g.identity
	select {
	case <-g.s.activate:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func newLaneKind(s *laneSink) *Kind {
	return &Kind{
		Name:        laneKind,
		IdleTimeout: time.Hour,
		New:         func(identity string) any { return &laneGrain{s: s, identity: identity} },
		Methods: []Method{
			{Name: methodLanePut, NewRequest: newString, Handle: func(grain any, _ GrainContext, _ proto.Message) (proto.Message, error) {
				grain.(*laneGrain).s.ran.Add(1)
				return &emptypb.Empty{}, nil
			}},
			{Name: methodLaneProbe, NewRequest: newString, Handle: func(_ any, _ GrainContext, req proto.Message) (proto.Message, error) {
				return req, nil
			}},
		},
	}
}

// laneCluster starts size nodes, the first of which alone hosts the lane
// kind, and returns them with their logs. Held activations go on before
// the nodes close.
func laneCluster(t *testing.T, size int, s *laneSink, configure func(*Config)) ([]*Node, map[string]*logLines) {
	t.Helper()
	logs := map[string]*logLines{}
	nodes := startCluster(t, size, func(name string) []*Kind {
		if strings.HasSuffix(name, "-n0") {
			return []*Kind{newLaneKind(s)}
		}
		return nil
	}, withLogs(logs, false, configure))
	t.Cleanup(func() { close(s.activate) }) // before the nodes close (last in, first out)
	return nodes, logs
}

func lanePut(identity, value string) Call {
	return Call{Kind: laneKind, Identity: identity, Method: methodLanePut, Request: wrapperspb.String(value),
		NewResponse: func() proto.Message { return new(emptypb.Empty) }}
}

func laneProbe(identity string) Call {
	return Call{Kind: laneKind, Identity: identity, Method: methodLaneProbe, Request: wrapperspb.String("probe"), NewResponse: newString}
}

// logText returns the lines l recorded, one a line.
func logText(l *logLines) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// undeliveredLogged sums the one-way messages l's lines say were dropped as
// undeliverable (see dropLog): a line counts one, or its dropped=N.
func undeliveredLogged(l *logLines) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	sum := 0
	for _, line := range l.lines {
		if !strings.Contains(line, "dropped a one-way message") {
			continue
		}
		n := 1
		if m := droppedAttr.FindStringSubmatch(line); m != nil {
			n, _ = strconv.Atoi(m[1])
		}
		sum += n
	}
	return sum
}

// TestDroppedOneWayMessagesAreLoggedALineASecond: an owner drops one-way
// messages it cannot deliver (here, to a method the grain does not have,
// from a peer that cannot check) and counts them in its log, a line a
// second at most and one a sweep for the rest, the first in full. Before,
// it wrote a line per message.
func TestDroppedOneWayMessagesAreLoggedALineASecond(t *testing.T) {
	const sent = 2000
	nodes, logs := laneCluster(t, 2, newLaneSink("held"), nil)
	owner, sender := nodes[0], nodes[1]
	ctx := context.Background()
	for range sent {
		call := lanePut("unknown", "")
		call.Method = "/test.Lane/Nope"
		if err := sender.Send(ctx, call); err != nil {
			t.Fatalf("Send: %v", err)
		}
	}
	l := logs[owner.Name()]
	waitFor(t, waitTimeout, "the owner to log every message it dropped", func() bool { return undeliveredLogged(l) >= sent })
	if got := undeliveredLogged(l); got != sent {
		t.Fatalf("the owner logged %d messages dropped, want %d:\n%s", got, sent, logText(l))
	}
	if got := l.count("cluster: dropped a one-way message node=", "identity=unknown", "method=/test.Lane/Nope", "has no method"); got == 0 {
		t.Errorf("no line names a dropped message in full:\n%s", logText(l))
	}
	// A line a second at most, and one a sweep (every 10 ms in tests):
	// far fewer than one a message.
	if lines := l.count("dropped a one-way message"); lines*20 > sent {
		t.Fatalf("the owner wrote %d lines about %d drops; want one a second and one a sweep at most", lines, sent)
	}
}
