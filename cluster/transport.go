package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
)

// The transport is one gRPC service with one bidirectional streaming method.
// Its messages are raw bytes (batches of frames, see frame.go), so no
// generated code is involved.
const (
	transportService = "protograin.cluster.v1.Transport"
	streamMethod     = "/" + transportService + "/Stream"
	// frameOverhead is room for a frame's header fields next to its payload
	// when sizing gRPC's message limits.
	frameOverhead = 64 << 10
	// flowWindow is the HTTP/2 flow-control window of the stream and of the
	// connection, on both ends. Setting it turns off gRPC's bandwidth-delay
	// estimation, which otherwise pings the peer after data arrives (a ping
	// and its ack on nearly every call of a lone caller, and a window update
	// after each) to grow windows that a loopback or LAN peer does not need.
	// 4 MiB holds several full batches, so a sender does not wait for window
	// updates under load either.
	flowWindow = 4 << 20
)

// Keepalive: each end of a stream pings its peer after Config.KeepaliveTime
// without a frame from it, and closes the stream if the ping goes
// unanswered for as long again: the gRPC server (the acceptor) with
// grpc.KeepaliveParams, the client (the dialer) with
// grpc.WithKeepaliveParams. Both also set the socket's TCP_USER_TIMEOUT to
// that timeout, so data that the peer's host does not acknowledge for as
// long (a path that drops packets) fails the connection too. Without
// them, nothing but the view closed a stream to a peer that stopped
// answering with its sockets open, and a path that dropped the
// transport's packets while the gossip's got through left the stream open
// until the kernels gave up on the connection (hours when idle, never
// behind a proxy that holds it): its calls waited for their deadlines,
// and each request it brought for room for its reply. gRPC's own server
// pings came 2 h after the last frame.
const (
	// minKeepaliveTime is gRPC's floor for a server's keepalive time (a
	// shorter one is raised to it, with a warning): Config.validate
	// refuses one under it.
	minKeepaliveTime = time.Second
	// minClientKeepalive is gRPC's floor for a client's (grpc-go's
	// internal.KeepaliveMinPingTime, out of reach): a dialer pings no
	// sooner, and asking for less logs a warning at every dial.
	minClientKeepalive = 10 * time.Second
	// keepaliveMinTime is how often a peer's pings may come while this
	// side sends nothing before gRPC's server takes them for abuse and
	// closes the connection (the third ping too soon gets a GOAWAY,
	// "too_many_pings"). gRPC's default, 5 minutes, would cut an idle
	// stream at its dialer's fourth ping. Half the client's floor: every
	// dialer pings less often than that, whatever its KeepaliveTime, so
	// nodes with other settings keep their streams too.
	keepaliveMinTime = minClientKeepalive / 2
)

// rawCodec passes []byte messages through gRPC unchanged. It is a CodecV2
// so that a batch goes back to pool once gRPC has written it (see
// batchPool); the zero value pools nothing.
type rawCodec struct{ pool *batchPool }

// Marshal hands the batch *v to gRPC, which frees it into the pool when it
// is written: the caller must not touch it afterwards.
func (c rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	b, ok := v.(*[]byte)
	if !ok {
		return nil, fmt.Errorf("cluster: raw codec cannot marshal %T", v)
	}
	if c.pool == nil {
		return mem.BufferSlice{mem.SliceBuffer(*b)}, nil
	}
	return mem.BufferSlice{mem.NewBuffer(b, c.pool)}, nil
}

// Unmarshal copies the message into one slice, from the pool if there is
// one: gRPC frees data when Unmarshal returns, while the frames decoded
// from it (their payloads) live on. The reader gives the slice back to the
// pool when no frame kept its payload (see conn.readLoop); a new zeroed
// slice per batch, and the scavenger returning those pages, were 13% of a
// one-way benchmark process.
func (c rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("cluster: raw codec cannot unmarshal into %T", v)
	}
	if s, ok := unpooled(data); ok {
		// The capacity is cut to the message: the slice may be part of a
		// larger one that holds the next message, and the reader must not
		// take it for a pooled batch (see conn.readLoop).
		*b = s[:len(s):len(s)]
		return nil
	}
	if c.pool == nil {
		*b = data.Materialize()
		return nil
	}
	if n := data.Len(); n < smallBatch {
		// A small batch is usually one frame, and a reply keeps its
		// payload for its caller to decode, so on a caller's side the
		// buffer would rarely go back to the pool: a pooled 4 KiB buffer
		// per message made a lone caller's cross-node call allocate
		// 4.9 KB instead of 0.8 KB. An exact slice costs what it holds.
		*b = data.Materialize()
		return nil
	}
	buf := c.pool.Get(data.Len())
	data.CopyTo(*buf)
	*b = *buf
	return nil
}

// unpooled returns the bytes of data when they are one slice that no pool
// owns, which may then be kept past Unmarshal without a copy.
//
// The trick: gRPC reads an HTTP/2 data frame under 1 KiB into a slice of
// its own (mem.SliceBuffer), from no pool, and freeing it does nothing: a
// message in such a frame was copied once more here, for nothing. With 64
// callers most batches are that small: in bench/grains RemoteCalls the
// copies were 5% of the bytes the host allocated, and 12 of the 167 bytes
// a call allocated on the caller's side. A message in a pooled buffer is
// copied as before.
func unpooled(data mem.BufferSlice) ([]byte, bool) {
	if len(data) != 1 {
		return nil, false
	}
	s, ok := data[0].(mem.SliceBuffer)
	return s, ok
}

// smallBatch is the size below which a received batch gets a slice of its
// own rather than a pooled buffer (see rawCodec.Unmarshal).
const smallBatch = 1 << 10

func (rawCodec) Name() string { return "protograin-frames" }

// streamServer is what the service descriptor's handler dispatches to.
type streamServer interface {
	serveStream(grpc.ServerStream) error
}

