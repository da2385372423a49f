package grains

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/identitylookup/disthash"
	"github.com/asynkron/protoactor-go/remote"

	"github.com/protograin/protograin/bench/grains/protoactorpb"
)

// protoactorClusterName is the cluster name of every protoactor-go node here.
const protoactorClusterName = "grains-bench"

// protoactorKind is the kind name protoc-gen-go-grain gives the counter
// service: the bare service name.
const protoactorKind = "Counter"

// protoactorPongName is the name of the actor a protoactor-go host spawns to
// answer one-way pings.
const protoactorPongName = "grains-pong"

// protoactorExchangeTimeout bounds one exchange of one-way messages.
const protoactorExchangeTimeout = 5 * time.Minute

// protoactorCounter is the counter grain of protoactor-go.
type protoactorCounter struct {
	total int64
}

func (c *protoactorCounter) Init(cluster.GrainContext)           {}
func (c *protoactorCounter) Terminate(cluster.GrainContext)      {}
func (c *protoactorCounter) ReceiveDefault(cluster.GrainContext) {}

// Add adds the delta to the total.
func (c *protoactorCounter) Add(req *protoactorpb.AddRequest, _ cluster.GrainContext) (*protoactorpb.AddResponse, error) {
	c.total += req.GetDelta()
	return &protoactorpb.AddResponse{Total: c.total}, nil
}

// staticProvider is a protoactor-go cluster provider with a fixed member
// list: the node itself (when it is a member) and the peers it is given. It
// needs no external service, which is all two processes on loopback need;
// membership never changes during a benchmark.
type staticProvider struct {
	peers cluster.Members
}

func (p *staticProvider) StartMember(c *cluster.Cluster) error {
	host, port, err := c.ActorSystem.GetHostPort()
	if err != nil {
		return fmt.Errorf("grains: protoactor member address: %w", err)
	}
	self := &cluster.Member{Id: c.ActorSystem.ID, Host: host, Port: int32(port), Kinds: c.GetClusterKinds()}
	c.MemberList.UpdateClusterTopology(append(cluster.Members{self}, p.peers...))
	return nil
}

func (p *staticProvider) StartClient(c *cluster.Cluster) error {
	c.MemberList.UpdateClusterTopology(p.peers)
	return nil
}

func (p *staticProvider) Shutdown(bool) error { return nil }

// protoactorPeer runs protoactor-go's cluster (disthash identity lookup,
// remote over gRPC) with the typed client protoc-gen-go-grain generated.
type protoactorPeer struct{}

func (protoactorPeer) name() string { return "protoactor" }

// newSystem returns an actor system whose logging is discarded, so that it
// costs nothing and benchmark output stays parseable.
func (protoactorPeer) newSystem() *actor.ActorSystem {
	return actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.DiscardHandler)
	}))
}

// newCluster configures a loopback cluster on sys with the given peers and,
// when host is true, the counter kind.
func (p protoactorPeer) newCluster(sys *actor.ActorSystem, peers cluster.Members, host bool) *cluster.Cluster {
	var opts []cluster.ConfigOption
	if host {
		// The generated NewCounterKind stores the factory in a package-level
		// variable of protoactorpb: one counter kind per process.
		kind := protoactorpb.NewCounterKind(func() protoactorpb.Counter { return &protoactorCounter{} }, idleTimeout)
		opts = append(opts, cluster.WithKinds(kind))
	}
	cfg := cluster.Configure(protoactorClusterName, &staticProvider{peers: peers}, disthash.New(),
		remote.Configure("127.0.0.1", 0), opts...)
	return cluster.New(sys, cfg)
}

// startMember starts c as a member; protoactor-go panics on a failed start.
func startMember(c *cluster.Cluster) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("grains: start protoactor member: %v", r)
		}
	}()
	c.StartMember()
	return nil
}

func (p protoactorPeer) local(tb testing.TB) (node, error) {
	c := p.newCluster(p.newSystem(), nil, true)
	if err := startMember(c); err != nil {
		return nil, err
	}
	tb.Cleanup(func() { c.Shutdown(false) })
	return &protoactorNode{cluster: c}, nil
}

