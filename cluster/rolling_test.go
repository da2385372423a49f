package cluster

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/protograin/protograin/cluster/storage"
	"github.com/protograin/protograin/internal/tlstest"
)

// rollingCallTimeout is each deposit's deadline in the rolling restarts,
// and rollingHang how far past it a call may return before it counts as
// hung: the caller's goroutine may wait a little for a core, under -race.
const (
	rollingCallTimeout = 5 * time.Second
	rollingHang        = time.Second
)

// rollingLoad deposits 1 on grains of both flush modes ("a-i" of
// accountKind, FlushAfterCall, and "m-i" of manualKind, FlushManual) from
// callers on a gateway node that stays and on members that are restarted
// under it. Each caller is a client of its own: it stamps its deposits
// with WithCallID, a sequence number per deposit, and retries a deposit
// that failed under the same stamp until it is acknowledged, as a client
// that must know the outcome does (state.md, "An unknown commit
// outcome"). So once the callers stopped, every deposit was acknowledged
// once, and a grain's stored balance must be exactly its deposits.
type rollingLoad struct {
	gateway *Node
	members []atomic.Pointer[Node] // the start of each member its callers call through
	callers int                    // per member, and on the gateway
	grains  int                    // per kind
	// patience is how long a deposit is tried before its caller gives
	// up: waitTimeout, and with KeepMajority DownAfter on top, which a
	// failed member's grains wait before they move.
	patience time.Duration

	mu       sync.Mutex
	acked    map[string]int64 // "kind identity" → deposits acknowledged
	failures map[string]int   // failed attempts, by error, each retried
	latest   time.Duration    // the most a call returned past its deadline

	deposits atomic.Int64
	stop     atomic.Bool
	done     chan struct{}
}

func newRollingLoad(t *testing.T, gateway *Node, members []*Node, callers, grains int) *rollingLoad {
	l := &rollingLoad{
		gateway: gateway, members: make([]atomic.Pointer[Node], len(members)), callers: callers, grains: grains,
		acked: make(map[string]int64), failures: make(map[string]int), done: make(chan struct{}),
		patience: waitTimeout,
	}
	if v := gateway.majority; v != nil {
		l.patience += cmp.Or(v.downAfter, v.patience(len(members)+1))
	}
	for i, m := range members {
		l.members[i].Store(m)
	}
	l.run(t)
	t.Cleanup(l.finish)
	return l
}

// run starts the callers: callers on the gateway, and as many on each
// member. It reports the errors that ended a caller when they stop.
func (l *rollingLoad) run(t *testing.T) {
	go func() {
		defer close(l.done)
		concurrently(t, (len(l.members)+1)*l.callers, func(c int) error {
			from := func() *Node { return l.gateway }
			if m := c % (len(l.members) + 1); m < len(l.members) {
				from = l.members[m].Load
			}
			client := fmt.Sprintf("rolling-%d", c)
			for seq := uint64(1); !l.stop.Load(); seq++ {
				i := (c*31 + int(seq)) % (2 * l.grains)
				kind, id := accountKind, fmt.Sprintf("a-%d", i/2)
				if i%2 == 1 {
					kind, id = manualKind, fmt.Sprintf("m-%d", i/2)
				}
				if err := l.deposit(from, kind, id, client, seq); err != nil {
					return err
				}
			}
			return nil
		})
	}()
}

// deposit deposits 1 on (kind, id) under the stamp (client, seq) until it
// is acknowledged, through from's node, or the gateway once that node is
// closed or fenced. It returns an error for a call that returned past its
// deadline, one that failed with an error the documents do not give for
// it, and a deposit not acknowledged within l.patience.
func (l *rollingLoad) deposit(from func() *Node, kind, id, client string, seq uint64) error {
	giveUp := time.Now().Add(l.patience)
	n := from()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), rollingCallTimeout)
		start := time.Now()
		_, err := n.Invoke(ctx, depositCall(kind, id, 1), WithCallID(client, seq))
		late := time.Since(start) - rollingCallTimeout
		cancel()
		l.mu.Lock()
		l.latest = max(l.latest, late)
		if err == nil {
			l.acked[kind+" "+id]++
		} else {
			l.failures[rollingFailure(err)]++
		}
		l.mu.Unlock()
		switch {
		case late > rollingHang:
			return fmt.Errorf("deposit %d of %s on %s %s through %s returned %v past its deadline: %v", seq, client, kind, id, n.Name(), late, err)
		case err == nil:
			l.deposits.Add(1)
			return nil
		case rollingFailure(err) == "":
			return fmt.Errorf("deposit %d of %s on %s %s through %s failed with an undocumented error: %w", seq, client, kind, id, n.Name(), err)
		case time.Now().After(giveUp):
			return fmt.Errorf("deposit %d of %s on %s %s not acknowledged in %v: %w", seq, client, kind, id, l.patience, err)
		case errors.Is(err, ErrNodeClosed), errors.Is(err, ErrNoQuorum):
			// Its node is shutting down, or is cut off from the
			// majority: the client goes on elsewhere, under the stamp.
			n = l.gateway
		}
	}
}