func transportDesc() *grpc.ServiceDesc {
	return &grpc.ServiceDesc{
		ServiceName: transportService,
		HandlerType: (*streamServer)(nil),
		Streams: []grpc.StreamDesc{{
			StreamName:    "Stream",
			ServerStreams: true,
			ClientStreams: true,
			Handler: func(srv any, ss grpc.ServerStream) error {
				return srv.(streamServer).serveStream(ss)
			},
		}},
	}
}

// requestHandler serves the requests that arrive from peers.
type requestHandler interface {
	// decodeRequest finds what req calls and decodes its payload. The
	// stream's reader calls it, so that no frame keeps the batch it came
	// in once the reader is done with it (see conn.serve).
	decodeRequest(req *frame) decodedRequest
	// identityHolder lets the reader share an active grain's identity
	// string instead of making one per request (see nameTable.identity).
	identityHolder
	// serveRequest runs req, decoded as d, and returns the reply frame
	// (its id is set by the caller). The reply is a value so that it need
	// not live on the heap: the conn encodes it into its queue at once.
	serveRequest(ctx context.Context, req *frame, d *decodedRequest) frame
	// serveOneWay delivers a one-way request from the peer named from,
	// which gets no reply. With wait false it must not block, and reports
	// false when the request needs to (it is then called again with wait
	// true, in order, from another goroutine). target, if not nil,
	// carries what one request found out to the next ones of the same
	// batch; endOneWay ends it.
	serveOneWay(req *frame, from string, wait bool, target *oneWayTarget) bool
	endOneWay(target *oneWayTarget)
	// serveWaiting delivers a one-way request from a grain's lane (see
	// oneWayLanes), as serveOneWay does with wait true, except when the
	// grain could not be activated: it then returns why, without logging
	// the drop, and dropWaiting logs it with the count of the requests
	// that waited behind it, which the lane drops with it.
	serveWaiting(req *frame, from string) error
	dropWaiting(req *frame, err error, count int)
	// laneRoom counts req into the requests waiting in its grain's lanes
	// and reports true if they have room for it; if not, req is counted
	// as dropped. laneLeft counts count of them out, once delivered or
	// dropped.
	laneRoom(req *frame) bool
	laneLeft(req *frame, count int)
	// admitCall counts a request in, or refuses it when the node is
	// shutting down; finishCall counts it out, with the ticket admitCall
	// gave it.
	admitCall() (gateTicket, bool)
	finishCall(gateTicket)
	// departed reports whether the node's view has the named member, at
	// addr unless addr is "", in its start incarnation unless either does
	// not say it, leaving or gone after a leave, or failed after it said
	// it leaves (the gossip may report a graceful leave as a failure): a
	// stream it opens then gets this side's bye at once (see serveStream),
	// and so does one dialed to it (see dial). The same name at another
	// address, or in another start at the same address (a member restarted
	// with fixed ports), is a new incarnation, not the leaver.
	departed(name, addr, incarnation string) bool
	// memberAddr returns the transport address of the named member in the
	// node's view, and false if the view does not know it.
	memberAddr(name string) (string, bool)
	// retired reports whether a later start of the named member replaced
	// incarnation in the node's view: a stream from it is answered
	// superseded (see serveStream). replaced is told that a peer answered
	// so to incarnation, which may be this node's.
	retired(name, incarnation string) bool
	replaced(incarnation, peer string)
	// heardLeaving is told that a peer said it is leaving, or refused a
	// stream because it is closing: a leave the node's view may not have
	// yet.
	heardLeaving()
	// heardFarewell is told that a peer that said it is leaving said bye:
	// it does so in its farewell, once its grains are deactivated.
	heardFarewell()
	// askedRelease is told that the peer that dialed or accepted c, in its
	// start incarnation, asks when this node's start to released the
	// grains the peer took from it (see handoffs); released is told the
	// answer to this node's ask, from the peer's start incarnation, to
	// this node's start to, and whether the peer is leaving (it then holds
	// no grain at all).
	askedRelease(c *conn, incarnation, to string)
	released(peer, incarnation, to string, leaving bool)
}

// transport owns the gRPC server and the streams to peers: at most one
// stream per pair of nodes in the steady state, used in both directions
// (two if both dialed each other at the same moment; both then work).
type transport struct {
	name string // this node's name, sent in hello frames
	// creds secure the streams it serves and dials: TLS with Config.TLS,
	// or none.
	creds credentials.TransportCredentials
	// advertised is the address members dial this node at, and
	// incarnation the random ID of the node's start: the first hello of
	// the streams it dials says both (see conn.addr and
	// retiredIncarnations). Set by serve.
	advertised, incarnation string
	// replaced is the incarnation this node's start replaced under its
	// name, if the join saw one (see nameClaim.replaced): the first hello
	// of the streams it dials says it too, so that a peer whose view still
	// has the old start knows the stream for a newer one (see conn).
	// Stored once the node has its name, read by dials.
	replaced atomic.Pointer[string]
	cfg      *Config
	log      *slog.Logger
	handler  requestHandler
	server   *grpc.Server
	lis      net.Listener
	ctx      context.Context // cancelled by close: ends every stream
	cancel   context.CancelFunc
	// replies recycles the channels calls wait on for their reply frame
	// (a frame is large, so each channel is a 250-byte allocation).
	replies sync.Pool // chan frame, capacity 1, empty
	servers *goPool   // runs the requests peers send
	// served recycles the servedCalls that carry requests to servers.
	served sync.Pool // *servedCall, zero
	// deadlines are the shared deadlines of the requests peers send.
	deadlines *deadlines

	// batches recycles the buffers conns queue frames in, once gRPC has
	// written them.
	batches batchPool

	// payloads recycles the buffers one-way requests are encoded into on
	// their way to a stream: the stream copies the bytes into its batch,
	// so the buffer is free again as soon as the frame is queued, and a
	// message costs no allocation for its encoding.
	payloads sync.Pool // *[]byte

	last atomic.Pointer[conn] // the stream conn returned last; see conn
	// leaving is set when the node begins to leave gracefully: its conns
	// do not answer a peer's bye with their own, as the node says bye
	// itself once it has passed on what it holds (see farewell).
	leaving atomic.Bool
	// tells counts the goroutines that tell a replaced start so (see
	// goTell), or ask for and answer releases (see handoffs), dials those
	// that open a stream (see conn); close waits for them.
	tells, dials sync.WaitGroup

	mu     sync.Mutex
	peers  map[string]*peerEntry
	conns  map[*conn]struct{} // every open conn, dialed or accepted
	closed bool
	// refusing is set when the farewell found no stream left: from then
	// on the transport opens and accepts none (see lastConns).
	refusing bool
	// busyLanes counts the conns' one-way lanes that hold requests, one
	// per grain (see oneWayLanes), and the forward queues (see
	// forwardQueues), of open conns and closed ones alike: a conn that
	// closed leaves the table, while its lanes may still forward what its
	// stream brought, and the farewell waits for that (see lastConns).
	busyLanes int
	lanesIdle chan struct{} // closed when busyLanes drops to 0; made by a waiter (see waitLanes)
	// closedPeers holds, by name, the incarnation of each peer that
	// refused a stream because it is closing (its farewell is over, see
	// lastConns): it takes none again, and conn fails at once rather than
	// dial it for every message a view that has it alive still sends there.
	closedPeers map[string]string
	// unreachable holds, by name, the last dial that failed to reach a
	// peer (nothing listens, say: a crashed member that the view still
	// has alive). For unreachableMemory conn fails at once with its error
	// for the same address and incarnation, rather than dial again for
	// every message: a leaver forwarding what still reaches it, one
	// message at a time, spent its farewell on such dials.
	unreachable map[string]failedDial
}

