package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/protograin/protograin/cluster/storage"
)

// partition cuts the network of a test cluster in two, as a real
// partition would, but on loopback: each node's gossip drops the packets
// it sends to the other side (as if lost) and fails to connect to it, and
// its transport fails to dial the other side, while the streams it had
// there fall silent, their bytes held until the partition heals, as TCP
// holds them while it retransmits. Nothing else is held: the failure
// detectors, the votes, the streams' ends and the reconnects that heal the
// partition are serf's and the nodes' own.
//
// A partition may also lose the packets of one direction only, between
// two nodes (lose): one node's datagrams reach the other, but not the
// other's. A TCP connection needs both directions for its handshake, so
// neither node can connect to the other, and on the streams they had, the
// bytes of the lost direction are held while the others pass.
type partition struct {
	mu     sync.Mutex
	names  map[string]string  // node name, by gossip and transport address
	cut    map[string]bool    // the nodes cut off from the others, by name
	lost   map[[2]string]bool // the directions lost, from one node to another, by name
	healed chan struct{}      // closed, and made again, by heal and every change of shape
}

func newPartition() *partition {
	return &partition{names: make(map[string]string), cut: make(map[string]bool), lost: make(map[[2]string]bool), healed: make(chan struct{})}
}

// configure makes cfg's node send through p.
func (p *partition) configure(cfg *Config) {
	self := cfg.NodeName
	cfg.gossipTransport = func(nt *memberlist.NetTransport) memberlist.NodeAwareTransport {
		return &cutGossip{NetTransport: nt,
			cut:  func(addr string) bool { return p.between(self, addr, true) },
			lose: func(addr string) bool { return p.between(self, addr, false) }}
	}
	cfg.dialer = func(ctx context.Context, addr string) (net.Conn, error) {
		if p.between(self, addr, true) {
			return nil, fmt.Errorf("test: the network between %s and %s is cut", self, addr)
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		return &cutConn{Conn: c,
			passOut: func(closed <-chan struct{}) bool { return p.pass(self, addr, false, closed) },
			passIn:  func(closed <-chan struct{}) bool { return p.pass(self, addr, true, closed) },
			closed:  make(chan struct{})}, nil
	}
}

// learn records the addresses of nodes, started with p's configuration.
func (p *partition) learn(nodes ...*Node) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, n := range nodes {
		p.names[n.GossipAddr()] = n.Name()
		p.names[n.GRPCAddr()] = n.Name()
	}
}

// between reports whether the packets from the node named self to the
// node at addr are lost, or if either, whether those of either direction
// are: a connection needs both.
func (p *partition) between(self, addr string, either bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	to, ok := p.names[addr]
	return ok && (p.losesLocked(self, to) || either && p.losesLocked(to, self))
}

// losesLocked reports whether the packets from the node named from to the
// one named to are lost.
func (p *partition) losesLocked(from, to string) bool {
	return p.cut[from] != p.cut[to] || p.lost[[2]string{from, to}]
}

// pass waits until the packets from self to addr (or, if in, those from
// addr to self) go through, and reports false if closed is closed first.
func (p *partition) pass(self, addr string, in bool, closed <-chan struct{}) bool {
	for {
		p.mu.Lock()
		from, to := self, p.names[addr]
		if in {
			from, to = to, from
		}
		lost, healed := to != "" && from != "" && p.losesLocked(from, to), p.healed
		p.mu.Unlock()
		if !lost {
			return true
		}
		select {
		case <-healed:
		case <-closed:
			return false
		}
	}
}

// split cuts off the nodes of minority from the others.
func (p *partition) split(minority ...*Node) {
	names := make([]string, len(minority))
	for i, n := range minority {
		names[i] = n.Name()
	}
	p.splitNamed(names...)
}

// splitNamed is split by the nodes' names: a node not started yet may be
// put on a side before it starts.
func (p *partition) splitNamed(minority ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, name := range minority {
		p.cut[name] = true
	}
}

// reshape makes the partition one that cuts off the nodes of minority,
// and only them, from the others: the nodes that cross over reach their
// new side at once, as the held bytes between them go through.
func (p *partition) reshape(minority ...*Node) {
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.cut)
	for _, n := range minority {
		p.cut[n.Name()] = true
	}
	p.wakeLocked()
}

// lose loses the packets from one node to the other, one direction only.
func (p *partition) lose(from, to *Node) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lost[[2]string{from.Name(), to.Name()}] = true
}

// heal ends the partition.
func (p *partition) heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.cut)
	clear(p.lost)
	p.wakeLocked()
}

