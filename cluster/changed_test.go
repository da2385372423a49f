package cluster

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/protograin/protograin/cluster/storage"
	"github.com/protograin/protograin/cluster/storage/memstore"
)

// The tests in this file check that a call that changed state is applied
// once per stamp even where its buffer ends clean: a call that flushed
// itself, or one that undid changes buffered before it. Each grain is a
// wallet whose typed state is its balance.

const (
	walletKind        = "test.Wallet"
	walletAdd         = "/test.Wallet/Add"         // Int64Value amount, any sign → Int64Value balance
	walletAddAndFlush = "/test.Wallet/AddAndFlush" // Add, then State().Flush within the call
)

// wallet counts its method's runs; bonus is what OnActivate adds to the
// balance, buffered like any change.
type wallet struct {
	runs  *walletRuns
	bonus int64
}

// walletRuns counts the method's runs by amount, across activations.
type walletRuns struct {
	mu       sync.Mutex
	byAmount map[int64]int
}

func (r *walletRuns) ran(amount int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byAmount == nil {
		r.byAmount = make(map[int64]int)
	}
	r.byAmount[amount]++
}

func (r *walletRuns) count(amount int64) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byAmount[amount]
}

func (w *wallet) OnActivate(ctx GrainContext) error {
	balanceOf(ctx).Value += w.bonus
	return nil
}

func newWalletKind(mode FlushMode, bonus int64, runs *walletRuns) *Kind {
	add := func(flush bool) func(_ any, ctx GrainContext, req proto.Message) (proto.Message, error) {
		return func(_ any, ctx GrainContext, req proto.Message) (proto.Message, error) {
			amount := req.(*wrapperspb.Int64Value).GetValue()
			runs.ran(amount)
			balanceOf(ctx).Value += amount
			if flush {
				if err := ctx.State().Flush(ctx); err != nil {
					return nil, err
				}
			}
			return wrapperspb.Int64(balanceOf(ctx).Value), nil
		}
	}
	return &Kind{
		Name:        walletKind,
		Flush:       mode,
		IdleTimeout: -1,
		NewState:    func() proto.Message { return new(wrapperspb.Int64Value) },
		New:         func(string) any { return &wallet{runs: runs, bonus: bonus} },
		Methods: []Method{
			{Name: walletAdd, NewRequest: newInt64, Handle: add(false)},
			{Name: walletAddAndFlush, NewRequest: newInt64, Handle: add(true)},
		},
	}
}

func walletCall(method string, amount int64) Call {
	return Call{Kind: walletKind, Identity: "w", Method: method, Request: wrapperspb.Int64(amount), NewResponse: newInt64}
}

// walletNode starts a node hosting the wallet kind over store.
func walletNode(t *testing.T, mode FlushMode, bonus int64, store storage.Store) (*Node, *walletRuns) {
	t.Helper()
	runs := new(walletRuns)
	nodes := startCluster(t, 1, func(string) []*Kind { return []*Kind{newWalletKind(mode, bonus, runs)} },
		func(cfg *Config) { cfg.Store = store })
	return nodes[0], runs
}

// invokeTwice makes the call stamped (client, seq), then again as a retry
// would, and returns both replies.
func invokeTwice(t *testing.T, n *Node, call Call, client string, seq uint64) [2]int64 {
	t.Helper()
	var replies [2]int64
	for i := range replies {
		resp, err := n.Invoke(context.Background(), call, WithCallID(client, seq))
		if err != nil {
			t.Fatalf("%s(%v) %s/%d, attempt %d: %v", call.Method, call.Request, client, seq, i+1, err)
		}
		replies[i] = resp.(*wrapperspb.Int64Value).GetValue()
	}
	return replies
}

func TestACallThatUndoesBufferedChangesRunsOnce(t *testing.T) {
	t.Parallel()
	t.Run("changes of OnActivate, FlushAfterCall", func(t *testing.T) {
		t.Parallel()
		store := memstore.New()
		n, runs := walletNode(t, FlushAfterCall, 100, store)
		invokeStamped(t, n, walletCall(walletAdd, 50), "c", 1) // 100 from OnActivate, then 150, committed
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if err := n.acts.deactivateAll(ctx); err != nil {
			t.Fatal(err)
		}
		// The next activation buffers 250; -100 brings it back to the
		// committed 150, which leaves the buffer clean.
		replies := invokeTwice(t, n, walletCall(walletAdd, -100), "c", 2)
		if got := runs.count(-100); got != 1 || replies != [2]int64{150, 150} {
			t.Fatalf("Add(-100) c/2 ran %d times, replies %v; want once, [150 150]", got, replies)
		}
		if got := storedBalance(t, store, walletKind, "w"); got != 150 {
			t.Fatalf("stored balance %d, want 150", got)
		}
	})
	t.Run("changes of a one-way message, FlushManual", func(t *testing.T) {
		t.Parallel()
		n, runs := walletNode(t, FlushManual, 0, memstore.New())
		invokeStamped(t, n, walletCall(walletAddAndFlush, 50), "c", 1) // 50 committed
		if err := n.Send(context.Background(), walletCall(walletAdd, 100)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, waitTimeout, "the one-way message to run", func() bool { return runs.count(100) == 1 })
		// 150 buffered; -100 brings it back to the committed 50.
		replies := invokeTwice(t, n, walletCall(walletAdd, -100), "c", 2)
		if got := runs.count(-100); got != 1 || replies != [2]int64{50, 50} {
			t.Fatalf("Add(-100) c/2 ran %d times, replies %v; want once, [50 50]", got, replies)
		}
	})
}

