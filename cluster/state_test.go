package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/protograin/protograin/cluster/state"
	"github.com/protograin/protograin/cluster/storage"
	"github.com/protograin/protograin/cluster/storage/memstore"
)

// A retry storm: one call, delivered many times at once from every node,
// is applied once, and every delivery gets its reply. The same stamp still
// gets the recorded reply after the grain moved to another node.
func TestRetryStormAppliesOnce(t *testing.T) {
	eachStore(t, func(t *testing.T, store storage.Store) {
		nodes, banks := bankCluster(t, 3, store, -1, nil)
		id := accountOwnedBy(t, nodes[0], accountKind, "storm")
		deposit(t, nodes[1], accountKind, id, 100) // an earlier call

		const deliveries = 60
		var wg sync.WaitGroup
		errs := make(chan error, deliveries)
		for i := range deliveries {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := nodes[i%len(nodes)].Invoke(context.Background(), depositCall(accountKind, id, 5), WithCallID("storm-client", 7))
				if err == nil && resp.(*wrapperspb.Int64Value).GetValue() != 105 {
					err = fmt.Errorf("reply %v, want 105", resp)
				}
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("a delivery: %v", err)
			}
		}
		if runs := totalRuns(banks, id, methodDeposit); runs != 2 {
			t.Fatalf("Deposit ran %d times, want 2 (one call, one storm)", runs)
		}
		if got := storedBalance(t, store, accountKind, id); got != 105 {
			t.Fatalf("stored balance %d, want 105", got)
		}

		// The owner leaves: the grain moves, its record with it.
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if err := nodes[0].Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		waitConverged(t, nodes[1:], 2)
		if got := deposit(t, nodes[1], accountKind, id, 5, WithCallID("storm-client", 7)); got != 105 {
			t.Fatalf("the retry on the new owner replied %d, want the recorded 105", got)
		}
		if runs := totalRuns(banks, id, methodDeposit); runs != 2 {
			t.Fatalf("Deposit ran %d times after the move, want still 2", runs)
		}
		if got := deposit(t, nodes[2], accountKind, id, 5, WithCallID("storm-client", 8)); got != 110 {
			t.Fatalf("the next call replied %d, want 110", got)
		}
	})
}

// A crash between the method and the flush: the caller gets no success,
// the state is unchanged, and a retry with the same stamp applies the call
// once on the new owner.
func TestCrashBeforeFlush(t *testing.T) {
	eachStore(t, func(t *testing.T, base storage.Store) {
		store := newHookedStore(base)
		nodes, banks := bankCluster(t, 2, store, -1, nil)
		owner, caller := nodes[0], nodes[1]
		id := accountOwnedBy(t, owner, accountKind, "crash")
		deposit(t, caller, accountKind, id, 10)

		key := storage.Key{Kind: accountKind, Identity: id}
		store.holdKey.Store(&key)
		result := make(chan error, 1)
		go func() {
			_, err := caller.Invoke(context.Background(), depositCall(accountKind, id, 5), WithCallID("crash-client", 1), WithoutRetry())
			result <- err
		}()
		receive(t, store.holding, "the owner to start committing")
		owner.Close() // the crash: the commit never reaches the store
		if err := receive(t, result, "the caller's result"); err == nil {
			t.Fatal("the caller got success for a call whose commit never happened")
		}
		store.holdKey.Store(nil)
		if got := storedBalance(t, base, accountKind, id); got != 10 {
			t.Fatalf("stored balance %d after the crash, want 10", got)
		}

		waitConverged(t, nodes[1:], 1)
		if got := deposit(t, caller, accountKind, id, 5, WithCallID("crash-client", 1)); got != 15 {
			t.Fatalf("the retry replied %d, want 15", got)
		}
		if got := deposit(t, caller, accountKind, id, 5, WithCallID("crash-client", 1)); got != 15 {
			t.Fatalf("a second retry replied %d, want the recorded 15", got)
		}
		if runs := banks[caller.Name()].count(id, methodDeposit); runs != 1 {
			t.Fatalf("Deposit ran %d times on the new owner, want 1", runs)
		}
	})
}

// A node stopped during a stream of deposits: each deposit is retried with
// its stamp until acknowledged, and the balance is the sum of the
// acknowledged deposits, no more, no less.
func TestOwnerCrashDuringDeposits(t *testing.T) {
	eachStore(t, func(t *testing.T, store storage.Store) {
		nodes, _ := bankCluster(t, 3, store, -1, nil)
		owner, caller := nodes[0], nodes[1]
		id := accountOwnedBy(t, owner, accountKind, "stream")

		const count = 40
		crash := make(chan struct{})
		crashed := make(chan struct{})
		go func() {
			defer close(crashed)
			<-crash
			owner.Close() // while the next deposits are in flight, without leaving
		}()
		var acked int64
		for i := 1; i <= count; i++ {
			if i == count/3 {
				close(crash)
			}
			if err := depositUntilAcked(caller, id, int64(i), WithCallID("stream-client", uint64(i))); err != nil {
				t.Fatalf("deposit %d was never acknowledged: %v", i, err)
			}
			acked += int64(i)
		}
		<-crashed
		if got := storedBalance(t, store, accountKind, id); got != acked {
			t.Fatalf("stored balance %d, want the acknowledged sum %d", got, acked)
		}
		if got := balance(t, nodes[2], accountKind, id); got != acked {
			t.Fatalf("balance %d, want %d", got, acked)
		}
	})
}