// waitHealed waits until every node of nodes has them all alive and
// places the grain kind/id on owner, as once a partition healed.
func waitHealed(t *testing.T, nodes []*Node, kind, id string, owner *Node) {
	t.Helper()
	waitFor(t, waitTimeout, "the partition to heal", func() bool {
		for _, n := range nodes {
			if m, ok := n.Owner(kind, id); aliveCount(n) != len(nodes) || !ok || m.Name != owner.Name() {
				return false
			}
		}
		return true
	})
}

// wakeLocked has the bytes held look again whether they may pass.
func (p *partition) wakeLocked() {
	close(p.healed)
	p.healed = make(chan struct{})
}

// cutConn is a transport's connection behind a partition: while the
// direction out is lost, what is written waits, and while the direction in
// is, what was read is held.
type cutConn struct {
	net.Conn
	passOut, passIn func(closed <-chan struct{}) bool
	closed          chan struct{}
	once            sync.Once
}

func (c *cutConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if !c.passIn(c.closed) {
		return 0, net.ErrClosed
	}
	return n, err
}

func (c *cutConn) Write(b []byte) (int, error) {
	if !c.passOut(c.closed) {
		return 0, net.ErrClosed
	}
	return c.Conn.Write(b)
}

func (c *cutConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// cutGossip is memberlist's network transport behind a partition: it
// fails to connect where cut says, and loses the datagrams where lose
// does, or if lose is nil, where cut does.
type cutGossip struct {
	*memberlist.NetTransport
	cut, lose func(addr string) bool
}

func (g *cutGossip) loses(addr string) bool {
	if g.lose != nil {
		return g.lose(addr)
	}
	return g.cut(addr)
}

func (g *cutGossip) WriteTo(b []byte, addr string) (time.Time, error) {
	if g.loses(addr) {
		return time.Now(), nil // lost on the way, as UDP may be
	}
	return g.NetTransport.WriteTo(b, addr)
}

func (g *cutGossip) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if g.loses(a.Addr) {
		return time.Now(), nil
	}
	return g.NetTransport.WriteToAddress(b, a)
}

func (g *cutGossip) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if g.cut(addr) {
		return nil, fmt.Errorf("test: the network to %s is cut", addr)
	}
	return g.NetTransport.DialTimeout(addr, timeout)
}

func (g *cutGossip) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if g.cut(a.Addr) {
		return nil, fmt.Errorf("test: the network to %s is cut", a.Addr)
	}
	return g.NetTransport.DialAddressTimeout(a, timeout)
}

// TestARealPartitionFencesTheMinorityUntilItHeals cuts one node of three
// with KeepMajority off from the others, on the network: nothing but the
// network is held. The lone node must find itself without a majority,
// deactivate its grain and refuse calls with ErrNoQuorum; the two others
// must stay unfenced and, after DownAfter, serve its grain; and once the
// network heals, serf's reconnects must bring the sides together, the lone
// node serve again, and its grain come back to it.
func TestARealPartitionFencesTheMinorityUntilItHeals(t *testing.T) {
	t.Parallel()
	nodes, hooks, p := partitionedTrio(t, 3*time.Second)
	a, b, c := nodes[0], nodes[1], nodes[2]
	id := cutOffAnOwner(t, nodes, hooks, p)
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if _, err := c.Invoke(ctx, addCall(id, 1)); !errors.Is(err, ErrNoQuorum) {
		t.Errorf("a call through the lone node: %v, want ErrNoQuorum", err)
	}
	waitFor(t, waitTimeout, "the majority to place the lone node's grain on itself", func() bool {
		ma, okA := a.Owner(echoKind, id)
		mb, okB := b.Owner(echoKind, id)
		return okA && okB && ma.Name == mb.Name && ma.Name != c.Name()
	})
	if a.Fenced() || b.Fenced() {
		t.Errorf("Fenced on the majority side: %t, %t; want false", a.Fenced(), b.Fenced())
	}
	if got := addWithin(t, a, id, 1); got != 1 {
		t.Errorf("total %d from the majority's fresh activation, want 1", got)
	}

	p.heal()
	waitFor(t, waitTimeout, "the partition to heal", func() bool {
		if c.Fenced() {
			return false
		}
		for _, n := range nodes {
			if aliveCount(n) != len(nodes) {
				return false
			}
			if m, ok := n.Owner(echoKind, id); !ok || m.Name != c.Name() {
				return false
			}
		}
		return true
	})
	if got := where(t, a, id); got != c.Name() {
		t.Errorf("%s answered from %s after the partition healed, want %s", id, got, c.Name())
	}
	if got := addWithin(t, b, id, 1); got != 1 {
		t.Errorf("total %d from the lone node's fresh activation, want 1", got)
	}
}

// depositor deposits 1 on an account through one node, call after call,
// each with a stamp of its own (WithCallID), retried with the same stamp
// until it succeeds: a client that wants each deposit once, whatever
// fails in between.
type depositor struct {
	acked atomic.Int64 // deposits that succeeded
	stale atomic.Int64 // attempts refused as stale (two activations at once)
}