// rollingFailure names the documented error a deposit may fail with while
// members restart, which a retry under its stamp resolves, or returns ""
// for any other: ErrNodeClosed (the caller's node shuts down),
// ErrUnavailable (the owner could not be reached within the deadline: a
// member that crashed), ErrStaleActivation (a FlushAfterCall grain's stale
// activation), ErrStateUnavailable (a commit's outcome is unknown: a
// node closed abruptly during it), ErrNoQuorum (with KeepMajority, the
// caller's node is cut off from the majority, or settles), and the
// caller's deadline. ErrStaleCall
// is not among them: each client calls one grain at a time, so no call is
// overtaken.
func rollingFailure(err error) string {
	for _, documented := range []error{ErrNodeClosed, ErrUnavailable, ErrStaleActivation, ErrStateUnavailable, ErrNoQuorum} {
		if errors.Is(err, documented) {
			return documented.Error()
		}
	}
	if status.Code(err) == codes.DeadlineExceeded {
		return "deadline exceeded"
	}
	return ""
}

// replace has member i's callers call through its new start.
func (l *rollingLoad) replace(i int, n *Node) { l.members[i].Store(n) }

// progress waits until the callers made more deposits, and fails the
// test if none was made for waitTimeout: a starved machine makes them
// slowly, a stuck cluster not at all (and a deposit that is not
// acknowledged in that time ends its caller with an error).
func (l *rollingLoad) progress(t *testing.T, what string, more int) {
	t.Helper()
	from := int(l.deposits.Load())
	waitForProgress(t, what, from+more, func() int { return int(l.deposits.Load()) })
}

// reachAll waits until the callers acknowledged a deposit on every grain
// since the call, as after a change that moved grains: each is active
// again after its move. It fails the test as progress does if no grain
// is reached for waitTimeout.
func (l *rollingLoad) reachAll(t *testing.T, what string) {
	t.Helper()
	l.mu.Lock()
	before := maps.Clone(l.acked)
	l.mu.Unlock()
	waitForProgress(t, what, 2*l.grains, func() int {
		l.mu.Lock()
		defer l.mu.Unlock()
		reached := 0
		for key, n := range l.acked {
			if n > before[key] {
				reached++
			}
		}
		return reached
	})
}

// finish stops the callers once their deposits in flight are
// acknowledged, and waits for them.
func (l *rollingLoad) finish() {
	l.stop.Store(true)
	<-l.done
}

// rollingCluster is a gateway that hosts no kind and members that host
// the bank's kinds (countedBankKinds) over one store.
type rollingCluster struct {
	gateway *Node
	members []*Node            // each member's latest start
	configs []Config           // each member's config, to start it again under its name
	banks   map[string][]*bank // by node name, one per start
	// sameAddrs restarts a member at its previous start's gossip and
	// transport addresses, as a member with fixed ports in its config
	// comes back, rather than at new ones.
	sameAddrs bool
	// partition, if not nil, cuts the network of every node, each of
	// which keeps a majority (Config.KeepMajority).
	partition *partition
	// retryName has a start that fails with ErrNameInUse tried again, as
	// a deploy would start it again (see crashWhileCutOff).
	retryName bool
	// configure adjusts every node's config (its security, say).
	configure []func(*Config)

	mu sync.Mutex
	// gaveUp lists the hand-off waits that ended at their bound, by the
	// node that waited and the start it waited for: every start answers
	// in time here, so one that did not went on without the release.
	gaveUp []string
}

