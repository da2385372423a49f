package cluster

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"weak"

	sockaddr "github.com/hashicorp/go-sockaddr"
	"github.com/hashicorp/serf/serf"
	"google.golang.org/grpc/codes"

	"github.com/protograin/protograin/cluster/internal/reminder"
	"github.com/protograin/protograin/cluster/storage"
	"github.com/protograin/protograin/cluster/storage/memstore"
	"github.com/protograin/protograin/runtime"
)

// Node is a member of a cluster: it hosts the grains of its Kinds that
// placement gives it, and calls grains anywhere in the cluster. A *Node is a
// Caller. Create one with Start; stop it with Shutdown (graceful) or Close.
type Node struct {
	cfg   Config
	name  string
	log   *slog.Logger
	kinds map[string]*hostedKind
	// workerKinds names the kinds of stateless workers the node hosts
	// (Kind.StatelessWorkers): it owns every grain of theirs in its views.
	workerKinds []string
	system      *runtime.System
	transport   *transport
	serf        *serf.Serf
	// gossip is the address serf listens on, set once it started.
	gossip string
	events chan serf.Event
	view   atomic.Pointer[placement]
	// claim makes the node's name its own before Start returns (see
	// nameClaim).
	claim nameClaim
	// incarnation is the random ID of this start of the node (see
	// retiredIncarnations); retiredIDs are other members' replaced ones.
	incarnation string
	retiredIDs  retiredIncarnations
	acts        *activations
	calls       *gate // calls this node is serving
	// handoffs is what the node knows of its peers' releases of the
	// grains it took from them (see handoffs); movedAll is closed once a
	// Shutdown has deactivated every grain: a peer that asks for a
	// release then gets it.
	handoffs *handoffs
	movedAll chan struct{}

	store     storage.Store
	ownStore  bool // store is the node's private memstore: close it
	reminders *reminder.Scheduler
	clientID  string        // stamps this node's calls
	seq       atomic.Uint64 // the last sequence number stamped
	deadlines *deadlines    // the default deadline of calls without one
	// failedGrace and leaverGrace are how long a member seen failed
	// keeps its streams, and one that said it is leaving (see dropFailed).
	failedGrace, leaverGrace time.Duration

	changed   chan struct{} // membership changed; capacity 1, coalescing
	refreshMu sync.Mutex    // serializes refresh, so views are stored in order
	// joined is set once the start's join has brought the cluster's
	// members: until then refresh keeps the empty view, which owns no
	// grain (see start).
	joined atomic.Bool
	// gossipMu orders serf's Leave and the tags' update before it (a
	// Shutdown's) and Shutdown (the node's teardown): serf lets a
	// Shutdown run under a Leave in progress, and memberlist then panics
	// ("leave after shutdown"). A Close during a Shutdown's leave waits
	// for the leave, or the update, to end (serf's BroadcastTimeout at
	// most); gossipDown, set by the teardown, keeps a later Leave from
	// starting.
	gossipMu   sync.Mutex
	gossipDown bool
	// leavers holds, by name, the incarnation of each member that said it
	// leaves while the gossip still had it alive (see viewOf); under
	// refreshMu.
	leavers map[string]string
	// failedSince holds, by start (peerKey), each member the gossip has
	// failed (see holdFailed); under refreshMu.
	failedSince map[string]*failedStart
	// majority is the split-brain vote (Config.KeepMajority; nil without
	// it), and recheck the timer that refreshes the view when the next
	// failed member it holds is due to be downed; both under refreshMu.
	majority *majority
	recheck  *time.Timer
	// tags are the node's serf tags, without tagFenced, saying it is not
	// leaving; fenceChanged wakes advertiseFence (capacity 1, coalescing).
	// tagsMu orders the SetTags of advertiseFence and of a Shutdown's
	// leave, so that the fence's cannot undo the leave's (see
	// advertiseLeave).
	tags         map[string]string
	tagsMu       sync.Mutex
	fenceChanged chan struct{}
	// refusedStrangers is set when the fenced node refused the gossip of
	// members it never saw, and cleared by advertiseFence once it is no
	// longer fenced and has exchanged member lists (see syncAfterFence).
	refusedStrangers atomic.Bool
	viewMu           sync.Mutex    // guards viewNext
	viewNext         chan struct{} // closed when the view is next replaced; made by the first to wait (see awaitView)
	stop             chan struct{} // closed by teardown: ends the loops
	// gaveUp is the last view in which a forwarded message waited for this
	// node to own its grain and gave up (see checkForwardedOwner).
	gaveUp atomic.Pointer[placement]
	// forwards queues the one-way messages this node forwards, by owner.
	forwards forwardQueues
	// maxOneWays is Config.MaxQueuedOneWay, math.MaxInt32 for no bound;
	// overflow counts what it turned away (see admitOneWay).
	maxOneWays int32
	// outgoing and incoming are Config's interceptors, chained; nil for
	// none. invokeNext and sendNext are what outgoing sends a client's
	// call or message on to (see invokeVia, Send), made once so that a
	// call through the interceptors does not allocate a closure for them.
	outgoing   OutgoingInterceptor
	incoming   IncomingInterceptor
	invokeNext Invoker
	sendNext   Invoker
	overflow   lineASecond
	// kept counts the passivations held back by a failed commit (see
	// keptIdle); crowded the trims that found too few idle grains to
	// bring the node under Config.MaxActivations, or in proportion under
	// MaxHeapBytes (see crowdedNode).
	kept    lineASecond
	crowded lineASecond
	// full counts the activations refused past Config.ActivationLimit
	// (see activationsFull), for the log; refusedActivations for Stats.
	full               lineASecond
	refusedActivations atomic.Uint64
	// answerRoom is how many bytes the node's answers to starting nodes'
	// queryHeld may take (see holdAnswer.encode).
	answerRoom int
	// heap reads the live heap for Config.MaxHeapBytes, nil without it;
	// heapPassivations counts the grains it had the node ask to
	// passivate, for Stats, and shedding the looks that asked, for the
	// log (see activations.shed).
	heap             *heapWatch
	heapPassivations atomic.Uint64
	shedding         lineASecond
	// drops counts the one-way messages from peers it could not deliver;
	// laned those waiting in the streams' lanes, by grain.
	drops dropLog
	laned lanedOneWays
	// dropped counts the one-way messages from peers it dropped, for
	// Stats: for a full mailbox (dropOverflow), or a full forward queue,
	// or undeliverable (dropOneWays); refused the calls and messages its
	// grains turned away with ErrMailboxFull (callsFull, refusedSend).
	dropped atomic.Uint64
	refused atomic.Uint64
	// life ends when teardown begins. Work that outlives the call that
	// started it, such as a commit after a call, ends with it: what an
	// abrupt Close abandons is what a crash would.
	life    context.Context
	endLife context.CancelFunc
	loops   sync.WaitGroup

	mu           sync.Mutex
	shuttingDown bool
	stopErr      error // why the node stopped by itself (see Err)
	teardownOnce sync.Once
	done         chan struct{}
}