// depositUntilAcked retries a deposit with its stamp until it is
// acknowledged: a call that failed may or may not have been applied, and
// the same stamp tells.
func depositUntilAcked(c Caller, identity string, amount int64, id CallOption) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitTimeout)
	defer cancel()
	for {
		_, err := c.Invoke(ctx, depositCall(accountKind, identity, amount), id)
		if err == nil || ctx.Err() != nil {
			return err
		}
		if c := status.Code(err); c != codes.Unavailable && c != codes.Aborted && c != codes.Canceled {
			return err
		}
	}
}

// commitBalanceBehind commits balance as the typed state of grain
// kind/identity, as another activation (on another node, during a
// membership change) would behind the back of the one a test holds, and
// records it as the reply to client "c"'s calls seqs, as that activation
// would had it run them.
func commitBalanceBehind(t *testing.T, store storage.Store, kind, identity string, balance int64, seqs ...uint64) {
	t.Helper()
	raw, err := proto.Marshal(wrapperspb.Int64(balance))
	if err != nil {
		t.Fatal(err)
	}
	commitBehind(t, store, kind, identity, raw, raw, seqs...)
}

// commitBehind commits message as the encoded typed state message of
// grain kind/identity, as another activation would behind the back of the
// one a test holds, and records reply as its reply to client "c"'s calls
// seqs. It returns the version it committed.
func commitBehind(t *testing.T, store storage.Store, kind, identity string, message, reply []byte, seqs ...uint64) storage.Version {
	t.Helper()
	other, err := state.Load(context.Background(), store, storage.Key{Kind: kind, Identity: identity}, state.Config{})
	if err != nil {
		t.Fatal(err)
	}
	other.SetMessage(message)
	for _, seq := range seqs {
		if err := other.Record("c", seq, reply); err != nil {
			t.Fatal(err)
		}
	}
	if err := other.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	return other.Version()
}

// wantRetryRunsOnce waits for n's stale activation of account identity to
// go, and checks that a retry of its deposit of 5 under ("c", 1) runs on
// the next activation, on the winner's balance of 1000: the account's
// Deposit then ran three times in all (a first deposit, the stale one, the
// retry).
func wantRetryRunsOnce(t *testing.T, n *Node, banks map[string]*bank, identity string) {
	t.Helper()
	waitFor(t, waitTimeout, "the stale activation to go", func() bool { return n.acts.count() == 0 })
	if got := deposit(t, n, accountKind, identity, 5, WithCallID("c", 1)); got != 1005 {
		t.Fatalf("the retry replied %d, want 1005", got)
	}
	if runs := banks[n.Name()].count(identity, methodDeposit); runs != 3 {
		t.Fatalf("Deposit ran %d times, want 3", runs)
	}
}

// A stale activation's flush is rejected with Aborted, nothing of it is
// committed, and the activation is replaced by one that sees the winner's
// state.
func TestStaleActivationIsAborted(t *testing.T) {
	eachStore(t, func(t *testing.T, store storage.Store) {
		nodes, banks := bankCluster(t, 1, store, -1, nil)
		n := nodes[0]
		deposit(t, n, accountKind, "stale", 10)

		// Another activation (as on another node, during a membership
		// change) commits behind this one's back.
		commitBalanceBehind(t, store, accountKind, "stale", 1000)

		_, err := n.Invoke(context.Background(), depositCall(accountKind, "stale", 5), WithCallID("c", 1))
		if status.Code(err) != codes.Aborted || !errors.Is(err, ErrStaleActivation) {
			t.Fatalf("deposit on the stale activation: %v, want Aborted, ErrStaleActivation", err)
		}
		if got := storedBalance(t, store, accountKind, "stale"); got != 1000 {
			t.Fatalf("stored balance %d, want the winner's 1000", got)
		}
		// The aborted call had no effect: retried, it runs on the new
		// activation.
		wantRetryRunsOnce(t, n, banks, "stale")
	})
}

// TestAStaleActivationAnswersACallTheWinnerRecorded: a call whose commit
// loses to another activation that ran the same call under the same stamp
// (a retry after a commit whose outcome was unknown, which landed
// meanwhile) gets the winner's recorded reply. It got ErrStaleActivation,
// "no effect on state", though its effect was in the store, and a caller
// that then retried under a new stamp, as that error allows, applied it
// twice.
func TestAStaleActivationAnswersACallTheWinnerRecorded(t *testing.T) {
	eachStore(t, func(t *testing.T, store storage.Store) {
		nodes, banks := bankCluster(t, 1, store, -1, nil)
		n := nodes[0]
		deposit(t, n, accountKind, "won", 10)

		// The winner ran the deposit of 5 under ("c", 1) and recorded
		// its reply, behind the back of this node's activation.
		commitBalanceBehind(t, store, accountKind, "won", 15, 1)

		if got := deposit(t, n, accountKind, "won", 5, WithCallID("c", 1)); got != 15 {
			t.Fatalf("the deposit on the stale activation replied %d, want the winner's recorded 15", got)
		}
		if got := storedBalance(t, store, accountKind, "won"); got != 15 {
			t.Fatalf("stored balance %d, want the winner's 15", got)
		}
		if runs := banks[n.Name()].count("won", methodDeposit); runs != 2 {
			t.Fatalf("Deposit ran %d times here, want 2 (the second refused as stale)", runs)
		}
		if got := deposit(t, n, accountKind, "won", 1); got != 16 {
			t.Fatalf("the next deposit replied %d, want 16", got)
		}
	})
}

