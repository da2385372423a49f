package cluster

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// brokenStream is a stream whose every send fails, as a stream does whose
// TCP connection broke under it, and whose receive is never called (the
// test starts no reader).
type brokenStream struct{ sends atomic.Int32 }

var errBrokenPipe = errors.New("write: broken pipe")

func (s *brokenStream) SendMsg(any) error { s.sends.Add(1); return errBrokenPipe }
func (s *brokenStream) RecvMsg(any) error { panic("cluster test: brokenStream has no reader") }

// TestLoneCallWhoseWriteFails checks the call that registered itself and
// then failed to write its own request (see conn.queue's writeAlone): it
// returns ErrUnavailable at once rather than waiting for a reply, the conn
// is closed with nothing left registered, a later call fails without
// writing, and the call's reply channel, which the conn's close sent an end
// to, is not recycled for another call to read that end as its own.
func TestLoneCallWhoseWriteFails(t *testing.T) {
	t.Parallel()
	n := startNode(t, testConfig(t))
	tr := n.transport
	// Whatever the pool holds from the node's start is taken out, so that
	// what is found in it below was put there by the calls.
	for tr.replies.Get() != nil {
	}

	// sync.Pool drops a quarter of its Puts at random under -race: the
	// failed call is repeated so that a recycled channel would be found.
	// The empty channel of the call on the closed conn is recycled, and
	// taken out again below.
	for range 16 {
		s := &brokenStream{}
		canceled := false
		c := newConn(tr, "peer", "", s, func() { canceled = true }, nil)
		_, err := c.call(context.Background(), &frame{typ: frameRequest, kind: "Counter", identity: "a", method: "Add"})
		if !errors.Is(err, ErrUnavailable) || !errors.Is(c.closedErr(), ErrUnavailable) {
			t.Fatalf("call on a broken stream: %v (the conn's error %v), want ErrUnavailable for both", err, c.closedErr())
		}
		if !isDone(c.done) || !canceled {
			t.Fatal("the conn was not closed by its failed write")
		}
		c.mu.Lock()
		left := len(c.calls)
		c.mu.Unlock()
		if left != 0 {
			t.Fatalf("%d calls still registered on the closed conn", left)
		}
		if _, err := c.call(context.Background(), &frame{typ: frameRequest, kind: "Counter", identity: "a", method: "Add"}); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("call on the closed conn: %v, want ErrUnavailable", err)
		}
		if got := s.sends.Load(); got != 1 {
			t.Fatalf("%d sends on the stream, want the failed call's one", got)
		}
		// Checked after each call: a next call that took a recycled channel
		// with an end in it would block the conn's close sending its own.
		for {
			ch, ok := tr.replies.Get().(chan frame)
			if !ok {
				break
			}
			if len(ch) != 0 {
				t.Fatalf("a recycled reply channel holds a frame of type %d: the next call would take it as its reply", (<-ch).typ)
			}
		}
	}
}

// TestACallWaitsForADialNoLongerThanItsDeadline: the first call to a peer
// that accepts TCP connections and never answers (a paused process) dials
// it, and must still return at its own deadline, not after DialTimeout
// (an hour here), as the callers waiting for the same dial do.
func TestACallWaitsForADialNoLongerThanItsDeadline(t *testing.T) {
	t.Parallel()
	addr := hungListener(t)
	cfg := testConfig(t)
	cfg.DialTimeout = time.Hour
	n := startNode(t, cfg)
	holdView(t, n, func(members []Member) []Member {
		return append(members, Member{Name: "paused", GRPCAddr: addr, Kinds: []string{echoKind}, Status: StatusAlive})
	})
	done := make(chan error, 2)
	for range 2 { // the caller that dials, and one that waits for its dial
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			_, err := n.Invoke(ctx, addCall("a", 1), WithoutRetry())
			done <- err
		}()
	}
	for range 2 {
		if err := receive(t, done, "a call to a peer that never answers"); status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("the call returned %v, want its deadline's error", err)
		}
	}
}

// hungListener listens on a loopback port, accepts every connection and
// never reads or writes: a paused process. It returns its address.
func hungListener(t *testing.T) string {
	t.Helper()
	lis, hold := heldListener(t)
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			hold(c) // accepted, never read or written
		}
	}()
	return lis.Addr().String()
}

// heldListener listens on a loopback port, and returns the listener and a
// function that keeps a connection until the test ends, when it is closed
// with the listener.
func heldListener(t *testing.T) (net.Listener, func(...net.Conn)) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var held []net.Conn
	t.Cleanup(func() {
		_ = lis.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			_ = c.Close()
		}
	})
	return lis, func(cs ...net.Conn) {
		mu.Lock()
		defer mu.Unlock()
		held = append(held, cs...)
	}
}

