package cluster

import (
	"errors"
	"testing"
	"time"

	"github.com/protograin/protograin/cluster/storage"
	"github.com/protograin/protograin/cluster/storage/redisstore/redistest"
)

// TestARedisServerThatCrashesLosesNoDeposit: the Redis server of a
// two-node cluster is killed (SIGKILL) between two deposits. The deposit
// made while it is down fails with ErrStateUnavailable saying that nothing
// was committed, from the grain's node and from the other; once the server
// is back with its append-only file, the same deposit under the same call
// ID runs once, and the balance holds every deposit acknowledged, each
// once, through a reactivation that loads it from the restarted server.
func TestARedisServerThatCrashesLosesNoDeposit(t *testing.T) {
	server := redistest.Start(t, true)
	nodes, banks := bankCluster(t, 2, redistest.OpenOn(t, server), time.Hour, nil)
	const id = "crash"
	owner, _ := nodes[0].Owner(accountKind, id)
	var here, there *Node
	for _, n := range nodes {
		if n.Name() == owner.Name {
			here = n
		} else {
			there = n
		}
	}
	deposit(t, there, accountKind, id, 1)

	server.Kill()
	for i, c := range []Caller{here, there} {
		_, err := c.Invoke(t.Context(), depositCall(accountKind, id, 10), WithCallID("redis-crash", uint64(i+1)))
		if !errors.Is(err, ErrStateUnavailable) || !errors.Is(err, storage.ErrNotCommitted) {
			t.Fatalf("deposit %d while the server is down: %v; want ErrStateUnavailable wrapping storage.ErrNotCommitted", i+1, err)
		}
	}

	server.Restart()
	for i, c := range []Caller{here, there} {
		if _, err := c.Invoke(t.Context(), depositCall(accountKind, id, 10), WithCallID("redis-crash", uint64(i+1))); err != nil {
			t.Fatalf("deposit %d again once the server is back: %v", i+1, err)
		}
		// Again: the stored reply, not a second deposit.
		if _, err := c.Invoke(t.Context(), depositCall(accountKind, id, 10), WithCallID("redis-crash", uint64(i+1))); err != nil {
			t.Fatalf("deposit %d a third time: %v", i+1, err)
		}
	}
	if got := balance(t, there, accountKind, id); got != 21 {
		t.Fatalf("balance once the server is back: %d; want 21 (1, then 10 twice, each once)", got)
	}
	// A new activation loads what the restarted server kept.
	hk, _, err := here.lookup(accountKind, methodBalance)
	if err != nil {
		t.Fatal(err)
	}
	a := here.readyActivation(hk, id) // counted in, as a reader's message is
	if a == nil {
		t.Fatalf("no activation of %s on its owner", id)
	}
	here.acts.retire(a)
	a.out()
	waitFor(t, waitTimeout, "the grain's OnDeactivate", func() bool { return banks[here.Name()].count(id, hookDeactivate) == 1 })
	if got := balance(t, there, accountKind, id); got != 21 {
		t.Fatalf("balance after a reactivation: %d; want 21", got)
	}
}
