package cluster

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Tests of streams whose peer stops answering at the transport level while
// the view keeps it alive: a network path that drops the transport's
// packets silently (a firewall or a NAT that lost the connection's state),
// while the gossip's get through. Nothing but the transport's keepalive
// pings can tell such a stream from an idle one.

// darkProxy forwards the TCP connections it accepts on loopback to a
// target, until goDark turns those open then into a black hole: it
// forwards nothing more either way and reads nothing more, and keeps both
// sockets open, so that neither end hears a reset or an end (no RST, no
// FIN). Connections accepted later are forwarded again, as a new
// connection through a firewall that lost an old one's state is.
type darkProxy struct {
	addr     string
	target   atomic.Pointer[string]
	accepted atomic.Int32 // connections forwarded
	// pings counts the HTTP/2 pings the dialers sent, and pongs the
	// acknowledgements their peers sent back, through the proxy.
	pings, pongs atomic.Int32
	mu           sync.Mutex
	dark         chan struct{} // closed by goDark, for the connections accepted before it
}

// startDarkProxy starts a darkProxy on loopback; its target is set with
// setTarget, and a connection that comes before is closed.
func startDarkProxy(t *testing.T) *darkProxy {
	t.Helper()
	lis, hold := heldListener(t)
	p := &darkProxy{addr: lis.Addr().String(), dark: make(chan struct{})}
	go func() {
		for {
			in, err := lis.Accept()
			if err != nil {
				return
			}
			to := p.target.Load()
			if to == nil {
				_ = in.Close()
				continue
			}
			out, err := net.Dial("tcp", *to)
			if err != nil {
				_ = in.Close()
				continue
			}
			hold(in, out) // closed when the test ends, dark or not
			p.accepted.Add(1)
			p.mu.Lock()
			dark := p.dark
			p.mu.Unlock()
			go forwardUntilDark(out, in, dark, &http2Pings{preface: len(http2Preface), count: &p.pings})
			go forwardUntilDark(in, out, dark, &http2Pings{acks: true, count: &p.pongs})
		}
	}()
	return p
}

func (p *darkProxy) setTarget(addr string) { p.target.Store(&addr) }

// goDark turns the connections open now into a black hole.
func (p *darkProxy) goDark() {
	p.mu.Lock()
	defer p.mu.Unlock()
	close(p.dark)
	p.dark = make(chan struct{})
}

// forwardUntilDark copies src to dst until dark is closed, when it stops
// reading and drops what it read last, or until src ends, which it passes
// on by closing dst. pings counts the HTTP/2 pings in what it forwards.
func forwardUntilDark(dst, src net.Conn, dark <-chan struct{}, pings *http2Pings) {
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if isDone(dark) {
			return
		}
		if n > 0 {
			pings.scan(buf[:n])
			if _, werr := dst.Write(buf[:n]); werr != nil && err == nil {
				err = werr
			}
		}
		if err != nil {
			_ = dst.Close()
			return
		}
	}
}

// http2Preface is what an HTTP/2 client sends first, before any frame.
const http2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// http2Pings counts the PING frames in one direction of an HTTP/2
// connection, read in pieces as they come: those that ask (acks false), or
// those that acknowledge (acks true). A frame is a 9-byte header (a 24-bit
// length, a type, flags, a stream) and its payload; a PING is type 6, with
// flag 1 when it acknowledges one.
type http2Pings struct {
	acks    bool
	count   *atomic.Int32
	preface int     // bytes of the client's preface still to skip
	header  [9]byte // the header being read
	got     int     // how much of it was read
	skip    int     // payload bytes still to skip
}

// scan counts the pings in b, the next bytes of the stream.
func (p *http2Pings) scan(b []byte) {
	for len(b) > 0 {
		switch {
		case p.preface > 0:
			n := min(p.preface, len(b))
			p.preface -= n
			b = b[n:]
		case p.skip > 0:
			n := min(p.skip, len(b))
			p.skip -= n
			b = b[n:]
		default:
			n := copy(p.header[p.got:], b)
			p.got += n
			b = b[n:]
			if p.got < len(p.header) {
				return
			}
			p.got = 0
			p.skip = int(p.header[0])<<16 | int(p.header[1])<<8 | int(p.header[2])
			if ping, ack := p.header[3] == 6, p.header[4]&1 != 0; ping && ack == p.acks {
				p.count.Add(1)
			}
		}
	}
}

// openConnTo returns n's one open stream to the member named peer.
func openConnTo(t *testing.T, n *Node, peer string) *conn {
	t.Helper()
	var found []*conn
	for _, c := range n.transport.openConns() {
		if c.peer == peer {
			found = append(found, c)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s has %d open streams to %s, want 1", n.Name(), len(found), peer)
	}
	return found[0]
}

// lostPeer checks that err, a call's, is the error of a call in flight to
// a peer that failed: ErrUnavailable, which Invoke retries.
func lostPeer(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, ErrUnavailable) || status.Code(err) != codes.Unavailable || !retryable(err) {
		t.Errorf("%s: %v, want ErrUnavailable, retryable", what, err)
	}
}

