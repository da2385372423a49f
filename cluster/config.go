package cluster

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/protograin/protograin/cluster/state"
	"github.com/protograin/protograin/cluster/storage"
)

// GossipProfile selects the serf/memberlist timings a node gossips with.
type GossipProfile int

const (
	// GossipLAN is memberlist's LAN profile: tuned for a data centre
	// network. It is the default.
	GossipLAN GossipProfile = iota
	// GossipWAN is memberlist's WAN profile, for members spread over
	// high-latency links.
	GossipWAN
	// GossipLocal is a fast profile for one machine: tests, examples and
	// development clusters on loopback. Failures are detected within a few
	// seconds, and the sides of a healed partition find each other within
	// one; do not use it across a real network.
	GossipLocal
)

// String returns the profile's name.
func (p GossipProfile) String() string {
	switch p {
	case GossipLAN:
		return "lan"
	case GossipWAN:
		return "wan"
	case GossipLocal:
		return "local"
	default:
		return fmt.Sprintf("GossipProfile(%d)", int(p))
	}
}

// Config configures a Node. Start it from DefaultConfig and change what you
// need; a zero field takes the default its comment names.
type Config struct {
	// NodeName names this node in the cluster. Two nodes that run at the
	// same time must not share it. A restarted process may reuse its old
	// name (a fixed name, as a StatefulSet's pod name), on new addresses
	// too: if the cluster still knows the name at the old incarnation's
	// addresses, Start waits until the others have declared that one
	// failed (seconds; no wait after a graceful Shutdown) and the name is
	// this node's. Start under the name of a member that is alive fails
	// with ErrNameInUse once a dead incarnation would have been declared
	// failed at the slowest (41 probe intervals in a small cluster: 41 s
	// with GossipLAN, 12.3 s with GossipLocal). An old process that comes back after its
	// successor took the name (a paused VM) stops once a member tells it
	// so, and its Err returns ErrSuperseded. Zero means a generated name,
	// "<hostname>-<8 random hex digits>".
	NodeName string

	// BindAddr is the "host:port" the gossip (serf) listens on, UDP and TCP.
	// Port 0 picks a free port. Zero means "0.0.0.0:7946".
	BindAddr string
	// AdvertiseAddr is the "host:port" other members reach the gossip on,
	// when it differs from BindAddr (NAT, containers). Zero means the bind
	// address, or a private address of this host if that is unspecified.
	AdvertiseAddr string

	// GRPCAddr is the "host:port" the node-to-node gRPC transport listens
	// on. Port 0 picks a free port. Zero means "0.0.0.0:7947".
	GRPCAddr string
	// GRPCAdvertiseAddr is the "host:port" other members dial for the
	// transport. Zero means the listener's address, with an unspecified
	// host replaced by the gossip's advertised IP.
	GRPCAdvertiseAddr string

	// Seeds lists gossip addresses ("host:port") of existing members to
	// join; a host name stands for all its addresses (a headless
	// service's, say). Start fails if none of them can be reached, and
	// the node joins those that are not members again every
	// SeedRejoinInterval. Seeds may include the node's own address, so
	// that nodes started at once from one configuration (a StatefulSet's
	// pods) can each start when none of the others listens yet. Zero
	// means this node starts a new cluster.
	Seeds []string
	// SeedRejoinInterval is how often the node joins the addresses of
	// Seeds that are not members of its cluster, as Start did. Without
	// it, nodes that started at once each joined only what listened at
	// the time, or what their DNS listed then, and could stay apart for
	// good: two clusters, each placing every grain on its own members.
	// With it they find each other within the interval. A join to an
	// address of another cluster (see ClusterName) is refused, as at
	// Start. Zero means the gossip profile's interval: 30 s for GossipLAN
	// and GossipWAN, 1 s for GossipLocal; a negative value, never.
	SeedRejoinInterval time.Duration
	// ClusterName names the cluster the node belongs to, in up to 255
	// bytes: the gossip of a member with another name is dropped, both
	// ways (memberlist's label), and so is a transport stream between
	// nodes of different names. Without it, two clusters on one network
	// merge when a member of one takes over the address of a failed member
	// of the other (a reused pod IP, say), as the other's members keep
	// trying to reach their failed member there for a day (serf's
	// reconnects), and a join to it is a join to all of them. Every member
	// of a cluster must have the same name: a member with another one
	// does not see the others, and its Start fails if Seeds name only
	// them. Changing it needs every member restarted at once. Zero means
	// no name, which only members without one share.
	ClusterName string
	// GossipKeys encrypt and authenticate the gossip (AES-GCM; a key is
	// 16, 24 or 32 bytes): the first encrypts what this node sends, and
	// what comes in under any of them is read. A member with keys drops
	// gossip it cannot decrypt and gossip in the clear, so a node that
	// has not the key its peers encrypt with does not see them (its Start
	// fails if Seeds name only them), and one without keys is not seen.
	// To change the key without stopping the cluster, call
	// Node.ChangeGossipKey on a member (and give restarts the new key),
	// or restart every member three times: with the new key added last,
	// then first, then alone. Anyone who has a key can join, so keep keys
	// out of flags and logs. Zero means gossip in the clear, which only
	// members without keys read. The transport between nodes is secured
	// by TLS.
	GossipKeys [][]byte
	// TLS secures the transport between nodes (calls, one-way messages,
	// hand-offs): the node serves it to the peers that dial it and dials
	// its peers with it. So it needs a certificate (Certificates or
	// GetCertificate) that its peers trust, and the CAs of theirs
	// (RootCAs; nil means the host's); for mutual TLS also ClientAuth
	// tls.RequireAndVerifyClientCert and ClientCAs. MutualTLS makes such a
	// configuration from PEM files. A dialer checks the peer's certificate
	// for ServerName when it is set (a name all the nodes' certificates
	// carry, for addresses that change) and for the peer's transport IP
	// when it is not. A config with GetConfigForClient (MutualTLS's, whose
	// CAs change with their file) is asked for the config of each dial as
	// well, with a ClientHelloInfo that holds only the dialed connection,
	// so that a dial trusts the CAs a served handshake does. All members
	// use TLS or none: a node with TLS and one
	// without cannot reach each other, so Start fails for a node whose
	// members' tags say otherwise than its own, and calls between it and a
	// member too old to say fail with ErrUnavailable. Start also fails for
	// a node whose TLS handshake every member that answers refuses over a
	// certificate (the node's certificate of a CA they do not trust, or
	// theirs of one it does not); where some members take it and others
	// refuse it, it starts, with the refusals in its log, and calls
	// between it and those fail with ErrUnavailable saying why. Zero means
	// the transport in the clear, for a network only the cluster uses.
	// Gossip is secured by GossipKeys.
	TLS *tls.Config

	// Kinds lists the grain kinds this node hosts. Zero means none: the
	// node calls grains on other members but hosts none itself.
	Kinds []*Kind

	// OutgoingInterceptors run around each call and one-way message the
	// node sends, the first outermost (see OutgoingInterceptor);
	// IncomingInterceptors around each one its grains handle (see
	// IncomingInterceptor). A node with none pays nothing for them.
	OutgoingInterceptors []OutgoingInterceptor
	IncomingInterceptors []IncomingInterceptor

	// Store keeps the durable state and reminders of the grains this node
	// hosts. Every node of a cluster must use the same store (one
	// PostgreSQL database, say), or a grain's state and reminders do not
	// follow it when it moves. Nodes in one process may share one Store
	// value. The node does not close a Store given here. Zero means a
	// memstore private to the node, closed with it: state then lives as
	// long as the node and is not seen by other nodes.
	Store storage.Store

	// ClientID is the client ID that stamps the calls this node makes (see
	// Invoke and WithCallID). It must be unique per incarnation: sequence
	// numbers start again at 1 in each process, so a restarted process
	// that reused it would have its calls refused as stale (ErrStaleCall)
	// or answered with replies recorded for old calls. Zero means
	// NodeName, "-" and 8 random hex digits drawn at each start, so that a
	// node restarted under its name is a new client.
	ClientID string

	// Logger receives the node's logs, including serf's and memberlist's
	// (their warnings and errors at those levels, the rest at debug). Zero
	// means slog.Default().
	Logger *slog.Logger

	// Gossip selects the gossip timings. Zero means GossipLAN.
	Gossip GossipProfile
	// EventBuffer is the length of the channel serf delivers membership
	// events on; a goroutine drains it, so it only absorbs bursts. Zero
	// means DefaultEventBuffer.
	EventBuffer int
	// BroadcastTimeout bounds how long a graceful leave waits for the leave
	// message to be gossiped. Zero means the gossip profile's value (5 s for
	// LAN and WAN, 500 ms for local).
	BroadcastTimeout time.Duration
	// LeavePropagateDelay is how long a leaving node keeps gossiping after
	// its leave message went out, so that it reaches every member. Zero
	// means the gossip profile's value (1 s for LAN and WAN, 100 ms for
	// local).
	LeavePropagateDelay time.Duration

	// DialTimeout bounds connecting to a peer's transport. Zero means
	// DefaultDialTimeout.
	DialTimeout time.Duration
	// KeepaliveTime is how long each end of a stream to a peer lets pass
	// without receiving anything on it before it pings the peer (an HTTP/2
	// ping, which a live peer's transport answers whatever its grains do);
	// if nothing comes back within KeepaliveTime more, it closes the
	// stream. That ends the streams of a peer that stopped answering with
	// its sockets open, which the view may not drop: a network path that
	// drops the transport's packets silently while the gossip's get
	// through, or a paused process, before the gossip declares it failed.
	// Calls in flight on the stream fail with ErrUnavailable and are
	// retried, the requests it brought are cancelled, and the next call
	// dials again. A healthy stream answers the pings, busy or idle, and
	// is not closed. The end that dialed a stream waits 10 s at least
	// before it pings, gRPC's floor for clients: with a KeepaliveTime
	// under that, it closes the stream within 10 s plus KeepaliveTime,
	// later than the other end. Zero means DefaultKeepaliveTime; a negative
	// value turns the pings off (a node still answers its peers' pings);
	// under 1 s, gRPC's floor for servers, is refused.
	KeepaliveTime time.Duration
	// RetryBackoff is the first pause before a call is retried after its
	// owner could not be reached or was not the owner any more; each
	// further retry doubles it up to RetryBackoffMax. Retries stop at the
	// call's deadline. Zero means DefaultRetryBackoff.
	RetryBackoff time.Duration
	// RetryBackoffMax caps RetryBackoff's growth. Zero means
	// DefaultRetryBackoffMax.
	RetryBackoffMax time.Duration
	// DefaultCallTimeout is the deadline of a call whose context has none,
	// so a call cannot retry forever. Calls that start close together share
	// one deadline, so a call may get up to 1/100 of it more, never less
	// (unless the process stalls for over 1/200 of it; see deadlines). A
	// local call that runs its grain's method on the caller's goroutine
	// (see Node.Invoke) returns when the method does.
	// Zero means DefaultCallTimeout (the constant); a negative value means
	// no deadline.
	DefaultCallTimeout time.Duration

	// MaxBatchBytes is how many bytes of frames the transport puts in one
	// gRPC message at most when calls queue up. Zero means
	// DefaultMaxBatchBytes.
	MaxBatchBytes int
	// MaxFrameBytes caps the encoded size of one request or response; a
	// bigger one fails with codes.InvalidArgument (request) or
	// codes.Internal (response). Zero means DefaultMaxFrameBytes.
	MaxFrameBytes int
	// MaxPendingBytes bounds the frames queued for one peer; a call that
	// finds the queue full waits for room or for its context. The writer
	// takes the queue whole and writes it while the next one fills, and
	// gRPC buffers up to its flow-control window besides, so a peer that
	// reads nothing holds about twice this, and that window. It bounds
	// too the one-way messages this node forwards to one owner (it got
	// them for grains it does not own) that wait for that owner's stream:
	// past it, such a message is dropped, and counted in a warning a
	// second at most. Zero means DefaultMaxPendingBytes.
	MaxPendingBytes int
	// MaxQueuedOneWay bounds the one-way messages waiting for one grain,
	// so that a grain that cannot keep up with what it is sent costs a
	// bounded amount of memory rather than the node's. It is one number
	// for the messages in the grain's mailbox and those that the streams
	// from peers hold for it, together, while it activates (its lanes,
	// which drain into the mailbox once the grain is active). Past it, a
	// message from a peer is dropped, as a one-way message to an owner
	// that fails may be (a warning a second at most counts them), and Send
	// on this node fails with ErrMailboxFull. The grain counts what it ran
	// out in groups of 64, so a few messages fewer than the bound may be
	// let wait, never more. Calls are not counted: MaxQueuedCalls bounds
	// them. Zero means DefaultMaxQueuedOneWay; a negative value means no
	// bound.
	MaxQueuedOneWay int
	// MaxQueuedCalls bounds the calls waiting for one grain: those whose
	// callers wait for their reply (in the grain's mailbox, in its turn,
	// or for it to activate), and those in its mailbox whose callers gave
	// up (a deadline, a cancellation), which stay there until the grain
	// reaches and skips them. Without it, callers that time out and call a
	// slow or stuck grain again, as a front end does, queue a call per
	// attempt until the node runs out of memory. Past it, a call fails at
	// once with ErrMailboxFull (codes.ResourceExhausted), on this node or
	// from another one, and Invoke does not retry it; a call whose grain
	// caught up succeeds again. A one-way message being sent counts as a
	// call for a moment, so a few calls fewer than the bound may be let
	// wait, never more. Reminders are not refused. Zero means
	// DefaultMaxQueuedCalls; a negative value means no bound.
	MaxQueuedCalls int
	// MaxActivations is how many grains the node keeps active before it
	// passivates idle ones early: past it, the node asks its least
	// recently used idle grains to passivate, as their IdleTimeout would,
	// until it holds nine tenths of it (the limit itself, below ten
	// grains). Without it, a scan over many
	// fresh identities (a batch job that touches each user once) keeps
	// every grain it touched for its IdleTimeout: about 400 bytes each,
	// plus the grain's own fields and state. Least recently used is to
	// the resolution of the node's looks at its grains (a sweep every
	// PassivationInterval, and each trim). Grains with a call in progress
	// or waiting, those of kinds whose IdleTimeout is negative, and those
	// whose passivation the store held back (until their IdleTimeout asks
	// again, or they are used) are not passivated early, so a node whose grains are busy may
	// hold more (logged, a line a second at most): it refuses no
	// activation (ActivationLimit does). Zero (the default) means no
	// limit.
	MaxActivations int
	// ActivationLimit is how many grains the node holds at most, where
	// MaxActivations only aims: an activation that would pass it is
	// refused with ErrTooManyActivations (codes.ResourceExhausted), and
	// so is what needed it: a call, on this node or from another one
	// (Invoke does not retry it: the node is full, not misplaced), a
	// Send on this node, a reminder's firing (tried again as after any
	// failed delivery); a peer's one-way message is dropped, as when its
	// grain's activation fails. Stats.RefusedActivations counts them, and
	// the log has a line a second at most. So a node whose grains are all
	// busy, or of kinds that never passivate, turns new grains away
	// rather than run out of memory; grains active already are not
	// affected. A refusal wakes a trim, as an activation past
	// MaxActivations does, which passivates least recently used idle
	// grains to make room: down to nine tenths of MaxActivations (of
	// ActivationLimit without it), and at least one. It must not be below
	// MaxActivations; room between the two takes the activations that
	// arrive while a trim's grains passivate. Zero (the default) means no
	// limit.
	ActivationLimit int
	// MaxHeapBytes is the live heap of the process, in bytes, over which
	// the node passivates its least recently used idle grains early, as
	// MaxActivations does for a count of grains: a node whose grains hold
	// large states, or whose process holds more than grains, can keep
	// memory in bounds without a count to guess. The live heap is what
	// the last garbage collection marked live (/gc/heap/live:bytes of
	// runtime/metrics), so the node looks after each collection: when it
	// is over, it asks as many idle grains to passivate as bring the
	// activations down in proportion to nine tenths of MaxHeapBytes (the
	// heap's bytes per activation times the activations, which errs high
	// when the heap holds more than grains: the look after the next
	// collection asks again). The grains MaxActivations leaves be stay
	// here too, and the passivations are those of idle grains: what a
	// grain buffered is committed first. Stats.HeapPassivations counts
	// the grains asked, and the log has a line a second at most while
	// looks ask some. The heap is the process's: each node in it with
	// MaxHeapBytes looks, so give it to one node per process, or each its
	// share of the figure. It is not GOMEMLIMIT, which has the collector
	// work harder as the heap nears it, and frees no grain; the two go
	// together, MaxHeapBytes below the memory limit. Zero (the default)
	// means no limit.
	MaxHeapBytes int

	// PassivationInterval is how often the node looks for idle activations
	// to passivate. An activation lives between its kind's IdleTimeout and
	// IdleTimeout+2×PassivationInterval after its last call: a sweep notes
	// the calls since the one before, and a later sweep passivates. Zero means
	// DefaultPassivationInterval.
	PassivationInterval time.Duration
	// DeactivateTimeout bounds one grain's deactivation: its OnDeactivate
	// hook and the commit of its state after it, which is tried again
	// within this time while the store commits nothing
	// (storage.ErrNotCommitted); what is still not committed then is lost.
	// A passivation commits what the grain buffered before the hook, in
	// one try within CommitTimeout, and keeps the grain if that fails, to
	// try again after another IdleTimeout: only what the hook changes is
	// committed within DeactivateTimeout then. Shutdown and a grain that
	// moves, which take the grain whether the store answers or not, try
	// once before the hook too, within CommitTimeout and DeactivateTimeout
	// (the hook has what that try left of it), and commit what that try
	// did not after the hook. Zero means
	// DefaultDeactivateTimeout.
	DeactivateTimeout time.Duration

	// State sets how many clients' exactly-once records each grain keeps
	// and how many of each client's latest calls (see state.Config). Zero
	// fields mean state.DefaultMaxClients and state.DefaultWindowPerClient.
	State state.Config
	// CommitTimeout bounds one commit of a grain's state to the Store. A
	// commit after a call, or by the grain's State().Flush, does not end
	// when the caller's context does: a caller that gives up while its
	// call's changes are being written would otherwise leave the commit's
	// outcome unknown, which costs the activation (see
	// ErrStateUnavailable). The commit finishes or fails
	// within CommitTimeout; a retry with the same call ID tells the caller
	// which. Zero means DefaultCommitTimeout.
	CommitTimeout time.Duration

	// GrainMaxRestarts is how many times a grain's actor is restarted after
	// panics within GrainRestartWindow before the grain is deactivated.
	// Zero means DefaultGrainMaxRestarts; a negative value means no limit.
	GrainMaxRestarts int
	// GrainRestartWindow is the window GrainMaxRestarts counts in. Zero
	// means DefaultGrainRestartWindow.
	GrainRestartWindow time.Duration

	// KeepMajority turns on split-brain protection: a node serves grains
	// only while the members it sees alive are a majority of those it knows,
	// failed ones included (on an even split, the half with the member whose
	// name sorts first), and a member seen failed keeps its grains for
	// DownAfter before the others take them. A node without a majority owns
	// no grain: calls made through it fail with ErrNoQuorum until it sees a
	// majority again (Node.Fenced reports it, for a readiness probe), and a
	// node that starts with it fails with ErrNoQuorum if every member it
	// reaches through its Seeds has no majority, or if it cannot connect to
	// a strict majority of the members it hears of there, itself included.
	// Every node of a cluster must set it alike, and give itself a fixed
	// NodeName: a fenced node takes back a failed member restarted under its
	// name, but refuses a node it never saw, so a replacement under a new
	// name (the default name is new at each start) cannot give the fenced
	// side its majority back. Off by default: a cluster that loses half of
	// its members, one after the other included, then stops serving until
	// they come back, a failed member's grains wait DownAfter, and a node
	// that regains a majority while members it did not down are failed waits
	// DownAfter before it serves again (it settles: they may serve its
	// grains meanwhile), as does a node that starts while the others hold
	// the grains of members failed (for what is left of their hold). It is
	// a vote of each node on its own view, not agreement: see the package
	// doc for what it does not cover.
	KeepMajority bool
	// DownAfter is how long, with KeepMajority, a member seen failed keeps
	// its grains before the members that have a majority place them on
	// others. It must be longer than the other side of a partition takes
	// to see it, which has fewer members to confirm a failure and probes
	// more slowly when its probes fail. Zero means the failure detector's
	// longest suspicion, plus half of the members probed at memberlist's
	// slowest rate, plus three probe intervals: 12.9 s for three members
	// with GossipLocal, 43 s with GossipLAN.
	DownAfter time.Duration

	// clock, when set, replaces the activation table's clock (the time
	// since the node started), so that tests of passivation need not wait.
	clock func() time.Duration
	// forwardedPatience, when set, replaces defaultForwardedPatience, so
	// that a test of a forwarded message's wait does not race a constant.
	forwardedPatience time.Duration
	// farewellPatience, when set, replaces defaultFarewellPatience, so
	// that tests can run out of it.
	farewellPatience time.Duration
	// loneWriteGrace, when set, replaces defaultLoneWriteGrace.
	loneWriteGrace time.Duration
	// activating, when set, runs as each activation begins, before it
	// reads the view, so that a test can change the view under it.
	activating func()
	// merging, when set, runs as the node's gossip merges a peer's list
	// of members (serf's merge delegate: a join's, see nameClaim), so
	// that a test can hold a start whose peers know it already.
	merging func()
	// awaitingRelease, when set, runs as an activation begins to wait
	// for the release of its grain's predecessor (see awaitRelease), so
	// that a test knows it waits.
	awaitingRelease func()
	// releaseGaveUp, when set, is told the start (name and incarnation)
	// whose release activations waited for until the wait's bound ended
	// it (see handoffs.expire), so that a test can tell a hand-off that
	// went on without the release.
	releaseGaveUp func(start string)
	// leavingGossip, when set, runs as a Shutdown's gossip leave begins,
	// once the node's tags say it leaves (see advertiseLeave) and before
	// serf's Leave, so that a test can hold the leave.
	leavingGossip func()
	// retrying, when set, is told the error of each attempt at a call
	// that Invoke retries, so that a test can count the retries.
	retrying func(err error)
	// manualTrims, when set, leaves the trims to the test: the node's
	// sweep neither trims at its ticks nor when an activation passes
	// MaxActivations (see Node.sweep), so that a test that calls
	// activations.trim itself knows what it asked.
	manualTrims bool
	// reachingMajority, when set, runs as a node joining with
	// KeepMajority begins to dial the members it heard of (see
	// Node.reachMajority), so that a test can tell what it dials them
	// with.
	reachingMajority func(n *Node)
	// queryResponseLimit, when set, replaces serf's limit on the size of
	// a query's response (QueryResponseSizeLimit), so that a test can
	// have a few holds fill an answer to a starting node (see
	// holdAnswer.encode).
	queryResponseLimit int
	// liveHeap, when set, replaces the node's reading of the live heap
	// for MaxHeapBytes (see Node.liveHeap), so that a test says what the
	// collections find.
	liveHeap func() uint64
	// collectionWatchEnded, when set, is called when a stopped node's
	// watch of collections ends (see collected), so that a test sees the
	// chain let the node go.
	collectionWatchEnded func()
	// forwarding, when set, runs before each forward of a one-way message
	// (see Node.sendForwarded), so that a test can hold one.
	forwarding func()
	// pushPullInterval, when set, replaces the gossip profile's interval
	// of memberlist's periodic push-pull, so that a test can tell what
	// else brings a member.
	pushPullInterval time.Duration
	// gossipTransport, when set, wraps the network transport of the
	// node's gossip, so that a test can cut it as a partition would; and
	// dialer, when set, opens the connections of the node's streams.
	gossipTransport func(*memberlist.NetTransport) memberlist.NodeAwareTransport
	dialer          func(ctx context.Context, addr string) (net.Conn, error)
	// relistEvery, when set, replaces the reminder scheduler's default
	// anti-entropy period (reminder.Config.RelistEvery); negative turns
	// it off.
	relistEvery time.Duration
	// reminderRetryBackoff, when set, replaces the reminder scheduler's
	// backoff after a failed delivery, first and last
	// (reminder.Config.RetryBackoff, RetryBackoffMax), so that a test can
	// tell a retry the store's recovery brought from one the backoff did.
	reminderRetryBackoff time.Duration
	// failedGrace and leaverGrace, when set, replace the graces a member
	// seen failed gets before its streams are cut, and one that said it
	// is leaving (see Node.dropFailed).
	failedGrace, leaverGrace time.Duration
}