// Start starts a node: it opens the transport, joins the gossip (through
// cfg.Seeds, if any) and returns once the node knows the cluster's members
// and they know it under its name (see Config.NodeName for a node that
// restarts under its old name). Until then it owns no grain: the calls
// that peers which know it already send it are answered "not owner", and
// placed again. ctx bounds the start; the node itself lives until
// Shutdown or Close.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	n := &Node{
		cfg:          cfg,
		name:         cfg.NodeName,
		incarnation:  randomHex(incarnationBytes),
		log:          cfg.Logger.With("node", cfg.NodeName),
		kinds:        make(map[string]*hostedKind, len(cfg.Kinds)),
		calls:        newGate(),
		movedAll:     make(chan struct{}),
		changed:      make(chan struct{}, 1),
		fenceChanged: make(chan struct{}, 1),
		stop:         make(chan struct{}),
		done:         make(chan struct{}),
		maxOneWays:   math.MaxInt32,
	}
	if cfg.MaxQueuedOneWay >= 0 {
		n.maxOneWays = int32(min(cfg.MaxQueuedOneWay, math.MaxInt32))
	}
	n.chainInterceptors(&cfg)
	n.life, n.endLife = context.WithCancel(context.Background())
	for _, k := range cfg.Kinds {
		n.kinds[k.Name] = newHostedKind(n, k)
		if k.StatelessWorkers > 0 {
			n.workerKinds = append(n.workerKinds, k.Name)
		}
	}
	n.handoffs = newHandoffs(n)
	n.clientID = cfg.ClientID
	n.deadlines = newDeadlines(cfg.DefaultCallTimeout)
	n.failedGrace, n.leaverGrace = cmp.Or(cfg.failedGrace, defaultFailedGrace), newLeaverGrace(&cfg)
	if cfg.KeepMajority {
		mc := cfg.memberlistConfig()
		n.majority = newMajority(cfg.DownAfter, func(members int) time.Duration { return defaultDownAfter(mc, members) })
	}
	n.store = cfg.Store
	if n.store == nil {
		n.store, n.ownStore = memstore.New(), true
	}
	n.acts = newActivations(n)
	n.reminders = n.newReminders()
	n.view.Store(newPlacement(nil))
	n.system = runtime.NewSystem(runtime.Config{
		Logger: n.log,
		Supervisor: runtime.NewOneForOne(runtime.StrategyConfig{
			Decider:     func(*runtime.Failure) runtime.Directive { return runtime.Restart },
			MaxRestarts: cfg.GrainMaxRestarts,
			Window:      cfg.GrainRestartWindow,
			// The node logs each panic of a grain, naming it (callError,
			// handleOneWay); the runtime's line would say it again with
			// only an actor number.
			QuietFailures: true,
		}),
	})
	if err := n.start(ctx); err != nil {
		n.teardown(ctx)
		return nil, err
	}
	return n, nil
}

// start opens the transport and joins the gossip.
func (n *Node) start(ctx context.Context) error {
	t, err := newTransport(n.name, &n.cfg, n.log, n)
	if err != nil {
		return err
	}
	n.transport = t
	advertised, err := n.grpcAdvertiseAddr()
	if err != nil {
		return err
	}
	t.serve(advertised, n.incarnation)
	tags, err := nodeTags(advertised, n.incarnation, n.cfg.Kinds, n.cfg.KeepMajority, n.cfg.TLS != nil)
	if err != nil {
		return err
	}
	n.tags = tags
	n.events = make(chan serf.Event, n.cfg.EventBuffer)
	n.claim = nameClaim{n: n}
	sc, err := newSerfConfig(&n.cfg, tags, n.events, newSerfLogger(n.log), &n.claim)
	if err != nil {
		return err
	}
	n.answerRoom = answerRoom(sc.QueryResponseSizeLimit, n.name)
	if n.serf, err = serf.Create(sc); err != nil {
		return fmt.Errorf("cluster: start gossip on %s: %w", n.cfg.BindAddr, err)
	}
	// Read once, before anything can change the local node: serf's
	// SetTags rewrites memberlist's record of it (see advertiseFence), so
	// GossipAddr must not read it later.
	ln := n.serf.Memberlist().LocalNode()
	n.gossip = gossipAddr(ln.Addr, ln.Port)
	self := n.gossip
	n.claim.self.Store(&self)
	if n.cfg.MaxHeapBytes > 0 {
		n.heap = newHeapWatch() // before the sweep, which reads it
	}
	n.loops.Add(3)
	go n.drainEvents()
	go n.watchMembership()
	go n.sweep()
	if n.heap != nil {
		n.watchCollections()
	}
	if n.majority != nil {
		n.loops.Add(1)
		go n.advertiseFence()
	}
	if err := n.join(ctx); err != nil {
		return err
	}
	if err := n.checkTransportSecurity(ctx); err != nil {
		// The members reached took this node in: they would place
		// grains on it until they saw it fail. Unless they know its
		// name at another address (see nameClaim): a leave in the name
		// would be taken for that node's.
		if !n.claim.held.Load() {
			if lerr := n.awaitLeave(ctx, n.leave(ctx)); lerr != nil {
				n.log.Warn("cluster: leave the members reached, as the start failed", "err", lerr)
			}
		}
		return err
	}
	if err := n.claim.await(ctx, sc.MemberlistConfig); err != nil {
		return err
	}
	replaced := n.claim.replacedIncarnation()
	t.replaced.Store(&replaced)
	if n.majority != nil {
		// After the claim: a start that comes back under its name before
		// its earlier start is declared failed dials the members only
		// once it holds the name, with the hello that says which start
		// it replaces. Before, a member whose view still had the earlier
		// start took the new start's stream for a stale one (the stream
		// and its view disagreed on the member's address), and closed
		// it: with two members doing so, a crashed member's new start
		// counted no majority, and failed.
		if err := n.joinMajoritySide(ctx); err != nil {
			return err
		}
		n.settleForUnseen()
	}
	// Until now the view stayed empty, whatever serf's events said: a
	// view of this node alone, or of some members only (the join's
	// merge was under way), placed here every grain of the others, and
	// a peer that has this node already sends it their calls. It
	// activated them without waiting for their owners' release (it knew
	// of no other member), from a state their owners had yet to commit:
	// a rolling restart's test lost deposits that FlushManual grains had
	// acknowledged. The empty view answers such calls "not owner", and
	// they are placed again until this view has the cluster.
	n.joined.Store(true)
	n.refresh()
	if every := n.cfg.seedRejoinInterval(); every > 0 {
		n.loops.Add(1)
		go n.rejoinSeeds(every)
	}
	return n.startReminders()
}