// TestAStaleActivationAnswersACallTheWinnerRecordedUnderAnotherMessage: as
// TestAStaleActivationAnswersACallTheWinnerRecorded, where the winner ran
// another version of the grain, whose state message this one cannot
// decode (a rolling upgrade, or damage). The call gets the winner's recorded reply:
// only the record is needed. It failed with the error of the message that
// does not decode, though the winner had recorded its reply.
func TestAStaleActivationAnswersACallTheWinnerRecordedUnderAnotherMessage(t *testing.T) {
	eachStore(t, func(t *testing.T, store storage.Store) {
		nodes, _ := bankCluster(t, 1, store, -1, nil)
		n := nodes[0]
		deposit(t, n, accountKind, "upgraded", 10)

		reply, err := proto.Marshal(wrapperspb.Int64(15))
		if err != nil {
			t.Fatal(err)
		}
		// Field 1's varint cut short: so another version's message looks
		// to this one.
		message := []byte{0x08, 0xff}
		commitBehind(t, store, accountKind, "upgraded", message, reply, 1)

		if got := deposit(t, n, accountKind, "upgraded", 5, WithCallID("c", 1)); got != 15 {
			t.Fatalf("the deposit on the stale activation replied %d, want the winner's recorded 15", got)
		}
	})
}