// failedDial is a dial that did not reach a peer (see
// transport.unreachable).
type failedDial struct {
	addr, incarnation string
	at                time.Time
	err               error
}

// unreachableMemory is how long a dial that failed to reach a peer is
// remembered (see transport.unreachable): short, as the peer may be
// starting, and calls retry within their deadline meanwhile.
const unreachableMemory = time.Second

// peerEntry is the stream to one peer, or the dial in progress.
type peerEntry struct {
	ready chan struct{} // closed when the dial finished
	conn  *conn
	err   error
}

func newTransport(name string, cfg *Config, log *slog.Logger, h requestHandler) (*transport, error) {
	lis, err := net.Listen("tcp", cfg.GRPCAddr)
	if err != nil {
		return nil, fmt.Errorf("cluster: listen for the transport on %s: %w", cfg.GRPCAddr, err)
	}
	t := &transport{
		name: name, cfg: cfg, log: log, handler: h, lis: lis,
		peers:       make(map[string]*peerEntry),
		conns:       make(map[*conn]struct{}),
		closedPeers: make(map[string]string),
		unreachable: make(map[string]failedDial),
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	t.servers = newGoPool()
	t.deadlines = newDeadlines(0) // each request brings its own timeout (sharedAfter)
	t.batches.init()
	opts := []grpc.ServerOption{
		grpc.ForceServerCodecV2(rawCodec{pool: &t.batches}),
		grpc.MaxRecvMsgSize(t.maxMessage()),
		grpc.MaxSendMsgSize(t.maxMessage()),
		grpc.InitialWindowSize(flowWindow),
		grpc.InitialConnWindowSize(flowWindow),
		// Whatever this node's KeepaliveTime: its peers' may differ.
		// PermitWithoutStream stays off, as a dialer's ClientConn carries
		// one stream and closes with it, so it never pings without one.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: keepaliveMinTime}),
	}
	if ka := cfg.KeepaliveTime; ka > 0 {
		opts = append(opts, grpc.KeepaliveParams(keepalive.ServerParameters{Time: ka, Timeout: ka}))
	}
	t.creds = insecure.NewCredentials()
	if cfg.TLS != nil {
		t.creds = newTLSCredentials(cfg.TLS)
		opts = append(opts, grpc.Creds(t.creds))
	}
	t.server = grpc.NewServer(opts...)
	t.server.RegisterService(transportDesc(), t)
	return t, nil
}

// serve sets the address members dial this node at and the incarnation
// of its start, and then serves streams: the answer to a stream's hello
// names the start (see serveStream), and a member restarted at its old
// address is dialed as soon as it listens.
func (t *transport) serve(advertised, incarnation string) {
	t.advertised, t.incarnation = advertised, incarnation
	go func() {
		// Serve returns when the server stops; an error before that is
		// logged because nobody else can see it.
		if err := t.server.Serve(t.lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			t.log.Error("cluster: transport server stopped", "err", err)
		}
	}()
}

func (t *transport) getReplyChan() chan frame {
	if ch, ok := t.replies.Get().(chan frame); ok {
		return ch
	}
	return make(chan frame, 1)
}

// putReplyChan recycles ch, which must be empty and not registered with
// any conn.
func (t *transport) putReplyChan(ch chan frame) { t.replies.Put(ch) }

// getPayload returns a buffer to encode a one-way request into.
func (t *transport) getPayload() *[]byte {
	if b, ok := t.payloads.Get().(*[]byte); ok {
		return b
	}
	return new([]byte)
}

// putPayload recycles b unless it grew past maxPooledPayload, so that one
// huge message does not keep its buffer alive in the pool.
func (t *transport) putPayload(b *[]byte) {
	if cap(*b) <= maxPooledPayload {
		t.payloads.Put(b)
	}
}

// maxMessage is the largest gRPC message a batch may need.
func (t *transport) maxMessage() int {
	return t.cfg.MaxBatchBytes + t.cfg.MaxFrameBytes + frameOverhead
}

// tlsHint says what a dial's error means when the peer's transport and
// this node's disagree on TLS, which gRPC's words do not say: a TLS
// listener closes a stream in the clear before it answers (with a FIN or,
// with data unread, a reset), and one in the clear answers a TLS
// handshake with HTTP/2.
func (t *transport) tlsHint(err error) string {
	msg := err.Error()
	closed := strings.Contains(msg, "error reading server preface: EOF") ||
		strings.Contains(msg, "error reading server preface") && strings.Contains(msg, "connection reset by peer")
	switch {
	case t.cfg.TLS == nil && closed:
		return " (the peer's transport may use TLS, which closes a stream in the clear at once; every member needs Config.TLS, or none)"
	case t.cfg.TLS != nil && strings.Contains(msg, "first record does not look like a TLS handshake"):
		return " (the peer's transport is in the clear; every member needs Config.TLS, or none)"
	}
	return ""
}

// refusal says, after a dial with TLS that the peer closed (see
// closedByPeer), whether the peer refuses this node's certificate: gRPC
// writes its preface as soon as its handshake is done, and a peer that
// refuses the certificate closes the connection with the preface unread,
// which resets it, often before the dialer reads the peer's alert. A
// handshake of its own, which writes nothing, reads it.
func (t *transport) refusal(addr string) string {
	ctx, cancel := context.WithTimeout(t.ctx, t.cfg.DialTimeout)
	defer cancel()
	if err := t.shakeHands(ctx, addr); err != nil && refusedCertificate(err) {
		return " (a TLS handshake of its own: " + err.Error() + ")"
	}
	return ""
}

// closedByPeer reports whether a dial's err is the peer closing the
// connection (a reset, or the end of it) rather than a failure to reach
// it: only then may a TLS peer have refused a certificate without the
// error saying so. A peer that does not answer gets no second handshake,
// which would hold the dial's waiters for another DialTimeout.
func closedByPeer(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "connection reset by peer") || strings.Contains(msg, "broken pipe") || strings.Contains(msg, "EOF")
}

