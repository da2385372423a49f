package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/protograin/protograin/cluster/storage"
)

func TestPlacementAgreesAcrossNodes(t *testing.T) {
	t.Parallel()
	nodes, _ := echoCluster(t, 3, 0, nil)
	owners := make(map[string]int)
	for i := range 300 {
		id := fmt.Sprintf("user-%d", i)
		want, ok := nodes[0].Owner(echoKind, id)
		if !ok {
			t.Fatalf("Owner(%s): no owner", id)
		}
		owners[want.Name]++
		for _, n := range nodes[1:] {
			if got, _ := n.Owner(echoKind, id); got.Name != want.Name {
				t.Fatalf("Owner(%s) = %s on %s, %s on %s", id, got.Name, n.Name(), want.Name, nodes[0].Name())
			}
		}
	}
	if len(owners) != 3 {
		t.Errorf("300 grains placed on %d nodes, want 3: %v", len(owners), owners)
	}
	// And calls run where Owner says, from every node.
	for i := range 10 {
		id := fmt.Sprintf("user-%d", i)
		owner, _ := nodes[0].Owner(echoKind, id)
		for _, n := range nodes {
			if got := where(t, n, id); got != owner.Name {
				t.Fatalf("%s ran on %s, Owner says %s", id, got, owner.Name)
			}
		}
	}
}

func TestConcurrentFirstCallsActivateOnce(t *testing.T) {
	t.Parallel()
	nodes, hs := echoCluster(t, 3, 0, nil)
	const calls = 100
	var wg sync.WaitGroup
	errs := make(chan error, calls)
	for i := range calls {
		wg.Go(func() {
			_, err := nodes[i%len(nodes)].Invoke(context.Background(), addCall("counter", 1))
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var news int64
	for _, h := range hs {
		news += h.news.Load()
	}
	if news != 1 {
		t.Errorf("New called %d times for 100 concurrent first calls, want 1", news)
	}
	if total := add(t, nodes[0], "counter", 0); total != calls {
		t.Errorf("total = %d, want %d", total, calls)
	}
}

func TestPassivationRunsOnDeactivateAndReactivates(t *testing.T) {
	t.Parallel()
	nodes, hs := echoCluster(t, 2, 50*time.Millisecond, nil)
	owner := nodeByName(nodes, where(t, nodes[0], "idle"))
	h := hs[owner.Name()]
	if got := add(t, nodes[0], "idle", 5); got != 5 {
		t.Fatalf("total = %d, want 5", got)
	}
	if id := receive(t, h.deactivated, "OnDeactivate after the idle timeout"); id != "idle" {
		t.Fatalf("OnDeactivate(%q), want idle", id)
	}
	waitFor(t, waitTimeout, "the activation to leave the table", func() bool { return owner.acts.count() == 0 })
	if got := add(t, nodes[1], "idle", 1); got != 1 {
		t.Errorf("total after reactivation = %d, want 1 (a fresh activation)", got)
	}
	if got := h.news.Load(); got != 2 {
		t.Errorf("New called %d times, want 2", got)
	}
}

func TestNegativeIdleTimeoutNeverPassivates(t *testing.T) {
	t.Parallel()
	nodes, hs := echoCluster(t, 1, -1, nil)
	add(t, nodes[0], "forever", 1)
	// Sweeps run every 10 ms; let several pass, observed through the
	// sweeper itself rather than a sleep.
	for range 5 {
		nodes[0].acts.passivate()
	}
	if n := nodes[0].acts.count(); n != 1 {
		t.Fatalf("%d activations, want 1", n)
	}
	if len(hs[nodes[0].Name()].deactivated) != 0 {
		t.Fatal("OnDeactivate ran for a grain that never passivates")
	}
}

func TestGracefulLeaveMovesGrains(t *testing.T) {
	t.Parallel()
	nodes, hs := echoCluster(t, 3, 0, nil)
	leaver := nodes[2]
	id := identityOwnedBy(t, nodes, leaver)
	add(t, nodes[0], id, 7)

	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := leaver.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if got := receive(t, hs[leaver.Name()].deactivated, "OnDeactivate on the leaving node"); got != id {
		t.Fatalf("OnDeactivate(%q), want %q", got, id)
	}
	select {
	case <-leaver.Done():
	default:
		t.Fatal("Done not closed after Shutdown")
	}
	waitFor(t, waitTimeout, "the others to see the leave", func() bool {
		m, _ := nodes[0].Owner(echoKind, id)
		return m.Name != leaver.Name()
	})
	if got := where(t, nodes[0], id); got == leaver.Name() {
		t.Fatalf("%s still runs on the node that left", id)
	}
	if err := leaver.Shutdown(ctx); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
	if err := leaver.Close(); err != nil {
		t.Errorf("Close after Shutdown: %v", err)
	}
}

func TestNodeFailureReactivatesElsewhere(t *testing.T) {
	t.Parallel()
	nodes, _ := echoCluster(t, 3, 0, nil)
	victim := nodes[1]
	id := identityOwnedBy(t, nodes, victim)
	add(t, nodes[0], id, 3)
	if err := victim.Close(); err != nil {
		t.Fatal(err)
	}
	// The next call fails over by itself, retrying until the failure
	// detector takes the victim out of placement.
	if got := where(t, nodes[0], id); got == victim.Name() {
		t.Fatalf("%s answered from the closed node", id)
	}
	if got := add(t, nodes[2], id, 1); got != 1 {
		t.Errorf("total = %d, want 1 (state was in memory on the failed node)", got)
	}
	waitFor(t, waitTimeout, "the failure to be detected", func() bool { return aliveCount(nodes[0]) == 2 })
}

func TestCallInFlightWhenOwnerDies(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		opts     []CallOption
		wantCode codes.Code
	}{
		{"retried", nil, codes.OK},
		{"without retry", []CallOption{WithoutRetry()}, codes.Unavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			nodes, hs := echoCluster(t, 3, 0, nil)
			victim := nodes[2]
			id := identityOwnedBy(t, nodes, victim)
			for name, h := range hs {
				if name != victim.Name() {
					h.releaseHeld() // Block returns at once elsewhere
				}
			}
			type result struct {
				resp string
				err  error
			}
			done := make(chan result, 1)
			go func() {
				resp, err := nodes[0].Invoke(context.Background(), stringCall(methodBlock, id, ""), tc.opts...)
				r := result{err: err}
				if err == nil {
					r.resp = resp.(*wrapperspb.StringValue).GetValue()
				}
				done <- r
			}()
			receive(t, hs[victim.Name()].entered, "the call to reach the owner")
			_ = victim.Close()
			r := receive(t, done, "the call to finish")
			if got := status.Code(r.err); got != tc.wantCode {
				t.Fatalf("code = %v (%v), want %v", got, r.err, tc.wantCode)
			}
			if r.err == nil && r.resp == victim.Name() {
				t.Fatalf("answered by the dead node")
			}
			if r.err != nil && !errors.Is(r.err, ErrUnavailable) {
				t.Errorf("error %v does not wrap ErrUnavailable", r.err)
			}
		})
	}
}

// TestGivingUpWhileInvokeWaitsToRetry: a caller that cancels while Invoke
// waits to retry an owner it could not reach gets Canceled, as a caller
// that cancels at any other time does; one whose deadline passes there
// gets Unavailable and ErrUnavailable, "gave up retrying", as documented:
// the retries ran out of time; one whose node closes there gets
// ErrNodeClosed, as the errors table says (it got ErrUnavailable). Before,
// the cancelled caller got that Unavailable too ("gave up retrying:
// context canceled"), so its status code did not tell its own
// cancellation from an outage.
func TestGivingUpWhileInvokeWaitsToRetry(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		cancel   bool          // the caller cancels once the dial failed
		close    bool          // the caller's node closes once the dial failed
		within   time.Duration // the caller's deadline, if not zero
		code     codes.Code
		sentinel error // wrapped by the error, if not nil
	}{
		{name: "cancelled", cancel: true, code: codes.Canceled},
		{name: "deadline", within: time.Second, code: codes.Unavailable, sentinel: ErrUnavailable},
		{name: "node closes", close: true, code: codes.Unavailable, sentinel: ErrNodeClosed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			nodes, _ := echoCluster(t, 2, 0, func(c *Config) { c.RetryBackoff, c.RetryBackoffMax = time.Hour, time.Hour })
			caller, owner := nodes[0], nodes[1]
			id := identityOwnedBy(t, nodes, owner)
			holdView(t, caller, func(m []Member) []Member { return m }) // the caller goes on placing the grain on owner
			_ = owner.Close()
			ctx, cancel := context.WithCancel(context.Background())
			if tc.within > 0 {
				ctx, cancel = context.WithTimeout(context.Background(), tc.within)
			}
			defer cancel()
			done := make(chan error, 1)
			go func() {
				_, err := caller.Invoke(ctx, addCall(id, 1))
				done <- err
			}()
			waitFor(t, waitTimeout, "the dial to the closed owner to fail", func() bool {
				tr := caller.transport
				tr.mu.Lock()
				defer tr.mu.Unlock()
				_, ok := tr.unreachable[owner.Name()]
				return ok
			})
			if tc.cancel {
				cancel()
			}
			if tc.close {
				_ = caller.Close()
			}
			err := receive(t, done, "Invoke to return")
			if status.Code(err) != tc.code || tc.sentinel != nil && !errors.Is(err, tc.sentinel) {
				t.Fatalf("Invoke returned %v (code %v), want %v (%v)", err, status.Code(err), tc.code, tc.sentinel)
			}
		})
	}
}