// Defaults of the Config fields whose zero value means "default".
const (
	DefaultBindAddr            = "0.0.0.0:7946"
	DefaultGRPCAddr            = "0.0.0.0:7947"
	DefaultEventBuffer         = 1024
	DefaultDialTimeout         = 5 * time.Second
	DefaultKeepaliveTime       = 10 * time.Second
	DefaultRetryBackoff        = 10 * time.Millisecond
	DefaultRetryBackoffMax     = 500 * time.Millisecond
	DefaultCallTimeout         = 30 * time.Second
	DefaultMaxBatchBytes       = 256 << 10
	DefaultMaxFrameBytes       = 4 << 20
	DefaultMaxPendingBytes     = 16 << 20
	DefaultMaxQueuedOneWay     = 100_000
	DefaultMaxQueuedCalls      = 10_000
	DefaultPassivationInterval = 10 * time.Second
	DefaultDeactivateTimeout   = 10 * time.Second
	DefaultCommitTimeout       = 10 * time.Second
	DefaultGrainMaxRestarts    = 3
	DefaultGrainRestartWindow  = time.Minute
)

// Timings of the GossipLocal profile. They are short so that a test
// cluster converges in milliseconds and detects a killed node within a few
// seconds, yet long enough not to declare healthy nodes failed on a busy
// machine (many nodes in one process under the race detector).
const (
	localProbeInterval       = 300 * time.Millisecond
	localProbeTimeout        = 200 * time.Millisecond
	localGossipInterval      = 20 * time.Millisecond
	localPushPullInterval    = 2 * time.Second
	localSuspicionMult       = 4
	localTCPTimeout          = 2 * time.Second
	localBroadcastTimeout    = 500 * time.Millisecond
	localLeavePropagateDelay = 100 * time.Millisecond
	// localReconnectInterval is how often serf tries to join a member it
	// sees failed, which is how the sides of a healed partition find each
	// other again: every 30 s in serf's default, for a machine's loopback.
	localReconnectInterval = time.Second
	// localRetransmitMult is LAN's, not memberlist's local 2. A message
	// is gossiped to mult·⌈log10(members+1)⌉ members in all, and a round
	// picks three among the live, the suspected and the recently failed
	// ones: with 2, in a cluster of up to nine, a member's suspicion of a
	// crashed member went to two of the three it picked, often the
	// crashed one and one cut off, and then waited its longest (7.2 s)
	// for a live member to confirm it, where a confirmation ends it in
	// 3.4 s (see TestASuspicionReachesTheLiveMembers).
	localRetransmitMult = 4
	// localQueryTimeoutMult makes serf's default query timeout (gossip
	// interval · mult · ⌈log10(members+1)⌉) LAN's 3.2 s for up to nine
	// members, where serf's 16 made it 320 ms with the local gossip
	// interval: on a loaded machine a member's answer to a step of
	// ChangeGossipKey came later (one run in eight of the node
	// example's test beside two busy loops), and the change failed.
	localQueryTimeoutMult = 160
)