// addr returns the address the transport listens on.
func (t *transport) addr() net.Addr { return t.lis.Addr() }

// conn returns the stream to member m, dialing it if there is none.
func (t *transport) conn(ctx context.Context, m *Member) (*conn, error) {
	// The stream returned last: the next frame mostly goes to the same
	// peer (with two nodes, always), and finding it here takes no lock
	// and no map lookup (t.mu and the lookup were 3% of the CPU of a
	// one-way benchmark process, once per message).
	if c := t.last.Load(); c != nil && c.peer == m.Name && c.at(m.GRPCAddr) && !isDone(c.done) {
		return c, nil
	}
	for {
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			return nil, newError(codes.Unavailable, ErrNodeClosed, "cluster: node %s is closed", t.name)
		}
		if inc, ok := t.closedPeers[m.Name]; ok && inc == m.incarnation {
			t.mu.Unlock()
			return nil, newError(codes.Unavailable, ErrUnavailable, "cluster: member %s at %s refuses streams: it is closing", m.Name, m.GRPCAddr)
		}
		e := t.peers[m.Name]
		if e == nil {
			// No stream to use (one the peer dialed would be here): a
			// dial that just failed is not tried again for a while.
			if f, ok := t.unreachable[m.Name]; ok && f.addr == m.GRPCAddr && f.incarnation == m.incarnation && time.Since(f.at) < unreachableMemory {
				t.mu.Unlock()
				return nil, f.err
			}
			e = &peerEntry{ready: make(chan struct{})}
			t.peers[m.Name] = e
			t.dials.Add(1)
			t.mu.Unlock()
			// The dial runs on a goroutine of its own, which close waits
			// for: this caller, like the others that want the stream,
			// waits for it only as long as its context lets it, where a
			// peer that accepts and never answers held it for
			// DialTimeout.
			go func() {
				defer t.dials.Done()
				t.dial(e, m)
			}()
		} else {
			t.mu.Unlock()
		}
		// Nearly always the stream is there already: a non-blocking
		// receive says so without the locks of a two-case select (5% of
		// a one-way benchmark process).
		if !isDone(e.ready) {
			select {
			case <-e.ready:
			case <-ctx.Done():
				return nil, contextError(ctx.Err())
			}
		}
		if e.err != nil {
			return nil, e.err
		}
		if c := e.conn; !isDone(c.done) {
			if c.at(m.GRPCAddr) {
				t.last.Store(c)
				return c, nil
			}
			if c.replaced != "" && c.replaced == m.incarnation {
				// The stream is from the start that replaced the one m
				// describes, as its hello said: m comes from a view that
				// has not seen the restart yet. The stream is to the
				// member's newest start, which answers for its name:
				// closing it would fail the calls on it both ways.
				return c, nil
			}
			// The stream and m disagree on m's address: m restarted under
			// its name (see nameClaim). If the node's view has m where m
			// says, the stream is to the earlier incarnation, which may
			// hang rather than be gone: close it, and dial. Otherwise m
			// comes from an older view than the stream: the caller places
			// its call again by the newer one.
			if cur, _ := t.handler.memberAddr(m.Name); cur != m.GRPCAddr {
				return nil, newError(codes.Unavailable, ErrUnavailable, "cluster: member %s is no longer at %s", m.Name, m.GRPCAddr)
			}
			c.close(newError(codes.Unavailable, ErrUnavailable, "cluster: member %s restarted at %s", m.Name, m.GRPCAddr))
		}
		// Broken or stale since: forget it (it may not have done so yet)
		// and dial.
		t.mu.Lock()
		if t.peers[m.Name] == e {
			delete(t.peers, m.Name)
		}
		t.mu.Unlock()
	}
}

// errRefusedAsClosing is how a node that is closing refuses a stream (see
// serveStream): it will take none again.
var errRefusedAsClosing = status.Error(codes.Unavailable, ErrNodeClosed.Error())

// refusedAsClosing reports whether a dial's err is a peer's refusal of the
// stream because it is closing (see errRefusedAsClosing), rather than a
// failure to reach it, which may pass.
func refusedAsClosing(err error) bool {
	s, ok := status.FromError(err)
	return ok && s.Code() == codes.Unavailable && s.Message() == ErrNodeClosed.Error()
}