// grpcAdvertiseAddr returns the transport address to put in the tags.
func (n *Node) grpcAdvertiseAddr() (string, error) {
	if n.cfg.GRPCAdvertiseAddr != "" {
		return n.cfg.GRPCAdvertiseAddr, nil
	}
	addr := n.transport.addr().(*net.TCPAddr)
	if !addr.IP.IsUnspecified() {
		return addr.String(), nil
	}
	// Listening on every interface: advertise the host the gossip
	// advertises, or the private IP memberlist would pick.
	for _, a := range []string{n.cfg.AdvertiseAddr, n.cfg.BindAddr} {
		if host, _, err := net.SplitHostPort(a); err == nil && host != "" {
			if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
				return net.JoinHostPort(host, strconv.Itoa(addr.Port)), nil
			}
		}
	}
	ip, err := sockaddr.GetPrivateIP()
	if err != nil || ip == "" {
		return "", fmt.Errorf("cluster: cannot tell which address to advertise for the transport; set GRPCAdvertiseAddr (%v)", err)
	}
	return net.JoinHostPort(ip, strconv.Itoa(addr.Port)), nil
}

// join contacts the seeds. Serf's join syncs the full member list, so once
// it returns the node can place grains.
func (n *Node) join(ctx context.Context) error {
	if len(n.cfg.Seeds) == 0 {
		return nil
	}
	joined, err := n.joinThrough(ctx, n.cfg.Seeds)
	if joined == 0 {
		msg := err.Error()
		err = fmt.Errorf("cluster: join the cluster through %v: %w", n.cfg.Seeds, err)
		switch {
		case strings.Contains(msg, "EOF"):
			// All a seed of another cluster does is close the stream:
			// say what the seeds must have.
			err = fmt.Errorf("%w (a seed that closes the stream at once may be of a cluster whose Config.ClusterName is not %q)", err, n.cfg.ClusterName)
		case strings.Contains(msg, "encrypt") || strings.Contains(msg, "decrypt"):
			// Memberlist's words: name the setting.
			err = fmt.Errorf("%w (the seeds' gossip keys and this node's Config.GossipKeys do not match)", err)
		}
		return err
	}
	if err != nil {
		n.log.Warn("cluster: some seeds could not be reached", "seeds", n.cfg.Seeds, "err", err)
	}
	return nil
}