func TestClientOnlyNodeCallsGrains(t *testing.T) {
	t.Parallel()
	nodes, _ := echoCluster(t, 2, 0, nil)
	cfg := testConfig(t)
	cfg.NodeName += "-client"
	cfg.Seeds = []string{nodes[0].GossipAddr()}
	client := startNode(t, cfg)
	for _, n := range nodes {
		waitFor(t, waitTimeout, "the client to be seen", func() bool { return aliveCount(n) == 3 })
	}
	for i := range 20 {
		id := fmt.Sprintf("c-%d", i)
		if got := add(t, client, id, int64(i)); got != int64(i) {
			t.Fatalf("Add = %d, want %d", got, i)
		}
		if owner, _ := client.Owner(echoKind, id); owner.Name == client.Name() {
			t.Fatalf("a grain was placed on the node that hosts no kinds")
		}
	}
}

func TestErrorCodesLocalAndRemote(t *testing.T) {
	t.Parallel()
	nodes, _ := echoCluster(t, 2, 0, nil)
	local := identityOwnedBy(t, nodes, nodes[0])
	remote := identityOwnedBy(t, nodes, nodes[1])
	badUTF8 := Call{Kind: echoKind, Method: methodString, Request: wrapperspb.Bytes([]byte{0xff, 0xfe}), NewResponse: newString}

	tests := []struct {
		name     string
		call     func(id string) Call
		code     codes.Code
		msg      string // exact message, when set
		says     string // a part of the message, when set
		sentinel error
	}{
		{name: "status error keeps code and message", call: func(id string) Call { return stringCall(methodFail, id, "status:NOT_FOUND:no such thing") },
			code: codes.NotFound, msg: "no such thing"},
		{name: "plain error is Unknown", call: func(id string) Call { return stringCall(methodFail, id, "plain:it broke") },
			code: codes.Unknown, msg: "it broke"},
		{name: "panic is Internal", call: func(id string) Call { return stringCall(methodFail, id, "panic:boom") },
			code: codes.Internal, sentinel: ErrGrainPanic},
		{name: "nil response is Internal", call: func(id string) Call { return stringCall(methodFail, id, "nil") },
			code: codes.Internal, sentinel: ErrBadResponse},
		{name: "typed nil response is Internal", call: func(id string) Call { return stringCall(methodFail, id, "typednil") },
			code: codes.Internal, sentinel: ErrBadResponse},
		{name: "typed nil request", call: func(id string) Call {
			c := stringCall(methodString, id, "")
			c.Request = (*wrapperspb.StringValue)(nil)
			return c
		}, code: codes.InvalidArgument, sentinel: ErrBadRequest, says: ": the request is nil"},
		{name: "no NewResponse", call: func(id string) Call {
			c := stringCall(methodString, id, "")
			c.NewResponse = nil
			return c
		}, code: codes.InvalidArgument, sentinel: ErrBadRequest, says: ": Call.NewResponse is nil"},
		{name: "unknown method", call: func(id string) Call { return stringCall("/test.Echo/Nope", id, "") },
			code: codes.Unimplemented, sentinel: ErrUnknownMethod},
		{name: "unknown kind", call: func(id string) Call {
			c := stringCall(methodString, id, "")
			c.Kind = "test.Nope"
			return c
		}, code: codes.Unimplemented, sentinel: ErrUnknownKind},
		{name: "undecodable payload", call: func(id string) Call { c := badUTF8; c.Identity = id; return c },
			code: codes.InvalidArgument, sentinel: ErrBadRequest},
	}
	for _, where := range []struct{ name, id string }{{"local", local}, {"remote", remote}} {
		for _, tc := range tests {
			t.Run(where.name+"/"+tc.name, func(t *testing.T) {
				_, err := nodes[0].Invoke(context.Background(), tc.call(where.id))
				if got := status.Code(err); got != tc.code {
					t.Fatalf("code = %v (%v), want %v", got, err, tc.code)
				}
				if tc.msg != "" {
					if s, _ := status.FromError(err); s.Message() != tc.msg {
						t.Errorf("message = %q, want %q", s.Message(), tc.msg)
					}
				}
				if s, _ := status.FromError(err); !strings.Contains(s.Message(), tc.says) {
					t.Errorf("message = %q, want it to say %q", s.Message(), tc.says)
				}
				if tc.sentinel != nil && !errors.Is(err, tc.sentinel) {
					t.Errorf("error %v does not wrap %v", err, tc.sentinel)
				}
			})
		}
	}
}