// startRollingCluster starts a gateway and size members over store,
// joined through the gateway; sameAddrs and p are rollingCluster's
// sameAddrs and partition.
func startRollingCluster(t *testing.T, store storage.Store, size int, sameAddrs bool, p *partition, configure ...func(*Config)) *rollingCluster {
	rc := &rollingCluster{banks: make(map[string][]*bank), sameAddrs: sameAddrs, partition: p, configure: configure}
	cfg := testConfig(t)
	cfg.NodeName += "-gateway"
	cfg.Store = store
	rc.gateway = rc.startNode(t, rc.configured(cfg))
	for i := range size {
		cfg := testConfig(t)
		cfg.NodeName += fmt.Sprintf("-m%d", i)
		cfg.Store = store
		cfg.Seeds = []string{rc.gateway.GossipAddr()}
		rc.configs = append(rc.configs, rc.configured(cfg))
		rc.members = append(rc.members, rc.start(t, rc.configs[i]))
	}
	waitConverged(t, rc.all(), size+1)
	return rc
}

// configured returns cfg as rc.configure has it, and with KeepMajority,
// its network cut by rc.partition, if rc has one.
func (rc *rollingCluster) configured(cfg Config) Config {
	for _, configure := range rc.configure {
		configure(&cfg)
	}
	if rc.partition != nil {
		cfg.KeepMajority = true
		rc.partition.configure(&cfg)
	}
	return cfg
}

// startNode starts a node under cfg with startAgain, and has
// rc.partition learn its addresses.
func (rc *rollingCluster) startNode(t *testing.T, cfg Config) *Node {
	t.Helper()
	n := startRetrying(t, cfg, rc.retryName)
	if rc.partition != nil {
		rc.partition.learn(n)
	}
	return n
}

// prepare returns cfg for a start of a member, with a bank of its own:
// cfg may be a member's, started again.
func (rc *rollingCluster) prepare(cfg Config) Config {
	b := newBank(cfg.NodeName)
	rc.banks[cfg.NodeName] = append(rc.banks[cfg.NodeName], b)
	cfg.Kinds = countedBankKinds(b, time.Hour) // only moves and shutdowns deactivate
	cfg.releaseGaveUp = func(start string) {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		rc.gaveUp = append(rc.gaveUp, cfg.NodeName+" for "+start)
	}
	return cfg
}

// start starts a member under cfg (see prepare).
func (rc *rollingCluster) start(t *testing.T, cfg Config) *Node {
	return rc.startNode(t, rc.prepare(cfg))
}

// startAgain starts a node under cfg, which may be a member's, with its
// previous start's ports. Those the OS gave that start from its ephemeral
// range: in the rare case that another socket took one since that start
// closed (a connection's local port, of this process or another), the
// start fails with "address already in use", and is tried again until the
// port is free, as a deploy would retry it. The gossip's error says so
// only in its text: memberlist formats the listener's error with %v.
func startAgain(t *testing.T, cfg Config) *Node {
	t.Helper()
	return startRetrying(t, cfg, false)
}

// startRetrying is startAgain that, if retryName, also tries a start that
// fails with ErrNameInUse again.
func startRetrying(t *testing.T, cfg Config, retryName bool) *Node {
	t.Helper()
	if cfg.BindAddr == "127.0.0.1:0" && !retryName {
		return startNode(t, cfg)
	}
	var n *Node
	waitFor(t, waitTimeout, cfg.NodeName+"'s ports and name to be free", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		var err error
		n, err = Start(ctx, cfg)
		if err != nil && (errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use")) {
			t.Logf("Start(%s) at its previous start's ports, tried again: %v", cfg.NodeName, err)
			return false
		}
		if err != nil && retryName && errors.Is(err, ErrNameInUse) {
			t.Logf("Start(%s), tried again: %v", cfg.NodeName, err)
			return false
		}
		if err != nil {
			t.Fatalf("Start(%s): %v", cfg.NodeName, err)
		}
		return true
	})
	t.Cleanup(func() { _ = n.Close() })
	return n
}

