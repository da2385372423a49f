package grains

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/protograin/protograin/bench/grains/protograinpb"
	"github.com/protograin/protograin/cluster"
)

// protograinJoinTimeout bounds the wait for a joining node to see the host
// as the owner of the counter kind.
const protograinJoinTimeout = 30 * time.Second

// protograinCounter is the counter grain of protograin.
type protograinCounter struct {
	protograinpb.UnimplementedCounterGrain
	total int64
}

// Add adds the delta to the total.
func (c *protograinCounter) Add(_ cluster.GrainContext, req *protograinpb.AddRequest) (*protograinpb.AddResponse, error) {
	c.total += req.GetDelta()
	return &protograinpb.AddResponse{Total: c.total}, nil
}

// protograinPeer runs protograin's cluster with the typed client
// protoc-gen-grain generated.
type protograinPeer struct{}

func (protograinPeer) name() string { return "protograin" }

// config returns a loopback node config with the given kinds; logging is
// discarded so that it costs nothing and benchmark output stays parseable.
func (protograinPeer) config(kinds ...*cluster.Kind) cluster.Config {
	cfg := cluster.DefaultConfig()
	cfg.BindAddr = "127.0.0.1:0"
	cfg.GRPCAddr = "127.0.0.1:0"
	cfg.Gossip = cluster.GossipLocal
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.Kinds = kinds
	return cfg
}

func (protograinPeer) counterKind() *cluster.Kind {
	kind := protograinpb.NewCounterKind(func(string) protograinpb.CounterGrain { return &protograinCounter{} })
	kind.IdleTimeout = idleTimeout
	return kind
}

func (p protograinPeer) local(tb testing.TB) (node, error) {
	n, err := cluster.Start(context.Background(), p.config(p.counterKind()))
	if err != nil {
		return nil, fmt.Errorf("grains: start protograin node: %w", err)
	}
	tb.Cleanup(func() { _ = n.Close() })
	return &protograinNode{node: n}, nil
}

func (p protograinPeer) host(ctx context.Context) (hostInfo, func(), error) {
	n, err := cluster.Start(ctx, p.config(p.counterKind(), pongerKind()))
	if err != nil {
		return hostInfo{}, nil, fmt.Errorf("grains: start protograin host: %w", err)
	}
	return hostInfo{Peer: p.name(), GossipAddr: n.GossipAddr()}, func() { _ = n.Close() }, nil
}

func (p protograinPeer) join(tb testing.TB, info hostInfo) (remoteNode, error) {
	if info.GossipAddr == "" {
		return nil, fmt.Errorf("grains: protograin host reported no gossip address: %+v", info)
	}
	pn := &protograinNode{}
	// The caller's node hosts the pinger of the one-way benchmark, so that
	// pongs have a grain to go to; nothing else is placed on it.
	cfg := p.config(pn.pingerKind())
	cfg.Seeds = []string{info.GossipAddr}
	n, err := cluster.Start(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("grains: join protograin host %s: %w", info.GossipAddr, err)
	}
	tb.Cleanup(func() { _ = n.Close() })
	hostOwns := func() bool {
		owner, ok := n.Owner(protograinpb.CounterKind, "any")
		return ok && owner.Name != n.Name()
	}
	if err := waitFor(protograinJoinTimeout, hostOwns); err != nil {
		return nil, fmt.Errorf("grains: no owner of %s on the host (members %+v): %w", protograinpb.CounterKind, n.Members(), err)
	}
	pn.node, pn.joined = n, true
	return pn, nil
}

// protograinNode calls counters through protograin's generated client.
type protograinNode struct {
	node *cluster.Node
	// joined is set on nodes that joined a host: only they exchange
	// one-way messages.
	joined bool
	// current is the one-way exchange in progress, for the pinger grain.
	current atomic.Pointer[oneWayRun]
	// callOpts are the options of the calls of client's functions.
	callOpts []cluster.CallOption
}

func (n *protograinNode) client(ctx context.Context, identity string) func() error {
	c := protograinpb.NewCounterClient(n.node, identity)
	return func() error {
		_, err := c.Add(ctx, &protograinpb.AddRequest{Delta: 1}, n.callOpts...)
		return err
	}
}

// Identities of the one-way benchmark's grains: one ponger on the host, one
// pinger on the calling node, as protoactor-go's side has one pong and one
// pinger actor.
const (
	pongerIdentity = "ponger"
	pingerIdentity = "pinger"
)