// dial opens a stream to m, sends the hello frame and completes e.
func (t *transport) dial(e *peerEntry, m *Member) {
	c, err := t.open(m)
	var hint string // of what err means, where its words do not say
	if err != nil {
		hint = t.tlsHint(err)
		if t.cfg.TLS != nil && hint == "" && closedByPeer(err) {
			hint = t.refusal(m.GRPCAddr)
		}
	}
	// Dialed by a view older than ours, in which m was alive, or to a
	// leaver that ours has failed (the hand-off's ask for its release
	// dials it again, say): say bye at once, as byeToLeavers and
	// keepLeaver did on the streams to m that were open then (else the
	// leaver's farewell waits for this stream's bye until its patience
	// runs out), and before the callers have the stream (the dial is not
	// theirs to run, see conn): their requests fail on it, retryable, and
	// are placed again by the newer view, which has m leaving.
	departed := c != nil && t.handler.departed(m.Name, m.GRPCAddr, m.incarnation)
	if departed {
		c.bye()
	}
	// e.conn is set under t.mu: the conn runs already, and if it ends at
	// once its forget reads the entry of its peer, which may be e.
	t.mu.Lock()
	if err != nil {
		e.err = newError(codes.Unavailable, ErrUnavailable, "cluster: connect to %s at %s: %v%s", m.Name, m.GRPCAddr, err, hint)
		switch {
		case refusedAsClosing(err):
			if m.incarnation != "" {
				t.closedPeers[m.Name] = m.incarnation
			}
			defer t.handler.heardLeaving() // after t.mu
		case t.ctx.Err() == nil: // not this node closing
			t.unreachable[m.Name] = failedDial{addr: m.GRPCAddr, incarnation: m.incarnation, at: time.Now(), err: e.err}
		}
	}
	if (err != nil || departed) && t.peers[m.Name] == e {
		delete(t.peers, m.Name) // not handed out for new requests
	}
	e.conn = c
	t.mu.Unlock()
	close(e.ready)
}

func (t *transport) open(m *Member) (*conn, error) {
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(t.creds),
		grpc.WithInitialWindowSize(flowWindow),
		grpc.WithInitialConnWindowSize(flowWindow),
		grpc.WithDefaultCallOptions(
			grpc.ForceCodecV2(rawCodec{pool: &t.batches}),
			grpc.MaxCallRecvMsgSize(t.maxMessage()),
			grpc.MaxCallSendMsgSize(t.maxMessage()),
		),
	}
	if ka := t.cfg.KeepaliveTime; ka > 0 {
		opts = append(opts, grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: max(ka, minClientKeepalive), Timeout: ka}))
	}
	if t.cfg.dialer != nil {
		opts = append(opts, grpc.WithContextDialer(t.cfg.dialer))
	}
	cc, err := grpc.NewClient(m.GRPCAddr, opts...)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(t.ctx)
	// The stream lives as long as ctx, so the dial timeout cancels it only
	// while the stream is being opened.
	timer := time.AfterFunc(t.cfg.DialTimeout, cancel)
	stream, err := cc.NewStream(ctx, &transportDesc().Streams[0], streamMethod)
	flags := helloNames
	if t.leaving.Load() {
		flags |= helloLeaving // so that the acceptor says bye at once (see serveStream)
	}
	if err == nil {
		var replaced string
		if p := t.replaced.Load(); p != nil {
			replaced = *p
		}
		hello := appendFrame(nil, &frame{typ: frameHello, node: t.name, message: t.advertised, identity: t.incarnation, method: replaced, hello: flags,
			payload: []byte(t.cfg.ClusterName)})
		err = stream.SendMsg(&hello)
	}
	// Nothing more goes on the stream before the acceptor's answer to the
	// hello: an acceptor that refuses the stream (it closes, or its
	// farewell is over: see lastConns) ends it with an error instead, and
	// then no request was sent that it would drop unread. Its first batch
	// goes to the conn's reader. One round trip per stream, and streams
	// last.
	var first []byte
	if err == nil {
		err = stream.RecvMsg(&first)
	}
	answer := answerIn(first)
	if err == nil {
		err = t.answeredBy(m, answer)
	}
	if !timer.Stop() || err != nil {
		cancel()
		_ = cc.Close() // the dial already failed; a close error adds nothing
		if err == nil {
			err = fmt.Errorf("cluster: dial timeout %v", t.cfg.DialTimeout)
		}
		return nil, err
	}
	c := newConn(t, m.Name, m.GRPCAddr, stream, cancel, cc)
	c.inc = m.incarnation
	if inc := answer.identity; inc != "" {
		// The start that accepted the stream, which may be a later one
		// than the view's at the same address (a member restarted with
		// fixed ports): what the stream says, and the bye this node
		// says on it when that start leaves (see byeTo), are its.
		c.inc = inc
	}
	if !t.track(c) {
		c.close(newError(codes.Unavailable, ErrNodeClosed, "cluster: node %s is closed", t.name))
		return nil, ErrNodeClosed
	}
	if flags&helloLeaving == 0 && t.leaving.Load() {
		c.sayLeaving() // after track, so that sayLeavingOnAll cannot miss c
	}
	c.start(first)
	return c, nil
}

// streamAnswer is what the acceptor of a stream says of itself in its
// answer to the dialer's hello (see serveStream).
type streamAnswer struct {
	ok       bool   // there is an answer: a peer too old to send one sends none
	node     string // the acceptor's name
	identity string // its start incarnation
	cluster  string // its Config.ClusterName
}

