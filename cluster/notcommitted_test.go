package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/protograin/protograin/cluster/storage"
)

// errNothingCommitted is a store's error for a commit it refused before
// writing anything: the database is restarting, say.
var errNothingCommitted = fmt.Errorf("connection refused: %w", storage.ErrNotCommitted)

// wantNothingCommitted fails t unless err says that the call failed on a
// commit that committed nothing, in its message and to errors.Is.
func wantNothingCommitted(t *testing.T, what string, err error) {
	t.Helper()
	if status.Code(err) != codes.Unavailable || !errors.Is(err, ErrStateUnavailable) || !errors.Is(err, storage.ErrNotCommitted) ||
		!strings.Contains(err.Error(), "nothing was committed") {
		t.Fatalf("%s with a commit that committed nothing: %v; want Unavailable, ErrStateUnavailable and storage.ErrNotCommitted, saying nothing was committed", what, err)
	}
}

// invokeFailingCommits makes call through c while every commit of store
// fails with commitErr, and returns the call's error.
func invokeFailingCommits(c Caller, store *hookedStore, commitErr error, call Call, opts ...CallOption) error {
	store.commitErr.Store(&commitErr)
	defer store.commitErr.Store(nil)
	_, err := c.Invoke(context.Background(), call, opts...)
	return err
}

// TestCommitThatCommittedNothingKeepsTheActivation: in FlushAfterCall mode,
// a call whose commit the store refused without committing anything
// (storage.ErrNotCommitted) fails with Unavailable and leaves no effect:
// neither its change nor its reply stays buffered for the next commit. The
// activation is kept (no new load), and a retry under the call's stamp
// runs the call, once.
func TestCommitThatCommittedNothingKeepsTheActivation(t *testing.T) {
	store := hookedMemstore(t)
	nodes, banks := bankCluster(t, 1, store, -1, nil)
	n := nodes[0]
	deposit(t, n, accountKind, "nc", 10)
	loads := store.loads.Load()

	err := invokeFailingCommits(n, store, errNothingCommitted, depositCall(accountKind, "nc", 5), WithCallID("nc-client", 1))
	wantNothingCommitted(t, "Deposit(5)", err)
	if !strings.Contains(err.Error(), "the call did not take effect") {
		t.Fatalf("Deposit(5) with a commit that committed nothing: %v; want it to say that the call did not take effect", err)
	}
	if got := balance(t, n, accountKind, "nc"); got != 10 {
		t.Fatalf("balance %d after the failed call, want 10: the call left its change behind", got)
	}
	for range 2 {
		if got := deposit(t, n, accountKind, "nc", 5, WithCallID("nc-client", 1)); got != 15 {
			t.Fatalf("a retry replied %d, want 15", got)
		}
	}
	if got := storedBalance(t, store.Store, accountKind, "nc"); got != 15 {
		t.Fatalf("stored balance %d, want 15", got)
	}
	if runs := banks[n.Name()].count("nc", methodDeposit); runs != 3 {
		t.Fatalf("Deposit ran %d times, want 3: the first deposit, the failed one, and the first retry", runs)
	}
	wantSameActivation(t, n, store, loads, "the failed commit")
}

// TestACallerOnAnotherNodeLearnsThatNothingWasCommitted: the reply frame
// carries "nothing was committed" as a reason of its own, so a caller on
// another node can tell it with errors.Is, as a local one can, and retry a
// call that had no effect; a commit whose outcome is unknown says no such
// thing.
func TestACallerOnAnotherNodeLearnsThatNothingWasCommitted(t *testing.T) {
	store := hookedMemstore(t)
	nodes, _ := bankCluster(t, 2, store, -1, nil)
	owner, caller := nodes[0], nodes[1]
	id := accountOwnedBy(t, owner, accountKind, "remote-nc")
	deposit(t, caller, accountKind, id, 10)

	err := invokeFailingCommits(caller, store, errNothingCommitted, depositCall(accountKind, id, 5), WithCallID("remote-nc", 1))
	wantNothingCommitted(t, "Deposit(5) from another node", err)
	if got := deposit(t, caller, accountKind, id, 5, WithCallID("remote-nc", 1)); got != 15 {
		t.Fatalf("the retry replied %d, want 15", got)
	}

	unknown := errors.New("connection reset after COMMIT was sent")
	err = invokeFailingCommits(caller, store, unknown, depositCall(accountKind, id, 5), WithCallID("remote-nc", 2))
	if !errors.Is(err, ErrStateUnavailable) || errors.Is(err, storage.ErrNotCommitted) {
		t.Fatalf("Deposit(5) from another node with a commit of unknown outcome: %v; want ErrStateUnavailable without storage.ErrNotCommitted", err)
	}
}

