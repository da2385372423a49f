package cluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/serf/serf"

	"github.com/protograin/protograin/internal/tlstest"
)

// testServerName is the name every node certificate of these tests carries,
// as a cluster whose addresses change would have them.
const testServerName = "nodes.protograin.test"

// secured returns a configure function for a node with the gossip keys
// keys and mutual TLS under a certificate that ca issues for it, checked
// for testServerName.
func secured(t testing.TB, ca *tlstest.CA, keys ...[]byte) func(*Config) {
	return securedFor(t, ca, testServerName, keys...)
}

// securedFor is secured with the server name serverName ("": the peers'
// addresses).
func securedFor(t testing.TB, ca *tlstest.CA, serverName string, keys ...[]byte) func(*Config) {
	return func(cfg *Config) {
		cert, key := ca.Issue(t, cfg.NodeName, testServerName)
		tlsCfg, err := MutualTLS(cert, key, ca.CertFile(), serverName)
		if err != nil {
			t.Fatal(err)
		}
		cfg.GossipKeys, cfg.TLS = keys, tlsCfg
	}
}

// gossipKey returns a 32-byte key made of b.
func gossipKey(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

// TestASecuredClusterCalls: nodes with gossip keys and mutual TLS form a
// cluster and call each other's grains, with the peers' certificates
// checked for a server name or for the peers' addresses, and their
// transport speaks TLS only to a peer whose certificate their CA signed.
func TestASecuredClusterCalls(t *testing.T) {
	t.Parallel()
	ca := tlstest.NewCA(t, "nodes")
	for _, check := range []struct{ name, serverName string }{{"for the server name", testServerName}, {"for the address", ""}} {
		t.Run(check.name, func(t *testing.T) {
			nodes, _ := echoCluster(t, 2, 0, securedFor(t, ca, check.serverName, gossipKey(1)))
			for _, owner := range nodes {
				id := identityOwnedBy(t, nodes, owner)
				for _, caller := range nodes {
					add(t, caller, id, 1)
				}
				if got := add(t, nodes[0], id, 0); got != 2 {
					t.Errorf("grain %s on %s: total %d after two calls, want 2", id, owner.Name(), got)
				}
			}
		})
	}
	nodes, _ := echoCluster(t, 2, 0, secured(t, ca, gossipKey(1)))

	// The transport's listener is a TLS server that asks for the
	// dialer's certificate, and presents the node's.
	probe := ca.ClientConfig(t, testServerName)
	conn, err := tls.Dial("tcp", nodes[1].GRPCAddr(), probe)
	if err != nil {
		t.Fatalf("a TLS dial of %s's transport with a certificate of the cluster's CA: %v", nodes[1].Name(), err)
	}
	if got := conn.ConnectionState().PeerCertificates[0].Subject.CommonName; got != nodes[1].Name() {
		t.Errorf("the transport of %s presented the certificate of %q", nodes[1].Name(), got)
	}
	_ = conn.Close()

	// Without a certificate, the node refuses the dialer.
	probe.Certificates = nil
	conn, err = tls.Dial("tcp", nodes[1].GRPCAddr(), probe)
	if err == nil {
		// TLS 1.3: the server checks the client's certificate after
		// the client's handshake is done, and says so on the next read.
		_ = conn.SetReadDeadline(time.Now().Add(waitTimeout))
		_, err = conn.Read(make([]byte, 1))
		_ = conn.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "certificate required") {
		t.Errorf("a TLS dial without a certificate: %v; want it refused for the missing certificate", err)
	}
}

// securedBy returns a configure function for a node with mutual TLS under
// a certificate that issuer issues for it, trusting the CAs trusted.
func securedBy(t testing.TB, issuer *tlstest.CA, trusted ...*tlstest.CA) func(*Config) {
	return func(cfg *Config) {
		cert, key := issuer.Issue(t, cfg.NodeName, testServerName)
		tlsCfg, err := MutualTLS(cert, key, tlstest.Bundle(t, trusted...), testServerName)
		if err != nil {
			t.Fatal(err)
		}
		cfg.TLS = tlsCfg
	}
}

// TestAStartOutsideTheTLSFails: a node whose certificate the members' CAs
// did not sign, or whose CAs did not sign theirs, would take grains that
// no call could reach: its start fails, saying why, and the members it
// reached see it leave.
func TestAStartOutsideTheTLSFails(t *testing.T) {
	t.Parallel()
	nodesCA, others := tlstest.NewCA(t, "nodes"), tlstest.NewCA(t, "others")
	members := startCluster(t, 2, nil, secured(t, nodesCA))
	for _, tc := range []struct {
		name      string
		configure func(*Config)
		want      string // the refusal, as gRPC words it
	}{
		{"its certificate of another CA", securedBy(t, others, nodesCA, others), "remote error: tls: "},
		{"its CA not theirs", securedBy(t, nodesCA, others), "x509: certificate signed by unknown authority"},
		{"both", securedBy(t, others, others), "x509: certificate signed by unknown authority"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.ClusterName = members[0].cfg.ClusterName
			cfg.Seeds = []string{members[0].GossipAddr()}
			tc.configure(&cfg)
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			err := startFails(t, ctx, cfg)
			for _, want := range []string{"refused it over a certificate", tc.want, "(Config.TLS)"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("the start: %v; want an error that says %q", err, want)
				}
			}
			waitFor(t, waitTimeout, fmt.Sprintf("%s to see %s leave", members[0].Name(), cfg.NodeName), func() bool {
				for _, m := range members[0].serf.Members() {
					if m.Name == cfg.NodeName {
						return m.Status == serf.StatusLeft
					}
				}
				return false // the join's push-pull told the seed of it
			})
		})
	}
}