func TestACallThatFlushesItselfRunsOnce(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		mode FlushMode
	}{{"FlushAfterCall", FlushAfterCall}, {"FlushManual", FlushManual}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			store := memstore.New()
			n, runs := walletNode(t, tc.mode, 0, store)
			replies := invokeTwice(t, n, walletCall(walletAddAndFlush, 1), "c", 1)
			if got := runs.count(1); got != 1 || replies != [2]int64{1, 1} {
				t.Fatalf("AddAndFlush(1) c/1 ran %d times, replies %v; want once, [1 1]", got, replies)
			}
			if got := storedBalance(t, store, walletKind, "w"); got != 1 {
				t.Fatalf("stored balance %d, want 1", got)
			}
		})
	}
}

// TestACallThatFlushesItselfIsNotRunAgainOnceItsReplyIsLost: a stamped
// call that flushed what it changed, and whose reply was then lost before
// it was recorded (the node failed, the commit after the call failed), is
// refused with ErrStaleCall when retried under its stamp: its flush took
// effect, so running it again would apply it twice. A call whose reply a
// later flush recorded still gets it.
func TestACallThatFlushesItselfIsNotRunAgainOnceItsReplyIsLost(t *testing.T) {
	t.Parallel()
	wantRefused := func(t *testing.T, n *Node, call Call, client string, seq uint64) {
		t.Helper()
		_, err := n.Invoke(context.Background(), call, WithCallID(client, seq))
		if status.Code(err) != codes.FailedPrecondition || !errors.Is(err, ErrStaleCall) {
			t.Fatalf("retry of %s(%v) %s/%d: %v, want FailedPrecondition, ErrStaleCall", call.Method, call.Request, client, seq, err)
		}
	}
	t.Run("the node fails, FlushManual", func(t *testing.T) {
		t.Parallel()
		store := memstore.New()
		runs := new(walletRuns)
		kinds := func(string) []*Kind { return []*Kind{newWalletKind(FlushManual, 0, runs)} }
		first := startCluster(t, 1, kinds, func(cfg *Config) { cfg.Store = store })[0]
		invokeStamped(t, first, walletCall(walletAddAndFlush, 1), "c", 1)
		invokeStamped(t, first, walletCall(walletAddAndFlush, 2), "c", 2) // its flush records call 1's reply
		// Call 2's reply waits for the next flush; the node fails first.
		if err := first.Close(); err != nil {
			t.Fatal(err)
		}
		second := startCluster(t, 1, kinds, func(cfg *Config) { cfg.Store = store })[0]
		wantRefused(t, second, walletCall(walletAddAndFlush, 2), "c", 2)
		resp, err := second.Invoke(context.Background(), walletCall(walletAddAndFlush, 1), WithCallID("c", 1))
		if err != nil || resp.(*wrapperspb.Int64Value).GetValue() != 1 {
			t.Fatalf("retry of AddAndFlush(1) c/1: %v, %v; want its recorded reply 1", resp, err)
		}
		if r1, r2 := runs.count(1), runs.count(2); r1 != 1 || r2 != 1 {
			t.Fatalf("AddAndFlush(1) ran %d times, AddAndFlush(2) %d; want once each", r1, r2)
		}
		if got := storedBalance(t, store, walletKind, "w"); got != 3 {
			t.Fatalf("stored balance %d, want 3", got)
		}
	})
	t.Run("the commit after the call fails, FlushAfterCall", func(t *testing.T) {
		t.Parallel()
		store := hookedMemstore(t)
		runs := new(walletRuns)
		kind := newWalletKind(FlushAfterCall, 0, runs)
		const breakAfterFlush = "/test.Wallet/AddAndFlushThenTheStoreFails"
		addAndFlush := kind.Methods[1].Handle
		kind.Methods = append(kind.Methods, Method{Name: breakAfterFlush, NewRequest: newInt64,
			Handle: func(g any, ctx GrainContext, req proto.Message) (proto.Message, error) {
				resp, err := addAndFlush(g, ctx, req)
				store.commitErr.Store(&errStoreDown)
				return resp, err
			}})
		n := startCluster(t, 1, func(string) []*Kind { return []*Kind{kind} }, func(cfg *Config) { cfg.Store = store })[0]
		call := walletCall(breakAfterFlush, 1)
		if _, err := n.Invoke(context.Background(), call, WithCallID("c", 1)); !errors.Is(err, ErrStateUnavailable) {
			t.Fatalf("%s(1) c/1 with the store failing after its flush: %v, want ErrStateUnavailable", breakAfterFlush, err)
		}
		store.commitErr.Store(nil)
		wantRefused(t, n, call, "c", 1) // a new activation, loaded from the store
		if got := runs.count(1); got != 1 {
			t.Fatalf("%s(1) c/1 ran %d times, want once", breakAfterFlush, got)
		}
		if got := storedBalance(t, store, walletKind, "w"); got != 1 {
			t.Fatalf("stored balance %d, want 1", got)
		}
	})
}