// TestAStaleActivationWhoseWinnerLeftDamagedRecordsSaysSo: a call whose
// commit loses to another activation, whose stored exactly-once records do
// not decode, fails with ErrStateUndecodable (FailedPrecondition), as the
// next activation would: not with ErrStateUnavailable, which tells the
// caller to retry, though no retry can read those records.
func TestAStaleActivationWhoseWinnerLeftDamagedRecordsSaysSo(t *testing.T) {
	eachStore(t, func(t *testing.T, store storage.Store) {
		nodes, _ := bankCluster(t, 1, store, -1, nil)
		n := nodes[0]
		ctx := context.Background()
		deposit(t, n, accountKind, "damaged-winner", 10)
		key := storage.Key{Kind: accountKind, Identity: "damaged-winner"}
		_, version, err := store.Load(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		// The winner commits behind the activation's back, leaving a record
		// that does not decode.
		if _, err := store.Commit(ctx, key, version, []storage.Change{{Key: state.ReservedPrefix + "client/c1", Value: []byte{0xff}}}); err != nil {
			t.Fatal(err)
		}
		_, err = n.Invoke(ctx, depositCall(accountKind, key.Identity, 5), WithCallID("c", 1))
		if status.Code(err) != codes.FailedPrecondition || !errors.Is(err, ErrStateUndecodable) || errors.Is(err, ErrStateUnavailable) {
			t.Fatalf("deposit on a stale activation whose winner left damaged records: %v (code %v); want FailedPrecondition and ErrStateUndecodable",
				err, status.Code(err))
		}
	})
}

// TestAStaleActivationThatCannotReadTheWinnerSaysToRetry: a call whose
// commit loses to another activation, when the store then fails the read
// of the winner's state, cannot tell whether the winner ran it under its
// stamp: it fails with ErrStateUnavailable, telling the caller to retry
// under the stamp, not with ErrStaleActivation's "no effect"; and the
// retry runs it once on the next activation.
func TestAStaleActivationThatCannotReadTheWinnerSaysToRetry(t *testing.T) {
	store := hookedMemstore(t)
	nodes, banks := bankCluster(t, 1, store, -1, nil)
	n := nodes[0]
	deposit(t, n, accountKind, "unread", 10)
	commitBalanceBehind(t, store.Store, accountKind, "unread", 1000)

	store.loadErr.Store(&errStoreDown)
	_, err := n.Invoke(context.Background(), depositCall(accountKind, "unread", 5), WithCallID("c", 1))
	store.loadErr.Store(nil)
	if status.Code(err) != codes.Unavailable || !errors.Is(err, ErrStateUnavailable) || !strings.Contains(err.Error(), "a retry with the same call ID tells") {
		t.Fatalf("deposit on the stale activation, the winner unreadable: %v; want Unavailable, ErrStateUnavailable, telling to retry under the stamp", err)
	}
	wantRetryRunsOnce(t, n, banks, "unread")
}

// TestAStaleActivationWhoseWinnerMovedOnSaysStaleCall: a call whose commit
// loses to another activation that has since recorded so many of the
// client's later calls that the call's stamp fell out of its window cannot
// tell whether the winner ran it: it fails with ErrStaleCall, not with
// ErrStaleActivation's "no effect on state", which would let its caller
// apply it again under a new stamp.
func TestAStaleActivationWhoseWinnerMovedOnSaysStaleCall(t *testing.T) {
	eachStore(t, func(t *testing.T, store storage.Store) {
		nodes, banks := bankCluster(t, 1, store, -1, nil)
		n := nodes[0]
		deposit(t, n, accountKind, "moved-on", 10)

		// The winner ran the client's calls 2 and after, more of them
		// than it keeps replies for, behind this activation's back.
		seqs := make([]uint64, 0, state.DefaultWindowPerClient+4)
		for seq := uint64(2); seq <= state.DefaultWindowPerClient+5; seq++ {
			seqs = append(seqs, seq)
		}
		commitBalanceBehind(t, store, accountKind, "moved-on", 1000, seqs...)

		_, err := n.Invoke(context.Background(), depositCall(accountKind, "moved-on", 5), WithCallID("c", 1))
		if status.Code(err) != codes.FailedPrecondition || !errors.Is(err, ErrStaleCall) {
			t.Fatalf("deposit on the stale activation, its stamp out of the winner's window: %v; want FailedPrecondition, ErrStaleCall", err)
		}
		if got := storedBalance(t, store, accountKind, "moved-on"); got != 1000 {
			t.Fatalf("stored balance %d, want the winner's 1000", got)
		}
		if runs := banks[n.Name()].count("moved-on", methodDeposit); runs != 2 {
			t.Fatalf("Deposit ran %d times here, want 2 (the second refused as stale)", runs)
		}
	})
}

// TestAOneWayMessageRefusedAsStaleRunsOnTheNextActivation: a one-way
// message whose commit is refused because another activation committed
// first (as during a join, when two nodes run the grain for a moment) is
// not lost: it runs again on the next activation, on the winner's state.
func TestAOneWayMessageRefusedAsStaleRunsOnTheNextActivation(t *testing.T) {
	store := memstore.New()
	nodes, banks := bankCluster(t, 1, store, -1, nil)
	n := nodes[0]
	deposit(t, n, accountKind, "stale", 10)

	commitBalanceBehind(t, store, accountKind, "stale", 1000)

	if err := n.Send(context.Background(), depositCall(accountKind, "stale", 5)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, waitTimeout, "the one-way deposit to be committed on the winner's balance", func() bool {
		return storedBalance(t, store, accountKind, "stale") == 1005
	})
	// Once on the stale activation, refused, and once on the next.
	if runs := banks[n.Name()].count("stale", methodDeposit); runs != 3 {
		t.Fatalf("Deposit ran %d times, want 3", runs)
	}
	if got := deposit(t, n, accountKind, "stale", 1); got != 1006 {
		t.Fatalf("balance %d after one more deposit, want 1006: the deposit applied once", got)
	}
}

// A grain's Flush on a stale activation fails too, and the call fails with
// Aborted even though the grain swallowed nothing.
func TestStaleManualFlushIsAborted(t *testing.T) {
	eachStore(t, func(t *testing.T, store storage.Store) {
		nodes, _ := bankCluster(t, 1, store, -1, nil)
		n := nodes[0]
		deposit(t, n, manualKind, "m", 10)
		if _, err := store.Commit(context.Background(), storage.Key{Kind: manualKind, Identity: "m"}, 0, nil); err != nil {
			t.Fatal(err) // version 0 → 1 behind the activation's back
		}
		_, err := n.Invoke(context.Background(), accountCall(manualKind, methodFlush, "m", ""))
		if status.Code(err) != codes.Aborted || !errors.Is(err, ErrStaleActivation) {
			t.Fatalf("Flush on a stale activation: %v, want Aborted, ErrStaleActivation", err)
		}
	})
}

// Typed state is loaded on activation, changed in place, flushed after
// each call that changed it, and loaded again after passivation; key/value
// entries likewise. Calls that change nothing do not write.
func TestStateLifecycle(t *testing.T) {
	eachStore(t, func(t *testing.T, base storage.Store) {
		store := newHookedStore(base)
		nodes, banks := bankCluster(t, 1, store, 50*time.Millisecond, nil)
		n := nodes[0]
		b := banks[n.Name()]
		if got := deposit(t, n, accountKind, "life", 7); got != 7 {
			t.Fatalf("balance %d, want 7", got)
		}
		if got := storedBalance(t, base, accountKind, "life"); got != 7 {
			t.Fatalf("stored balance %d right after the call, want 7", got)
		}
		if _, err := n.Invoke(context.Background(), accountCall(accountKind, methodPut, "life", "owner=alice")); err != nil {
			t.Fatal(err)
		}
		commits := store.commits.Load()
		balance(t, n, accountKind, "life")
		if _, err := n.Invoke(context.Background(), accountCall(accountKind, methodTouch, "life", "x")); err != nil {
			t.Fatal(err)
		}
		if got := store.commits.Load(); got != commits {
			t.Fatalf("calls that changed nothing committed %d times", got-commits)
		}

		waitFor(t, waitTimeout, "passivation", func() bool { return n.acts.count() == 0 })
		if got := deposit(t, n, accountKind, "life", 3); got != 10 {
			t.Fatalf("balance after passivation %d, want 10", got)
		}
		resp, err := n.Invoke(context.Background(), accountCall(accountKind, methodGet, "life", "owner"))
		if err != nil || resp.(*wrapperspb.StringValue).GetValue() != "alice" {
			t.Fatalf("Get(owner) after passivation = %v, %v; want alice", resp, err)
		}
		if news := b.count("life", methodDeposit); news != 2 {
			t.Fatalf("Deposit ran %d times, want 2", news)
		}
	})
}

// A failed call has no effect on state: its buffered changes, typed
// message included, are dropped.
func TestFailedCallLeavesNoChange(t *testing.T) {
	eachStore(t, func(t *testing.T, store storage.Store) {
		nodes, _ := bankCluster(t, 1, store, -1, nil)
		n := nodes[0]
		deposit(t, n, accountKind, "fail", 10)
		if _, err := n.Invoke(context.Background(), depositCall(accountKind, "fail", -4)); err == nil {
			t.Fatal("a negative deposit succeeded")
		}
		if got := balance(t, n, accountKind, "fail"); got != 10 {
			t.Fatalf("balance %d after a failed call, want 10", got)
		}
		if got := deposit(t, n, accountKind, "fail", 1); got != 11 {
			t.Fatalf("balance %d, want 11", got)
		}
	})
}

// In FlushManual mode changes wait for the grain's Flush, or for
// deactivation.
func TestManualFlush(t *testing.T) {
	eachStore(t, func(t *testing.T, store storage.Store) {
		nodes, _ := bankCluster(t, 1, store, -1, nil)
		n := nodes[0]
		if got := deposit(t, n, manualKind, "m", 4); got != 4 {
			t.Fatalf("balance %d, want 4", got)
		}
		deposit(t, n, manualKind, "m", 4)
		// A failed call drops its own changes, not those of the calls
		// before it that wait for the flush.
		if _, err := n.Invoke(context.Background(), depositCall(manualKind, "m", -3)); err == nil {
			t.Fatal("a negative deposit succeeded")
		}
		if v := storedVersion(t, store, manualKind, "m"); v != 0 {
			t.Fatalf("version %d before any Flush, want 0", v)
		}
		if _, err := n.Invoke(context.Background(), accountCall(manualKind, methodFlush, "m", "")); err != nil {
			t.Fatal(err)
		}
		if got := storedBalance(t, store, manualKind, "m"); got != 8 {
			t.Fatalf("stored balance %d after Flush, want 8", got)
		}
		deposit(t, n, manualKind, "m", 1)
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if err := n.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		if got := storedBalance(t, store, manualKind, "m"); got != 9 {
			t.Fatalf("stored balance %d after deactivation, want 9", got)
		}
	})
}

// Read-only methods, and calls that change nothing, are not deduplicated:
// they run again under the same stamp.
func TestReadOnlyIsNotDeduplicated(t *testing.T) {
	nodes, banks := bankCluster(t, 2, nil, -1, nil)
	id := accountOwnedBy(t, nodes[1], accountKind, "ro")
	b := banks[nodes[1].Name()]
	for range 3 {
		if _, err := nodes[0].Invoke(context.Background(), accountCall(accountKind, methodBalance, id, ""), WithCallID("ro", 1)); err != nil {
			t.Fatal(err)
		}
		if _, err := nodes[0].Invoke(context.Background(), accountCall(accountKind, methodTouch, id, ""), WithCallID("ro", 2)); err != nil {
			t.Fatal(err)
		}
	}
	if got := b.count(id, methodBalance); got != 3 {
		t.Fatalf("read-only Balance ran %d times, want 3", got)
	}
	if got := b.count(id, methodTouch); got != 3 {
		t.Fatalf("Touch, which changes nothing, ran %d times, want 3", got)
	}
}

// A stamp below the client's window (the replies of its latest calls the
// grain keeps) fails with FailedPrecondition and does not run, locally and
// across nodes; one inside the window, even out of order, runs once.
func TestStaleSequence(t *testing.T) {
	// The default window, and a small one set through Config.State.
	for _, window := range []uint64{state.DefaultWindowPerClient, 4} {
		t.Run(fmt.Sprintf("window=%d", window), func(t *testing.T) {
			nodes, banks := bankCluster(t, 2, nil, -1, func(c *Config) { c.State.WindowPerClient = int(window) })
			for _, caller := range nodes {
				id := accountOwnedBy(t, nodes[0], accountKind, "seq-"+caller.Name())
				deposit(t, caller, accountKind, id, 1, WithCallID("seq", 2)) // 1 overtaken by 2
				deposit(t, caller, accountKind, id, 1, WithCallID("seq", 1))
				for seq := uint64(3); seq <= window+2; seq++ {
					deposit(t, caller, accountKind, id, 1, WithCallID("seq", seq))
				}
				runs := banks[nodes[0].Name()].count(id, methodDeposit)
				_, err := caller.Invoke(context.Background(), depositCall(accountKind, id, 1), WithCallID("seq", 1))
				if status.Code(err) != codes.FailedPrecondition || !errors.Is(err, ErrStaleCall) {
					t.Fatalf("call 1 after %d later ones from %s: %v, want FailedPrecondition, ErrStaleCall", window+1, caller.Name(), err)
				}
				if got := banks[nodes[0].Name()].count(id, methodDeposit); got != runs {
					t.Fatalf("the stale call ran")
				}
				if got := deposit(t, caller, accountKind, id, 1, WithCallID("seq", 5)); got != 5 {
					t.Fatalf("retry of call 5 replied %d, want its recorded 5", got)
				}
			}
		})
	}
}

// Bad stamps are refused before anything runs.
func TestBadCallID(t *testing.T) {
	nodes, banks := bankCluster(t, 1, nil, -1, nil)
	for _, opt := range []CallOption{WithCallID("", 1), WithCallID("c", 0), WithCallID("a\x00b", 1), WithCallID("\xff", 1)} {
		_, err := nodes[0].Invoke(context.Background(), depositCall(accountKind, "bad", 1), opt)
		if status.Code(err) != codes.InvalidArgument || !errors.Is(err, ErrBadRequest) {
			t.Errorf("bad call ID: %v, want InvalidArgument, ErrBadRequest", err)
		}
	}
	if runs := banks[nodes[0].Name()].count("bad", methodDeposit); runs != 0 {
		t.Fatalf("Deposit ran %d times with bad call IDs", runs)
	}
}

// A grain-to-grain call made again, because the outer call ran again,
// carries the same stamp and is not applied twice.
func TestInnerCallsAreDeduplicated(t *testing.T) {
	eachStore(t, func(t *testing.T, store storage.Store) {
		nodes, banks := bankCluster(t, 2, store, -1, nil)
		payer := accountOwnedBy(t, nodes[0], accountKind, "payer")
		payee := accountOwnedBy(t, nodes[1], accountKind, "payee")
		banks[nodes[0].Name()].failPay.Store(1) // the first run fails after paying

		if _, err := nodes[1].Invoke(context.Background(), accountCall(accountKind, methodPay, payer, payee), WithCallID("pay", 1)); err == nil {
			t.Fatal("the first Pay succeeded")
		}
		resp, err := nodes[1].Invoke(context.Background(), accountCall(accountKind, methodPay, payer, payee), WithCallID("pay", 1))
		if err != nil {
			t.Fatalf("Pay again: %v", err)
		}
		if got := resp.(*wrapperspb.Int64Value).GetValue(); got != -2 {
			t.Fatalf("payer's balance %d, want -2", got)
		}
		if got := balance(t, nodes[0], accountKind, payee); got != 2 {
			t.Fatalf("payee's balance %d, want 2: the re-executed Pay's deposits were applied again", got)
		}
		if runs := banks[nodes[1].Name()].count(payee, methodDeposit); runs != 2 {
			t.Fatalf("the payee's Deposit ran %d times, want 2", runs)
		}
		// A new outer call makes new inner calls.
		if _, err := nodes[1].Invoke(context.Background(), accountCall(accountKind, methodPay, payer, payee), WithCallID("pay", 2)); err != nil {
			t.Fatal(err)
		}
		if got := balance(t, nodes[0], accountKind, payee); got != 4 {
			t.Fatalf("payee's balance %d after a second Pay, want 4", got)
		}
	})
}

// Loading state fails the activating call with Unavailable, and no
// activation is kept.
func TestStateLoadFailure(t *testing.T) {
	store := hookedMemstore(t)
	loadErr := errors.New("disk on fire")
	store.loadErr.Store(&loadErr)
	nodes, banks := bankCluster(t, 1, store, -1, nil)
	_, err := nodes[0].Invoke(context.Background(), depositCall(accountKind, "x", 1), WithoutRetry())
	if status.Code(err) != codes.Unavailable || !errors.Is(err, ErrStateUnavailable) {
		t.Fatalf("call with a failing store: %v, want Unavailable, ErrStateUnavailable", err)
	}
	if nodes[0].acts.count() != 0 || banks[nodes[0].Name()].count("x", methodDeposit) != 0 {
		t.Fatal("an activation was kept, or the method ran, without state")
	}
}

// Reads of key/value state see the grain's own buffered writes, and
// reserved keys are refused.
func TestStateEntries(t *testing.T) {
	nodes, _ := bankCluster(t, 1, nil, -1, nil)
	n := nodes[0]
	if _, err := n.Invoke(context.Background(), accountCall(accountKind, methodPut, "e", "k=v")); err != nil {
		t.Fatal(err)
	}
	resp, err := n.Invoke(context.Background(), accountCall(accountKind, methodGet, "e", "k"))
	if err != nil || resp.(*wrapperspb.StringValue).GetValue() != "v" {
		t.Fatalf("Get(k) = %v, %v", resp, err)
	}
	if _, err := n.Invoke(context.Background(), accountCall(accountKind, methodGet, "e", "missing")); err == nil {
		t.Fatal("Get of a missing key succeeded")
	}
	if _, err := n.Invoke(context.Background(), accountCall(accountKind, methodPut, "e", state.ReservedPrefix+"x=v")); err == nil {
		t.Fatal("Put of a reserved key succeeded")
	}
}

// The hot path of calls that do not touch the store: read-only calls and
// calls that change nothing neither load nor commit, and their allocations
// stay those of a call without state.
func TestStatelessCallsStayCheap(t *testing.T) {
	store := hookedMemstore(t)
	nodes, _ := bankCluster(t, 1, store, -1, nil)
	n := nodes[0]
	balance(t, n, accountKind, "cheap") // activates
	loads, commits := store.loads.Load(), store.commits.Load()
	ctx := context.Background()
	readOnly := accountCall(accountKind, methodBalance, "cheap", "")
	touch := accountCall(accountKind, methodTouch, "cheap", "")
	allocs := func(call Call) float64 {
		return testing.AllocsPerRun(200, func() {
			if _, err := n.Invoke(ctx, call); err != nil {
				t.Fatal(err)
			}
		})
	}
	ro, tc := allocs(readOnly), allocs(touch)
	if store.loads.Load() != loads || store.commits.Load() != commits {
		t.Fatalf("calls that change nothing used the store: %d loads, %d commits", store.loads.Load()-loads, store.commits.Load()-commits)
	}
	t.Logf("allocations per local call: read-only %.0f, unchanged state %.0f", ro, tc)
	if tc > ro+4 {
		t.Errorf("a call that changes nothing allocates %.0f, %.0f more than a read-only one", tc, tc-ro)
	}
}

// A commit that fails for another reason than a conflict fails the call
// with Unavailable and deactivates the activation, whose state is then
// uncertain; a retry with the same stamp, once the store is back, applies
// the call once.
func TestCommitFailure(t *testing.T) {
	store := hookedMemstore(t)
	nodes, banks := bankCluster(t, 1, store, -1, nil)
	n := nodes[0]
	deposit(t, n, accountKind, "cf", 10)
	down := errors.New("connection reset")
	store.commitErr.Store(&down)
	_, err := n.Invoke(context.Background(), depositCall(accountKind, "cf", 5), WithCallID("cf", 1))
	if status.Code(err) != codes.Unavailable || !errors.Is(err, ErrStateUnavailable) || !strings.Contains(err.Error(), "connection reset") {
		t.Fatalf("deposit with a failing commit: %v, want Unavailable, ErrStateUnavailable, naming the cause", err)
	}
	waitFor(t, waitTimeout, "the activation to go", func() bool { return n.acts.count() == 0 })
	store.commitErr.Store(nil)
	if got := deposit(t, n, accountKind, "cf", 5, WithCallID("cf", 1)); got != 15 {
		t.Fatalf("the retry replied %d, want 15", got)
	}
	if got := deposit(t, n, accountKind, "cf", 5, WithCallID("cf", 1)); got != 15 {
		t.Fatalf("a second retry replied %d, want the recorded 15", got)
	}
	if runs := banks[n.Name()].count("cf", methodDeposit); runs != 3 {
		t.Fatalf("Deposit ran %d times, want 3", runs)
	}
}

// A caller that gives up while its call's changes are being committed
// neither undoes the commit nor costs the activation: the commit finishes,
// and a retry with the same call ID gets the recorded reply.
func TestCallerGivesUpDuringCommit(t *testing.T) {
	store := hookedMemstore(t)
	nodes, banks := bankCluster(t, 1, store, -1, nil)
	n := nodes[0]
	deposit(t, n, accountKind, "quitter", 10)
	loads := store.loads.Load()

	key := storage.Key{Kind: accountKind, Identity: "quitter"}
	store.holdKey.Store(&key)
	ctx, cancel := context.WithCancel(context.Background())
	result := make(chan error, 1)
	go func() {
		_, err := n.Invoke(ctx, depositCall(accountKind, "quitter", 5), WithCallID("quitter-client", 1), WithoutRetry())
		result <- err
	}()
	receive(t, store.holding, "the commit to start")
	cancel()
	if err := receive(t, result, "the caller's result"); status.Code(err) != codes.Canceled {
		t.Fatalf("the cancelled call returned %v, want Canceled", err)
	}
	close(store.release)
	waitFor(t, waitTimeout, "the commit to reach the store", func() bool {
		return storedBalance(t, store.Store, accountKind, "quitter") == 15
	})

	if got := deposit(t, n, accountKind, "quitter", 5, WithCallID("quitter-client", 1)); got != 15 {
		t.Fatalf("the retry replied %d, want the recorded 15", got)
	}
	if runs := banks[n.Name()].count("quitter", methodDeposit); runs != 2 {
		t.Fatalf("Deposit ran %d times, want 2: the first deposit and the cancelled one, not the retry", runs)
	}
	wantSameActivation(t, n, store, loads, "the cancelled call")
}

// TestFlushAfterTheCallerGaveUpKeepsAcknowledgedChanges: in FlushManual
// mode, a method that flushes with its call's context, as docs/state.md
// shows (ctx.State().Flush(ctx)), after its caller cancelled or its
// deadline passed, commits what it flushes: with it the change of an
// earlier call that was acknowledged and waited for this flush. Before,
// the store refused the commit with the context's error, the cluster took
// that for an uncertain commit (ErrStateUnavailable) and dropped the
// activation with its buffer: the stored balance stayed 0, not 10, though
// the store never failed.
func TestFlushAfterTheCallerGaveUpKeepsAcknowledgedChanges(t *testing.T) {
	t.Parallel()
	const methodFlushLater = "/test.ManualAccount/FlushLater" // StringValue → StringValue; flushes once proceed is closed
	for _, tc := range []struct {
		name   string
		cancel bool          // the caller cancels once the method runs
		within time.Duration // the caller's deadline, if not zero
		want   codes.Code
	}{
		{name: "cancelled", cancel: true, want: codes.Canceled},
		{name: "deadline exceeded", within: 100 * time.Millisecond, want: codes.DeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			store := hookedMemstore(t)
			entered, proceed, flushed := make(chan struct{}, 1), make(chan struct{}), make(chan error, 1)
			var once sync.Once
			letFlush := func() { once.Do(func() { close(proceed) }) }
			t.Cleanup(letFlush) // before the node closes, should the test fail first
			nodes := startCluster(t, 1, func(name string) []*Kind {
				k := newAccountKind(newBank(name), manualKind, FlushManual, -1)
				k.Methods = append(k.Methods, Method{Name: methodFlushLater, NewRequest: newString,
					Handle: func(_ any, ctx GrainContext, req proto.Message) (proto.Message, error) {
						entered <- struct{}{}
						<-proceed // the caller has given up by now
						err := ctx.State().Flush(ctx)
						flushed <- err
						return req, err
					}})
				return []*Kind{k}
			}, func(cfg *Config) { cfg.Store = store })
			n := nodes[0]
			if got := deposit(t, n, manualKind, "m", 10); got != 10 {
				t.Fatalf("Deposit(10) replied %d", got)
			}
			if got := storedBalance(t, store.Store, manualKind, "m"); got != 0 {
				t.Fatalf("stored balance %d before any flush, want 0", got)
			}
			loads := store.loads.Load()
			ctx, cancel := context.WithCancel(context.Background())
			if tc.within > 0 {
				ctx, cancel = context.WithTimeout(context.Background(), tc.within)
			}
			defer cancel()
			result := make(chan error, 1)
			go func() {
				_, err := n.Invoke(ctx, accountCall(manualKind, methodFlushLater, "m", ""), WithoutRetry())
				result <- err
			}()
			receive(t, entered, "the flushing call to run")
			if tc.cancel {
				cancel()
			}
			if err := receive(t, result, "the caller's result"); status.Code(err) != tc.want {
				t.Fatalf("the call returned %v, want %v", err, tc.want)
			}
			letFlush()
			if err := receive(t, flushed, "the flush"); err != nil {
				t.Fatalf("Flush after the caller gave up: %v, want nil", err)
			}
			if got := storedBalance(t, store.Store, manualKind, "m"); got != 10 {
				t.Fatalf("stored balance %d after the flush, want the acknowledged 10", got)
			}
			if got := balance(t, n, manualKind, "m"); got != 10 {
				t.Fatalf("balance %d after the flush, want 10", got)
			}
			wantSameActivation(t, n, store, loads, "the flush")
		})
	}
}