// TestCommitAfterAFlushThatCommittedNothing: in FlushAfterCall mode, a call
// that flushed state itself, and whose commit after the call then commits
// nothing, is not said to have had no effect: what it flushed stays
// committed, and a retry under its stamp is refused (ErrStaleCall) rather
// than run again. The activation is kept.
func TestCommitAfterAFlushThatCommittedNothing(t *testing.T) {
	const methodFlushThenFail = "/test.Account/FlushThenFail" // Int64Value amount → Int64Value; deposits, flushes, then the store commits nothing
	store := hookedMemstore(t)
	var b *bank
	nodes := startCluster(t, 1, func(name string) []*Kind {
		b = newBank(name)
		k := newAccountKind(b, accountKind, FlushAfterCall, -1)
		k.Methods = append(k.Methods, accountMethod(b, methodFlushThenFail, false, newInt64,
			func(ctx GrainContext, req proto.Message) (proto.Message, error) {
				balanceOf(ctx).Value += req.(*wrapperspb.Int64Value).GetValue()
				if err := ctx.State().Flush(ctx); err != nil {
					return nil, err
				}
				store.commitErr.Store(&errNothingCommitted)
				return wrapperspb.Int64(balanceOf(ctx).Value), nil
			}))
		return []*Kind{k}
	}, func(cfg *Config) { cfg.Store = store })
	n := nodes[0]
	balance(t, n, accountKind, "ff") // activates
	loads := store.loads.Load()
	call := Call{Kind: accountKind, Identity: "ff", Method: methodFlushThenFail, Request: wrapperspb.Int64(3), NewResponse: newInt64}
	_, err := n.Invoke(context.Background(), call, WithCallID("ff-client", 1))
	store.commitErr.Store(nil)
	if status.Code(err) != codes.Unavailable || !errors.Is(err, ErrStateUnavailable) || !strings.Contains(err.Error(), "stays committed") ||
		strings.Contains(err.Error(), "did not take effect") || errors.Is(err, storage.ErrNotCommitted) {
		t.Fatalf("a call that flushed, then whose commit committed nothing: %v; want Unavailable, ErrStateUnavailable, saying what it flushed stays committed", err)
	}
	if got := storedBalance(t, store.Store, accountKind, "ff"); got != 3 {
		t.Fatalf("stored balance %d, want the flushed 3", got)
	}
	if _, err := n.Invoke(context.Background(), call, WithCallID("ff-client", 1)); !errors.Is(err, ErrStaleCall) {
		t.Fatalf("a retry under the call's stamp: %v, want ErrStaleCall", err)
	}
	if runs := b.count("ff", methodFlushThenFail); runs != 1 {
		t.Fatalf("the method ran %d times, want 1", runs)
	}
	wantSameActivation(t, n, store, loads, "the failed commit")
}

// TestManualFlushThatCommittedNothingKeepsAcknowledgedChanges: in
// FlushManual mode, a flush the store refused without committing anything
// keeps the changes of the calls acknowledged before it, on the same
// activation, and the next flush commits them.
func TestManualFlushThatCommittedNothingKeepsAcknowledgedChanges(t *testing.T) {
	store := hookedMemstore(t)
	nodes, _ := bankCluster(t, 1, store, -1, nil)
	n := nodes[0]
	deposit(t, n, manualKind, "m", 4)
	loads := store.loads.Load()

	err := invokeFailingCommits(n, store, errNothingCommitted, accountCall(manualKind, methodFlush, "m", ""))
	wantNothingCommitted(t, "Flush", err)
	if v := storedVersion(t, store.Store, manualKind, "m"); v != 0 {
		t.Fatalf("version %d after the failed flush, want 0", v)
	}
	if _, err := n.Invoke(context.Background(), accountCall(manualKind, methodFlush, "m", "")); err != nil {
		t.Fatalf("Flush once the store takes commits again: %v", err)
	}
	if got := storedBalance(t, store.Store, manualKind, "m"); got != 4 {
		t.Fatalf("stored balance %d after the second flush, want the acknowledged 4", got)
	}
	wantSameActivation(t, n, store, loads, "the failed flush")
}

// TestPassivationWhoseFlushCommittedNothingLosesNothing: a passivation
// whose commit the store refuses without committing anything keeps the
// grain and is tried again at a later sweep, and the acknowledged changes
// of a FlushManual grain reach the store once it takes commits again,
// instead of being dropped with the activation (see passivate_test.go).
func TestPassivationWhoseFlushCommittedNothingLosesNothing(t *testing.T) {
	store := hookedMemstore(t)
	nodes, _ := bankCluster(t, 1, store, 50*time.Millisecond, nil)
	n := nodes[0]
	commits := store.commits.Load()
	store.commitErr.Store(&errNothingCommitted)
	deposit(t, n, manualKind, "p", 7) // buffered until the passivation
	waitFor(t, waitTimeout, "the passivation's commit to be tried twice", func() bool { return store.commits.Load()-commits >= 2 })
	store.commitErr.Store(nil)
	waitFor(t, waitTimeout, "the passivation", func() bool { return n.acts.count() == 0 })
	if got := storedBalance(t, store.Store, manualKind, "p"); got != 7 {
		t.Fatalf("stored balance %d after the passivation, want the acknowledged 7", got)
	}
}

// TestShutdownWhoseFlushCommittedNothingLosesNothing: a Shutdown's final
// flush that the store refuses without committing anything is tried again
// within DeactivateTimeout (the grain must go: it is not kept as a
// passivation keeps it), and Shutdown returns once the acknowledged
// changes are stored.
func TestShutdownWhoseFlushCommittedNothingLosesNothing(t *testing.T) {
	store := hookedMemstore(t)
	nodes, _ := bankCluster(t, 1, store, -1, nil)
	n := nodes[0]
	deposit(t, n, manualKind, "s", 5) // buffered until the deactivation
	commits := store.commits.Load()
	store.commitErr.Store(&errNothingCommitted)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- n.Shutdown(ctx) }()
	waitFor(t, waitTimeout, "the final flush to be tried twice", func() bool { return store.commits.Load()-commits >= 2 })
	store.commitErr.Store(nil)
	if err := receive(t, done, "Shutdown"); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if got := storedBalance(t, store.Store, manualKind, "s"); got != 5 {
		t.Fatalf("stored balance %d after Shutdown, want the acknowledged 5", got)
	}
}