func TestDeadlineAcrossNodes(t *testing.T) {
	t.Parallel()
	nodes, _ := echoCluster(t, 2, 0, nil)
	for _, owner := range nodes {
		id := identityOwnedBy(t, nodes, owner)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		_, err := nodes[0].Invoke(ctx, stringCall(methodBlock, id, ""))
		cancel()
		if got := status.Code(err); got != codes.DeadlineExceeded {
			t.Errorf("owner %s: code = %v (%v), want DeadlineExceeded", owner.Name(), got, err)
		}
	}
}

// TestDefaultCallTimeout checks the shared default deadline of calls made
// with a context that has none, both locally and across nodes, and that a
// context which can be cancelled still ends the call when cancelled.
func TestDefaultCallTimeout(t *testing.T) {
	t.Parallel()
	nodes, hs := echoCluster(t, 2, 0, func(c *Config) { c.DefaultCallTimeout = 100 * time.Millisecond })
	for _, owner := range nodes {
		id := identityOwnedBy(t, nodes, owner)
		h := hs[owner.Name()]
		_, err := nodes[0].Invoke(context.WithValue(context.Background(), ctxKey{}, 1), stringCall(methodBlock, id, ""))
		if got := status.Code(err); got != codes.DeadlineExceeded {
			t.Errorf("owner %s, no deadline: code = %v (%v), want DeadlineExceeded", owner.Name(), got, err)
		}
		receive(t, h.entered, "the first Block call")
		// Across nodes the caller's cancel frame may beat the owner's own
		// timer: it says that the deadline passed.
		if err := receive(t, h.canceled, "the grain seeing the deadline"); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("owner %s: the grain saw %v, want the deadline", owner.Name(), err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			receive(t, h.entered, "the second Block call")
			cancel()
		}()
		_, err = nodes[0].Invoke(ctx, stringCall(methodBlock, id, ""))
		if got := status.Code(err); got != codes.Canceled && got != codes.DeadlineExceeded {
			t.Errorf("owner %s, cancelled: code = %v (%v), want Canceled or DeadlineExceeded", owner.Name(), got, err)
		}
		receive(t, h.canceled, "the grain seeing the cancellation")
		if got := addWithin(t, nodes[0], id, 1); got != 1 {
			t.Errorf("owner %s: the grain answered %d after the timed-out calls, want 1", owner.Name(), got)
		}
	}
}