// answerIn returns the acceptor's answer in first, the first batch of the
// stream.
func answerIn(first []byte) streamAnswer {
	var a streamAnswer
	// The answer comes before any request on the stream, whose names a
	// decode without the stream's dictionary would fail on: the error
	// only ends the search.
	_ = decodeBatch(first, func(f *frame) {
		if !a.ok && f.typ == frameHello && f.hello&helloNames != 0 {
			a = streamAnswer{ok: true, node: f.node, identity: f.identity, cluster: string(f.payload)}
		}
	})
	return a
}

// answeredBy checks that the node that answered a stream dialed to member
// m is of this node's cluster. An address outlives the node that had it:
// a member that failed, and whose failure this node's view has yet to
// see, may have left it to a node of another cluster on the same network
// (a reused pod IP, with the ports every pod uses), which would run m's
// grain calls against its own store. The acceptor refuses a dialer of
// another name itself (see serveStream); this covers a dialer without a
// name, which the acceptor leaves to this check, and an acceptor whose
// version does not check. An acceptor too old to answer, or one that says
// the dialer was superseded, is not checked.
func (t *transport) answeredBy(m *Member, a streamAnswer) error {
	if a.ok && a.cluster != t.cfg.ClusterName {
		return fmt.Errorf("cluster: %s answered at %s, the address of member %s, as a node of cluster %q, not of this node's %q", a.node, m.GRPCAddr, m.Name, a.cluster, t.cfg.ClusterName)
	}
	return nil
}

// sayLeavingOnAll tells every peer with an open stream that this node is
// leaving (see conn.sayLeaving); the streams opened after leaving was set
// say it themselves.
func (t *transport) sayLeavingOnAll() {
	for _, c := range t.openConns() {
		c.sayLeaving()
	}
}

// saidLeaving reports whether the named peer said, on a stream still open,
// that it is leaving the cluster. A forward asks it for every message, so
// it reads the table in place rather than take a copy (openConns).
func (t *transport) saidLeaving(name string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for c := range t.conns {
		if c.peer == name && c.peerLeaving.Load() {
			return true
		}
	}
	return false
}

// leaves reports whether member m said, on a stream to its address and
// its start still open, that it is leaving the cluster, or refused a
// stream because it is closing (see closedPeers). A stream of an earlier
// start at the same address says nothing of m (see conn.inc).
func (t *transport) leaves(m *Member) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if inc, ok := t.closedPeers[m.Name]; ok && inc == m.incarnation {
		return true
	}
	for c := range t.conns {
		if c.with(m) && c.peerLeaving.Load() {
			return true
		}
	}
	return false
}

// streamWith reports whether a stream with member m's start, at its
// address, is open and has not said the start leaves (see
// Node.holdFailed).
func (t *transport) streamWith(m *Member) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for c := range t.conns {
		if c.with(m) && !c.peerLeaving.Load() && !isDone(c.done) {
			return true
		}
	}
	return false
}

// peersLeaving appends to names the peers that said, on a stream still
// open, that they are leaving the cluster (see saidLeaving).
func (t *transport) peersLeaving(names []string) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	for c := range t.conns {
		if c.peerLeaving.Load() && !slices.Contains(names, c.peer) {
			names = append(names, c.peer)
		}
	}
	return names
}

// track records c as open, unless the transport is closed.
func (t *transport) track(c *conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed || t.refusing {
		return false
	}
	t.conns[c] = struct{}{}
	return true
}

// forget removes a closed conn from the tables.
func (t *transport) forget(c *conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.conns, c)
	if e := t.peers[c.peer]; e != nil && e.conn == c {
		delete(t.peers, c.peer)
	}
}

// goTell runs tellSuperseded on a goroutine of its own (see goAlong).
func (t *transport) goTell(name, addr, incarnation string) {
	t.goAlong(func() { t.tellSuperseded(name, addr, incarnation) })
}

// goAlong runs fn on a goroutine of its own, which close waits for, so fn
// must end once t.ctx does. Once the transport is closed it does nothing,
// and returns false.
func (t *transport) goAlong(fn func()) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.tells.Add(1)
	go func() {
		defer t.tells.Done()
		fn()
	}()
	return true
}

// tellSuperseded dials an earlier start of the named member at addr, which
// a later start replaced, and tells it so (see retiredIncarnations): a
// hello that says superseded, naming its incarnation. The old process
// then stops, which ends the stream; it is cut after DialTimeout if not.
func (t *transport) tellSuperseded(name, addr, incarnation string) {
	c, err := t.open(&Member{Name: name, GRPCAddr: addr})
	if err != nil {
		t.log.Debug("cluster: dial a replaced start of a member", "peer", name, "addr", addr, "err", err)
		return
	}
	t.log.Warn("cluster: telling a replaced start of a member that it was replaced", "peer", name, "addr", addr, "incarnation", incarnation)
	f := t.supersededHello(incarnation)
	if c.send(t.ctx, &f) == nil {
		wait := time.NewTimer(t.cfg.DialTimeout)
		defer wait.Stop()
		select {
		case <-c.done:
		case <-wait.C:
		}
	}
	c.close(newError(codes.Unavailable, ErrUnavailable, "cluster: told %s at %s it was replaced", name, addr))
}

// supersededHello is the hello that tells a replaced start, the one with
// incarnation, that it was replaced (see fieldSuperseded).
func (t *transport) supersededHello(incarnation string) frame {
	return frame{typ: frameHello, node: t.name, identity: incarnation, hello: helloSuperseded}
}