// defaultSeedRejoinInterval is SeedRejoinInterval's in the LAN and WAN
// profiles: serf's reconnect interval, which is its rejoin of failed
// members.
const defaultSeedRejoinInterval = 30 * time.Second

// MaxTagsSize is serf's limit on the encoded size of a node's tags, which
// carry its transport address and the names of the kinds it hosts.
const MaxTagsSize = memberlist.MetaMaxSize

// DefaultConfig returns a Config with every field at its default: a node
// with a generated name, gossip on 0.0.0.0:7946 with the LAN profile, the
// transport on 0.0.0.0:7947, no seeds and no kinds.
func DefaultConfig() Config {
	return Config{
		NodeName:            generatedNodeName(),
		BindAddr:            DefaultBindAddr,
		GRPCAddr:            DefaultGRPCAddr,
		Logger:              slog.Default(),
		Gossip:              GossipLAN,
		EventBuffer:         DefaultEventBuffer,
		DialTimeout:         DefaultDialTimeout,
		KeepaliveTime:       DefaultKeepaliveTime,
		RetryBackoff:        DefaultRetryBackoff,
		RetryBackoffMax:     DefaultRetryBackoffMax,
		DefaultCallTimeout:  DefaultCallTimeout,
		MaxBatchBytes:       DefaultMaxBatchBytes,
		MaxFrameBytes:       DefaultMaxFrameBytes,
		MaxPendingBytes:     DefaultMaxPendingBytes,
		MaxQueuedOneWay:     DefaultMaxQueuedOneWay,
		MaxQueuedCalls:      DefaultMaxQueuedCalls,
		PassivationInterval: DefaultPassivationInterval,
		DeactivateTimeout:   DefaultDeactivateTimeout,
		CommitTimeout:       DefaultCommitTimeout,
		GrainMaxRestarts:    DefaultGrainMaxRestarts,
		GrainRestartWindow:  DefaultGrainRestartWindow,
	}
}