// TestASlowMemberHoldsNoSecuredStart: the start's handshakes end with
// the first member that takes one, so a member whose transport does not
// answer holds up no start that another member's answer ends; with no
// other member, the start goes on after DialTimeout (the calls will say
// what is wrong, if anything is).
func TestASlowMemberHoldsNoSecuredStart(t *testing.T) {
	t.Parallel()
	ca := tlstest.NewCA(t, "nodes")
	joiner := func(seed *Node, slow string, release <-chan struct{}) (Config, *atomic.Int32) {
		cfg := testConfig(t)
		cfg.ClusterName = seed.cfg.ClusterName
		cfg.Seeds = []string{seed.GossipAddr()}
		cfg.DialTimeout = time.Second
		secured(t, ca)(&cfg)
		dialed := new(atomic.Int32)
		cfg.dialer = func(ctx context.Context, addr string) (net.Conn, error) {
			if addr != slow {
				return new(net.Dialer).DialContext(ctx, "tcp", addr)
			}
			dialed.Add(1)
			// A transport that does not answer: until the test
			// releases it, or else until the dial gives up.
			if release != nil {
				<-release
			} else {
				<-ctx.Done()
			}
			return nil, errors.New("the slow member did not answer")
		}
		return cfg, dialed
	}

	t.Run("another member answers", func(t *testing.T) {
		members := startCluster(t, 2, nil, secured(t, ca))
		// The slow dial ends only once the test says so, whatever its
		// context: a start that waited for it would not return.
		release := make(chan struct{})
		defer close(release)
		cfg, dialed := joiner(members[0], members[1].GRPCAddr(), release)
		type start struct {
			n   *Node
			err error
		}
		started := make(chan start, 1)
		go func() {
			n, err := Start(context.Background(), cfg)
			started <- start{n, err}
		}()
		select {
		case s := <-started:
			if s.err != nil {
				t.Fatalf("Start: %v", s.err)
			}
			t.Cleanup(func() { _ = s.n.Close() })
		case <-time.After(waitTimeout):
			t.Fatalf("the start did not return in %v while a member's transport did not answer and another's did", waitTimeout)
		}
		if dialed.Load() == 0 {
			t.Error("the start did not shake hands with the slow member")
		}
	})
	t.Run("none other", func(t *testing.T) {
		member := startCluster(t, 1, nil, secured(t, ca))[0]
		cfg, dialed := joiner(member, member.GRPCAddr(), nil)
		startNode(t, cfg)
		if dialed.Load() == 0 {
			t.Error("the start did not shake hands with the slow member")
		}
	})
}