// serveStream runs a stream a peer dialed: it waits for the peer's hello,
// offers the stream for calls to that peer, and serves it until either side
// ends it.
func (t *transport) serveStream(ss grpc.ServerStream) error {
	var first []byte
	if err := ss.RecvMsg(&first); err != nil {
		return err
	}
	var hello *frame
	rest := 0
	err := decodeBatch(first, func(f *frame) {
		if hello == nil {
			h := *f
			hello = &h
			return
		}
		rest++
	})
	if err == nil && (hello == nil || hello.typ != frameHello || rest > 0) {
		err = fmt.Errorf("%w: a stream must start with a hello frame alone", ErrCorruptFrame)
	}
	if err != nil {
		t.log.Warn("cluster: refused a transport stream", "err", err)
		return status.Error(codes.InvalidArgument, err.Error())
	}
	if cluster := string(hello.payload); cluster != "" && cluster != t.cfg.ClusterName {
		// A node of another cluster on the same network, which dialed an
		// address that was one of its members' (see answeredBy). A hello
		// without a name is left to the dialer, which checks the answer.
		t.log.Warn("cluster: refused a transport stream from a node of another cluster", "peer", hello.node, "addr", hello.message, "cluster", cluster)
		return status.Errorf(codes.FailedPrecondition, "cluster: node %s at %s is of cluster %q, not of %s's %q", t.name, t.advertised, t.cfg.ClusterName, hello.node, cluster)
	}
	if hello.identity != "" && t.handler.retired(hello.node, hello.identity) {
		// An earlier start of the member, which a later one replaced:
		// tell it, and serve none of its requests (see
		// retiredIncarnations). The answer goes before the status that
		// ends the stream.
		t.log.Warn("cluster: refused a stream from a replaced start of a member", "peer", hello.node, "addr", hello.message, "incarnation", hello.identity)
		f := t.supersededHello(hello.identity)
		answer := appendFrame(nil, &f)
		_ = ss.SendMsg(&answer) // if it fails, the dialer is gone already
		return status.Errorf(codes.FailedPrecondition, "cluster: %s: %v", hello.node, ErrSuperseded)
	}
	ctx, cancel := context.WithCancel(ss.Context())
	defer cancel()
	c := newConn(t, hello.node, hello.message, ss, cancel, nil)
	c.inc, c.replaced = hello.identity, hello.method
	if hello.hello&helloLeaving != 0 {
		c.peerLeaving.Store(true)
	}
	// The dialer understands name ids: use them (see nameRefs). Set before
	// track, after which other goroutines may queue frames on c.
	c.dict.on = hello.hello&helloNames != 0
	if !t.track(c) {
		return errRefusedAsClosing
	}
	if c.peerLeaving.Load() {
		// Once c is tracked: the refresh this asks for finds the peer
		// leaving by its open streams (see leaves), and one that ran
		// before c was in the table would miss it, with no later one to
		// come until the gossip has the leave.
		t.handler.heardLeaving()
	}
	if c.dict.on {
		// Say that we understand them too, and which start answers: the
		// dialer's view may have an earlier one at this address (see
		// answerIn).
		answer := frame{typ: frameHello, node: t.name, identity: t.incarnation, hello: helloNames, payload: []byte(t.cfg.ClusterName)}
		_ = c.send(ctx, &answer) // fails only if the conn closed
	}
	if t.leaving.Load() {
		c.sayLeaving() // as in open
	}
	if c.peerLeaving.Load() || t.handler.departed(c.peer, c.addr, c.inc) {
		// A member that is leaving passes on what it holds, and may dial
		// us to do so; it then ends its streams (farewell), and this one
		// can end only once we said bye too. It says it is leaving before
		// the gossip may say so.
		c.bye()
	} else {
		t.offer(c)
	}
	c.start(nil)
	select {
	case <-c.done:
	case <-ctx.Done():
		c.close(newError(codes.Unavailable, ErrUnavailable, "cluster: stream from %s ended: %v", c.peer, ctx.Err()))
		<-c.done
	}
	if err := c.corruptErr(); err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	return nil
}

// offer makes an accepted stream the one used for calls to its peer, unless
// there already is one.
func (t *transport) offer(c *conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.peers[c.peer]; ok {
		return
	}
	e := &peerEntry{ready: make(chan struct{}), conn: c}
	close(e.ready)
	t.peers[c.peer] = e
}

// dropPeer closes the streams to a member that left or failed, so calls in
// flight to it fail at once (and are retried) instead of waiting for their
// deadline.
//
// Only the streams that may be to the member at addr close: a new
// incarnation of the same name, at another address, keeps its own. addr
// "" closes every stream to the name.
func (t *transport) dropPeer(name, addr string) {
	t.mu.Lock()
	delete(t.closedPeers, name) // it left or failed: the view no longer sends there
	delete(t.unreachable, name)
	var victims []*conn
	for c := range t.conns {
		if c.peer == name && (addr == "" || c.at(addr)) {
			victims = append(victims, c)
		}
	}
	t.mu.Unlock()
	for _, c := range victims {
		c.close(newError(codes.Unavailable, ErrUnavailable, "cluster: member %s left or failed", name))
	}
}

// retire stops handing out c for new requests: it said bye (see conn.bye).
func (t *transport) retire(c *conn) {
	t.last.CompareAndSwap(c, nil)
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.peers[c.peer]; e != nil && e.conn == c {
		delete(t.peers, c.peer)
	}
}

// byeTo says bye on every stream to a member's start incarnation that is
// leaving gracefully: this node sends it nothing more, and the leaver's
// streams can end without losing what is on its way (see farewell). A
// stream of a later start under the name, which may have dialed already,
// at the same address too, is not the leaver's (see conn.of).
func (t *transport) byeTo(name, incarnation string) {
	for _, c := range t.openConns() {
		if c.peer == name && c.of(incarnation) {
			c.bye()
		}
	}
}

// openConns returns the open conns.
func (t *transport) openConns() []*conn {
	t.mu.Lock()
	defer t.mu.Unlock()
	conns := make([]*conn, 0, len(t.conns))
	for c := range t.conns {
		conns = append(conns, c)
	}
	return conns
}