// withDefaults returns c with every zero field replaced by its default.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.NodeName == "" {
		c.NodeName = d.NodeName
	}
	if c.ClientID == "" {
		c.ClientID = c.NodeName + "-" + randomHex(4)
	}
	setDefault(&c.BindAddr, d.BindAddr)
	setDefault(&c.GRPCAddr, d.GRPCAddr)
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	setDefault(&c.EventBuffer, d.EventBuffer)
	setDefault(&c.DialTimeout, d.DialTimeout)
	setDefault(&c.KeepaliveTime, d.KeepaliveTime)
	setDefault(&c.RetryBackoff, d.RetryBackoff)
	setDefault(&c.RetryBackoffMax, d.RetryBackoffMax)
	setDefault(&c.DefaultCallTimeout, d.DefaultCallTimeout)
	setDefault(&c.MaxBatchBytes, d.MaxBatchBytes)
	setDefault(&c.MaxFrameBytes, d.MaxFrameBytes)
	setDefault(&c.MaxPendingBytes, d.MaxPendingBytes)
	setDefault(&c.MaxQueuedOneWay, d.MaxQueuedOneWay)
	setDefault(&c.MaxQueuedCalls, d.MaxQueuedCalls)
	setDefault(&c.PassivationInterval, d.PassivationInterval)
	setDefault(&c.DeactivateTimeout, d.DeactivateTimeout)
	setDefault(&c.CommitTimeout, d.CommitTimeout)
	setDefault(&c.GrainMaxRestarts, d.GrainMaxRestarts)
	setDefault(&c.GrainRestartWindow, d.GrainRestartWindow)
	return c
}