func TestGrainPanics(t *testing.T) {
	t.Parallel()
	// No sweeps, so that the failed activation is found by the next call.
	nodes, hs := echoCluster(t, 2, 0, func(c *Config) { c.PassivationInterval = time.Hour })
	for _, owner := range nodes {
		t.Run("owner "+owner.Name(), func(t *testing.T) {
			id := identityOwnedBy(t, nodes, owner)
			h := hs[owner.Name()]
			before := h.news.Load()
			add(t, nodes[0], id, 10)
			panicCall := stringCall(methodFail, id, "panic:boom")

			// One panic: Internal, and the grain still serves with its state.
			if _, err := nodes[0].Invoke(context.Background(), panicCall); status.Code(err) != codes.Internal {
				t.Fatalf("panic: code = %v (%v), want Internal", status.Code(err), err)
			}
			if got := add(t, nodes[0], id, 1); got != 11 {
				t.Fatalf("total after one panic = %d, want 11", got)
			}
			// Panics up to the restart limit (2 in testConfig), then one more.
			for range 2 {
				if _, err := nodes[0].Invoke(context.Background(), panicCall); status.Code(err) != codes.Internal {
					t.Fatalf("panic: code = %v (%v), want Internal", status.Code(err), err)
				}
			}
			_, err := nodes[0].Invoke(context.Background(), addCall(id, 1))
			if status.Code(err) != codes.Aborted || !errors.Is(err, ErrGrainFailed) {
				t.Fatalf("call after the restart limit: %v (code %v), want Aborted wrapping ErrGrainFailed", err, status.Code(err))
			}
			// Other grains on the node are unaffected, and the failed one
			// comes back fresh on its next call.
			other := identityOwnedBy(t, nodes, owner) + "-other"
			add(t, nodes[0], other, 1)
			if got := add(t, nodes[0], id, 1); got != 1 {
				t.Errorf("total after reactivation = %d, want 1", got)
			}
			if got := h.news.Load() - before; got < 2 {
				t.Errorf("New called %d times, want at least 2", got)
			}
		})
	}
}

func TestActivationFailure(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	h := newHooks(cfg.NodeName)
	h.activateErr = errors.New("no state for you")
	cfg.Kinds = []*Kind{newEchoKind(h, 0)}
	n := startNode(t, cfg)
	_, err := n.Invoke(context.Background(), addCall("x", 1))
	if !errors.Is(err, ErrActivation) {
		t.Fatalf("err = %v, want ErrActivation", err)
	}
	if n.acts.count() != 0 {
		t.Errorf("a failed activation stayed in the table")
	}
}

func TestShutdownAndCloseAreIdempotent(t *testing.T) {
	t.Parallel()
	nodes, _ := echoCluster(t, 1, 0, nil)
	n := nodes[0]
	add(t, n, "a", 1)
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := n.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown after Close: %v", err)
	}
	<-n.Done()
	_, err := n.Invoke(context.Background(), addCall("a", 1))
	if !errors.Is(err, ErrNodeClosed) || status.Code(err) != codes.Unavailable {
		t.Fatalf("Invoke on a closed node: %v, want ErrNodeClosed (Unavailable)", err)
	}
}

func TestStartErrors(t *testing.T) {
	t.Parallel()
	long := make([]*Kind, 40)
	for i := range long {
		long[i] = newEchoKind(newHooks(""), 0)
		long[i].Name = fmt.Sprintf("a.rather.long.package.name.for.testing.Service%02d", i)
	}
	dup := []*Kind{newEchoKind(newHooks(""), 0), newEchoKind(newHooks(""), 0)}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want error
		msg  string
	}{
		{"tags too large", func(c *Config) { c.Kinds = long }, ErrTagsTooLarge, ""},
		{"duplicate kind", func(c *Config) { c.Kinds = dup }, nil, `cluster: kind "test.Echo" is listed twice`},
		{"kind without New", func(c *Config) { c.Kinds = []*Kind{{Name: "x"}} }, nil, `cluster: kind "x" has no New function`},
		{"comma in kind name", func(c *Config) { c.Kinds = []*Kind{{Name: "a,b", New: func(string) any { return nil }}} }, nil,
			`cluster: kind name "a,b" contains ","`},
		{"NewRequest returns nil", func(c *Config) {
			k := newEchoKind(newHooks(""), 0)
			k.Methods[0].NewRequest = func() proto.Message { return nil }
			c.Kinds = []*Kind{k}
		}, nil, `cluster: method "/test.Echo/Add" of kind "test.Echo": NewRequest returned nil`},
		{"NewState returns nil", func(c *Config) {
			k := newEchoKind(newHooks(""), 0)
			k.NewState = func() proto.Message { return nil }
			c.Kinds = []*Kind{k}
		}, nil, `cluster: kind "test.Echo": NewState returned nil`},
		{"unknown flush mode", func(c *Config) {
			k := newEchoKind(newHooks(""), 0)
			k.Flush = 7
			c.Kinds = []*Kind{k}
		}, nil, `cluster: kind "test.Echo": unknown flush mode 7`},
		{"bad client ID", func(c *Config) { c.ClientID = "a\x00b" }, storage.ErrInvalid, ""},
		{"bad retry backoff", func(c *Config) { c.RetryBackoff, c.RetryBackoffMax = time.Second, time.Millisecond }, nil,
			"cluster: retry backoff 1s..1ms is not a valid range"},
		{"negative exactly-once window", func(c *Config) { c.State.WindowPerClient = -1 }, nil,
			"cluster: Config.State: MaxClients 0 and WindowPerClient -1 must not be negative"},
		{"negative commit timeout", func(c *Config) { c.CommitTimeout = -time.Second }, nil, "cluster: negative timeout -1s"},
		{"ClusterName too long", func(c *Config) { c.ClusterName = strings.Repeat("x", 256) }, nil,
			"cluster: Config.ClusterName is 256 bytes, over the 255 that gossip carries"},
		{"gossip key of a bad size", func(c *Config) { c.GossipKeys = [][]byte{make([]byte, 32), make([]byte, 10)} }, nil,
			"cluster: Config.GossipKeys[1] is 10 bytes; a key is 16, 24 or 32 bytes (AES-128, -192 or -256)"},
		{"TLS without a certificate", func(c *Config) { c.TLS = &tls.Config{} }, nil,
			"cluster: Config.TLS has no certificate for the node to serve the transport with (Certificates or GetCertificate)"},
		{"negative MaxActivations", func(c *Config) { c.MaxActivations = -1 }, nil,
			"cluster: Config.MaxActivations -1 is negative; zero means no limit"},
		{"negative ActivationLimit", func(c *Config) { c.ActivationLimit = -1 }, nil,
			"cluster: Config.ActivationLimit -1 is negative; zero means no limit"},
		{"negative MaxHeapBytes", func(c *Config) { c.MaxHeapBytes = -1 }, nil,
			"cluster: Config.MaxHeapBytes -1 is negative; zero means no limit"},
		{"ActivationLimit below MaxActivations", func(c *Config) { c.MaxActivations, c.ActivationLimit = 10, 9 }, nil,
			"cluster: Config.ActivationLimit 9 is below Config.MaxActivations 10"},
		{"negative DownAfter", func(c *Config) { c.KeepMajority, c.DownAfter = true, -time.Second }, nil, "cluster: negative timeout -1s"},
		{"keepalive under gRPC's floor", func(c *Config) { c.KeepaliveTime = 500 * time.Millisecond }, nil,
			"cluster: KeepaliveTime 500ms is under gRPC's minimum of 1s"},
		{"unreachable seed", func(c *Config) { c.Seeds = []string{"127.0.0.1:1"} }, nil, ""},
		{"bad bind address", func(c *Config) { c.BindAddr = "nonsense" }, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig(t)
			tc.edit(&cfg)
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			err := startFails(t, ctx, cfg)
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
			if tc.msg != "" && err.Error() != tc.msg {
				t.Errorf("err = %q, want %q", err, tc.msg)
			}
		})
	}
}