// farewell ends the streams of a node that leaves gracefully, without
// losing a one-way message on its way through them, and reports false if
// ctx ended first. It ends the open streams (see farewellRound), then
// those opened meanwhile, until none is left and no lane forwards what a
// stream brought: a peer whose view does not have the leave yet may still
// dial this node to send or forward to it, and this node may dial an owner
// to pass on what still reaches it, even from a stream that has ended
// since. Once nothing is left, it takes no new stream (see lastConns).
func (t *transport) farewell(ctx context.Context) bool {
	for {
		conns, lanes := t.lastConns()
		switch {
		case len(conns) > 0:
			if !t.farewellRound(ctx, conns) {
				return false
			}
		case lanes: // only lanes of streams that ended: they may dial
			if !t.waitLanes(ctx) {
				return false
			}
		default:
			return true
		}
	}
}

// lastConns returns the open conns, and whether a lane is busy (see
// busyLanes). When there are neither, it refuses new conns from then on,
// under the same lock: a peer that dials this node after its farewell (its
// view has not had the leave yet) is refused before it sends anything (see
// open), and so loses nothing; it places its message again or returns
// ErrUnavailable, where its stream would otherwise be cut with the message
// on it when the node closes.
func (t *transport) lastConns() (conns []*conn, lanes bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	conns, lanes = t.censusLocked()
	if len(conns) == 0 && !lanes {
		t.refusing = true
	}
	return conns, lanes
}

// census returns the open conns, and whether a lane is busy.
func (t *transport) census() ([]*conn, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.censusLocked()
}

// censusLocked is census with t.mu held.
func (t *transport) censusLocked() ([]*conn, bool) {
	var conns []*conn
	for c := range t.conns {
		if !isDone(c.done) { // a conn that closed may not have left the table yet
			conns = append(conns, c)
		}
	}
	return conns, t.busyLanes > 0
}

// laneBusy counts a lane that takes its first request (see busyLanes).
func (t *transport) laneBusy() {
	t.mu.Lock()
	t.busyLanes++
	t.mu.Unlock()
}

// laneIdle counts a lane that emptied, and wakes waitLanes when it was the
// last busy one.
func (t *transport) laneIdle() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.busyLanes--
	if t.busyLanes == 0 && t.lanesIdle != nil {
		close(t.lanesIdle)
		t.lanesIdle = nil
	}
}

// waitLanes waits until no lane is busy, and reports false if ctx ended
// first.
func (t *transport) waitLanes(ctx context.Context) bool {
	t.mu.Lock()
	if t.busyLanes == 0 {
		t.mu.Unlock()
		return true
	}
	if t.lanesIdle == nil {
		t.lanesIdle = make(chan struct{})
	}
	idle := t.lanesIdle
	t.mu.Unlock()
	select {
	case <-idle:
		return true
	case <-ctx.Done():
		return false
	}
}

// farewellRound ends conns, in three steps over each:
//
//  1. Wait until each peer said bye: it saw the leave and sends nothing
//     more. Until then, what it sends reaches this node, which forwards
//     one-way messages to their new owners through the streams' lanes.
//     Wait then until every lane is empty, those of streams that ended
//     included, and again for the byes of the streams opened meanwhile (a
//     forward may dial a peer).
//  2. Say bye on each stream, behind everything queued on it: the
//     forwards above included.
//  3. Wait until each stream ended: each side's frames read by the other
//     before the end (see conn.endStep), where closing them at once
//     would drop what gRPC still buffers.
func (t *transport) farewellRound(ctx context.Context, conns []*conn) bool {
	for {
		for _, c := range conns {
			select {
			case <-c.heard:
			case <-c.done:
			case <-ctx.Done():
				return false
			}
		}
		if !t.waitLanes(ctx) {
			return false
		}
		// Each of conns heard its bye, and every lane is empty, which a
		// lane of conns stays: no request comes after a bye. Done, unless
		// another stream opened meanwhile (a forward may dial a peer, a
		// peer may dial this node), whose requests may have filled a lane
		// again even if it has ended since.
		now, lanes := t.census()
		if !lanes && !slices.ContainsFunc(now, func(c *conn) bool { return !slices.Contains(conns, c) }) {
			conns = now
			break
		}
		conns = now
	}
	for _, c := range conns {
		c.bye()
	}
	for _, c := range conns {
		select {
		case <-c.done:
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// close ends every stream and stops the server. With a live ctx it lets the
// server finish its handlers; when ctx ends it stops it at once.
func (t *transport) close(ctx context.Context) {
	t.mu.Lock()
	t.closed = true
	conns := make([]*conn, 0, len(t.conns))
	for c := range t.conns {
		conns = append(conns, c)
	}
	t.mu.Unlock()
	err := newError(codes.Unavailable, ErrNodeClosed, "cluster: node %s is closed", t.name)
	for _, c := range conns {
		c.close(err)
	}
	t.cancel()
	// A tell or a dial in progress now fails with t.ctx, and a tell on a
	// stream ends with its conn: each is over soon.
	t.tells.Wait()
	t.dials.Wait()
	t.servers.close()
	stopped := make(chan struct{})
	go func() {
		t.server.GracefulStop()
		close(stopped)
	}()
	patience := time.NewTimer(gracefulStopPatience)
	defer patience.Stop()
	select {
	case <-stopped:
	case <-ctx.Done():
		t.server.Stop()
		<-stopped
	case <-patience.C:
		t.server.Stop()
		<-stopped
	}
	_ = t.lis.Close() // if serve never ran; the server closed it otherwise
}

// gracefulStopPatience bounds how long close lets the gRPC server finish
// its handlers. Every conn is closed by then, and a graceful leave passed
// on what it held in its farewell; but a stream to a peer that reads
// nothing (a hung process) does not end, as gRPC queues its end behind the
// data the peer's window holds back, and GracefulStop waited for it for
// good (the keepalive ends it only after twice Config.KeepaliveTime, and
// never if the peer's transport answers the pings).
const gracefulStopPatience = time.Second

// stats returns how many frames the open conns queued and in how many
// gRPC messages they went.
func (t *transport) stats() (frames, batches uint64) {
	for _, c := range t.openConns() {
		c.mu.Lock()
		frames += c.framesQueued
		batches += c.batchesSent
		c.mu.Unlock()
	}
	return frames, batches
}