func setDefault[T comparable](field *T, def T) {
	var zero T
	if *field == zero {
		*field = def
	}
}

// validate reports the first setting Start cannot work with.
func (c *Config) validate() error {
	if c.Gossip < GossipLAN || c.Gossip > GossipLocal {
		return fmt.Errorf("cluster: unknown gossip profile %v", c.Gossip)
	}
	if c.RetryBackoff < 0 || c.RetryBackoffMax < c.RetryBackoff {
		return fmt.Errorf("cluster: retry backoff %v..%v is not a valid range", c.RetryBackoff, c.RetryBackoffMax)
	}
	if c.EventBuffer < 0 || c.MaxBatchBytes < 0 || c.MaxFrameBytes < 0 || c.MaxPendingBytes < 0 {
		return errors.New("cluster: buffer sizes must not be negative")
	}
	for _, d := range []time.Duration{c.DialTimeout, c.PassivationInterval, c.DeactivateTimeout, c.CommitTimeout, c.GrainRestartWindow, c.DownAfter} {
		if d < 0 {
			return fmt.Errorf("cluster: negative timeout %v", d)
		}
	}
	if len(c.ClusterName) > memberlist.LabelMaxSize {
		return fmt.Errorf("cluster: Config.ClusterName is %d bytes, over the %d that gossip carries", len(c.ClusterName), memberlist.LabelMaxSize)
	}
	for i, key := range c.GossipKeys {
		if err := memberlist.ValidateKey(key); err != nil {
			return fmt.Errorf("cluster: Config.GossipKeys[%d] is %d bytes; a key is 16, 24 or 32 bytes (AES-128, -192 or -256)", i, len(key))
		}
	}
	if c.TLS != nil && len(c.TLS.Certificates) == 0 && c.TLS.GetCertificate == nil && c.TLS.GetConfigForClient == nil {
		return errors.New("cluster: Config.TLS has no certificate for the node to serve the transport with (Certificates or GetCertificate)")
	}
	if c.MaxActivations < 0 {
		return fmt.Errorf("cluster: Config.MaxActivations %d is negative; zero means no limit", c.MaxActivations)
	}
	if c.ActivationLimit < 0 {
		return fmt.Errorf("cluster: Config.ActivationLimit %d is negative; zero means no limit", c.ActivationLimit)
	}
	if c.MaxHeapBytes < 0 {
		return fmt.Errorf("cluster: Config.MaxHeapBytes %d is negative; zero means no limit", c.MaxHeapBytes)
	}
	if c.ActivationLimit > 0 && c.ActivationLimit < c.MaxActivations {
		return fmt.Errorf("cluster: Config.ActivationLimit %d is below Config.MaxActivations %d", c.ActivationLimit, c.MaxActivations)
	}
	if c.KeepaliveTime > 0 && c.KeepaliveTime < minKeepaliveTime {
		return fmt.Errorf("cluster: KeepaliveTime %v is under gRPC's minimum of %v", c.KeepaliveTime, minKeepaliveTime)
	}
	if c.State.MaxClients < 0 || c.State.WindowPerClient < 0 {
		return fmt.Errorf("cluster: Config.State: MaxClients %d and WindowPerClient %d must not be negative",
			c.State.MaxClients, c.State.WindowPerClient)
	}
	if err := state.CheckClientID(c.ClientID); err != nil {
		return fmt.Errorf("cluster: Config.ClientID (from NodeName unless set): %w", err)
	}
	return validateKinds(c.Kinds)
}

