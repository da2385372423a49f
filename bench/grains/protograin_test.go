package grains

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

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
	n, err := cluster.Start(ctx, p.config(p.counterKind()))
	if err != nil {
		return hostInfo{}, nil, fmt.Errorf("grains: start protograin host: %w", err)
	}
	return hostInfo{Peer: p.name(), GossipAddr: n.GossipAddr()}, func() { _ = n.Close() }, nil
}

func (p protograinPeer) join(tb testing.TB, info hostInfo) (remoteNode, error) {
	if info.GossipAddr == "" {
		return nil, fmt.Errorf("grains: protograin host reported no gossip address: %+v", info)
	}
	cfg := p.config()
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
	pn := &protograinNode{node: n}
	// The one-way exchange calls counters of its own; activate them now so
	// that the measurement excludes activation.
	pn.oneWay = make([]func() error, warmIdentities)
	for i := range pn.oneWay {
		pn.oneWay[i] = pn.client(identityName("oneway", i))
		if err := pn.oneWay[i](); err != nil {
			return nil, fmt.Errorf("grains: warm up one-way counters: %w", err)
		}
	}
	return pn, nil
}

// protograinNode calls counters through protograin's generated client.
type protograinNode struct {
	node *cluster.Node
	// oneWay holds the clients exchange calls; only joined nodes have them.
	oneWay []func() error
}

func (n *protograinNode) client(identity string) func() error {
	c := protograinpb.NewCounterClient(n.node, identity)
	ctx := context.Background()
	return func() error {
		_, err := c.Add(ctx, &protograinpb.AddRequest{Delta: 1})
		return err
	}
}

// exchange uses unary calls: protograin has no one-way message between
// processes, so each call is counted as two messages (the request and the
// reply), with oneWayInFlight/2 callers keeping oneWayInFlight messages in
// flight, spread over warmIdentities counters.
func (n *protograinNode) exchange(messages int) error {
	if len(n.oneWay) == 0 {
		return errNotJoined
	}
	calls := (messages + 1) / 2
	callers := oneWayInFlight / 2
	clients := n.oneWay
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for g := range callers {
		todo := share(calls, callers, g)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range todo {
				if err := clients[(g+k*callers)%len(clients)](); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs // nil when no caller failed
}