func TestJoinMovesGrainsToTheNewOwner(t *testing.T) {
	t.Parallel()
	nodes, hs := echoCluster(t, 2, 0, nil)
	const grains = 60
	for i := range grains {
		add(t, nodes[0], fmt.Sprintf("g-%d", i), 1)
	}
	cfg := testConfig(t)
	cfg.NodeName += "-joiner"
	cfg.Seeds = []string{nodes[0].GossipAddr()}
	jh := newHooks(cfg.NodeName)
	cfg.Kinds = []*Kind{newEchoKind(jh, 0)}
	joiner := startNode(t, cfg)
	all := append(nodes, joiner)
	waitConverged(t, all, 3)

	var moved []string
	for i := range grains {
		id := fmt.Sprintf("g-%d", i)
		if m, _ := nodes[0].Owner(echoKind, id); m.Name == joiner.Name() {
			moved = append(moved, id)
		}
	}
	if len(moved) == 0 || len(moved) == grains {
		t.Fatalf("%d of %d grains moved to the new node", len(moved), grains)
	}
	// The old owners deactivate exactly the grains that moved.
	deactivated := make(map[string]bool)
	for range moved {
		select {
		case id := <-hs[nodes[0].Name()].deactivated:
			deactivated[id] = true
		case id := <-hs[nodes[1].Name()].deactivated:
			deactivated[id] = true
		case <-time.After(waitTimeout):
			t.Fatalf("only %d of %d moved grains were deactivated", len(deactivated), len(moved))
		}
	}
	for _, id := range moved {
		if !deactivated[id] {
			t.Errorf("%s moved but was not deactivated", id)
		}
		if got := where(t, nodes[1], id); got != joiner.Name() {
			t.Errorf("%s runs on %s, want the new owner %s", id, got, joiner.Name())
		}
	}
	waitFor(t, waitTimeout, "the old owners' tables to shrink", func() bool {
		return nodes[0].acts.count()+nodes[1].acts.count() == grains-len(moved)
	})
}

func TestGrainCallsGrainOnAnotherNode(t *testing.T) {
	t.Parallel()
	nodes, _ := echoCluster(t, 2, 0, nil)
	caller := identityOwnedBy(t, nodes, nodes[0])
	callee := identityOwnedBy(t, nodes, nodes[1])
	for i := 1; i <= 3; i++ {
		resp, err := nodes[1].Invoke(context.Background(), stringCall(methodRelay, caller, callee))
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("%s/%s added: %d", echoKind, caller, i)
		if got := resp.(*wrapperspb.StringValue).GetValue(); got != want {
			t.Fatalf("Relay = %q, want %q", got, want)
		}
	}
}

func TestMembersReportAddressesKindsAndStatus(t *testing.T) {
	t.Parallel()
	nodes, _ := echoCluster(t, 2, 0, nil)
	cfg := testConfig(t)
	cfg.NodeName += "-client"
	cfg.Seeds = []string{nodes[0].GossipAddr()}
	client := startNode(t, cfg)
	waitConverged(t, append(nodes, client), 3)
	byName := make(map[string]Member)
	for _, m := range nodes[0].Members() {
		byName[m.Name] = m
	}
	for _, n := range append(nodes, client) {
		m, ok := byName[n.Name()]
		if !ok {
			t.Fatalf("%s missing from Members", n.Name())
		}
		if m.GRPCAddr != n.GRPCAddr() || m.GossipAddr != n.GossipAddr() || m.Status != StatusAlive {
			t.Errorf("member %+v, want gRPC %s, gossip %s, alive", m, n.GRPCAddr(), n.GossipAddr())
		}
		wantKinds := 1
		if n == client {
			wantKinds = 0
		}
		if len(m.Kinds) != wantKinds {
			t.Errorf("%s hosts %v", m.Name, m.Kinds)
		}
	}
	_ = client.Close()
	waitFor(t, waitTimeout, "the closed client to be seen failed", func() bool {
		for _, m := range nodes[0].Members() {
			if m.Name == client.Name() {
				return m.Status == StatusFailed
			}
		}
		return false
	})
}

func TestCallerCancellationReachesTheGrain(t *testing.T) {
	t.Parallel()
	nodes, hs := echoCluster(t, 2, 0, nil)
	for _, owner := range nodes {
		t.Run("owner "+owner.Name(), func(t *testing.T) {
			id := identityOwnedBy(t, nodes, owner)
			h := hs[owner.Name()]
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				_, err := nodes[0].Invoke(ctx, stringCall(methodBlock, id, ""))
				done <- err
			}()
			receive(t, h.entered, "the call to reach the grain")
			cancel()
			if err := receive(t, h.canceled, "the grain to see the cancellation"); !errors.Is(err, context.Canceled) {
				t.Errorf("the grain saw %v, want context.Canceled", err)
			}
			if err := receive(t, done, "Invoke to return"); status.Code(err) != codes.Canceled {
				t.Errorf("Invoke returned %v, want Canceled", err)
			}
		})
	}
}