// joinThrough has serf join addrs, and returns how many it reached and
// why it did not reach the others; or ctx's error once ctx ends first.
// Memberlist's join takes no context, and a dial to an address that does
// not answer lasts its TCP timeout: the join's goroutine ends with it.
func (n *Node) joinThrough(ctx context.Context, addrs []string) (int, error) {
	type result struct {
		joined int
		err    error
	}
	ch := make(chan result, 1)
	go func() {
		joined, err := n.serf.Join(addrs, true)
		ch <- result{joined, err}
	}()
	select {
	case r := <-ch:
		return r.joined, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// checkTransportSecurity fails the start of a node whose transport
// members cannot reach, or which cannot reach theirs: the members would
// place on it grains that every call then fails to reach, until it
// stopped. First, by the tags (tagTLS), a transport that disagrees with a
// member's on TLS (members older than the tag are not counted); then, with
// TLS, a certificate that the members' CAs did not sign, or one of theirs
// this node's CAs did not (see checkCertificates).
func (n *Node) checkTransportSecurity(ctx context.Context) error {
	own := n.tags[tagTLS]
	var others []string
	for _, m := range n.serf.Members() {
		if tls, ok := m.Tags[tagTLS]; ok && m.Name != n.name && m.Status == serf.StatusAlive && tls != own {
			others = append(others, m.Name)
		}
	}
	switch {
	case len(others) > 0 && own == "1":
		return fmt.Errorf("cluster: members %v serve their transport in the clear, and this node uses TLS (Config.TLS): every member needs Config.TLS, or none", others)
	case len(others) > 0:
		return fmt.Errorf("cluster: members %v serve their transport with TLS, and this node has none (Config.TLS): every member needs Config.TLS, or none", others)
	case n.cfg.TLS != nil:
		return n.checkCertificates(ctx)
	}
	return nil
}

// checkCertificates shakes hands with the alive members' transports (see
// transport.shakeHands), each handshake checking both certificates, and
// fails the start if members refused the handshake over a certificate and
// none took it: this node's certificate, or its CAs, are not the
// cluster's. The first member that takes the handshake ends the check, so
// that members that are merely slow, or unreachable for a while, hold no
// start up beyond it (nor past DialTimeout); members that refuse where
// another took it are named in the log, as the calls between them and
// this node will fail (see TestAMemberOutsideTheTLSIsRefused).
func (n *Node) checkCertificates(ctx context.Context) error {
	peers := n.alivePeers()
	if len(peers) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.DialTimeout)
	defer cancel() // once a member took the handshake: the others end
	handshakes := make(chan error, len(peers))
	for _, m := range peers {
		go func() {
			if err := n.transport.shakeHands(ctx, m.GRPCAddr); err != nil {
				handshakes <- fmt.Errorf("%s: %w", m.Name, err)
				return
			}
			handshakes <- nil
		}()
	}
	var refusals []string
	for range peers {
		err := <-handshakes
		switch {
		case err == nil:
			if len(refusals) > 0 {
				n.log.Warn("cluster: members refused this node's TLS handshake over a certificate, where another took it: calls between them fail", "refusals", refusals)
			}
			return nil
		case refusedCertificate(err):
			refusals = append(refusals, err.Error())
		}
	}
	if len(refusals) == 0 {
		return nil // none answered in time: the calls will say why
	}
	slices.Sort(refusals)
	return fmt.Errorf("cluster: every member that answered this node's TLS handshake refused it over a certificate (%s): the members' CAs must sign this node's certificate, and this node's CAs theirs (Config.TLS)",
		strings.Join(refusals, "; "))
}

// joinMajoritySide checks, for a node joining with KeepMajority, that it
// joined the majority's side of any partition (see awaitMajoritySide and
// reachMajority). If not, it fails with ErrNoQuorum: the members it
// reached took it in, and would count it, once failed, against their
// majority until the gossip forgets it, so it leaves them first.
func (n *Node) joinMajoritySide(ctx context.Context) error {
	if len(n.cfg.Seeds) == 0 {
		return nil
	}
	if err := n.awaitMajoritySide(ctx); err != nil {
		return err
	}
	if err := n.reachMajority(ctx); err != nil {
		if lerr := n.awaitLeave(ctx, n.leave(ctx)); lerr != nil {
			n.log.Warn("cluster: leave the members reached, as the start failed", "err", lerr)
		}
		return err
	}
	return nil
}

// drainEvents empties serf's event channel, which must never block serf,
// signals watchMembership without waiting, and answers the starting
// nodes' queries (see queryHeld).
func (n *Node) drainEvents() {
	defer n.loops.Done()
	for {
		select {
		case e := <-n.events:
			switch e := e.(type) {
			case serf.MemberEvent:
				n.membershipChanged()
			case *serf.Query:
				if e.Name == queryHeld {
					n.answerHeld(e)
				}
			}
		case <-n.stop:
			return
		}
	}
}

// watchMembership rebuilds placement after membership changes and moves the
// grains this node no longer owns, and their reminders. It never waits for
// the store: the reminders are listed again on the scheduler's goroutine,
// and tried again there with backoff while listing fails (see
// refreshReminders), so a slow or hung store cannot hold back the view.
func (n *Node) watchMembership() {
	defer n.loops.Done()
	for {
		select {
		case <-n.changed:
			n.refresh()
			n.refreshReminders()
		case <-n.stop:
			return
		}
	}
}

// refresh rebuilds placement from serf's member list, closes the streams
// to members that are gone and deactivates the grains this node no longer
// owns.
//
// Ownership moves are not atomic across the cluster: between the moment a
// new owner's view changes and the moment this node's view does (one gossip
// round, usually milliseconds), a grain can be called on both nodes. The
// new owner's activation of a FlushManual grain that moved by a join or a
// graceful leave waits, before it loads the state and runs OnActivate, until the
// old owner says it has deactivated the grain and committed it (see
// handoffs), so that the old owner's commit does not make it stale; but
// that wait is bounded, and a failure moves grains without one. State
// writes must therefore be guarded (storage uses ETags), not assumed
// exclusive.
func (n *Node) refresh() {
	if n.serf == nil || !n.joined.Load() {
		return // not a member yet: see start
	}
	n.refreshMu.Lock()
	defer n.refreshMu.Unlock()
	var members []Member
	for _, sm := range n.serf.Members() {
		if m, ok := memberFromSerf(sm); ok {
			members = append(members, m)
		}
	}
	n.replaceView(n.viewOf(n.holdFailed(members)))
}

// holdFailed keeps alive in members, for up to n.failedGrace after refresh
// first found it failed, a member the gossip has failed whose start still
// answers this node: a stream with the start is open and has not said it
// leaves, or a dial to it, made when refresh first found it failed after
// the view had it alive, is under way. It asks for a refresh when the
// dial ends and when that time is up.
//
// The gossip can fail a member that runs: memberlist keeps one record per
// name, and a member that missed another's restart keeps the old start
// alive, then declares it dead with the old start's incarnation number;
// the new start's record, whose number has not passed it yet, takes the
// death until the new start refutes it (400 ms in a soak). Its peers
// placed its grains on themselves meanwhile, beside it, and a FlushManual
// grain lost what it had acknowledged at its next commit. A stream that
// is open, or a dial that the start answers (its hello's answer names
// it, see transport.open), says it runs. A start that crashed has ended
// its streams as its process went, and refuses the dial: it is failed at
// once. One that hangs, or is cut off by a partition, is failed
// n.failedGrace later than the gossip says, the safe side: calls to it
// wait, none runs beside it. A leaver's death is the gossip's to tell
// (viewOf). n.refreshMu is held.
func (n *Node) holdFailed(members []Member) []Member {
	now := time.Now()
	since := make(map[string]*failedStart)
	for i := range members {
		m := &members[i]
		if m.Status != StatusFailed || m.Name == n.name || m.leavingTag {
			continue
		}
		key := peerKey(m.Name, m.incarnation)
		f, seen := n.failedSince[key]
		if !seen {
			f = &failedStart{first: now}
			if !n.transport.streamWith(m) && n.wasAlive(m) {
				f.probing.Store(true)
				n.probe(*m, f)
			}
		}
		since[key] = f
		// probing is read before the streams: a dial that ends in
		// between has its stream open by then (probe clears the flag
		// after transport.conn returned it).
		if now.Sub(f.first) < n.failedGrace && (f.probing.Load() || n.transport.streamWith(m)) {
			m.Status = StatusAlive
			if !seen {
				n.after(n.failedGrace, (*Node).membershipChanged)
			}
		}
	}
	n.failedSince = since
	return members
}

// wasAlive reports whether the node's view has member m's start alive:
// holdFailed dials a start the gossip has just failed, not one failed
// before this node knew it (a joiner learns of members that failed long
// ago, whose hosts may be gone, and would hold each for the dial's time).
func (n *Node) wasAlive(m *Member) bool {
	was, ok := n.view.Load().member(m.Name)
	return ok && was.Status == StatusAlive && was.incarnation == m.incarnation
}

// failedStart is what holdFailed knows of a member's start that the
// gossip has failed.
type failedStart struct {
	first   time.Time   // when refresh first found it failed
	probing atomic.Bool // a dial to the start is under way (see probe)
}

// probe dials member m's start, which the gossip has just failed and this
// node has no stream with, clears f.probing once the dial ends, and asks
// for a refresh: a start that answers keeps the stream, and holdFailed
// holds it alive. The dial waits at most n.failedGrace, holdFailed's
// bound.
func (n *Node) probe(m Member, f *failedStart) {
	done := func() {
		f.probing.Store(false)
		n.membershipChanged()
	}
	if !n.transport.goAlong(func() {
		defer done()
		ctx, cancel := context.WithTimeout(n.transport.ctx, n.failedGrace)
		defer cancel()
		if _, err := n.transport.conn(ctx, &m); err != nil {
			n.log.Debug("cluster: a member the gossip failed does not answer", "member", m.Name, "err", err)
		}
	}) {
		done()
	}
}

// viewOf returns the placement of members, the gossip's list, in which
// the members that said on a stream that they leave, or refused one as
// closing, are leaving, whatever the gossip says yet: they own nothing.
// A leaver says so on its streams before it leaves the gossip, and a
// member may hear of the leave only seconds later (one that joined as the
// other left misses the leave's broadcast, and learns of it from a
// push-pull or the failure detector); meanwhile the leaver forwards what
// still reaches it to the grains' next owners, which took the messages
// for someone else's and dropped them. Such a member stays leaving in the
// views that follow for as long as the gossip has its start alive (see
// Node.leavers), after its streams have ended. This node is leaving too
// in its own view once its Shutdown began. n.refreshMu is held.
func (n *Node) viewOf(members []Member) *placement {
	var leavers map[string]string
	for i := range members {
		m := &members[i]
		if m.Status == StatusFailed && m.Name != n.name {
			// The gossip reports a graceful leaver failed when
			// memberlist's notice that it left arrives before serf's
			// leave intent (see dropFailed). The hand-off still waits
			// for its release (see leaves), as it commits its grains.
			// Its tags say it before its gossip leave begins, and its
			// streams before that.
			m.saidLeaving = m.leavingTag || n.transport.leaves(m)
		}
		if m.Status != StatusAlive {
			continue
		}
		if m.Name == n.name {
			// This node leaves too once its Shutdown began, before it says
			// so and before its gossip has it leaving: a peer's leave must
			// not move a grain here meanwhile.
			if n.transport.leaving.Load() {
				m.Status = StatusLeaving
			}
			continue
		}
		inc, known := n.leavers[m.Name]
		if known && inc != "" && inc == m.incarnation || n.transport.leaves(m) {
			m.Status = StatusLeaving
			if leavers == nil {
				leavers = make(map[string]string)
			}
			leavers[m.Name] = m.incarnation
		}
	}
	n.leavers = leavers
	return newPlacement(members)
}

// replaceView makes p the node's view and acts on what changed since the
// one it replaces (see refresh). n.refreshMu is held.
func (n *Node) replaceView(p *placement) {
	old := n.view.Load()
	if n.majority != nil {
		p = n.judge(old, p)
	}
	p.ownWorkers(n.name, n.workerKinds)
	// Before p is seen: from then on a stream from a start that p
	// replaced is refused (see retiredIncarnations).
	n.retiredIDs.update(old, p)
	// Stored with the waits for the releases of p's members (see
	// handoffs).
	n.handoffs.storeView(p)
	if p.minority() != old.minority() {
		// After the store: advertiseFence reads the view.
		select {
		case n.fenceChanged <- struct{}{}:
		default: // advertiseFence has yet to read the view, and will see p
		}
	}
	n.viewMu.Lock()
	if n.viewNext != nil {
		close(n.viewNext)
		n.viewNext = nil
	}
	n.viewMu.Unlock()
	n.dropFailed(old, p)
	n.dropMoved(old, p)
	n.byeToLeavers(old, p)
	n.relistAfterMoves(old, p)
	n.logChanges(old, p)
	if moved := n.acts.sweepStrays(); moved > 0 {
		n.log.Debug("cluster: moving grains after a membership change", "count", moved)
	}
}

// judge applies the node's split-brain vote to p, the view about to
// replace old (see majority), logs a change of side, and arranges a
// refresh for when the next failed member the vote holds is due to be
// downed. n.refreshMu is held.
func (n *Node) judge(old, p *placement) *placement {
	v := n.majority.vote(p.members, time.Now(), n.transport.saidLeaving)
	switch {
	case n.transport.leaving.Load():
		// A node that leaves owns nothing either way: its side of a
		// vote is no news (the last members of a cluster that shut
		// down one after the other, beside a failed one, would each
		// warn).
	case v.fenced && !v.settling && (!old.fenced || old.settling):
		n.log.Warn("cluster: this node sees no majority of the cluster's members: it serves no grain until it does (Config.KeepMajority)",
			"failed", v.against)
	case v.regained && v.settling:
		n.log.Info("cluster: this node sees a majority of the cluster's members again, and serves once the members it sees failed have had DownAfter to see it too, unless they come back first",
			"failed", v.against, "in", v.recheck)
	case !v.fenced && old.fenced:
		n.log.Info("cluster: this node sees a majority of the cluster's members again")
	}
	if v.recheck > 0 && !isDone(n.stop) {
		if n.recheck == nil {
			n.recheck = time.AfterFunc(v.recheck, n.membershipChanged)
		} else {
			n.recheck.Reset(v.recheck)
		}
	}
	return p.judged(v)
}

// membershipChanged asks the membership watcher for a refresh of the view,
// without waiting.
func (n *Node) membershipChanged() {
	select {
	case n.changed <- struct{}{}:
	default: // a refresh is pending and will see this change too
	}
}

// awaitView returns the node's view and a channel closed once a newer one
// replaces it.
func (n *Node) awaitView() (*placement, <-chan struct{}) {
	n.viewMu.Lock()
	defer n.viewMu.Unlock()
	if n.viewNext == nil {
		n.viewNext = make(chan struct{})
	}
	return n.view.Load(), n.viewNext
}

// dropFailed closes the streams to members that failed or were forgotten
// since the old view, so that calls in flight to them fail now and are
// retried, rather than wait for their deadline. Members that leave
// gracefully keep their streams: they finish the calls they are serving
// and end the streams with this node (see byeToLeavers).
//
// A member seen failed may be leaving gracefully all the same: serf marks
// a leaver failed when memberlist's notice that it left arrives before
// the leave intent, and the intent can then take a push-pull round (2 s
// in the GossipLocal profile, 30 s in LAN) to arrive. Cutting its streams
// would drop what is on its way through them, both ways. A leaver says it
// leaves on its streams before it leaves the gossip (see conn.sayLeaving),
// so a member that did is treated as a leaver (see keepLeaver). One that
// did not may have said it in a frame still on its way on a loaded
// machine: its streams are cut only if it has not said it after
// n.failedGrace either.
func (n *Node) dropFailed(old, p *placement) {
	for _, was := range old.members {
		if was.Name == n.name || was.Status == StatusFailed {
			continue
		}
		st, known := p.status(was.Name)
		switch {
		case known && st != StatusFailed:
		case known && n.transport.saidLeaving(was.Name):
			n.keepLeaver(was.Name)
		case known:
			name := was.Name
			n.after(n.failedGrace, func(n *Node) { n.recheckFailed(name) })
		default:
			n.transport.dropPeer(was.Name, was.GRPCAddr)
		}
	}
}

// dropMoved closes the streams to the earlier incarnation of each member
// that restarted under its name at a new address since the old view (see
// nameClaim). The old process may hang with its sockets open rather than
// be gone, and its streams, still under the member's name, would take the
// new incarnation's calls. Not on a failure alone: the member may come
// back at the same address.
func (n *Node) dropMoved(old, p *placement) {
	for i := range p.members {
		m := &p.members[i]
		if was, ok := old.member(m.Name); ok && m.Name != n.name && was.GRPCAddr != m.GRPCAddr {
			n.transport.dropPeer(m.Name, was.GRPCAddr)
		}
	}
}

// dropStreams closes the streams to the named member at its address in
// the node's view, or to every address if the view no longer knows it.
func (n *Node) dropStreams(name string) {
	addr, _ := n.memberAddr(name)
	n.transport.dropPeer(name, addr)
}

// keepLeaver says bye on the streams to a member seen failed that said it
// is leaving, as to a leaver, so that they end with its farewell; they are
// cut only if it is still failed after n.leaverGrace.
func (n *Node) keepLeaver(name string) {
	var inc string
	if m, ok := n.view.Load().member(name); ok {
		inc = m.incarnation
	}
	n.transport.byeTo(name, inc)
	n.after(n.leaverGrace, func(n *Node) { n.dropIfFailed(name) })
}

// after runs f with the node once d has passed, unless the node has been
// collected by then. The timer holds the node weakly: one armed for long
// (a leaver's grace, DeactivateTimeout and more) kept a closed node, and
// all it held, until it fired (TestAClosedNodeIsCollected). f must reach
// the node through its argument only.
func (n *Node) after(d time.Duration, f func(*Node)) {
	w := weak.Make(n)
	time.AfterFunc(d, func() {
		if n := w.Value(); n != nil {
			f(n)
		}
	})
}

// recheckFailed acts on a member seen failed n.failedGrace ago: if it is
// still failed and said it is leaving since, it is kept as a leaver; if it
// is still failed, or forgotten, its streams are closed.
func (n *Node) recheckFailed(name string) {
	if isDone(n.stop) {
		return
	}
	switch st, ok := n.view.Load().status(name); {
	case ok && st != StatusFailed:
	case ok && n.transport.saidLeaving(name):
		n.keepLeaver(name)
	default:
		n.dropStreams(name)
	}
}

// defaultFailedGrace is how long a member seen failed that has not said it
// is leaving keeps its streams (see dropFailed): a frame on a stream was
// seen slower than the gossip by tens of milliseconds on a loaded machine.
// Calls in flight to a member that stopped answering with its sockets
// open wait that much longer before they fail and are retried.
const defaultFailedGrace = time.Second

// newLeaverGrace returns how long a member seen failed that said it is
// leaving keeps its streams: a leaver deactivates its grains, each within
// DeactivateTimeout, as its leave goes round the gossip, and then ends its
// streams within its farewell's patience; twice that patience leaves a
// margin.
func newLeaverGrace(cfg *Config) time.Duration {
	return cmp.Or(cfg.leaverGrace, cfg.DeactivateTimeout+2*cmp.Or(cfg.farewellPatience, defaultFarewellPatience))
}

// dropIfFailed closes the streams to the named member if the node's view
// has it failed, or no longer knows it.
func (n *Node) dropIfFailed(name string) {
	if isDone(n.stop) {
		return
	}
	if st, ok := n.view.Load().status(name); !ok || st == StatusFailed {
		n.dropStreams(name)
	}
}

// byeToLeavers says bye on the streams to the members that began to leave
// gracefully since the old view, or left: this node places nothing on
// them any more, and their streams can end without losing what is on its
// way (see transport.farewell).
func (n *Node) byeToLeavers(old, p *placement) {
	for _, m := range p.members {
		if m.Name == n.name || m.Status != StatusLeaving && m.Status != StatusLeft {
			continue
		}
		if was, ok := old.status(m.Name); !ok || was != m.Status {
			n.transport.byeTo(m.Name, m.incarnation)
		}
	}
}

// departed implements requestHandler: it reports whether this node's view
// has the member (at addr, unless addr is "", and in its start
// incarnation) leaving or left, or failed after it said it leaves (see
// keepLeaver). A member restarted with fixed ports comes back at its old
// start's address while the view may still have that start left: the new
// start's streams are its own.
func (n *Node) departed(name, addr, incarnation string) bool {
	m, ok := n.view.Load().member(name)
	return ok && (m.Status == StatusLeaving || m.Status == StatusLeft || m.Status == StatusFailed && m.saidLeaving) && (addr == "" || m.GRPCAddr == addr) && (incarnation == "" || m.incarnation == "" || m.incarnation == incarnation)
}

// memberAddr implements requestHandler.
func (n *Node) memberAddr(name string) (string, bool) {
	if m, ok := n.view.Load().member(name); ok {
		return m.GRPCAddr, true
	}
	return "", false
}

// logChanges logs members that joined or changed status between two views.
func (n *Node) logChanges(old, p *placement) {
	before := make(map[string]MemberStatus, len(old.members))
	for _, m := range old.members {
		before[m.Name] = m.Status
	}
	for _, m := range p.members {
		if st, ok := before[m.Name]; !ok || st != m.Status {
			n.log.Info("cluster: member status", "member", m.Name, "status", m.Status.String())
		}
	}
}

// sweep passivates idle activations, clears failed ones and logs the
// one-way messages dropped, the passivations held back and the trims that
// fell short since the last line about them (see lineASecond and
// dropLog), every PassivationInterval: one ticker per node, not one timer
// per grain. It trims the activations when there are more than
// Config.MaxActivations (see activations.trim): at each tick, and between
// them when an activation passes the limit; and with Config.MaxHeapBytes,
// after each garbage collection, when the live heap is over it (see
// activations.shed).
func (n *Node) sweep() {
	defer n.loops.Done()
	tick := time.NewTicker(n.cfg.PassivationInterval)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			n.acts.sweepFailed()
			n.acts.sweepStrays()
			n.acts.passivate()
			if !n.cfg.manualTrims {
				n.acts.trim()
			}
			n.logOverflow()
			n.logKept()
			n.logCrowded()
			n.logShedding()
			n.logFull()
			n.logDrops()
		case <-n.acts.trimNow:
			if n.cfg.manualTrims {
				break
			}
			if !n.paced(func() { n.acts.trim() }) {
				return
			}
		case <-n.acts.heapNow:
			if !n.paced(func() { n.acts.shed(n.liveHeap()) }) {
				return
			}
		case <-n.stop:
			return
		}
	}
}