// State changed by OnActivate or by a read-only method is not lost: it is
// committed with the next call that changes state, or at deactivation.
func TestStateChangedOutsideCallsIsFlushedOnDeactivation(t *testing.T) {
	store := hookedMemstore(t)
	kind := newAccountKind(newBank("x"), accountKind, FlushAfterCall, 30*time.Millisecond)
	kind.New = func(string) any { return &activatingAccount{} }
	nodes := startCluster(t, 1, func(string) []*Kind { return []*Kind{kind} }, func(c *Config) { c.Store = store })
	balance(t, nodes[0], accountKind, "act") // activates; OnActivate deposits 100
	if v := storedVersion(t, store, accountKind, "act"); v != 0 {
		t.Fatalf("version %d before anything changed state in a call, want 0", v)
	}
	waitFor(t, waitTimeout, "passivation", func() bool { return nodes[0].acts.count() == 0 })
	if got := storedBalance(t, store, accountKind, "act"); got != 100 {
		t.Fatalf("stored balance %d after deactivation, want 100", got)
	}
}

// activatingAccount changes its state in OnActivate.
type activatingAccount struct{ account }

func (a *activatingAccount) OnActivate(ctx GrainContext) error {
	balanceOf(ctx).Value += 100
	return nil
}

// A kind without a typed state message keeps no state for a grain the store
// has nothing for until the grain touches State. What the grain writes then
// is rolled back when its call fails, committed when it succeeds, and its
// calls are deduplicated across activations as with state loaded at
// activation.
func TestLazyState(t *testing.T) {
	const kvKind = "test.KVAccount"
	store := hookedMemstore(t)
	var b *bank
	nodes := startCluster(t, 1, func(name string) []*Kind {
		b = newBank(name)
		k := newAccountKind(b, kvKind, FlushAfterCall, -1)
		k.NewState = nil
		return []*Kind{k}
	}, func(cfg *Config) { cfg.Store = store })
	n := nodes[0]
	ctx := context.Background()
	activation := func() *activation {
		return n.acts.peek(actKey{kvKind, "lazy"})
	}

	if _, err := n.Invoke(ctx, accountCall(kvKind, methodTouch, "lazy", "x")); err != nil {
		t.Fatal(err)
	}
	if a := activation(); a == nil || a.state != nil {
		t.Fatalf("activation of a grain with nothing stored: %+v; want one without state", a)
	}
	commits := store.commits.Load()
	if _, err := n.Invoke(ctx, accountCall(kvKind, methodPut, "lazy", "k="+putFails)); err == nil {
		t.Fatal("a failing Put succeeded")
	}
	if got := store.commits.Load(); got != commits {
		t.Fatalf("a failed call committed %d times", got-commits)
	}
	if _, err := n.Invoke(ctx, accountCall(kvKind, methodGet, "lazy", "k")); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("Get(k) after a failed Put: %v; want ErrNotFound", err)
	}

	id := WithCallID("lazy-client", 1)
	if _, err := n.Invoke(ctx, accountCall(kvKind, methodPut, "lazy", "k=v"), id); err != nil {
		t.Fatal(err)
	}
	entries, _, err := store.Load(ctx, storage.Key{Kind: kvKind, Identity: "lazy"})
	if err != nil || string(entries["k"]) != "v" {
		t.Fatalf("stored entries %q, %v; want k=v", entries, err)
	}

	// A new activation loads what was stored, the call's record included:
	// the retry gets the recorded reply without running Put again.
	if err := n.acts.deactivateAll(ctx); err != nil {
		t.Fatal(err)
	}
	resp, err := n.Invoke(ctx, accountCall(kvKind, methodPut, "lazy", "k=w"), id)
	if err != nil || resp.(*wrapperspb.StringValue).GetValue() != "k" {
		t.Fatalf("retried Put = %v, %v; want the recorded reply k", resp, err)
	}
	if runs := b.count("lazy", methodPut); runs != 2 {
		t.Fatalf("Put ran %d times, want 2 (the failed one and the first k=v)", runs)
	}
	if a := activation(); a == nil || a.state == nil {
		t.Fatal("an activation of a grain with stored state has no state")
	}
}