// stopMember stops n, by Shutdown or, if crash, by Close.
func stopMember(t *testing.T, n *Node, crash bool) {
	t.Helper()
	if crash {
		_ = n.Close()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := n.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown of %s: %v", n.Name(), err)
	}
}

// awaitNewStart waits, as a deploy waits for a restarted member to be
// ready before it restarts the next, until every one of nodes has the
// start again alive, its incarnation telling it from an old start at the
// same addresses.
func awaitNewStart(t *testing.T, nodes []*Node, again *Node) {
	t.Helper()
	waitFor(t, waitTimeout, "every node to see "+again.Name()+"'s new start", func() bool {
		for _, n := range nodes {
			if m, ok := memberNamed(n, again.Name()); !ok || m.Status != StatusAlive || m.GRPCAddr != again.GRPCAddr() || m.incarnation != again.incarnation {
				return false
			}
		}
		return true
	})
}

// history says where identity's grain was active: for each start of each
// member, its activations, OnDeactivate runs and deposits.
func (rc *rollingCluster) history(id string) string {
	var h string
	for name, starts := range rc.banks {
		for i, b := range starts {
			if news := b.count(id, hookNew); news > 0 {
				h += fmt.Sprintf("\n\t%s start %d: %d activations, %d OnDeactivate, %d deposits", name, i, news, b.count(id, hookDeactivate), b.count(id, methodDeposit))
			}
		}
	}
	return h
}

// all returns the gateway and the members.
func (rc *rollingCluster) all() []*Node { return append([]*Node{rc.gateway}, rc.members...) }

// restart stops member i, by Shutdown or, if crash, by Close, and starts
// it again under its name, as a rolling deploy does: at new addresses, or
// at the stopped start's if rc.sameAddrs, right after it stopped; the
// load's callers on it go on through the new start. It waits until every
// node has the new start, and sees every member alive, and returns the
// bank of the start stopped.
func (rc *rollingCluster) restart(t *testing.T, load *rollingLoad, i int, crash bool) *bank {
	t.Helper()
	stopped := rc.stop(t, i, crash)
	rc.startAgain(t, load, i)
	awaitNewStart(t, rc.all(), rc.members[i])
	waitConverged(t, rc.all(), len(rc.members)+1)
	return stopped
}

// stop stops member i, by Shutdown or, if crash, by Close, and returns the
// bank of the start stopped; if rc.sameAddrs, its next start is to listen
// at its addresses.
func (rc *rollingCluster) stop(t *testing.T, i int, crash bool) *bank {
	t.Helper()
	old := rc.members[i]
	stopMember(t, old, crash)
	if rc.sameAddrs {
		rc.configs[i].BindAddr, rc.configs[i].GRPCAddr = old.GossipAddr(), old.GRPCAddr()
	}
	banks := rc.banks[old.Name()]
	return banks[len(banks)-1]
}

// startAgain starts member i, which stop stopped, again under its name,
// and has the load's callers on it go on through the new start.
func (rc *rollingCluster) startAgain(t *testing.T, load *rollingLoad, i int) {
	t.Helper()
	rc.members[i] = rc.start(t, rc.configs[i])
	load.replace(i, rc.members[i])
}