// paced runs trim, which looks at every activation, and then waits nine
// times as long as it took, so that trims take a tenth of a core at most
// while activations keep coming past a limit, or collections keep finding
// the heap over Config.MaxHeapBytes. It reports false if the node stopped
// meanwhile.
func (n *Node) paced(trim func()) bool {
	began := time.Now()
	trim()
	select {
	case <-time.After(9 * time.Since(began)):
		return true
	case <-n.stop:
		return false
	}
}

// liveHeap returns the bytes the last garbage collection marked live, for
// Config.MaxHeapBytes (see heapWatch), or what a test says they are. The
// sweep alone calls it.
func (n *Node) liveHeap() uint64 {
	if n.cfg.liveHeap != nil {
		return n.cfg.liveHeap()
	}
	return n.heap.live()
}

// Name returns the node's name.
func (n *Node) Name() string { return n.name }

// Members returns every member this node knows of, alive or not, sorted by
// name.
func (n *Node) Members() []Member {
	p := n.view.Load()
	out := make([]Member, len(p.members))
	for i, m := range p.members {
		m.Kinds = append([]string(nil), m.Kinds...)
		out[i] = m
	}
	return out
}

// Owner returns the member that owns the grain (kind, identity) in this
// node's view, and false if no alive member hosts kind, or if the node is
// fenced (see Config.KeepMajority). With KeepMajority, a failed member
// that the node has not downed yet still owns its grains, and may be
// returned. The grains of a kind of stateless workers that the node hosts
// (Kind.StatelessWorkers) are its own.
func (n *Node) Owner(kind, identity string) (Member, bool) {
	m, ok := n.view.Load().owner(kind, identity)
	if !ok {
		return Member{}, false
	}
	owner := *m
	owner.Kinds = append([]string(nil), m.Kinds...)
	return owner, true
}