// firstLoadBlocks is a store whose first Load waits for its context to end
// and fails with it; it closes loading when that Load starts.
type firstLoadBlocks struct {
	storage.Store
	once    sync.Once
	loading chan struct{}
}

func (s *firstLoadBlocks) Load(ctx context.Context, key storage.Key) (map[string][]byte, storage.Version, error) {
	first := false
	s.once.Do(func() {
		first = true
		close(s.loading)
	})
	if first {
		<-ctx.Done()
		return nil, 0, ctx.Err()
	}
	return s.Store.Load(ctx, key)
}

// TestACallThatJoinsAnActivationOutlivesTheActivatingCall: two first calls
// to a grain; the first, which activates it, gives up while the state
// loads. It gets its context's error; the second, which waited for that
// activation, activates the grain itself instead of failing with the
// first call's error.
func TestACallThatJoinsAnActivationOutlivesTheActivatingCall(t *testing.T) {
	t.Parallel()
	store := &firstLoadBlocks{Store: memstore.New(), loading: make(chan struct{})}
	nodes, _ := bankCluster(t, 1, store, -1, nil)
	n := nodes[0]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first, second := make(chan error, 1), make(chan error, 1)
	go func() {
		_, err := n.Invoke(ctx, depositCall(accountKind, "j", 1))
		first <- err
	}()
	receive(t, store.loading, "the first call's activation to load the state")
	go func() {
		_, err := n.Invoke(context.Background(), depositCall(accountKind, "j", 1))
		second <- err
	}()
	waitFor(t, waitTimeout, "the second call to wait for the activation", func() bool {
		a := n.acts.peek(actKey{kind: accountKind, identity: "j"})
		return a != nil && a.calls.Load() == 2
	})
	cancel()
	if err := receive(t, first, "the first call"); status.Code(err) != codes.Canceled {
		t.Fatalf("the call that gave up returned %v, want its context's error", err)
	}
	if err := receive(t, second, "the second call"); err != nil {
		t.Fatalf("the call that waited for the activation: %v", err)
	}
	if got := balance(t, n, accountKind, "j"); got != 1 {
		t.Fatalf("balance %d, want 1", got)
	}
}