// TestGrainStateThroughARollingRestart deposits on a few hundred grains
// of both flush modes, from callers on a gateway node and on the members,
// while every member is restarted in turn under its name, gracefully
// (Shutdown, then a new start), as a rolling deploy does; and, in the
// second variant, with the middle member crashed (Close) instead. Every
// deposit is retried under its stamp until acknowledged; no call may
// return past its deadline, and each failed attempt must fail with an
// error the documents give for it (rollingFailure). No activation's wait
// for a member's release (the hand-off) may end at its bound: every
// start answers in time here, and an activation that went on without the
// answer would be left to the version check.
//
// Then the nodes shut down, and every grain's stored balance must be its
// acknowledged deposits, exactly: none lost, none applied twice. That is
// what state.md promises for FlushAfterCall grains (committed before the
// reply, and a retry under the same stamp answered from the record), and,
// through graceful restarts, for FlushManual grains (a leaver commits
// what it buffered, and its grains' next owners wait for it: the
// hand-off). A crash is not covered for FlushManual: "a member that fails
// commits nothing", so a manual grain that was active on the crashed
// start may have lost deposits acknowledged since its last commit, and
// is checked only for deposits applied twice. The manual grains never
// active there must still hold every deposit exactly: the crash moved
// them only by the restarted start's join, which the hand-off covers,
// once every node has that start (restart waits for it, as a deploy
// waits for a restarted member to be ready; without the wait, a member
// started next could miss the crashed member's new start in its view
// for seconds, and own its grains beside it: a brief overlap that
// architecture.md leaves to the version check).
//
// The last two variants restart each member at its previous start's
// gossip and transport addresses, right after it stopped, as a member
// with fixed ports in its config comes back: the new start takes over
// memberlist's record of the old one at that address (it refutes the
// record's leave, or after a crash its alive entry, so that the peers
// never see the crashed start fail), and only its incarnation tells its
// streams from the old start's.
//
// This found that a starting node served its peers' calls before it
// knew the cluster (TestAJoinerServesNoGrainBeforeItsStartKnowsTheCluster)
// and that the hand-off gave up on a leaver the gossip reported failed
// (TestASuccessorWaitsForALeaverTheGossipReportsFailed), both of which
// lost acknowledged deposits of FlushManual grains; and, at the same
// addresses, that a peer whose view still had the old start leaving or
// left took the new start's streams for the leaver's
// (TestAPeerServesANewStartAtTheAddressOfAStartItHasLeft): the new
// start's activations of FlushManual grains waited out the hand-off's
// bound, 10 s, and went on without the release.
//
// The variants "keeping a majority" run the same restarts with
// KeepMajority on every node, and no partition: each start then asks the
// others what they hold (Node.settleForUnseen), and a crashed member's
// grains are held for DownAfter unless its new start comes first, which
// must not keep that start from serving its own grains.
//
// Each variant runs for two to six seconds per store under -race, one
// round in the package's run, the variants keeping a majority on the
// memstore only; ROLLING_ROUNDS=n restarts every member n times, for a
// soak, and ROLLING_PARTITION=1 runs those variants on every store too:
//
//	ROLLING_ROUNDS=5 ROLLING_PARTITION=1 go test -race -run TestGrainStateThroughARollingRestart ./cluster
//
// Its soaks also met a stale serf leave that kept a restarted member
// leaving for good (TestAStaleGossipLeaveDoesNotMoveAMembersGrains), and
// a stale gossip death of a member's old start, which memberlist applied
// to its new start by name, and which the members with no stream to the
// new start took
// (TestAMemberTheGossipFailsWithNoStreamIsHeldAliveWhileItAnswers); both
// lost acknowledged deposits of FlushManual grains now and then. On a
// failure, waitConverged prints the views.
func TestGrainStateThroughARollingRestart(t *testing.T) {
	t.Parallel()
	rounds := rollingRounds(t)
	for _, keepMajority := range []bool{false, true} {
		for _, sameAddrs := range []bool{false, true} {
			for _, crash := range []bool{false, true} {
				name := "graceful"
				if crash {
					name = "one_crashed"
				}
				if sameAddrs {
					name += "_at_the_same_addresses"
				}
				stores := eachStore
				if keepMajority {
					name += "_keeping_a_majority"
					if os.Getenv("ROLLING_PARTITION") == "" {
						stores = onMemstore
					}
				}
				t.Run(name, func(t *testing.T) {
					stores(t, func(t *testing.T, store storage.Store) {
						rollingRestart(t, store, crash, sameAddrs, keepMajority, rounds)
					})
				})
			}
		}
	}
}

// rollingRounds returns how many times a rolling restart test restarts
// every member: once, or ROLLING_ROUNDS times for a soak.
func rollingRounds(t *testing.T) int {
	v := os.Getenv("ROLLING_ROUNDS")
	if v == "" {
		return 1
	}
	rounds, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("ROLLING_ROUNDS: %v", err)
	}
	return rounds
}

// TestGrainStateThroughASecuredRollingRestart is the rolling restart,
// gracefully and with a crash, of a cluster with gossip keys and mutual
// TLS: the moves' asks and releases, the farewells and the byes, all over
// TLS, keep every acknowledged deposit.
func TestGrainStateThroughASecuredRollingRestart(t *testing.T) {
	t.Parallel()
	rounds := rollingRounds(t)
	ca := tlstest.NewCA(t, "nodes")
	for _, crash := range []bool{false, true} {
		name := "graceful"
		if crash {
			name = "one_crashed"
		}
		t.Run(name, func(t *testing.T) {
			onMemstore(t, func(t *testing.T, store storage.Store) {
				rollingRestart(t, store, crash, false, false, rounds, secured(t, ca, gossipKey(3)))
			})
		})
	}
}