// run deposits until stop ends, and then finishes the deposit under way,
// retrying it until it succeeds or hard ends.
func (d *depositor) run(stop, hard context.Context, through *Node, identity, client string) {
	for seq := uint64(1); stop.Err() == nil; seq++ {
		for {
			attempt, cancel := context.WithTimeout(hard, 2*time.Second)
			_, err := through.Invoke(attempt, depositCall(accountKind, identity, 1), WithCallID(client, seq))
			cancel()
			if err == nil {
				break
			}
			if errors.Is(err, ErrStaleActivation) {
				d.stale.Add(1)
			}
			if hard.Err() != nil {
				return
			}
		}
		d.acked.Add(1)
	}
}

// depositPair deposits on one account through two nodes at once, as the
// partition tests do: left through the node they cut off, right through
// one of the majority, each deposit retried under its stamp until it
// succeeds (see depositor.run), until check or the test's end.
type depositPair struct {
	left, right depositor
	stop        context.CancelFunc
	done        chan struct{} // closed once both depositors returned
}

// startDepositPair starts depositing on the account id through lone and
// through other.
func startDepositPair(t *testing.T, lone, other *Node, id string) *depositPair {
	ctx, stop := context.WithCancel(t.Context())
	d := &depositPair{stop: stop, done: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); d.left.run(ctx, t.Context(), lone, id, "left") }()
	go func() { defer wg.Done(); d.right.run(ctx, t.Context(), other, id, "right") }()
	go func() { wg.Wait(); close(d.done) }()
	t.Cleanup(func() { stop(); <-d.done })
	return d
}

// progress waits until each of ds, both depositors if none is given, has
// ten more deposits acknowledged.
func (d *depositPair) progress(t *testing.T, what string, ds ...*depositor) {
	t.Helper()
	if len(ds) == 0 {
		ds = []*depositor{&d.left, &d.right}
	}
	before := make([]int64, len(ds))
	for i, dep := range ds {
		before[i] = dep.acked.Load()
	}
	waitFor(t, waitTimeout, what, func() bool {
		for i, dep := range ds {
			if dep.acked.Load() < before[i]+10 {
				return false
			}
		}
		return true
	})
}

// check ends the deposits, waits for those under way to succeed, and
// checks that the account's balance, as node at reads it and as store
// holds it, is exactly the deposits acknowledged. lone and other say how
// the messages name the two sides.
func (d *depositPair) check(t *testing.T, at *Node, store storage.Store, id, lone, other string) {
	t.Helper()
	d.stop()
	receive(t, d.done, "the deposits under way to succeed")
	want := d.left.acked.Load() + d.right.acked.Load()
	if got := balance(t, at, accountKind, id); got != want {
		t.Errorf("balance %d after %d deposits succeeded (%d through %s, %d through %s)",
			got, want, d.left.acked.Load(), lone, d.right.acked.Load(), other)
	}
	if got := storedBalance(t, store, accountKind, id); got != want {
		t.Errorf("stored balance %d after %d deposits succeeded", got, want)
	}
	t.Logf("%d deposits through %s, %d through %s, %d attempts refused as stale",
		d.left.acked.Load(), lone, d.right.acked.Load(), other, d.left.stale.Load()+d.right.stale.Load())
}

// TestARealPartitionLosesNoDeposit cuts one node of three off from the
// others on the network, without KeepMajority, while a client on each side
// deposits on one account, each deposit retried with its stamp until it
// succeeds. Both sides then run the account (each places it on itself),
// over one store: version checks must refuse the stale side's commits, and
// stamps must keep a retried deposit from running twice, so that once the
// partition heals the balance is exactly the deposits that succeeded.
func TestARealPartitionLosesNoDeposit(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, store storage.Store) {
		p := newPartition()
		nodes, _ := bankCluster(t, 3, store, 0, p.configure)
		p.learn(nodes...)
		a, c := nodes[0], nodes[2]
		id := accountOwnedBy(t, c, accountKind, "split")
		deposits := startDepositPair(t, c, a, id) // through the lone node, and through the majority
		deposits.progress(t, "deposits on both sides before the partition")

		p.split(c)
		waitFor(t, waitTimeout, "each side to see the other failed", func() bool {
			ma, _ := a.Owner(accountKind, id)
			mc, _ := c.Owner(accountKind, id)
			return aliveCount(a) == 2 && aliveCount(c) == 1 && ma.Name != c.Name() && mc.Name == c.Name()
		})
		deposits.progress(t, "deposits on both sides of the partition")

		p.heal()
		waitHealed(t, nodes, accountKind, id, c)
		deposits.progress(t, "deposits on both sides after the partition")
		deposits.check(t, a, store, id, "the lone node", "the majority")
	})
}
