package cluster

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// TestStatsCountTheGrainsAndWhatWaitsForThem: a node's Stats count its
// activations and the one-way messages waiting in a grain's mailbox while
// the grain is held in a turn, and those count down once it catches up.
func TestStatsCountTheGrainsAndWhatWaitsForThem(t *testing.T) {
	nodes, sinks, _ := sinkCluster(t, 1, -1)
	n, s := nodes[0], sinks[nodes[0].Name()]
	if got := n.Stats(); !reflect.DeepEqual(got, Stats{Kinds: map[string]KindStats{sinkKind: {}}}) {
		t.Fatalf("Stats of a node that served nothing: %+v, want zeros, and its one kind", got)
	}
	holdGrain(t, n, s, "held")
	sinkGot(t, n, "idle") // a second grain, with nothing queued
	const queued = 100
	for range queued {
		if err := n.Send(context.Background(), holdCall("held", 1)); err != nil {
			t.Fatal(err)
		}
	}
	got := make(chan error, 1)
	go func() { // a call behind them
		_, err := n.Invoke(context.Background(), Call{Kind: sinkKind, Identity: "held", Method: methodSinkGot, Request: &emptypb.Empty{},
			NewResponse: func() proto.Message { return new(wrapperspb.Int64Value) }})
		got <- err
	}()
	waitFor(t, waitTimeout, "the call to be counted in", func() bool { return n.Stats().Calls == 1 })
	// The held message is counted too, until the grain counts it out
	// with the next oneWaysCountedOut.
	if st := n.Stats(); st.Activations != 2 || st.QueuedOneWay < queued || st.QueuedOneWay > queued+oneWaysCountedOut {
		t.Fatalf("Stats with %d messages and a call queued for a held grain: %+v; want 2 activations and %d to %d queued",
			queued, st, queued, queued+oneWaysCountedOut)
	}
	s.releaseHeld()
	if err := receive(t, got, "the call's reply"); err != nil {
		t.Fatal(err)
	}
	if st := n.Stats(); st.QueuedOneWay >= oneWaysCountedOut || st.Calls != 0 || st.DroppedOneWay != 0 {
		t.Fatalf("Stats once the grain caught up: %+v; want fewer than %d queued, no call and nothing dropped", st, oneWaysCountedOut)
	}
}

// TestStatsBreakTheFiguresDownByKind: Stats.Kinds has an entry for each
// kind the node hosts, with the activations and calls of its grains, and
// the entries add up to the node's figures.
func TestStatsBreakTheFiguresDownByKind(t *testing.T) {
	nodes, _ := bankCluster(t, 1, nil, time.Hour, nil)
	n := nodes[0]
	for _, id := range []string{"a", "b", "c"} {
		deposit(t, n, accountKind, id, 1)
	}
	deposit(t, n, manualKind, "d", 1)
	want := Stats{Activations: 4, Kinds: map[string]KindStats{accountKind: {Activations: 3, Identities: 3}, manualKind: {Activations: 1, Identities: 1}}}
	if got := n.Stats(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Stats with three grains of one kind and one of another: %+v, want %+v", got, want)
	}
}

// TestStatsCountTheMessagesInLanesAndThoseDropped: one-way messages from a
// peer to a grain that activates wait in the lanes of the owner's stream,
// and count as queued; those past Config.MaxQueuedOneWay are dropped, and
// count as dropped.
func TestStatsCountTheMessagesInLanesAndThoseDropped(t *testing.T) {
	const bound, sent = 10, 15
	s := newLaneSink("held")
	nodes, _ := laneCluster(t, 2, s, func(cfg *Config) { cfg.MaxQueuedOneWay = bound })
	owner, sender := nodes[0], nodes[1]
	for range sent {
		if err := sender.Send(context.Background(), lanePut("held-1", "")); err != nil {
			t.Fatal(err)
		}
	}
	receive(t, s.activating, "the held activation")
	waitFor(t, waitTimeout, "the messages past the bound to be dropped", func() bool {
		return owner.Stats().DroppedOneWay == sent-bound
	})
	if st := owner.Stats(); st.QueuedOneWay != bound || st.Activations != 1 || st.Refused != 0 ||
		st.Kinds[laneKind].QueuedOneWay != bound || st.Kinds[laneKind].Activations != 1 {
		t.Fatalf("Stats with %d messages in the lanes of an activating grain: %+v; want them queued, under their kind too, one activation, and nothing refused", bound, st)
	}
}

// TestStatsCountTheMessagesWaitingToBeForwarded: messages that reached a
// node that does not own their grain wait in its forward queue while the
// forward to the owner is held, and Stats counts them.
func TestStatsCountTheMessagesWaitingToBeForwarded(t *testing.T) {
	release := make(chan struct{})
	held := make(chan struct{}, 1)
	nodes, recs, _ := recorderCluster(t, 0, func(c *Config) {
		if strings.HasSuffix(c.NodeName, "-n0") {
			c.forwarding = func() {
				select {
				case held <- struct{}{}:
					<-release // the first forward holds the queue
				default:
				}
			}
		}
	})
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	ctx := context.Background()
	id := recorderOwnedBy(t, nodes, nodes[1], "stats")
	wrong := nodes[2].view.Load().byName[nodes[0].Name()]
	const sent = 5
	for v := range int64(sent) {
		call := recordCall(id, v)
		if err := nodes[2].sendRemote(ctx, wrong, &call, Metadata{}); err != nil {
			t.Fatal(err)
		}
	}
	receive(t, held, "the first forward to be held")
	waitFor(t, waitTimeout, "the messages behind it in the forward queue", func() bool {
		return nodes[0].Stats().Forwarding == sent-1 // the held one is out of the queue
	})
	close(release)
	waitValues(t, recs[nodes[1].Name()], id, []int64{0, 1, 2, 3, 4})
	waitFor(t, waitTimeout, "the forward queue to empty", func() bool { return nodes[0].Stats().Forwarding == 0 })
}

// TestStatsCountTheMessagesInLanesWithoutABound: with MaxQueuedOneWay
// negative (no bound), one-way messages from a peer that wait in a lane
// for their grain's activation are still waiting for the grain, and Stats
// counts them in QueuedOneWay, as it does the messages in a mailbox
// without a bound. Stats read Node.laned, which counts nothing without a
// bound.
func TestStatsCountTheMessagesInLanesWithoutABound(t *testing.T) {
	const sent = 15
	s := newLaneSink("held")
	nodes, _ := laneCluster(t, 2, s, func(cfg *Config) { cfg.MaxQueuedOneWay = -1 })
	owner, sender := nodes[0], nodes[1]
	for range sent {
		if err := sender.Send(context.Background(), lanePut("held-1", "")); err != nil {
			t.Fatal(err)
		}
	}
	receive(t, s.activating, "the held activation")
	waitFor(t, waitTimeout, "the messages to wait in the owner's lane", func() bool {
		return laneWaiting(owner, sender.Name()) == sent
	})
	if st := owner.Stats(); st.QueuedOneWay != sent {
		t.Fatalf("Stats with %d one-way messages waiting in a lane for an activating grain, MaxQueuedOneWay -1: %+v; want QueuedOneWay %d",
			sent, st, sent)
	}
}