// Fenced reports whether the node owns no grain for want of a majority
// of the members it knows (Config.KeepMajority), or for DownAfter after it
// regained one while members it did not down are failed (they may serve
// its grains until they see that they lost theirs), or after it started
// while its seeds had members failed: while it does, calls made
// through it fail with ErrNoQuorum, and it takes no call for a grain.
// Always false without KeepMajority. A readiness probe can ask it, to take
// the node out of a load balancer's rotation while it is fenced.
func (n *Node) Fenced() bool { return n.view.Load().fenced }

// GossipAddr returns the address the node's gossip listens on, for other
// nodes' Seeds.
func (n *Node) GossipAddr() string { return n.gossip }

// GRPCAddr returns the address the node's transport listens on.
func (n *Node) GRPCAddr() string { return n.transport.addr().String() }

// Done returns a channel that is closed when the node has stopped: after
// Shutdown or Close, or by itself (see Err).
func (n *Node) Done() <-chan struct{} { return n.done }

// Shutdown stops the node gracefully: it stops firing reminders; says on its
// streams, and on one to each member that may take its grains, that it leaves,
// then in its gossip tags, and leaves the gossip, so that the other members
// place its grains elsewhere; meanwhile, without waiting for the gossip's
// leave, it answers the calls that still reach its grains "not owner" (their
// callers place them again), deactivates the grains, running their
// OnDeactivate hooks and committing their buffered state, and waits for the
// calls it is serving. Once the leave has gone round the gossip, it passes on
// the one-way messages that still reach it until every peer has stopped
// sending to it (at most two seconds, see farewell); ends its streams without
// dropping what is on them, and takes no new one; then stops the transport (a
// stream to a peer that reads nothing, a hung process, is cut after a second)
// and the actors. If ctx ends first, the rest is done as by Close and ctx's
// error is returned. If the gossip's leave fails (a Close stopped the gossip
// under it, say), the grains are deactivated and committed all the same, the
// rest is done as by Close, and the leave's error is returned: members that
// had not heard of the leave see the node fail. Calling it again, or after
// Close, waits for the node to stop.
func (n *Node) Shutdown(ctx context.Context) error {
	n.mu.Lock()
	already := n.shuttingDown
	n.shuttingDown = true
	n.mu.Unlock()
	if already {
		select {
		case <-n.done:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	n.transport.leaving.Store(true)
	// The grains are leaving: no more firings here. Their OnDeactivate
	// hooks may still register and unregister reminders, for the grains'
	// next owners, so the scheduler is closed only in teardown. The store
	// writes after firings get until ctx ends.
	n.reminders.Stop(ctx)
	// Our own view now places nothing here: this starts deactivating
	// every grain, and calls still arriving are answered "not owner".
	// Before the others hear of the leave, so that a grain's next owner,
	// which activates it as soon as it hears, does not find this node
	// still taking its calls.
	n.refresh()
	n.sayLeaving()
	// The gossip's leave waits LeavePropagateDelay (1 s in the LAN
	// profile); the grains do not wait for it: the members that may own
	// them next heard of the leave on their streams, and a caller whose
	// view lags, calling here, is answered "not owner" and hears of the
	// leave on the stream it called on. A grain's next owner activates it
	// once this node has released it (see handoffs): the sooner the
	// grains go, the shorter their callers wait.
	left := n.leave(ctx)
	err := n.calls.close(ctx)
	if err == nil {
		err = n.acts.deactivateAll(ctx)
	}
	if err == nil {
		// Every grain is committed and gone: the members that took them
		// may load their state (see handoffs).
		close(n.movedAll)
	}
	// The farewell waits for the peers' byes, which the gossip's leave
	// brings to those that have no stream to this node.
	if lerr := n.awaitLeave(ctx, left); err == nil {
		err = lerr
	}
	if err == nil {
		err = n.farewell(ctx)
	}
	n.teardown(ctx)
	return err
}

// sayLeaving tells the other members that this node is leaving, on a
// stream, before the gossip's leave reaches them: on every open stream,
// and on one dialed to each alive member that hosts a kind this node
// hosts and has no stream to it (see transport.open). Those members may
// own this node's grains next, and place them on themselves as soon as
// they hear (see viewOf). One that had not heard would answer "not owner"
// to the calls that others, which heard, place on it, until the gossip
// told it: BenchmarkCallsDuringALeave's callers retried such calls, with
// backoff, for up to 0.64 s in the LAN profile. The dials do not hold up
// the Shutdown.
func (n *Node) sayLeaving() {
	n.transport.sayLeavingOnAll()
	p := n.view.Load()
	for i := range p.members {
		m := p.members[i]
		if m.Name == n.name || m.Status != StatusAlive || !n.sharesKind(&m) {
			continue
		}
		n.transport.goAlong(func() {
			ctx, cancel := context.WithTimeout(n.transport.ctx, n.cfg.DialTimeout)
			defer cancel()
			// A stream open already said it; a new one says it in its
			// hello.
			if _, err := n.transport.conn(ctx, &m); err != nil {
				n.log.Debug("cluster: could not tell a member that this node leaves", "member", m.Name, "err", err)
			}
		})
	}
}

// sharesKind reports whether member m hosts a kind this node hosts.
func (n *Node) sharesKind(m *Member) bool {
	for _, k := range m.Kinds {
		if n.kinds[k] != nil {
			return true
		}
	}
	return false
}

// defaultFarewellPatience bounds how long a leaving node waits for its
// peers to say bye on their streams and for the streams to end (see
// farewell): longer than a leave takes to reach the members
// (LeavePropagateDelay is 1 s in the LAN and WAN gossip profiles).
const defaultFarewellPatience = 2 * time.Second

// farewell ends the node's streams once its peers stopped sending on them
// and what it still held is passed on (see transport.farewell), within
// defaultFarewellPatience. A peer that does not say bye in time (its view
// still has this node alive, or it is older than the bye) is left as
// before: its streams close with the node, and messages it sends later
// are lost; that is logged, not returned. It returns ctx's error if ctx
// ends first.
func (n *Node) farewell(ctx context.Context) error {
	patience := cmp.Or(n.cfg.farewellPatience, defaultFarewellPatience)
	wait, cancel := context.WithTimeout(ctx, patience)
	defer cancel()
	if n.transport.farewell(wait) {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	n.log.Warn("cluster: peers did not end their streams in time; closing them", "waited", patience)
	return nil
}

// leave starts announcing the node's departure to the gossip, and
// returns the channel that gets the outcome once the leave has been
// gossiped (see awaitLeave). The leave goes on if ctx ends: a Close under
// it waits for it (see gossipMu).
func (n *Node) leave(ctx context.Context) <-chan error {
	left := make(chan error, 1)
	go func() {
		n.gossipMu.Lock()
		if !n.gossipDown {
			n.advertiseLeave()
		}
		n.gossipMu.Unlock()
		if n.cfg.leavingGossip != nil {
			n.cfg.leavingGossip()
		}
		n.gossipMu.Lock()
		defer n.gossipMu.Unlock()
		if n.gossipDown {
			left <- newError(codes.Unavailable, ErrNodeClosed, "cluster: node %s closed before it left the gossip", n.name)
			return
		}
		if err := n.serf.Leave(); err != nil {
			left <- fmt.Errorf("cluster: leave the cluster: %w", err)
			return
		}
		left <- nil
	}()
	return left
}

// advertiseLeave says in the node's tags that it is leaving (tagLeaving),
// before its gossip leave: the members take serf's word that it leaves
// only with its tags' (see memberFromSerf). Serf's SetTags waits until the
// update has gone round (a few gossip rounds, BroadcastTimeout at most), so
// that the leave's broadcast follows it; the grains do not wait for
// either. If it times out, the update is queued all the same, and the
// leave goes on: a member that hears of the leave before the tags keeps
// placing calls here, answered "not owner", until they come. n.gossipMu
// is held, so that serf is not shut down under it.
func (n *Node) advertiseLeave() {
	n.tagsMu.Lock()
	defer n.tagsMu.Unlock()
	tags := leavingTags(n.tags)
	if n.view.Load().minority() {
		tags = fencedTags(tags)
	}
	if err := n.serf.SetTags(tags); err != nil {
		n.log.Debug("cluster: advertise the leave in the node's tags", "err", err)
	}
}

// awaitLeave waits for the outcome of the leave begun by leave, or for ctx.
func (n *Node) awaitLeave(ctx context.Context, left <-chan error) error {
	select {
	case err := <-left:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops the node at once, without leaving the gossip first: the
// other members see it fail. Calls it is serving are cancelled and grains
// are stopped without their OnDeactivate hooks and without committing their
// buffered state changes, as in a crash. A grain stops once its method
// returns; Close waits DeactivateTimeout at most for that, and leaves
// running, with a line in the log, a method that ignores its context. It
// is idempotent.
func (n *Node) Close() error {
	n.mu.Lock()
	n.shuttingDown = true
	n.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // an ended context: nothing waits
	n.teardown(ctx)
	return nil
}

// teardown stops everything still running; ctx bounds the graceful parts.
func (n *Node) teardown(ctx context.Context) {
	n.teardownOnce.Do(func() {
		n.endLife()
		n.acts.stopTimers(nil)
		// First, so that firings still running end while the grains
		// they deliver to are there.
		n.reminders.Close()
		if n.transport != nil {
			n.transport.close(ctx)
		}
		if n.serf != nil {
			n.gossipMu.Lock()
			n.gossipDown = true
			if err := n.serf.Shutdown(); err != nil {
				n.log.Warn("cluster: gossip shutdown", "err", err)
			}
			n.gossipMu.Unlock()
		}
		close(n.stop)
		n.loops.Wait()
		n.handoffs.close()
		if n.majority != nil {
			n.refreshMu.Lock()
			if n.recheck != nil {
				n.recheck.Stop()
			}
			n.refreshMu.Unlock()
		}
		// With ctx ended (Close, or a Shutdown out of time) the grains'
		// actors stop abruptly at once: a graceful stop first would only
		// start what Close then cuts short.
		if ctx.Err() != nil || n.system.Shutdown(ctx) != nil {
			n.closeSystem()
		}
		if n.ownStore {
			n.store.Close() // a memstore: closing cannot fail
		}
		close(n.done)
	})
	<-n.done
}

// closeSystem stops the grains' actors abruptly, and waits for them to
// end their turns for DeactivateTimeout at most. An actor stops between
// two messages, so a grain whose method ignores its context and never
// returns would hold the node's Close for good, and with it the process
// that closes the node; such grains are left running, with a line in the
// log, as their goroutines cannot be stopped from outside.
func (n *Node) closeSystem() {
	closed := make(chan struct{})
	go func() {
		n.system.Close()
		close(closed)
	}()
	t := time.NewTimer(n.cfg.DeactivateTimeout)
	defer t.Stop()
	select {
	case <-closed:
	case <-t.C:
		n.log.Error("cluster: grains did not end their turn within DeactivateTimeout of the node's close; it returns without them",
			"deactivate_timeout", n.cfg.DeactivateTimeout)
	}
}

// admitCall and finishCall implement requestHandler: they count the calls
// the node serves, so that Shutdown can wait for them.
func (n *Node) admitCall() (gateTicket, bool) { return n.calls.enter() }
func (n *Node) finishCall(t gateTicket)       { n.calls.leave(t) }