// TestAFailedStartUnderAMembersNameLeavesNothing: a start that fails its
// TLS check under the name of a member that runs (an operator's mistake:
// two nodes given one name) does not leave the cluster, as the leave
// would be taken for that member's: it stays alive, and serves its grains.
func TestAFailedStartUnderAMembersNameLeavesNothing(t *testing.T) {
	t.Parallel()
	nodesCA, others := tlstest.NewCA(t, "nodes"), tlstest.NewCA(t, "others")
	members, _ := echoCluster(t, 2, 0, secured(t, nodesCA))
	named := members[1]
	cfg := testConfig(t)
	cfg.NodeName = named.Name()
	cfg.ClusterName = named.cfg.ClusterName
	cfg.Seeds = []string{members[0].GossipAddr()}
	securedBy(t, others, others)(&cfg)
	// A leave in the name would show in members[0]'s list until the
	// member refuted it (a few gossip rounds): watched throughout.
	watching, seen := make(chan struct{}), make(chan serf.MemberStatus, 1)
	go func() {
		defer close(seen)
		for {
			if status, _ := serfStatus(members[0], named.Name()); status != serf.StatusAlive {
				seen <- status
				return
			}
			select {
			case <-watching:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	err := startFails(t, ctx, cfg)
	close(watching)
	if !strings.Contains(err.Error(), "refused it over a certificate") {
		t.Fatalf("the start under %s's name: %v; want it refused over a certificate", named.Name(), err)
	}
	if status, ok := <-seen; ok {
		t.Errorf("as the start under its name failed, %s saw %s %v; want it alive throughout", members[0].Name(), named.Name(), status)
	}
	add(t, members[0], identityOwnedBy(t, members, named), 1)
}

// TestAMemberOutsideTheTLSIsRefused: a node whose certificate some members'
// CAs did not sign starts when another member takes its handshake (that
// member's CAs signed it), but the calls between it and the members that
// refuse it fail with ErrUnavailable and say why, both ways.
func TestAMemberOutsideTheTLSIsRefused(t *testing.T) {
	t.Parallel()
	nodesCA, others := tlstest.NewCA(t, "nodes"), tlstest.NewCA(t, "others")
	nodes, _ := echoCluster(t, 1, 0, secured(t, nodesCA))
	inside := nodes[0]
	join := func(suffix string, configure func(*Config)) *Node {
		cfg := testConfig(t)
		cfg.NodeName += suffix
		cfg.ClusterName = inside.cfg.ClusterName
		cfg.Seeds = []string{inside.GossipAddr()}
		cfg.Kinds = []*Kind{newEchoKind(newHooks(cfg.NodeName), 0)}
		configure(&cfg)
		return startNode(t, cfg)
	}
	bridge := join("-bridge", securedBy(t, nodesCA, nodesCA, others))
	outsider := join("-outsider", securedBy(t, others, nodesCA, others))
	all := []*Node{inside, bridge, outsider}
	waitConverged(t, all, 3)

	// The calls retry until their deadline, and fail with the last
	// dial's error: one both ways at once.
	calls := []struct {
		from, to *Node
		id       string
	}{
		{outsider, inside, identityOwnedBy(t, all, inside)},
		{inside, outsider, identityOwnedBy(t, all, outsider)},
	}
	concurrently(t, len(calls), func(i int) error {
		call := calls[i]
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, err := call.from.Invoke(ctx, addCall(call.id, 1))
		if !errors.Is(err, ErrUnavailable) || !refusedCertificate(err) {
			return fmt.Errorf("a call from %s to a grain of %s: %v; want ErrUnavailable for a refused certificate", call.from.Name(), call.to.Name(), err)
		}
		return nil
	})
	// A dial's reset says nothing of certificates; the handshake that
	// follows it does, each way.
	for _, tc := range []struct {
		from, to *Node
		want     string
	}{
		{outsider, inside, "remote error: tls: "},
		{inside, outsider, "x509: certificate signed by unknown authority"},
	} {
		if got := tc.from.transport.refusal(tc.to.GRPCAddr()); !strings.Contains(got, tc.want) {
			t.Errorf("the refusal %s's dial of %s meets: %q; want it to say %q", tc.from.Name(), tc.to.Name(), got, tc.want)
		}
	}
	if got := inside.transport.refusal(bridge.GRPCAddr()); got != "" {
		t.Errorf("the refusal %s's dial of %s meets: %q; want none", inside.Name(), bridge.Name(), got)
	}
	// The bridge, whose CAs signed both, calls them both.
	for _, owner := range []*Node{inside, outsider} {
		add(t, bridge, identityOwnedBy(t, all, owner), 1)
	}
}

// TestAStartThatDisagreesOnTLSFails: a node whose transport has no TLS
// where the members' have it, or TLS where theirs is in the clear, would
// take grains that no call could reach: its start fails, naming the
// members and the setting.
func TestAStartThatDisagreesOnTLSFails(t *testing.T) {
	t.Parallel()
	ca := tlstest.NewCA(t, "nodes")
	withTLS := startCluster(t, 1, nil, secured(t, ca))[0]
	clear := startCluster(t, 1, nil, func(cfg *Config) { cfg.NodeName += "-clear" })[0]
	for _, tc := range []struct {
		name      string
		seed      *Node
		configure func(*Config)
		want      string
	}{
		{"none where the members have TLS", withTLS, func(*Config) {}, "serve their transport with TLS, and this node has none (Config.TLS)"},
		{"TLS where the members have none", clear, secured(t, ca), "serve their transport in the clear, and this node uses TLS (Config.TLS)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.ClusterName = tc.seed.cfg.ClusterName
			cfg.Seeds = []string{tc.seed.GossipAddr()}
			tc.configure(&cfg)
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			err := startFails(t, ctx, cfg)
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.seed.Name()) {
				t.Errorf("a start through %s: %v; want an error that names it and says %q", tc.seed.Name(), err, tc.want)
			}
		})
	}
}

// TestADialThatDisagreesOnTLSSaysSo: where the tags do not tell (a member
// older than them), a stream between a node with TLS and one without
// fails in gRPC's words, which say nothing of TLS on one side; the error
// names the setting both ways.
func TestADialThatDisagreesOnTLSSaysSo(t *testing.T) {
	t.Parallel()
	ca := tlstest.NewCA(t, "nodes")
	withTLS := startCluster(t, 1, nil, secured(t, ca))[0]
	clear := startCluster(t, 1, nil, func(cfg *Config) { cfg.NodeName += "-clear" })[0]
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	for _, dial := range []struct{ from, to *Node }{{clear, withTLS}, {withTLS, clear}} {
		_, err := dial.from.transport.conn(ctx, &Member{Name: "x", GRPCAddr: dial.to.GRPCAddr()})
		if err == nil || !strings.Contains(err.Error(), "every member needs Config.TLS, or none") {
			t.Errorf("a stream from %s to %s: %v; want it failed, naming Config.TLS", dial.from.Name(), dial.to.Name(), err)
		}
	}
}

// TestTLSHints: the words of gRPC's dial errors that mean the peer
// disagrees on TLS get the hint, a peer that closes the stream with a
// TestAClosedDialIsAskedWhy: a dial that the peer closed (a reset, an
// end of stream) may be a refused certificate, and gets a handshake of
// its own to say so; one that did not reach the peer gets none, so that
// its waiters are not held for a second DialTimeout.
func TestAClosedDialIsAskedWhy(t *testing.T) {
	for _, tc := range []struct {
		err    string
		closed bool
	}{
		{`connection error: desc = "transport: Error while dialing: write tcp 127.0.0.1:1->127.0.0.1:2: write: connection reset by peer"`, true},
		{`connection error: desc = "error reading server preface: EOF"`, true},
		{`write: broken pipe`, true},
		{`connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:2: connect: connection refused"`, false},
		{`context deadline exceeded`, false},
	} {
		if got := closedByPeer(errors.New(tc.err)); got != tc.closed {
			t.Errorf("closedByPeer(%q) = %v, want %v", tc.err, got, tc.closed)
		}
	}
}

// reset included (under load, in a CI run); other errors do not.
func TestTLSHints(t *testing.T) {
	clear, withTLS := &transport{cfg: &Config{}}, &transport{cfg: &Config{TLS: &tls.Config{}}}
	for _, tc := range []struct {
		t    *transport
		err  string
		hint bool
	}{
		{clear, `connection error: desc = "error reading server preface: EOF"`, true},
		{clear, `connection error: desc = "error reading server preface: read tcp 127.0.0.1:1->127.0.0.1:2: read: connection reset by peer"`, true},
		{clear, `connection error: desc = "error reading server preface: read tcp 127.0.0.1:1->127.0.0.1:2: i/o timeout"`, false},
		{clear, `connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:2: connect: connection refused"`, false},
		{withTLS, `connection error: desc = "transport: authentication handshake failed: tls: first record does not look like a TLS handshake"`, true},
		{withTLS, `connection error: desc = "error reading server preface: EOF"`, false},
	} {
		if got := tc.t.tlsHint(errors.New(tc.err)) != ""; got != tc.hint {
			t.Errorf("TLS %v, %q: hint %v, want %v", tc.t.cfg.TLS != nil, tc.err, got, tc.hint)
		}
	}
}

// TestGossipOfOtherKeysIsRefused: a node whose keys cannot read the
// gossip of a cluster, or that has none where the cluster has keys, or
// keys where it has none, fails to start through its members, and the
// error says which setting to check.
func TestGossipOfOtherKeysIsRefused(t *testing.T) {
	t.Parallel()
	keyed := startCluster(t, 1, nil, func(cfg *Config) { cfg.GossipKeys = [][]byte{gossipKey(1)} })[0]
	clear := startCluster(t, 1, nil, func(cfg *Config) { cfg.NodeName += "-clear" })[0]
	for _, tc := range []struct {
		name string
		seed *Node
		keys [][]byte
	}{
		{"another key", keyed, [][]byte{gossipKey(2)}},
		{"no key", keyed, nil},
		{"a key where the cluster has none", clear, [][]byte{gossipKey(1)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.ClusterName = tc.seed.cfg.ClusterName
			cfg.Seeds = []string{tc.seed.GossipAddr()}
			cfg.GossipKeys = tc.keys
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			err := startFails(t, ctx, cfg)
			if !strings.Contains(err.Error(), "Config.GossipKeys") {
				t.Errorf("a start through a member of other gossip keys: %v; want an error that names Config.GossipKeys", err)
			}
		})
	}
}

// TestTheGossipKeyChangesWhileTheClusterRuns follows Config.GossipKeys's
// way to change the key: every member restarted with the new key added
// last, then first, then alone. The members of a cluster of two are
// replaced one at a time (a node of the next step joins, the one it
// replaces leaves), and they call each other's grains after each change;
// at the end, a node with only the old key no longer joins.
func TestTheGossipKeyChangesWhileTheClusterRuns(t *testing.T) {
	t.Parallel()
	old, next := gossipKey(1), gossipKey(2)
	nodes, _ := echoCluster(t, 2, 0, func(cfg *Config) { cfg.GossipKeys = [][]byte{old} })
	step := 0
	for _, keys := range [][][]byte{{old, next}, {next, old}, {next}} {
		for i := range nodes {
			step++
			cfg := testConfig(t)
			cfg.NodeName += fmt.Sprintf("-step%d", step)
			cfg.Kinds = []*Kind{newEchoKind(newHooks(cfg.NodeName), 0)}
			cfg.GossipKeys = keys
			cfg.Seeds = []string{nodes[1-i].GossipAddr()}
			joiner := startNode(t, cfg)
			waitConverged(t, []*Node{nodes[0], nodes[1], joiner}, 3)
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			err := nodes[i].Shutdown(ctx)
			cancel()
			if err != nil {
				t.Fatalf("step %d: %s's Shutdown: %v", step, nodes[i].Name(), err)
			}
			nodes[i] = joiner
			waitConverged(t, nodes, 2)
			for _, owner := range nodes {
				addWithin(t, nodes[0], identityOwnedBy(t, nodes, owner), 1)
			}
		}
	}

	cfg := testConfig(t)
	cfg.NodeName += "-old"
	cfg.GossipKeys = [][]byte{old}
	cfg.Seeds = []string{nodes[0].GossipAddr()}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := startFails(t, ctx, cfg); !strings.Contains(err.Error(), "Config.GossipKeys") {
		t.Errorf("a start with the old key alone, once the cluster has only the new one: %v; want an error that names Config.GossipKeys", err)
	}
}

// TestTheGossipKeyChangesAtRunTime: ChangeGossipKey, called on any member,
// gives every member the new key alone, while they go on calling each
// other's grains; then a node with the old key no longer joins, and one
// with the new key does.
func TestTheGossipKeyChangesAtRunTime(t *testing.T) {
	t.Parallel()
	old, next := gossipKey(1), gossipKey(2)
	nodes, _ := echoCluster(t, 3, 0, func(cfg *Config) { cfg.GossipKeys = [][]byte{old, gossipKey(3)} })
	if err := nodes[1].ChangeGossipKey(next); err != nil {
		t.Fatalf("ChangeGossipKey: %v", err)
	}
	listed, err := nodes[2].serf.KeyManager().ListKeys()
	if err != nil {
		t.Fatalf("list the members' keys: %v", err)
	}
	want := map[string]int{base64.StdEncoding.EncodeToString(next): len(nodes)}
	if !maps.Equal(listed.Keys, want) || !maps.Equal(listed.PrimaryKeys, want) {
		t.Errorf("after the change, the members have the keys %v and encrypt with %v; want %v for both", listed.Keys, listed.PrimaryKeys, want)
	}
	for _, owner := range nodes {
		add(t, nodes[0], identityOwnedBy(t, nodes, owner), 1)
	}
	// Changing it to the key it already is changes nothing.
	if err := nodes[0].ChangeGossipKey(next); err != nil {
		t.Errorf("ChangeGossipKey to the key in use: %v", err)
	}

	joiner := func(keys ...[]byte) Config {
		cfg := testConfig(t)
		cfg.ClusterName = nodes[0].cfg.ClusterName
		cfg.GossipKeys = keys
		cfg.Seeds = []string{nodes[0].GossipAddr()}
		return cfg
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := startFails(t, ctx, joiner(old)); !strings.Contains(err.Error(), "Config.GossipKeys") {
		t.Errorf("a start with the old key, after the change: %v; want an error that names Config.GossipKeys", err)
	}
	waitConverged(t, append(nodes, startNode(t, joiner(next))), len(nodes)+1)
}

// TestChangeGossipKeyErrors: a key of the wrong size, and a cluster whose
// gossip is in the clear, are refused before any member is asked; a step
// that members refused says what each said.
func TestChangeGossipKeyErrors(t *testing.T) {
	t.Parallel()
	clear := startCluster(t, 1, nil, nil)[0]
	if err := clear.ChangeGossipKey(gossipKey(1)); err == nil || !strings.Contains(err.Error(), "no Config.GossipKeys") {
		t.Errorf("ChangeGossipKey on a cluster in the clear: %v; want an error that names Config.GossipKeys", err)
	}
	if err := clear.ChangeGossipKey([]byte("short")); err == nil || !strings.Contains(err.Error(), "16, 24 or 32 bytes") || !strings.Contains(err.Error(), "not 5") {
		t.Errorf("ChangeGossipKey with a key of 5 bytes: %v; want an error that gives the sizes", err)
	}

	keyed := startCluster(t, 1, nil, func(cfg *Config) { cfg.GossipKeys = [][]byte{gossipKey(1)} })[0]
	_ = keyed.Close()
	if err := keyed.ChangeGossipKey(gossipKey(2)); !errors.Is(err, ErrNodeClosed) {
		t.Errorf("ChangeGossipKey on a closed node: %v; want ErrNodeClosed", err)
	}

	refused := &serf.KeyResponse{NumNodes: 3, NumResp: 3, NumErr: 2, Messages: map[string]string{"b": "no keyring", "a": "removing the primary key is not allowed"}}
	err := keyStepError("drop an old gossip key", refused, nil, errors.New("2/3 nodes reported failure"))
	want := "cluster: drop an old gossip key: 2/3 nodes reported failure (a: removing the primary key is not allowed; b: no keyring)"
	if err.Error() != want {
		t.Errorf("keyStepError: %q; want %q", err, want)
	}
	unanswered := errors.New("2/3 nodes reported success")
	if err := keyStepError("install the new gossip key", &serf.KeyResponse{}, nil, unanswered); !errors.Is(err, unanswered) || err.Error() != "cluster: install the new gossip key: 2/3 nodes reported success" {
		t.Errorf("keyStepError without messages: %q; want serf's count, wrapped", err)
	}
	members := []serf.Member{{Name: "c", Status: serf.StatusAlive}, {Name: "a", Status: serf.StatusAlive}, {Name: "b", Status: serf.StatusAlive}, {Name: "gone", Status: serf.StatusFailed}}
	silent := unheard(members, map[string]bool{"b": true})
	err = keyStepError("install the new gossip key", &serf.KeyResponse{NumNodes: 3, NumResp: 1}, silent, unanswered)
	if want := "cluster: install the new gossip key: 2/3 nodes reported success (no word from a, c)"; err.Error() != want {
		t.Errorf("keyStepError with members that did not hear: %q; want %q", err, want)
	}

	// The roll call beside a step that lacked answers hears every member
	// that is there, this one too, so it names none.
	nodes := startCluster(t, 3, nil, func(cfg *Config) { cfg.GossipKeys = [][]byte{gossipKey(1)} })
	err = nodes[1].keyStep("a step", func() (*serf.KeyResponse, error) {
		return &serf.KeyResponse{NumNodes: 4, NumResp: 3}, unanswered
	})
	if want := "cluster: a step: 2/3 nodes reported success"; err == nil || err.Error() != want {
		t.Errorf("a step that lacked answers, in a cluster whose members all heard it: %v; want %q", err, want)
	}
}

// TestMutualTLSErrors: files that are missing or hold no certificate are
// told, with what was being read.
func TestMutualTLSErrors(t *testing.T) {
	ca := tlstest.NewCA(t, "nodes")
	cert, key := ca.Issue(t, "node")
	for _, tc := range []struct {
		name, cert, key, ca, want string
	}{
		{"no certificate file", "missing.pem", key, ca.CertFile(), "cluster: load the node's certificate: open missing.pem"},
		{"a key for another certificate", cert, func() string { _, other := ca.Issue(t, "other"); return other }(), ca.CertFile(),
			"cluster: load the node's certificate: tls: private key does not match public key"},
		{"no CA file", cert, key, "missing-ca.pem", "cluster: read the CA certificates: open missing-ca.pem"},
		{"no certificate in the CA file", cert, key, key, "cluster: no PEM certificate in " + key},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := MutualTLS(tc.cert, tc.key, tc.ca, "")
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("MutualTLS: %v; want an error that begins %q", err, tc.want)
			}
		})
	}
}