// stalledPeer is a transport peer that answers a stream's hello and then
// never reads from it: a process hung with its socket open. It answers as
// a node of the dialer's cluster.
type stalledPeer struct{ stop chan struct{} }

func (p *stalledPeer) serveStream(ss grpc.ServerStream) error {
	var hello []byte
	if err := ss.RecvMsg(&hello); err != nil {
		return err
	}
	var cluster []byte
	if err := decodeBatch(hello, func(f *frame) { cluster = f.payload }); err != nil {
		return err
	}
	answer := appendFrame(nil, &frame{typ: frameHello, node: "stalled", hello: helloNames, payload: cluster})
	if err := ss.SendMsg(&answer); err != nil {
		return err
	}
	<-p.stop
	return nil
}

// startStalledPeer serves a stalledPeer on loopback and returns its address.
func startStalledPeer(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stalledPeer{stop: make(chan struct{})}
	s := grpc.NewServer(grpc.ForceServerCodecV2(rawCodec{}), grpc.InitialWindowSize(flowWindow),
		grpc.InitialConnWindowSize(flowWindow), grpc.MaxRecvMsgSize(64<<20))
	s.RegisterService(transportDesc(), p)
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(func() {
		close(p.stop)
		s.Stop()
	})
	return lis.Addr().String()
}

// TestALoneWriteThatEndsLateKeepsItsStream: a call's context may end
// while the call writes its own request, with the write only finishing:
// the caller has yet to be rescheduled to see it done. The stream must not
// be reset then (it was, by a cancelled call whose request had reached the
// grain, failing the stream's other calls); only a write still in progress
// after a grace is taken for one the peer holds (see
// TestALoneCallReturnsAtItsDeadlineWhenItsWriteBlocks).
func TestALoneWriteThatEndsLateKeepsItsStream(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.loneWriteGrace = time.Hour // the write below always ends within it
	n, peer := startNode(t, cfg), startNode(t, testConfig(t))
	c, err := n.transport.open(&Member{Name: peer.Name(), GRPCAddr: peer.transport.addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	c.mu.Lock() // a lone write begins, as in writeAlone
	c.lone.seq++
	c.lone.active = true
	seq := c.lone.seq
	c.mu.Unlock()
	c.loneWriteLate(seq) // its call ends
	if isDone(c.done) {
		t.Fatal("the stream was reset while a write was finishing")
	}
	c.mu.Lock() // the write ends
	c.lone.active = false
	c.mu.Unlock()
	f := frame{typ: frameRequest, oneWay: oneWaySent, kind: "k", identity: "i", method: "m"}
	if err := c.send(context.Background(), &f); err != nil {
		t.Fatalf("the stream took no more frames: %v", err)
	}
}

// TestALoneCallReturnsAtItsDeadlineWhenItsWriteBlocks: a call alone on its
// stream writes its own request, and gRPC's SendMsg blocks once the peer
// stopped reading after large messages filled the stream's window. The
// call must still return at its deadline, its own or the shared one of a
// call without: its write is ended by resetting the stream, and later
// calls fail on the reset stream at once.
func TestALoneCallReturnsAtItsDeadlineWhenItsWriteBlocks(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		deadline func(n *Node) (context.Context, context.CancelFunc)
	}{
		{"its own deadline", func(*Node) (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 100*time.Millisecond)
		}},
		{"the shared deadline of a call without one", func(n *Node) (context.Context, context.CancelFunc) {
			return n.deadlines.with(context.Background())
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig(t)
			cfg.DefaultCallTimeout = 100 * time.Millisecond
			n := startNode(t, cfg)
			c, err := n.transport.open(&Member{Name: "stalled", GRPCAddr: startStalledPeer(t)})
			if err != nil {
				t.Fatal(err)
			}
			// Two one-way messages of nearly MaxFrameBytes: the first fills
			// the peer's window, the second stays in gRPC's buffers, and the
			// writer, done with both, goes idle.
			for range 2 {
				f := frame{typ: frameRequest, oneWay: oneWaySent, kind: "k", identity: "i", method: "m", payload: make([]byte, 4<<20-4096)}
				if err := c.send(context.Background(), &f); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, waitTimeout, "the writer to hand both messages to gRPC", func() bool {
				c.mu.Lock()
				defer c.mu.Unlock()
				return !c.writing && len(c.batches) == 0
			})
			done := make(chan error, 1)
			go func() {
				ctx, cancel := tc.deadline(n)
				defer cancel()
				_, err := c.call(ctx, &frame{typ: frameRequest, kind: "k", identity: "i", method: "m"})
				done <- err
			}()
			if err := receive(t, done, "the call whose write blocks"); status.Code(err) != codes.DeadlineExceeded {
				t.Fatalf("the call returned %v, want its deadline's error", err)
			}
			receive(t, c.done, "the stuck stream to be reset")
			if _, err := c.call(context.Background(), &frame{typ: frameRequest, kind: "k", identity: "i", method: "m"}); !errors.Is(err, ErrUnavailable) {
				t.Fatalf("a call on the reset stream returned %v, want ErrUnavailable", err)
			}
		})
	}
}