// rollingRestart is TestGrainStateThroughARollingRestart over store, with
// the middle member crashed in the first round if crash, every member
// restarted at its previous start's addresses if sameAddrs, every node
// with KeepMajority if keepMajority, and configured by configure.
func rollingRestart(t *testing.T, store storage.Store, crash, sameAddrs, keepMajority bool, rounds int, configure ...func(*Config)) {
	const members, callers, grains, between = 3, 2, 150, 300
	var p *partition // never cut: it only configures KeepMajority
	if keepMajority {
		p = newPartition()
	}
	rc := startRollingCluster(t, store, members, sameAddrs, p, configure...)
	load := newRollingLoad(t, rc.gateway, rc.members, callers, grains)
	load.progress(t, "deposits before the restarts", between)
	var crashed []*bank
	for r := range rounds {
		for i := range members {
			crashNow := crash && r == 0 && i == 1
			if stopped := rc.restart(t, load, i, crashNow); crashNow {
				crashed = append(crashed, stopped)
			}
			load.progress(t, fmt.Sprintf("deposits after %s's restart", rc.members[i].Name()), between)
		}
	}
	load.finish()
	rc.verify(t, store, load, crashed...)
}

// verify shuts the members and the gateway down once the load finished,
// and checks every grain's stored balance against the deposits
// acknowledged, the hand-off's waits, and that the members' changes
// moved grains; the manual grains active on the crashed starts, by their
// banks, may have lost deposits.
func (rc *rollingCluster) verify(t *testing.T, store storage.Store, load *rollingLoad, crashed ...*bank) {
	t.Helper()
	grains := load.grains
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	for _, n := range append(rc.members, rc.gateway) {
		if err := n.Shutdown(ctx); err != nil {
			t.Fatalf("Shutdown of %s: %v", n.Name(), err)
		}
	}

	// The manual grains the crashed starts held, whose acknowledged
	// deposits they may have taken with them.
	mayLose := map[string]bool{}
	for _, b := range crashed {
		held := 0
		for i := range grains {
			if b.count(fmt.Sprintf("m-%d", i), hookNew) > 0 {
				mayLose[fmt.Sprintf("m-%d", i)] = true
				held++
			}
		}
		if held == 0 {
			t.Errorf("the crashed %s held no manual grain: the crash tested little", b.node)
		}
	}
	var acked, lost int64
	for key, want := range load.acked {
		var kind, id string
		fmt.Sscan(key, &kind, &id)
		got := storedBalance(t, store, kind, id)
		acked += want
		switch {
		case mayLose[id] && got <= want:
			lost += want - got
		case got != want:
			t.Errorf("stored balance of %s: %d, want the %d deposits acknowledged%s", key, got, want, rc.history(id))
		}
	}
	rc.mu.Lock()
	if len(rc.gaveUp) > 0 {
		t.Errorf("hand-off waits ended at their bound, without the release: %v", rc.gaveUp)
	}
	rc.mu.Unlock()
	if got := len(load.acked); got != 2*grains {
		t.Errorf("deposits reached %d grains of %d", got, 2*grains)
	}
	// The restarts moved the manual grains, and the graceful ones ran
	// OnDeactivate once per activation.
	moved := 0
	for i := range grains {
		id, starts := fmt.Sprintf("m-%d", i), 0
		for name, banks := range rc.banks {
			for j, b := range banks {
				news, hooks := b.count(id, hookNew), b.count(id, hookDeactivate)
				if news > 0 {
					starts++
				}
				if news != hooks && !slices.Contains(crashed, b) {
					t.Errorf("%s on %s start %d: %d activations ran OnDeactivate %d times", id, name, j, news, hooks)
				}
			}
		}
		if starts > 1 {
			moved++
		}
	}
	if moved < grains/2 {
		t.Errorf("%d manual grains of %d were active on more than one start: the changes tested little", moved, grains)
	}
	t.Logf("%d deposits acknowledged, %d lost with the crashed starts' %d manual grains; %d manual grains moved; failed attempts, each retried: %v; latest return %v past the deadline",
		acked, lost, len(mayLose), moved, load.failures, load.latest)
}

