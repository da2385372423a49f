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

	"github.com/protograin/protograin/cluster/storage"
)

// errNothingCommitted is a store's error for a commit it refused before
// writing anything: the database is restarting, say.
var errNothingCommitted = fmt.Errorf("connection refused: %w", storage.ErrNotCommitted)

// wantNothingCommitted fails t unless err says that the call failed on a
// commit that committed nothing.
func wantNothingCommitted(t *testing.T, what string, err error) {
	t.Helper()
	if status.Code(err) != codes.Unavailable || !errors.Is(err, ErrStateUnavailable) || !strings.Contains(err.Error(), "nothing was committed") {
		t.Fatalf("%s with a commit that committed nothing: %v; want Unavailable, ErrStateUnavailable, saying nothing was committed", what, err)
	}
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

	store.commitErr.Store(&errNothingCommitted)
	_, err := n.Invoke(context.Background(), depositCall(accountKind, "nc", 5), WithCallID("nc-client", 1))
	store.commitErr.Store(nil)
	wantNothingCommitted(t, "Deposit(5)", err)
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
	if got := store.loads.Load() - loads; got != 0 || n.acts.count() != 1 {
		t.Fatalf("%d loads and %d activations after the failed commit, want the same activation (0 loads, 1)", got, n.acts.count())
	}
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

	store.commitErr.Store(&errNothingCommitted)
	_, err := n.Invoke(context.Background(), accountCall(manualKind, methodFlush, "m", ""))
	store.commitErr.Store(nil)
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
	if got := store.loads.Load() - loads; got != 0 || n.acts.count() != 1 {
		t.Fatalf("%d loads and %d activations after the failed flush, want the same activation (0 loads, 1)", got, n.acts.count())
	}
}

// TestPassivationWhoseFlushCommittedNothingLosesNothing: a passivation
// whose final flush the store refuses without committing anything tries
// again, and the acknowledged changes of a FlushManual grain reach the
// store once it takes commits again, instead of being dropped with the
// activation.
func TestPassivationWhoseFlushCommittedNothingLosesNothing(t *testing.T) {
	store := hookedMemstore(t)
	nodes, _ := bankCluster(t, 1, store, 50*time.Millisecond, nil)
	n := nodes[0]
	commits := store.commits.Load()
	store.commitErr.Store(&errNothingCommitted)
	deposit(t, n, manualKind, "p", 7) // buffered until the passivation
	waitFor(t, waitTimeout, "the final flush to be tried twice", func() bool { return store.commits.Load()-commits >= 2 })
	store.commitErr.Store(nil)
	waitFor(t, waitTimeout, "the passivation", func() bool { return n.acts.count() == 0 })
	if got := storedBalance(t, store.Store, manualKind, "p"); got != 7 {
		t.Fatalf("stored balance %d after the passivation, want the acknowledged 7", got)
	}
}