// TestAnAlreadyCancelledCallIsNotSent: a call whose context is cancelled
// before Invoke returns Canceled and reaches no grain, local or remote: no
// frame goes to a remote owner. Before, invokeRemote looked only for a
// deadline that had passed, so it queued the request and a cancel frame
// behind it (2 frames per call), and the owner ran the request whenever it
// read it before the cancel (9 in 10,000 calls in an audit).
func TestAnAlreadyCancelledCallIsNotSent(t *testing.T) {
	t.Parallel()
	nodes, _ := echoCluster(t, 2, 0, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, owner := range nodes {
		t.Run("owner "+owner.Name(), func(t *testing.T) {
			id := identityOwnedBy(t, nodes, owner)
			add(t, nodes[0], id, 0) // activates the grain and opens the stream to its owner
			before, _ := nodes[0].transport.stats()
			for i := range 100 {
				if _, err := nodes[0].Invoke(ctx, addCall(id, 1)); status.Code(err) != codes.Canceled {
					t.Fatalf("call %d with a cancelled context returned %v, want Canceled", i, err)
				}
			}
			if after, _ := nodes[0].transport.stats(); after != before {
				t.Fatalf("100 calls with a cancelled context queued %d frames to the owner, want none", after-before)
			}
			if got := add(t, nodes[0], id, 0); got != 0 {
				t.Fatalf("the grain's total is %d after the cancelled calls, want 0: none may run", got)
			}
		})
	}
}

func TestShutdownWaitsForCallsInFlight(t *testing.T) {
	t.Parallel()
	nodes, hs := echoCluster(t, 2, 0, nil)
	leaver := nodes[1]
	id := identityOwnedBy(t, nodes, leaver)
	result := make(chan error, 1)
	go func() {
		_, err := nodes[0].Invoke(context.Background(), stringCall(methodBlock, id, ""))
		result <- err
	}()
	receive(t, hs[leaver.Name()].entered, "the call to reach the grain")
	shutdown := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		shutdown <- leaver.Shutdown(ctx)
	}()
	// Release the call only once the node has left: Shutdown is then
	// draining, and must wait for it rather than cut it.
	waitFor(t, waitTimeout, "the node to leave", func() bool {
		m, _ := leaver.Owner(echoKind, id)
		return m.Name != leaver.Name()
	})
	hs[leaver.Name()].releaseHeld()
	if err := receive(t, result, "the call"); err != nil {
		t.Fatalf("call in flight during Shutdown: %v", err)
	}
	if err := receive(t, shutdown, "Shutdown"); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if got := receive(t, hs[leaver.Name()].deactivated, "OnDeactivate"); got != id {
		t.Errorf("OnDeactivate(%q), want %q", got, id)
	}
}

// TestShutdownHonoursItsContext holds a call in a grain of the leaving node
// with Hold, which ignores its context: the call cannot end, whatever
// happens to the stream it came on (a peer that hears of the leave as a
// failure, as serf reports it when memberlist's notice beats serf's leave
// intent, cuts its streams). So Shutdown must give up at its deadline and
// close the node; the caller's call, cut with the node's streams, is
// retried on the grain's new owner.
func TestShutdownHonoursItsContext(t *testing.T) {
	t.Parallel()
	nodes, hs := echoCluster(t, 3, 0, nil)
	leaver := nodes[2]
	for name, h := range hs {
		if name != leaver.Name() {
			h.releaseHeld()
		}
	}
	id := identityOwnedBy(t, nodes, leaver)
	result := make(chan error, 1)
	go func() {
		_, err := nodes[0].Invoke(context.Background(), stringCall(methodHold, id, ""))
		result <- err
	}()
	receive(t, hs[leaver.Name()].entered, "the call to reach the grain")
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	shutdown := make(chan error, 1)
	go func() { shutdown <- leaver.Shutdown(ctx) }()

	// Once Shutdown gave up and closed the node's streams, the call is
	// retried on the new owner. Only then is the held call let go, as the
	// node's actors stop only once it returns.
	select {
	case <-hs[nodes[0].Name()].entered:
	case <-hs[nodes[1].Name()].entered:
	case <-time.After(waitTimeout):
		t.Fatal("timed out waiting for the call to be retried on a remaining node")
	}
	hs[leaver.Name()].releaseHeld()
	if err := receive(t, shutdown, "Shutdown"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want DeadlineExceeded", err)
	}
	if !isDone(leaver.Done()) {
		t.Fatal("node not stopped after Shutdown gave up")
	}
	if err := receive(t, result, "the call"); err != nil {
		t.Fatalf("the call retried on a remaining node: %v", err)
	}
}

// TestTagsThatJustFitAreAccepted adds kinds while the tags still fit:
// serf must accept what the size check lets through, with KeepMajority
// the tags of a fenced node too (see advertiseFence).
func TestTagsThatJustFitAreAccepted(t *testing.T) {
	t.Parallel()
	for _, keepMajority := range []bool{false, true} {
		t.Run(fmt.Sprintf("KeepMajority=%t", keepMajority), func(t *testing.T) {
			t.Parallel()
			cfg := testConfig(t)
			cfg.KeepMajority = keepMajority
			for i := 0; ; i++ {
				k := newEchoKind(newHooks(""), 0)
				k.Name = fmt.Sprintf("pkg.v1.Service%03d", i)
				tags, err := nodeTags("127.0.0.1:65535", randomHex(incarnationBytes), append(cfg.Kinds, k), keepMajority, false)
				if err != nil {
					break
				}
				if keepMajority {
					tags = fencedTags(tags)
				}
				if encodedTagsSize(tags) > MaxTagsSize {
					t.Fatalf("nodeTags accepted %d bytes", encodedTagsSize(tags))
				}
				cfg.Kinds = append(cfg.Kinds, k)
			}
			n := startNode(t, cfg)
			if got := len(n.Members()[0].Kinds); got != len(cfg.Kinds) {
				t.Fatalf("member lists %d kinds, want %d", got, len(cfg.Kinds))
			}
			if keepMajority {
				if err := n.serf.SetTags(fencedTags(n.tags)); err != nil {
					t.Fatalf("the tags of a fenced node: %v", err)
				}
			}
		})
	}
}