// TestAStreamWhosePeerGoesDarkEnds: A's stream to B goes through a proxy
// that then goes dark, the view keeping both alive, with a call in flight
// each way (B calls A on the stream A dialed). Each side must close the
// stream within its keepalive's bound: the call in flight fails with
// ErrUnavailable, as on a peer that failed (WithoutRetry here; Invoke
// retries it), the request each side served for the other ends, the
// stream leaves each transport (serveStream returns as it does), and the
// next call dials again. It takes about 12 s: the dialer pings after 10 s
// at the earliest, gRPC's floor for clients, which a test cannot lower;
// the acceptor, which has no such floor, ends its side first.
func TestAStreamWhosePeerGoesDarkEnds(t *testing.T) {
	t.Parallel()
	proxy := startDarkProxy(t)
	nodes, hs := echoCluster(t, 2, time.Hour, func(cfg *Config) {
		cfg.KeepaliveTime = 2 * time.Second
		if strings.HasSuffix(cfg.NodeName, "-n1") {
			cfg.GRPCAdvertiseAddr = proxy.addr
		}
	})
	a, b := nodes[0], nodes[1]
	proxy.setTarget(b.GRPCAddr())
	toB, toA := identityOwnedBy(t, nodes, b), identityOwnedBy(t, nodes, a)
	// A dials B through the proxy; B, which has no stream of its own to A,
	// calls A on that one.
	if got := where(t, a, toB); got != b.Name() {
		t.Fatalf("%s ran on %s, want %s", toB, got, b.Name())
	}
	dialed, accepted := openConnTo(t, a, b.Name()), openConnTo(t, b, a.Name())
	if got := where(t, b, toA); got != a.Name() {
		t.Fatalf("%s ran on %s, want %s", toA, got, a.Name())
	}
	if c := openConnTo(t, b, a.Name()); c != accepted || c.cc != nil {
		t.Fatal("B dialed A: its calls do not go through the proxy")
	}

	// Far past the keepalives' bound, and the test's waits below.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	fromA, fromB := make(chan error, 1), make(chan error, 1)
	go func() {
		_, err := a.Invoke(ctx, stringCall(methodBlock, toB, ""), WithoutRetry())
		fromA <- err
	}()
	go func() {
		_, err := b.Invoke(ctx, stringCall(methodBlock, toA, ""), WithoutRetry())
		fromB <- err
	}()
	receive(t, hs[b.Name()].entered, "A's call to reach its grain on B")
	receive(t, hs[a.Name()].entered, "B's call to reach its grain on A")
	proxy.goDark()

	// The acceptor's side ends first.
	lostPeer(t, "B's call in flight to A", receive(t, fromB, "B's call in flight to A to fail"))
	if err := receive(t, hs[b.Name()].canceled, "the request B served for A to end"); !errors.Is(err, context.Canceled) {
		t.Errorf("the request B served for A ended with %v, want context.Canceled", err)
	}
	waitFor(t, waitTimeout, "the stream to leave B's transport", func() bool {
		return !slices.Contains(b.transport.openConns(), accepted)
	})
	// Then the dialer's.
	lostPeer(t, "A's call in flight to B", receive(t, fromA, "A's call in flight to B to fail"))
	if err := receive(t, hs[a.Name()].canceled, "the request A served for B to end"); !errors.Is(err, context.Canceled) {
		t.Errorf("the request A served for B ended with %v, want context.Canceled", err)
	}
	waitFor(t, waitTimeout, "the stream to leave A's transport", func() bool {
		return !slices.Contains(a.transport.openConns(), dialed)
	})

	// The next call dials again, through the proxy, which forwards a new
	// connection.
	if got := where(t, a, toB); got != b.Name() {
		t.Fatalf("%s ran on %s, want %s", toB, got, b.Name())
	}
	if got := proxy.accepted.Load(); got != 2 {
		t.Errorf("the proxy forwarded %d connections, want 2: the first, and the next call's", got)
	}
}

// TestAnIdleStreamOutlivesItsKeepalives: a stream that carries nothing for
// four of its dialer's pings, through a proxy that forwards all along,
// must still be the one the next call takes. gRPC's server answers a
// client that pings more often than its enforcement policy allows (every
// 5 minutes by default) while it sends the client nothing with a GOAWAY,
// "too_many_pings", at the fourth ping, and closes the connection: an idle
// stream was cut every 40 s. The acceptor pings never here, so that the
// dialer's pings are its only frames; the proxy counts their answers. It
// takes about 40 s, idle: the dialer pings every 10 s at the soonest,
// gRPC's floor for clients, which a test cannot lower.
func TestAnIdleStreamOutlivesItsKeepalives(t *testing.T) {
	t.Parallel()
	proxy := startDarkProxy(t)
	nodes, _ := echoCluster(t, 2, time.Hour, func(cfg *Config) {
		if strings.HasSuffix(cfg.NodeName, "-n1") {
			cfg.GRPCAdvertiseAddr = proxy.addr
			cfg.KeepaliveTime = time.Hour
		} else {
			cfg.KeepaliveTime = minClientKeepalive
		}
	})
	a, b := nodes[0], nodes[1]
	proxy.setTarget(b.GRPCAddr())
	toB := identityOwnedBy(t, nodes, b)
	if got := where(t, a, toB); got != b.Name() {
		t.Fatalf("%s ran on %s, want %s", toB, got, b.Name())
	}
	dialed := openConnTo(t, a, b.Name())
	// The dialer's fourth ping comes 40 s after the call, and a GOAWAY
	// would come in its answer's place.
	waitFor(t, 8*minClientKeepalive, "the dialer's fourth keepalive ping to be answered", func() bool {
		return proxy.pongs.Load() >= 4
	})
	if got := where(t, a, toB); got != b.Name() {
		t.Fatalf("%s ran on %s, want %s", toB, got, b.Name())
	}
	if c := openConnTo(t, a, b.Name()); c != dialed {
		t.Error("the call after the idle period took a new stream: the idle one was closed")
	}
	if got := proxy.accepted.Load(); got != 1 {
		t.Errorf("the proxy forwarded %d connections, want 1: the idle stream was closed, and dialed again", got)
	}
}