// validateKinds checks that every kind can be hosted: named once, with a
// factory and well-formed methods.
func validateKinds(kinds []*Kind) error {
	seen := make(map[string]bool, len(kinds))
	for i, k := range kinds {
		if k == nil {
			return fmt.Errorf("cluster: kind #%d is nil", i)
		}
		if k.Name == "" {
			return fmt.Errorf("cluster: kind #%d has no name", i)
		}
		if strings.Contains(k.Name, kindSeparator) {
			return fmt.Errorf("cluster: kind name %q contains %q", k.Name, kindSeparator)
		}
		if seen[k.Name] {
			return fmt.Errorf("cluster: kind %q is listed twice", k.Name)
		}
		seen[k.Name] = true
		if k.New == nil {
			return fmt.Errorf("cluster: kind %q has no New function", k.Name)
		}
		if err := validateState(k); err != nil {
			return err
		}
		if err := validateMethods(k); err != nil {
			return err
		}
	}
	return nil
}

// validateState checks a kind's state settings. Its name must also be a
// valid storage kind, since its state is stored under it.
func validateState(k *Kind) error {
	if err := (storage.Key{Kind: k.Name}).Validate(); err != nil {
		return fmt.Errorf("cluster: kind %q: %w", k.Name, err)
	}
	if k.Flush != FlushAfterCall && k.Flush != FlushManual {
		return fmt.Errorf("cluster: kind %q: unknown flush mode %d", k.Name, k.Flush)
	}
	if k.NewState != nil && k.NewState() == nil {
		return fmt.Errorf("cluster: kind %q: NewState returned nil", k.Name)
	}
	switch w := k.StatelessWorkers; {
	case w < 0 || w > maxStatelessWorkers:
		return fmt.Errorf("cluster: kind %q: StatelessWorkers is %d; want 0 to %d", k.Name, w, maxStatelessWorkers)
	case w > 0 && k.NewState != nil:
		return fmt.Errorf("cluster: kind %q: a stateless worker kind (StatelessWorkers) has no state message (NewState)", k.Name)
	case w > 0 && k.Flush == FlushManual:
		return fmt.Errorf("cluster: kind %q: a stateless worker kind (StatelessWorkers) has no state to flush (FlushManual)", k.Name)
	}
	return nil
}