func TestRequestOverMaxFrameBytes(t *testing.T) {
	t.Parallel()
	nodes, _ := echoCluster(t, 2, 0, func(c *Config) { c.MaxFrameBytes = 1024 })
	remote := identityOwnedBy(t, nodes, nodes[1])
	big := strings.Repeat("x", 2048)
	_, err := nodes[0].Invoke(context.Background(), stringCall(methodString, remote, big))
	if status.Code(err) != codes.InvalidArgument || !errors.Is(err, ErrBadRequest) {
		t.Fatalf("request over MaxFrameBytes: %v, want InvalidArgument wrapping ErrBadRequest", err)
	}
	// Under the limit it goes through, and the node is fine.
	if _, err := nodes[0].Invoke(context.Background(), stringCall(methodString, remote, big[:512])); err != nil {
		t.Fatal(err)
	}
}

func TestResponseOverMaxFrameBytes(t *testing.T) {
	t.Parallel()
	// Only the owner has the small limit: the request passes, the
	// response does not.
	nodes, _ := echoCluster(t, 2, 0, func(c *Config) {
		if strings.HasSuffix(c.NodeName, "-n1") {
			c.MaxFrameBytes = 1024
		}
	})
	remote := identityOwnedBy(t, nodes, nodes[1])
	_, err := nodes[0].Invoke(context.Background(), stringCall(methodString, remote, strings.Repeat("x", 2048)))
	if status.Code(err) != codes.Internal || !errors.Is(err, ErrBadResponse) {
		t.Fatalf("response over MaxFrameBytes: %v, want Internal wrapping ErrBadResponse", err)
	}
}

func TestReentrantCallsFailFast(t *testing.T) {
	t.Parallel()
	nodes, _ := echoCluster(t, 2, 0, nil)
	a := identityOwnedBy(t, nodes, nodes[0])
	b := identityOwnedBy(t, nodes, nodes[1])
	for _, tc := range []struct {
		name, start, path string
	}{
		{"self", a, a},
		{"a-b-a across nodes", a, b + "," + a},
		{"b-a-b across nodes", b, a + "," + b},
		{"longer cycle", a, b + ",c," + b},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// No deadline but the default one: a deadlock would show as
			// DeadlineExceeded much later.
			_, err := nodes[0].Invoke(context.Background(), stringCall(methodChain, tc.start, tc.path))
			if status.Code(err) != codes.FailedPrecondition || !errors.Is(err, ErrReentrant) {
				t.Fatalf("cycle %s→%s: %v, want FailedPrecondition wrapping ErrReentrant", tc.start, tc.path, err)
			}
		})
	}
	// A chain without a cycle works.
	resp, err := nodes[1].Invoke(context.Background(), stringCall(methodChain, a, b+",c"))
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.(*wrapperspb.StringValue).GetValue(); got != "c" {
		t.Fatalf("chain ended at %q, want c", got)
	}
}

func TestBusyActivationIsNotPassivated(t *testing.T) {
	t.Parallel()
	nodes, hs := echoCluster(t, 1, time.Nanosecond, func(c *Config) { c.PassivationInterval = time.Hour })
	n, h := nodes[0], hs[nodes[0].Name()]
	done := make(chan error, 1)
	go func() {
		_, err := n.Invoke(context.Background(), stringCall(methodBlock, "busy", ""))
		done <- err
	}()
	receive(t, h.entered, "the call to start")
	if got := n.acts.passivate(); got != 0 {
		t.Fatalf("passivate started %d deactivations while the grain was busy", got)
	}
	h.releaseHeld()
	if err := receive(t, done, "the call"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, waitTimeout, "the idle grain to be passivated", func() bool { return n.acts.passivate() == 1 })
	if got := receive(t, h.deactivated, "OnDeactivate"); got != "busy" {
		t.Fatalf("OnDeactivate(%q), want busy", got)
	}
}

// TestPassivationWaitsIdleTimeout checks, on a clock the test moves, that
// a grain is passivated no sooner than its idle timeout after its last
// call, and by the second sweep after that.
func TestPassivationWaitsIdleTimeout(t *testing.T) {
	t.Parallel()
	const idle = time.Minute
	var now atomic.Int64 // the table's clock
	nodes, hs := echoCluster(t, 1, idle, func(c *Config) {
		c.PassivationInterval = time.Hour // only the test sweeps
		c.clock = func() time.Duration { return time.Duration(now.Load()) }
	})
	n, h := nodes[0], hs[nodes[0].Name()]
	call := func() {
		t.Helper()
		if _, err := n.Invoke(context.Background(), stringCall(methodString, "idle", "x")); err != nil {
			t.Fatal(err)
		}
	}
	sweepAt := func(at time.Duration, want int) {
		t.Helper()
		now.Store(int64(at))
		if got := n.acts.passivate(); got != want {
			t.Fatalf("the sweep at %v passivated %d grains, want %d", at, got, want)
		}
	}

	call()
	sweepAt(0, 0)        // notes the call
	sweepAt(idle-1, 0)   // idle for less than the timeout
	call()               // a call just before a sweep...
	sweepAt(idle, 0)     // ...counts as made at that sweep
	sweepAt(2*idle-1, 0) // so the grain stays one more timeout
	sweepAt(2*idle, 1)   // and goes after it
	if got := receive(t, h.deactivated, "OnDeactivate"); got != "idle" {
		t.Fatalf("OnDeactivate(%q), want idle", got)
	}
}