// TestMutualTLSUsesARenewedCertificate: once the certificate and key
// files change, the node presents the new certificate on the streams
// opened after, without a restart; while the files do not make a pair
// (a renewal half-written), the last pair that did is presented.
func TestMutualTLSUsesARenewedCertificate(t *testing.T) {
	t.Parallel()
	ca := tlstest.NewCA(t, "nodes")
	dir := t.TempDir()
	certFile, keyFile := dir+"/node.pem", dir+"/node-key.pem"
	renew := func(name string) (cert, key []byte) {
		t.Helper()
		c, k := ca.Issue(t, name, testServerName)
		cert, key = readFile(t, c), readFile(t, k)
		writeFile(t, certFile, cert)
		writeFile(t, keyFile, key)
		return cert, key
	}
	renew("first")
	tlsCfg, err := MutualTLS(certFile, keyFile, ca.CertFile(), testServerName)
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	cfg.TLS = tlsCfg
	n := startNode(t, cfg)

	presented := func() string {
		t.Helper()
		conn, err := tls.Dial("tcp", n.GRPCAddr(), ca.ClientConfig(t, testServerName))
		if err != nil {
			t.Fatalf("a TLS dial of the node's transport: %v", err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	if got := presented(); got != "first" {
		t.Fatalf("the node presented %q, want the first certificate", got)
	}
	renew("second-certificate")
	if got := presented(); got != "second-certificate" {
		t.Errorf("after the files changed, the node presented %q, want the renewed certificate", got)
	}
	// Half a renewal: the new certificate, the old key.
	c, _ := ca.Issue(t, "third-certificate", testServerName)
	writeFile(t, certFile, readFile(t, c))
	if got := presented(); got != "second-certificate" {
		t.Errorf("with a certificate and a key that do not match, the node presented %q, want the last pair that did", got)
	}
}

// TestMutualTLSReadsTheCAFileAgain: the configuration's handshakes trust
// the CAs the file holds, read again once it changed; while it holds no
// certificate (written half), the last CAs it held.
func TestMutualTLSReadsTheCAFileAgain(t *testing.T) {
	t.Parallel()
	one, two := tlstest.NewCA(t, "one"), tlstest.NewCA(t, "two")
	certFile, keyFile := one.Issue(t, "node", testServerName)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	replaceFile(t, caFile, readFile(t, one.CertFile()))
	tlsCfg, err := MutualTLS(certFile, keyFile, caFile, testServerName)
	if err != nil {
		t.Fatal(err)
	}
	trusted := func() *x509.CertPool {
		t.Helper()
		cfg, err := dialConfig(tlsCfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !cfg.RootCAs.Equal(cfg.ClientCAs) {
			t.Fatal("a handshake's configuration trusts other CAs as a dialer than as a server")
		}
		return cfg.RootCAs
	}
	pool := func(cas ...*tlstest.CA) *x509.CertPool {
		p, err := readCAs(tlstest.Bundle(t, cas...))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	if !trusted().Equal(pool(one)) || !tlsCfg.RootCAs.Equal(pool(one)) {
		t.Fatal("the configuration does not trust the CA its file holds")
	}
	replaceFile(t, caFile, readFile(t, tlstest.Bundle(t, one, two)))
	if !trusted().Equal(pool(one, two)) {
		t.Error("after a second CA was added to the file, a handshake does not trust both")
	}
	replaceFile(t, caFile, []byte("-----BEGIN CERT"))
	if !trusted().Equal(pool(one, two)) {
		t.Error("while the file holds no certificate, a handshake does not trust the CAs it last held")
	}
	replaceFile(t, caFile, readFile(t, two.CertFile()))
	if !trusted().Equal(pool(two)) {
		t.Error("after the first CA left the file, a handshake does not trust the second alone")
	}
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t *testing.T, name string, b []byte) {
	t.Helper()
	if err := os.WriteFile(name, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestTheCAChangesWhileTheClusterRuns: MutualTLS reads the CA file again
// once it changed, for the handshakes after, served and dialed, so a
// cluster moves to a new CA without a restart. A node under the new CA is
// refused until the members' CA files hold it beside the old; then it
// joins, and calls and is called both ways. Once the members' certificates
// are renewed by the new CA and the old CA leaves their files, a node
// under the old CA is refused, and one that trusts the new CA alone joins.
func TestTheCAChangesWhileTheClusterRuns(t *testing.T) {
	t.Parallel()
	oldCA, newCA := tlstest.NewCA(t, "old"), tlstest.NewCA(t, "new")
	dir := t.TempDir()
	// issue writes, in place of the node's files, a certificate that
	// issuer issues for it and the CAs trusted.
	issue := func(node string, issuer *tlstest.CA, trusted ...*tlstest.CA) (certFile, keyFile, caFile string) {
		certFile, keyFile, caFile = dir+"/"+node+".pem", dir+"/"+node+"-key.pem", dir+"/"+node+"-ca.pem"
		c, k := issuer.Issue(t, node, testServerName)
		replaceFile(t, certFile, readFile(t, c))
		replaceFile(t, keyFile, readFile(t, k))
		replaceFile(t, caFile, readFile(t, tlstest.Bundle(t, trusted...)))
		return certFile, keyFile, caFile
	}
	under := func(issuer *tlstest.CA, trusted ...*tlstest.CA) func(*Config) {
		return func(cfg *Config) {
			certFile, keyFile, caFile := issue(cfg.NodeName, issuer, trusted...)
			tlsCfg, err := MutualTLS(certFile, keyFile, caFile, testServerName)
			if err != nil {
				t.Fatal(err)
			}
			cfg.TLS = tlsCfg
		}
	}
	members, _ := echoCluster(t, 2, 0, under(oldCA, oldCA))
	newcomer := func(suffix string, configure func(*Config)) Config {
		cfg := testConfig(t)
		cfg.NodeName += suffix
		cfg.ClusterName = members[0].cfg.ClusterName
		cfg.Seeds = []string{members[0].GossipAddr()}
		cfg.Kinds = []*Kind{newEchoKind(newHooks(cfg.NodeName), 0)}
		configure(&cfg)
		return cfg
	}
	refused := func(cfg Config) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if err := startFails(t, ctx, cfg); !strings.Contains(err.Error(), "refused it over a certificate") {
			t.Fatalf("the start of %s: %v; want it refused over a certificate", cfg.NodeName, err)
		}
	}
	// The members call first, so that they dial the new node (a stream
	// serves calls both ways, whoever dialed it).
	callsBothWays := func(all []*Node, newNode *Node) {
		t.Helper()
		for _, m := range all {
			if m != newNode {
				add(t, m, identityOwnedBy(t, all, newNode), 1)
				add(t, newNode, identityOwnedBy(t, all, m), 1)
			}
		}
	}

	refused(newcomer("-early", under(newCA, oldCA, newCA)))
	// The members trust both CAs: a node under the new one joins.
	for _, m := range members {
		issue(m.Name(), oldCA, oldCA, newCA)
	}
	joined := startNode(t, newcomer("-new", under(newCA, oldCA, newCA)))
	all := append(members, joined)
	waitConverged(t, all, 3)
	callsBothWays(all, joined)

	// Every certificate of the new CA, which alone is trusted.
	for _, n := range all {
		issue(n.Name(), newCA, newCA)
	}
	refused(newcomer("-old", under(oldCA, oldCA, newCA)))
	last := startNode(t, newcomer("-last", under(newCA, newCA)))
	all = append(all, last)
	waitConverged(t, all, 4)
	callsBothWays(all, last)
}

// replaceFile writes b to a file beside name and renames it to name: the
// file changes whole, as a Secret's volume does.
func replaceFile(t *testing.T, name string, b []byte) {
	t.Helper()
	writeFile(t, name+".next", b)
	if err := os.Rename(name+".next", name); err != nil {
		t.Fatal(err)
	}
}