func validateMethods(k *Kind) error {
	seen := make(map[string]bool, len(k.Methods))
	for _, m := range k.Methods {
		switch {
		case m.Name == "":
			return fmt.Errorf("cluster: kind %q has a method without a name", k.Name)
		case seen[m.Name]:
			return fmt.Errorf("cluster: kind %q lists method %q twice", k.Name, m.Name)
		case m.NewRequest == nil || m.Handle == nil:
			return fmt.Errorf("cluster: method %q of kind %q needs NewRequest and Handle", m.Name, k.Name)
		case noMessage(m.NewRequest()):
			return fmt.Errorf("cluster: method %q of kind %q: NewRequest returned nil", m.Name, k.Name)
		}
		seen[m.Name] = true
	}
	return nil
}

// memberlistConfig returns the memberlist timings of the profile.
func (c *Config) memberlistConfig() *memberlist.Config {
	mc := c.profileConfig()
	if c.pushPullInterval > 0 {
		mc.PushPullInterval = c.pushPullInterval
	}
	return mc
}

// profileConfig returns the memberlist configuration of c.Gossip.
func (c *Config) profileConfig() *memberlist.Config {
	switch c.Gossip {
	case GossipWAN:
		return memberlist.DefaultWANConfig()
	case GossipLocal:
		mc := memberlist.DefaultLocalConfig()
		mc.ProbeInterval = localProbeInterval
		mc.ProbeTimeout = localProbeTimeout
		mc.GossipInterval = localGossipInterval
		mc.PushPullInterval = localPushPullInterval
		mc.SuspicionMult = localSuspicionMult
		mc.RetransmitMult = localRetransmitMult
		mc.TCPTimeout = localTCPTimeout
		return mc
	default:
		return memberlist.DefaultLANConfig()
	}
}