// TestActivationSize keeps an activation, what every idle grain costs the
// node, in the 96-byte size class (see activation).
func TestActivationSize(t *testing.T) {
	if got := unsafe.Sizeof(activation{}); got > 96 {
		t.Errorf("an activation is %d bytes, want at most 96", got)
	}
}

// TestCallsRacePassivation runs calls from many goroutines while the
// sweeps passivate the same grains between them (1 ms idle timeout): every
// call must succeed, on the current activation or a new one, and
// activations must come and go. With 8 grains the calls mostly meet busy
// activations; with 512, the shards' tables also grow and shrink under the
// lock-free lookups (see actTable).
func TestCallsRacePassivation(t *testing.T) {
	t.Parallel()
	for _, grains := range []int{8, 512} {
		t.Run(fmt.Sprint("grains=", grains), func(t *testing.T) {
			t.Parallel()
			nodes, hs := echoCluster(t, 1, time.Millisecond, func(c *Config) { c.PassivationInterval = time.Millisecond })
			h := hs[nodes[0].Name()]
			// Count passivations as they come, so that OnDeactivate never
			// waits for room in the hooks' channel.
			var passivated atomic.Int64
			stop := make(chan struct{})
			drained := make(chan struct{})
			go func() {
				defer close(drained)
				for {
					select {
					case <-h.deactivated:
						passivated.Add(1)
					case <-stop:
						return
					}
				}
			}()
			t.Cleanup(func() { close(stop); <-drained })
			concurrently(t, 16, func(g int) error {
				for i := range 300 {
					id := fmt.Sprintf("grain-%d", (g*37+i)%grains)
					if _, err := nodes[0].Invoke(context.Background(), addCall(id, 1)); err != nil {
						return err
					}
				}
				return nil
			})
			waitFor(t, waitTimeout, "a passivation", func() bool { return passivated.Load() > 0 })
		})
	}
}

// TestTinyPendingQueueStillServes makes every sender wait for the writer
// (MaxPendingBytes below one frame): concurrent calls across nodes must all
// complete, each queued when the writer has taken the previous batch.
func TestTinyPendingQueueStillServes(t *testing.T) {
	t.Parallel()
	nodes, _ := echoCluster(t, 2, 0, func(c *Config) { c.MaxPendingBytes = 1 })
	id := identityOwnedBy(t, nodes, nodes[1])
	concurrently(t, 32, func(int) error {
		for range 20 {
			if _, err := nodes[0].Invoke(context.Background(), addCall(id, 1)); err != nil {
				return err
			}
		}
		return nil
	})
	if got := add(t, nodes[0], id, 0); got != 32*20 {
		t.Fatalf("total = %d, want %d", got, 32*20)
	}
}

// TestServedContextOutlivesItsCall checks that a grain may keep the context
// of a peer's call after returning: it ends with the call, and the requests
// that come after it (whose carriers are recycled) neither revive it nor
// change its deadline.
func TestServedContextOutlivesItsCall(t *testing.T) {
	t.Parallel()
	nodes, hs := echoCluster(t, 2, 0, nil)
	owner := nodes[1]
	id := identityOwnedBy(t, nodes, owner)
	call := func(timeout time.Duration) GrainContext {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		if _, err := nodes[0].Invoke(ctx, stringCall(methodKeep, id, "x")); err != nil {
			t.Fatalf("Keep: %v", err)
		}
		return receive(t, hs[owner.Name()].kept, "the grain's context")
	}
	first := call(time.Hour)
	firstDeadline, ok := first.Deadline()
	if !ok || time.Until(firstDeadline) < 50*time.Minute {
		t.Fatalf("the call's deadline is %v, %v; want about an hour from now", firstDeadline, ok)
	}
	for range 50 {
		call(3 * time.Hour)
	}
	wantCanceled(t, first, "a kept context")
	if dl, _ := first.Deadline(); !dl.Equal(firstDeadline) {
		t.Errorf("a kept context's deadline moved from %v to %v", firstDeadline, dl)
	}
}

// TestConcurrentRemoteCallsKeepTheirPayloads: many callers send requests of
// varied sizes to grains on another node at once, so the owner's reader
// gets batches big enough to come from the pool and hands each back as
// soon as it has decoded the requests in it (see conn.serve). Every reply
// must still echo its own request: a request that kept pointing into a
// reused batch would come back with another call's bytes.
func TestConcurrentRemoteCallsKeepTheirPayloads(t *testing.T) {
	t.Parallel()
	nodes, _ := echoCluster(t, 2, 0, nil)
	ids := make([]string, 8) // distinct grains that nodes[1] owns
	for i := range ids {
		ids[i] = ownedInEveryView(t, nodes, nodes[1], echoKind, fmt.Sprintf("payload%d", i))
	}
	const callers, calls = 32, 50
	concurrently(t, callers, func(c int) error {
		for i := range calls {
			want := strings.Repeat(string(rune('a'+(c+i)%26)), 1+(c*calls+i)%700) + fmt.Sprintf("/%d/%d", c, i)
			resp, err := nodes[0].Invoke(context.Background(), stringCall(methodString, ids[(c+i)%len(ids)], want))
			if err != nil {
				return err
			}
			if got := resp.(*wrapperspb.StringValue).GetValue(); got != want {
				return fmt.Errorf("caller %d call %d got %d bytes ending %q, want %d ending %q",
					c, i, len(got), got[max(0, len(got)-12):], len(want), want[max(0, len(want)-12):])
			}
		}
		return nil
	})
}