// TestGrainStateThroughAScaleOutAndIn deposits on grains of both flush
// modes as TestGrainStateThroughARollingRestart does, while the cluster
// grows from two members to five, three joining at once, and shrinks to
// two again, three leaving at once (both first members and a joiner), as
// an autoscaler moves it. Each step moves many grains at once, so the
// hand-offs overlap: a joiner's activation waits for releases from
// members that are themselves joining, or leaving and moving the grain
// on. Every acknowledged deposit must be stored exactly once, on the
// three stores, and no hand-off's wait may end at its bound.
func TestGrainStateThroughAScaleOutAndIn(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, store storage.Store) {
		const callers, grains, between = 2, 150, 300
		rc := startRollingCluster(t, store, 2, false, nil)
		load := newRollingLoad(t, rc.gateway, rc.members, callers, grains)
		// Enough for the callers to reach every grain between the
		// changes: each grain active on a first member moves at the
		// joins or at the leaves, and is active again after the move.
		load.progress(t, "deposits before the joins", 3*between)
		rc.joinAtOnce(t, 3)
		load.progress(t, "deposits after the joins", 3*between)
		rc.leaveAtOnce(t, 0, 1, 2)
		load.progress(t, "deposits after the leaves", 3*between)
		load.finish()
		rc.verify(t, store, load)
	})
}

// joinAtOnce starts count new members at the same moment, and waits until
// every node sees them all.
func (rc *rollingCluster) joinAtOnce(t *testing.T, count int) {
	t.Helper()
	cfgs := make([]Config, count)
	for i := range cfgs {
		cfg := testConfig(t)
		cfg.NodeName += fmt.Sprintf("-m%d", len(rc.members)+i)
		cfg.Store = rc.gateway.store
		cfg.Seeds = []string{rc.gateway.GossipAddr()}
		cfgs[i] = rc.prepare(rc.configured(cfg))
	}
	joined := startAtOnce(t, cfgs)
	if rc.partition != nil {
		rc.partition.learn(joined...)
	}
	rc.members = append(rc.members, joined...)
	waitConverged(t, rc.all(), len(rc.members)+1)
}

// leaveAtOnce shuts the members at the given indexes down at the same
// moment, gracefully, and waits until every node that stays sees them
// gone. The load's callers on them go on through the gateway.
func (rc *rollingCluster) leaveAtOnce(t *testing.T, indexes ...int) {
	t.Helper()
	rc.members = shutdownAtOnce(t, rc.members, indexes)
	waitConverged(t, rc.all(), len(rc.members)+1)
}

// startAtOnce starts a node under each of cfgs at the same moment, as an
// autoscaler adds several, and returns them once all have started.
func startAtOnce(t *testing.T, cfgs []Config) []*Node {
	t.Helper()
	nodes := make([]*Node, len(cfgs))
	errs := make([]error, len(cfgs))
	var wg sync.WaitGroup
	for i, cfg := range cfgs {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			nodes[i], errs[i] = Start(ctx, cfg)
		})
	}
	wg.Wait()
	for i, n := range nodes {
		if n != nil {
			t.Cleanup(func() { _ = n.Close() })
		}
		if errs[i] != nil {
			t.Fatalf("Start(%s): %v", cfgs[i].NodeName, errs[i])
		}
	}
	return nodes
}

// shutdownAtOnce shuts the members at the given indexes down at the same
// moment, gracefully, and returns the others.
func shutdownAtOnce(t *testing.T, members []*Node, indexes []int) []*Node {
	t.Helper()
	leavers := make([]*Node, len(indexes))
	errs := make([]error, len(indexes))
	var wg sync.WaitGroup
	for i, idx := range indexes {
		leavers[i] = members[idx]
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			errs[i] = leavers[i].Shutdown(ctx)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Shutdown of %s: %v", leavers[i].Name(), err)
		}
	}
	return slices.DeleteFunc(slices.Clone(members), func(n *Node) bool { return slices.Contains(leavers, n) })
}