func (p protoactorPeer) host(context.Context) (hostInfo, func(), error) {
	sys := p.newSystem()
	c := p.newCluster(sys, nil, true)
	if err := startMember(c); err != nil {
		return hostInfo{}, nil, err
	}
	pong := actor.PropsFromFunc(func(ctx actor.Context) {
		if m, ok := ctx.Message().(*protoactorpb.AddRequest); ok {
			ctx.Respond(m)
		}
	})
	if _, err := sys.Root.SpawnNamed(pong, protoactorPongName); err != nil {
		c.Shutdown(false)
		return hostInfo{}, nil, fmt.Errorf("grains: spawn protoactor pong: %w", err)
	}
	info := hostInfo{Peer: p.name(), MemberID: sys.ID, Address: sys.Address()}
	return info, func() { c.Shutdown(false) }, nil
}

// join starts a cluster client: protoactor-go's way to call grains from a
// process that hosts none. Its member list is the host alone.
func (p protoactorPeer) join(tb testing.TB, info hostInfo) (remoteNode, error) {
	host, portText, err := net.SplitHostPort(info.Address)
	if err != nil {
		return nil, fmt.Errorf("grains: protoactor host address %q: %w", info.Address, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil || info.MemberID == "" {
		return nil, fmt.Errorf("grains: protoactor host reported %+v, want a member ID and host:port", info)
	}
	member := &cluster.Member{Id: info.MemberID, Host: host, Port: int32(port), Kinds: []string{protoactorKind}}
	c := p.newCluster(p.newSystem(), cluster.Members{member}, false)
	if err := startClient(c); err != nil {
		return nil, err
	}
	// Cluster.Shutdown dereferences the gossiper a client never starts;
	// stop what StartClient started instead.
	tb.Cleanup(func() {
		c.ActorSystem.Shutdown()
		c.Remote.Shutdown(false)
	})
	return &protoactorNode{cluster: c, pong: actor.NewPID(info.Address, protoactorPongName)}, nil
}

// startClient starts c as a client; protoactor-go panics on a failed start.
func startClient(c *cluster.Cluster) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("grains: start protoactor client: %v", r)
		}
	}()
	c.StartClient()
	return nil
}

// protoactorNode calls counters through protoactor-go's generated client.
type protoactorNode struct {
	cluster *cluster.Cluster
	// pong answers one-way pings on the host; only joined nodes have it.
	pong *actor.PID
}

func (n *protoactorNode) client(_ context.Context, identity string) func() error {
	c := protoactorpb.GetCounterGrainClient(n.cluster, identity)
	return func() error {
		_, err := c.Add(&protoactorpb.AddRequest{Delta: 1})
		return err
	}
}

// exchange bounces pings off the host's pong actor with actor messages, the
// one-way send protoactor-go has between processes: a pinger keeps
// oneWayInFlight pings outstanding and sends the next one as each pong
// arrives.
func (n *protoactorNode) exchange(messages int) error {
	if n.pong == nil {
		return errNotJoined
	}
	pings := (messages + 1) / 2
	done := make(chan struct{})
	props := actor.PropsFromProducer(func() actor.Actor {
		return &protoactorPinger{pong: n.pong, pings: pings, done: done}
	})
	root := n.cluster.ActorSystem.Root
	pid := root.Spawn(props)
	defer root.Stop(pid)
	timer := time.NewTimer(protoactorExchangeTimeout)
	defer timer.Stop()
	select {
	case <-done:
		return nil
	case <-timer.C:
		return fmt.Errorf("grains: protoactor exchange of %d messages did not finish within %v", messages, protoactorExchangeTimeout)
	}
}

// protoactorPinger sends pings to a pong actor in the other process, keeping
// oneWayInFlight of them outstanding, and closes done when pings pongs came
// back.
type protoactorPinger struct {
	pong     *actor.PID
	pings    int
	sent     int
	received int
	done     chan struct{}
	ping     *protoactorpb.AddRequest
}

func (p *protoactorPinger) Receive(ctx actor.Context) {
	switch ctx.Message().(type) {
	case *actor.Started:
		p.ping = &protoactorpb.AddRequest{Delta: 1}
		for p.sent < min(p.pings, oneWayInFlight) {
			p.send(ctx)
		}
	case *protoactorpb.AddRequest:
		p.received++
		if p.sent < p.pings {
			p.send(ctx)
		}
		if p.received == p.pings {
			close(p.done)
		}
	}
}

// send sends one ping with this actor as the sender, so the pong comes back
// here.
func (p *protoactorPinger) send(ctx actor.Context) {
	ctx.Request(p.pong, p.ping)
	p.sent++
}