// protograinExchangeTimeout bounds one exchange: one-way messages are at
// most once, so a lost one would otherwise hang the benchmark.
const protograinExchangeTimeout = 2 * time.Minute

// oneWayRun is one exchange: pings pings, each answered by a pong.
type oneWayRun struct {
	pings    int64
	sent     atomic.Int64 // pings sent or about to be
	received int64        // pongs, counted by the pinger grain only
	err      atomic.Pointer[error]
	done     chan struct{} // closed when every pong came back, or on error
	once     sync.Once
}

func (r *oneWayRun) finish(err error) {
	if err != nil {
		r.err.CompareAndSwap(nil, &err)
	}
	r.once.Do(func() { close(r.done) })
}

// exchange plays one-way ping-pong with the host's ponger grain: it sends
// oneWayInFlight pings from here, with the generated one-way client, and
// the pinger grain on this node sends the next ping as each pong arrives,
// from its own context, until (messages+1)/2 pings came back as pongs.
// Both directions are one-way grain messages and both count.
func (n *protograinNode) exchange(messages int) error {
	if !n.joined {
		return errNotJoined
	}
	run := &oneWayRun{pings: int64((messages + 1) / 2), done: make(chan struct{})}
	n.current.Store(run)
	window := min(run.pings, oneWayInFlight)
	run.sent.Store(window)
	ponger := protograinpb.NewPongerClient(n.node, pongerIdentity)
	ball := &protograinpb.Ball{N: 1}
	ctx := context.Background()
	for range window {
		if err := ponger.Ping(ctx, ball); err != nil {
			return fmt.Errorf("grains: ping: %w", err)
		}
	}
	timer := time.NewTimer(protograinExchangeTimeout)
	defer timer.Stop()
	select {
	case <-run.done:
		if err := run.err.Load(); err != nil {
			return *err
		}
		return nil
	case <-timer.C:
		return fmt.Errorf("grains: protograin exchange of %d messages did not finish within %v (%d of %d pongs)",
			messages, protograinExchangeTimeout, run.sent.Load(), run.pings)
	}
}

// pingerKind is the kind of the pinger grain, which answers the pongs of
// n's current exchange.
func (n *protograinNode) pingerKind() *cluster.Kind {
	kind := protograinpb.NewPingerKind(func(string) protograinpb.PingerGrain { return &pinger{n: n, empty: &emptypb.Empty{}} })
	kind.IdleTimeout = idleTimeout
	return kind
}

// pinger sends the next ping of the exchange as each pong arrives.
type pinger struct {
	protograinpb.UnimplementedPingerGrain
	n     *protograinNode
	empty *emptypb.Empty // what Pong returns: one per grain, not per message
}

// Pong counts a pong and sends the next ping, if any, with the pong's ball.
func (p *pinger) Pong(ctx cluster.GrainContext, ball *protograinpb.Ball) (*emptypb.Empty, error) {
	run := p.n.current.Load()
	if run.sent.Add(1) <= run.pings {
		if err := protograinpb.NewPongerClient(ctx, pongerIdentity).Ping(ctx, ball); err != nil {
			run.finish(fmt.Errorf("grains: ping from the pinger: %w", err))
		}
	}
	if run.received++; run.received == run.pings {
		run.finish(nil)
	}
	return p.empty, nil
}

// pongerKind is the kind of the host's ponger grain.
func pongerKind() *cluster.Kind {
	kind := protograinpb.NewPongerKind(func(string) protograinpb.PongerGrain { return &ponger{empty: &emptypb.Empty{}} })
	kind.IdleTimeout = idleTimeout
	return kind
}

// ponger answers each ping with a pong to the pinger, one-way, from its
// own context.
type ponger struct {
	protograinpb.UnimplementedPongerGrain
	empty *emptypb.Empty
}

// Ping sends the ball back to the pinger. Its error cannot reach the
// sender; the host's node logs it, and the exchange then times out.
func (p *ponger) Ping(ctx cluster.GrainContext, ball *protograinpb.Ball) (*emptypb.Empty, error) {
	if err := protograinpb.NewPingerClient(ctx, pingerIdentity).Pong(ctx, ball); err != nil {
		return nil, err
	}
	return p.empty, nil
}