// leaveTimings returns the broadcast timeout and leave propagation delay:
// the configured ones, or the profile's.
func (c *Config) leaveTimings(broadcast, propagate time.Duration) (time.Duration, time.Duration) {
	if c.Gossip == GossipLocal {
		broadcast, propagate = localBroadcastTimeout, localLeavePropagateDelay
	}
	if c.BroadcastTimeout > 0 {
		broadcast = c.BroadcastTimeout
	}
	if c.LeavePropagateDelay > 0 {
		propagate = c.LeavePropagateDelay
	}
	return broadcast, propagate
}

// seedRejoinInterval returns how often the node joins the seeds that are
// not members (see SeedRejoinInterval), or 0 for never.
func (c *Config) seedRejoinInterval() time.Duration {
	switch {
	case c.SeedRejoinInterval < 0 || len(c.Seeds) == 0:
		return 0
	case c.SeedRejoinInterval > 0:
		return c.SeedRejoinInterval
	case c.Gossip == GossipLocal:
		return localReconnectInterval
	}
	return defaultSeedRejoinInterval
}

// generatedNodeName returns "<hostname>-<8 random hex digits>", unique per
// incarnation with overwhelming probability.
func generatedNodeName() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "node"
	}
	return host + "-" + randomHex(4)
}

// randomHex returns n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+).
	return hex.EncodeToString(b)
}