// TestAPeerGrainSeesWhyItsCallerGaveUp: the context of a request a node
// serves for a peer ends as its caller's did: with
// context.DeadlineExceeded when the caller's deadline passed (its own, or
// the shared one of a call made without one), with context.Canceled when
// the caller cancelled, as a grain on the caller's own node sees it. The
// requests here carry no deadline, so only the caller's cancel frame ends
// their context on the owner. Before, a cancel frame said nothing of why,
// and a grain on a peer saw context.Canceled at its caller's deadline.
func TestAPeerGrainSeesWhyItsCallerGaveUp(t *testing.T) {
	t.Parallel()
	nodes, hs := echoCluster(t, 2, 0, nil)
	owner := nodes[1]
	h := hs[owner.Name()]
	id := identityOwnedBy(t, nodes, owner)
	add(t, nodes[0], id, 0) // activates the grain and opens the stream to its owner
	c := connTo(t, nodes[0], owner.Name())
	for _, tc := range []struct {
		name string
		// ctx returns the caller's context, and what ends it: a cancel,
		// or its deadline passing.
		ctx  func() (context.Context, context.CancelFunc)
		want error
	}{
		{"cancelled", func() (context.Context, context.CancelFunc) {
			return context.WithCancel(context.Background())
		}, context.Canceled},
		{"deadline", func() (context.Context, context.CancelFunc) {
			d := newPassableDeadline()
			return d, d.pass
		}, context.DeadlineExceeded},
		{"shared deadline", func() (context.Context, context.CancelFunc) {
			d := newPassableDeadline()
			s := &sharedDeadline{ctx: d, at: d.at}
			s.background = &deadlineCtx{Context: context.Background(), d: s}
			return s.background, d.pass
		}, context.DeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The caller's deadline passes, or it cancels, once the grain
			// runs: a deadline of its own could pass first on a starved
			// machine, before the request reached the grain.
			ctx, end := tc.ctx()
			defer end()
			done := make(chan error, 1)
			go func() {
				_, err := c.call(ctx, &frame{typ: frameRequest, kind: echoKind, identity: id, method: methodBlock})
				done <- err
			}()
			receive(t, h.entered, "the request to reach the grain")
			end()
			if err, want := receive(t, done, "the call to return"), status.Code(contextError(tc.want)); status.Code(err) != want {
				t.Fatalf("the call returned %v, want %v", err, want)
			}
			if err := receive(t, h.canceled, "the grain to see its context end"); err != tc.want {
				t.Fatalf("the grain's context ended with %v, want %v", err, tc.want)
			}
		})
	}
}

// passableDeadline is a context with a deadline an hour away that passes
// when the test says so (pass): Err is then context.DeadlineExceeded, as
// for a deadline that passed by itself.
type passableDeadline struct {
	context.Context // Background: its values
	at              time.Time
	done            chan struct{}
	once            sync.Once
}

func newPassableDeadline() *passableDeadline {
	return &passableDeadline{Context: context.Background(), at: time.Now().Add(time.Hour), done: make(chan struct{})}
}

// pass makes the deadline pass.
func (d *passableDeadline) pass() { d.once.Do(func() { close(d.done) }) }

// Deadline implements context.Context.
func (d *passableDeadline) Deadline() (time.Time, bool) { return d.at, true }

// Done implements context.Context.
func (d *passableDeadline) Done() <-chan struct{} { return d.done }

// Err implements context.Context.
func (d *passableDeadline) Err() error {
	if isDone(d.done) {
		return context.DeadlineExceeded
	}
	return nil
}

// TestATransportClosedBeforeItServedFreesItsPort: a start that fails after
// its transport listened and before it served (Node.start: the transport
// serves once it knows its start) closes the transport, which must close
// the listener that the gRPC server never took: the port is free again,
// for a retried start at the same address.
func TestATransportClosedBeforeItServedFreesItsPort(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t).withDefaults()
	tr, err := newTransport(cfg.NodeName, &cfg, testLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := tr.addr().String()
	tr.close(t.Context())
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen again at %s after the close: %v", addr, err)
	}
	_ = lis.Close()
}
