package cluster

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/protograin/protograin/cluster/storage"
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
	mu         sync.Mutex
	values     map[string][]string // the values of the Puts each identity ran, in order
}

// ranValues returns the values of the Puts identity ran, in order.
func (s *laneSink) ranValues(identity string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.values[identity])
}

func newLaneSink(heldPrefix string) *laneSink {
	return &laneSink{heldPrefix: heldPrefix, activate: make(chan struct{}), activating: make(chan string, 16), values: map[string][]string{}}
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
			{Name: methodLanePut, NewRequest: newString, Handle: func(grain any, _ GrainContext, req proto.Message) (proto.Message, error) {
				g := grain.(*laneGrain)
				g.s.mu.Lock()
				g.s.values[g.identity] = append(g.s.values[g.identity], req.(*wrapperspb.StringValue).GetValue())
				g.s.mu.Unlock()
				g.s.ran.Add(1)
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

// laneWaiting returns how many one-way requests wait in the lanes of n's
// streams to peer.
func laneWaiting(n *Node, peer string) int {
	waiting := 0
	for _, c := range n.transport.openConns() {
		if c.peer == peer {
			c.waiting(func(_ string, n int) { waiting += n })
		}
	}
	return waiting
}

// TestOneWayMessagesWaitingForAnActivationAreBounded: two peers send
// one-way messages to a grain whose activation is slow. The owner's
// readers cannot queue them in a mailbox that does not exist yet: they
// wait in the grain's lanes, one per stream, which hold no more than
// MaxQueuedOneWay together; the rest are dropped and counted in the
// owner's log, as for a full mailbox. Once the grain is active, what the
// lanes held runs. Before, a stream's lane took every message (20,000
// here) until the node ran out of memory, and Send returned nil for each.
func TestOneWayMessagesWaitingForAnActivationAreBounded(t *testing.T) {
	const bound, sent = 1000, 20_000
	s := newLaneSink("held")
	nodes, logs := laneCluster(t, 3, s, func(cfg *Config) { cfg.MaxQueuedOneWay = bound })
	owner, senders := nodes[0], nodes[1:]
	ctx := context.Background()
	concurrently(t, len(senders), func(i int) error {
		for range sent / len(senders) {
			if err := senders[i].Send(ctx, lanePut("held-1", "")); err != nil {
				return err
			}
		}
		// A call behind the messages on the same stream: once it is
		// answered, the owner's reader has taken every message before it.
		_, err := senders[i].Invoke(ctx, laneProbe("probe"))
		return err
	})
	receive(t, s.activating, "the held activation")
	waiting := 0
	for _, sender := range senders {
		waiting += laneWaiting(owner, sender.Name())
	}
	if waiting != bound {
		t.Fatalf("the owner holds %d one-way messages for an activating grain in its lanes, want Config.MaxQueuedOneWay (%d)", waiting, bound)
	}
	waitFor(t, waitTimeout, "the owner to log every message it dropped", func() bool {
		return droppedLogged(logs[owner.Name()]) >= sent-bound
	})
	if got := droppedLogged(logs[owner.Name()]); got != sent-bound {
		t.Fatalf("the owner logged %d messages dropped, want %d", got, sent-bound)
	}
	s.activate <- struct{}{} // not closed: Cleanup closes it
	waitFor(t, waitTimeout, "the grain to run what its lanes held", func() bool { return s.ran.Load() >= bound })
	for _, sender := range senders {
		waitFor(t, waitTimeout, "the lanes to empty", func() bool { return laneWaiting(owner, sender.Name()) == 0 })
	}
	if got := s.ran.Load(); got != bound {
		t.Fatalf("the grain ran %d messages, want the %d its lanes held", got, bound)
	}
	owner.laned.mu.Lock()
	defer owner.laned.mu.Unlock()
	if len(owner.laned.count) != 0 {
		t.Errorf("the owner still counts messages in lanes: %v", owner.laned.count)
	}
}

// TestASlowActivationHoldsUpNoOtherGrainsMessages: a peer sends a one-way
// message to a grain whose activation is slow, then one to a grain that is
// active and idle: the second runs while the first grain activates. With
// one lane per stream, every later one-way message of the peer, to any
// grain, waited behind the activation.
func TestASlowActivationHoldsUpNoOtherGrainsMessages(t *testing.T) {
	s := newLaneSink("held")
	nodes, _ := laneCluster(t, 2, s, func(cfg *Config) { cfg.DefaultCallTimeout = time.Hour })
	owner, sender := nodes[0], nodes[1]
	ctx := context.Background()
	if _, err := sender.Invoke(ctx, laneProbe("ready")); err != nil { // "ready" is active
		t.Fatal(err)
	}
	if err := sender.Send(ctx, lanePut("held-1", "")); err != nil {
		t.Fatal(err)
	}
	receive(t, s.activating, "the held activation")
	if err := sender.Send(ctx, lanePut("ready", "")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, waitTimeout, "the active grain to run its message while another activates", func() bool { return s.ran.Load() == 1 })
	if waiting := laneWaiting(owner, sender.Name()); waiting != 1 {
		t.Errorf("%d one-way messages wait in the owner's lanes, want the held grain's 1", waiting)
	}
}

// TestOneWayMessagesKeepTheirOrderInTheirGrainsLane: a peer sends one-way
// messages to a grain whose activation is slow and, between them, to an
// active grain. Each grain runs its messages in the order they were sent:
// the active grain's at once, by the reader's fast path, the other's once
// it is active, from its lane.
func TestOneWayMessagesKeepTheirOrderInTheirGrainsLane(t *testing.T) {
	const messages = 300
	s := newLaneSink("held")
	nodes, _ := laneCluster(t, 2, s, func(cfg *Config) { cfg.DefaultCallTimeout = time.Hour })
	sender := nodes[1]
	ctx := context.Background()
	if _, err := sender.Invoke(ctx, laneProbe("ready")); err != nil { // "ready" is active
		t.Fatal(err)
	}
	var want []string
	for i := range messages {
		v := strconv.Itoa(i)
		want = append(want, v)
		for _, id := range []string{"held-1", "ready"} {
			if err := sender.Send(ctx, lanePut(id, v)); err != nil {
				t.Fatal(err)
			}
		}
	}
	receive(t, s.activating, "the held activation")
	waitFor(t, waitTimeout, "the active grain to run its messages", func() bool { return len(s.ranValues("ready")) == messages })
	if got := s.ranValues("held-1"); len(got) != 0 {
		t.Fatalf("the held grain ran %d messages before it was active", len(got))
	}
	s.activate <- struct{}{} // not closed: Cleanup closes it
	waitFor(t, waitTimeout, "the held grain to run its messages", func() bool { return len(s.ranValues("held-1")) == messages })
	for _, id := range []string{"held-1", "ready"} {
		if got := s.ranValues(id); !slices.Equal(got, want) {
			t.Errorf("%s ran %v, want %v", id, got, want)
		}
	}
}

// heldLoads is a hookedStore whose loads of one grain wait until the test
// lets them go.
type heldLoads struct {
	*hookedStore
	key     storage.Key
	loading chan struct{} // a held load began (if it has room)
	loaded  chan struct{} // closed: held loads go on
}

func (s *heldLoads) Load(ctx context.Context, key storage.Key) (map[string][]byte, storage.Version, error) {
	if key == s.key {
		select {
		case s.loading <- struct{}{}:
		default: // the test does not wait for this one
		}
		select {
		case <-s.loaded:
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		}
	}
	return s.hookedStore.Load(ctx, key)
}

// TestOneWayMessagesWaitingForAnActivationThatFailsShareItsOutcome: the
// store is down while a peer sends one-way messages to a grain with
// durable state that is not active. The messages that wait in the grain's
// lane while its state loads are dropped with the first when the load
// fails, with one line that counts them: one load from a store that is
// down, one line. A message that arrives later tries again. Before, each
// message of the lane tried an activation of its own in turn, a load and
// a warning line per message.
func TestOneWayMessagesWaitingForAnActivationThatFailsShareItsOutcome(t *testing.T) {
	const messages = 2000
	store := &heldLoads{hookedStore: hookedMemstore(t), key: storage.Key{Kind: accountKind, Identity: "down-1"},
		loading: make(chan struct{}, 16), loaded: make(chan struct{})}
	logs := map[string]*logLines{}
	nodes := startCluster(t, 2, func(name string) []*Kind {
		if strings.HasSuffix(name, "-n0") {
			return []*Kind{newAccountKind(newBank(name), accountKind, FlushAfterCall, time.Hour)}
		}
		return nil
	}, withLogs(logs, false, func(cfg *Config) { cfg.Store = store }))
	owner, sender := nodes[0], nodes[1]
	down := errStoreDown
	store.loadErr.Store(&down)
	loads := store.loads.Load()
	ctx := context.Background()
	for range messages {
		if err := sender.Send(ctx, accountCall(accountKind, methodTouch, "down-1", "x")); err != nil {
			t.Fatalf("Send: %v", err)
		}
	}
	receive(t, store.loading, "the grain's state to load")
	waitFor(t, waitTimeout, "every message to wait in the grain's lane", func() bool {
		return laneWaiting(owner, sender.Name()) == messages
	})
	close(store.loaded)
	waitFor(t, waitTimeout, "the owner to drop the messages", func() bool {
		return logs[owner.Name()].count("dropped a one-way message") > 0 && laneWaiting(owner, sender.Name()) == 0
	})
	if got := store.loads.Load() - loads; got != 1 {
		t.Errorf("%d one-way messages waiting for one activation: the owner loaded the grain's state %d times, want once", messages, got)
	}
	if got := logs[owner.Name()].count("dropped a one-way message", "down-1", "store down", "dropped=2000"); got != 1 {
		t.Errorf("the owner wrote %d lines that count the %d messages dropped with the failed activation, want 1:\n%s",
			got, messages, logText(logs[owner.Name()]))
	}
	if got := logs[owner.Name()].count("dropped a one-way message"); got != 1 {
		t.Errorf("the owner wrote %d lines about dropped messages, want 1", got)
	}

	// A later message tries again: the store is back.
	store.loadErr.Store(nil)
	if err := sender.Send(ctx, accountCall(accountKind, methodTouch, "down-1", "x")); err != nil {
		t.Fatal(err)
	}
	receive(t, store.loading, "the grain's state to load again")
	// A call runs once the activation is done, its state loaded: the
	// activation is in the table from its start.
	balance(t, sender, accountKind, "down-1")
	if got := store.loads.Load() - loads; got != 2 {
		t.Errorf("the owner loaded the grain's state %d times, want twice", got)
	}
}

// forwardQueued returns how many one-way messages, and how many bytes of
// them (see forwardCost), wait in n's forward queue to owner.
func forwardQueued(n *Node, owner string) (msgs, bytes int) {
	n.forwards.mu.Lock()
	defer n.forwards.mu.Unlock()
	if q := n.forwards.queues[owner]; q != nil {
		return len(q.msgs), q.bytes
	}
	return 0, 0
}

// ownedIn returns the first identity prefix-N of kind that view's view
// places on the member named owner.
func ownedIn(t *testing.T, view *Node, kind, owner, prefix string) string {
	t.Helper()
	for i := range 10000 {
		id := fmt.Sprintf("%s-%d", prefix, i)
		if m, ok := view.Owner(kind, id); ok && m.Name == owner {
			return id
		}
	}
	t.Fatalf("no identity of %s that %s's view places on %s", kind, view.Name(), owner)
	return ""
}

// TestForwardsToAHungOwnerAreBounded: a node's view places a grain on a
// member that hangs with its sockets open (a paused VM; the gossip still
// has it alive), while the sender's view places it on the node, which
// forwards what it gets. Once the hung member's stream is full, the
// forward queue to it holds at most MaxPendingBytes; the rest is dropped
// and counted in the log. Before, it took whatever came, with nothing
// logged (25,789 messages, 33 MB, for 30,000 sent).
func TestForwardsToAHungOwnerAreBounded(t *testing.T) {
	const messages, pending = 3000, 64 << 10
	s := newLaneSink("held")
	nodes, logs := laneCluster(t, 2, s, func(cfg *Config) { cfg.MaxPendingBytes = pending })
	forwarder, sender := nodes[0], nodes[1]
	paused := startStalledPeer(t)
	holdView(t, forwarder, func(members []Member) []Member {
		return append(members, Member{Name: "paused", GRPCAddr: paused, Kinds: []string{laneKind}, Status: StatusAlive})
	})
	id := ownedIn(t, forwarder, laneKind, "paused", "to-paused")
	ctx := context.Background()
	value := strings.Repeat("x", 1<<10)
	for range messages {
		if err := sender.Send(ctx, lanePut(id, value)); err != nil {
			t.Fatalf("Send: %v", err)
		}
	}
	if _, err := sender.Invoke(ctx, laneProbe(ownedIn(t, forwarder, laneKind, forwarder.Name(), "probe"))); err != nil { // behind the messages on the stream
		t.Fatal(err)
	}
	waitFor(t, waitTimeout, "the grain's lane to pass its messages on to the forward queue", func() bool {
		return laneWaiting(forwarder, sender.Name()) == 0
	})
	msgs, bytes := forwardQueued(forwarder, "paused")
	if bytes > pending {
		t.Errorf("the forward queue to a hung owner holds %d messages, %d bytes, over Config.MaxPendingBytes (%d)", msgs, bytes, pending)
	}
	waitFor(t, waitTimeout, "the forwarder to log what it dropped", func() bool {
		return logs[forwarder.Name()].count("dropped a one-way message", "forwarded to paused", "Config.MaxPendingBytes") > 0
	})
}

// laneDrainers returns how many goroutines drain the lanes of n's streams
// to peer, and how many lanes wait for one.
func laneDrainers(n *Node, peer string) (drainers, undrained int) {
	for _, c := range n.transport.openConns() {
		if c.peer == peer {
			c.lanes.mu.Lock()
			drainers += c.lanes.drainers
			undrained += len(c.lanes.undrained)
			c.lanes.mu.Unlock()
		}
	}
	return drainers, undrained
}

// TestABurstToActivatingGrainsTakesFewGoroutines: a peer sends one-way
// messages to many grains whose activations are slow. The owner's stream
// opens a lane for each, and drains at most maxLaneDrainers of them at a
// time; the others wait for a drainer, and every message runs once the
// activations go on. With a goroutine per lane, a burst to grains that
// were not active took a goroutine stack per grain.
func TestABurstToActivatingGrainsTakesFewGoroutines(t *testing.T) {
	const grains = maxLaneDrainers + 36
	s := newLaneSink("held")
	nodes, _ := laneCluster(t, 2, s, nil)
	owner, sender := nodes[0], nodes[1]
	for i := range grains {
		if err := sender.Send(context.Background(), lanePut(fmt.Sprintf("held-%d", i), "")); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, waitTimeout, "every message in a lane", func() bool { return laneWaiting(owner, sender.Name()) == grains })
	if drainers, undrained := laneDrainers(owner, sender.Name()); drainers != maxLaneDrainers || undrained != grains-maxLaneDrainers {
		t.Fatalf("%d goroutines drain the lanes of %d grains, %d lanes wait for one; want %d and %d",
			drainers, grains, undrained, maxLaneDrainers, grains-maxLaneDrainers)
	}
	for range grains { // each held activation in turn
		receive(t, s.activating, "a held activation")
		s.activate <- struct{}{}
	}
	waitFor(t, waitTimeout, "every message to run", func() bool { return s.ran.Load() == grains })
	waitFor(t, waitTimeout, "the drainers to end", func() bool {
		drainers, undrained := laneDrainers(owner, sender.Name())
		return drainers == 0 && undrained == 0
	})
}