// TestAOneWayMessageThatFlushedIsNotRunAgainWhenStale: a one-way message
// whose own Flush succeeded, and whose commit after it is then refused as
// stale, took effect: unlike one that committed nothing, it does not run
// again on the next activation.
func TestAOneWayMessageThatFlushedIsNotRunAgainWhenStale(t *testing.T) {
	t.Parallel()
	store := memstore.New()
	runs := new(walletRuns)
	kind := newWalletKind(FlushAfterCall, 0, runs)
	const flushThenStale = "/test.Wallet/AddFlushAddWhileAnotherCommits"
	key := storage.Key{Kind: walletKind, Identity: "w"}
	kind.Methods = append(kind.Methods, Method{Name: flushThenStale, NewRequest: newInt64,
		Handle: func(_ any, ctx GrainContext, req proto.Message) (proto.Message, error) {
			amount := req.(*wrapperspb.Int64Value).GetValue()
			runs.ran(amount)
			balanceOf(ctx).Value += amount
			if err := ctx.State().Flush(ctx); err != nil {
				return nil, err
			}
			// Another activation commits behind this one's back; the
			// change below is then refused with the commit after the
			// message.
			_, v, err := store.Load(ctx, key)
			if err == nil {
				_, err = store.Commit(ctx, key, v, nil)
			}
			if err != nil {
				return nil, err
			}
			balanceOf(ctx).Value += amount
			return wrapperspb.Int64(balanceOf(ctx).Value), nil
		}})
	n := startCluster(t, 1, func(string) []*Kind { return []*Kind{kind} }, func(cfg *Config) { cfg.Store = store })[0]
	if err := n.Send(context.Background(), walletCall(flushThenStale, 7)); err != nil {
		t.Fatal(err)
	}
	// The stale activation goes, and with it anything it kept to run
	// again (its deactivation sends that on); a call after that runs on
	// the next activation, behind whatever was sent on.
	waitFor(t, waitTimeout, "the stale activation to go", func() bool { return runs.count(7) == 1 && n.acts.count() == 0 })
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := n.acts.waitDeactivations(ctx); err != nil {
		t.Fatal(err)
	}
	if got := invokeAdd(t, n, 0); got != 7 {
		t.Fatalf("balance %d on the next activation, want the 7 the message flushed itself", got)
	}
	if got := runs.count(7); got != 1 {
		t.Fatalf("the message ran %d times, want once", got)
	}
}

// invokeAdd adds amount to the wallet and returns its balance.
func invokeAdd(t *testing.T, n *Node, amount int64) int64 {
	t.Helper()
	resp, err := n.Invoke(context.Background(), walletCall(walletAdd, amount))
	if err != nil {
		t.Fatal(err)
	}
	return resp.(*wrapperspb.Int64Value).GetValue()
}

// invokeStamped makes call stamped (client, seq) and fails the test if it
// fails.
func invokeStamped(t *testing.T, n *Node, call Call, client string, seq uint64) {
	t.Helper()
	if _, err := n.Invoke(context.Background(), call, WithCallID(client, seq)); err != nil {
		t.Fatalf("%s(%v) %s/%d: %v", call.Method, call.Request, client, seq, err)
	}
}

// panickyDeactivator is an account whose OnDeactivate changes the balance
// and panics.
type panickyDeactivator struct{ account }

func (*panickyDeactivator) OnDeactivate(ctx GrainContext) error {
	balanceOf(ctx).Value += 1000
	panic("OnDeactivate fails")
}

// TestAPanicInOnDeactivateKeepsWhatCallsLeft: a FlushManual grain whose
// OnDeactivate panics still has what acknowledged calls left buffered
// committed at deactivation, as after a hook's error, without the hook's
// own changes; the panic is logged.
func TestAPanicInOnDeactivateKeepsWhatCallsLeft(t *testing.T) {
	t.Parallel()
	store := memstore.New()
	logs := &logLines{}
	kind := newAccountKind(newBank("n"), manualKind, FlushManual, -1)
	kind.New = func(string) any { return &panickyDeactivator{} }
	nodes := startCluster(t, 1, func(string) []*Kind { return []*Kind{kind} }, func(cfg *Config) {
		cfg.Store = store
		cfg.Logger = slog.New(logs.handler(cfg.Logger.Handler()))
	})
	deposit(t, nodes[0], manualKind, "d", 5)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := nodes[0].acts.deactivateAll(ctx); err != nil {
		t.Fatal(err)
	}
	if got := storedBalance(t, store, manualKind, "d"); got != 5 {
		t.Fatalf("stored balance %d after deactivation, want the acknowledged deposit of 5 alone", got)
	}
	if logs.count("grain panicked in OnDeactivate", "identity=d", "panic=OnDeactivate fails") != 1 {
		t.Fatal("the panic in OnDeactivate was not logged once")
	}
}
