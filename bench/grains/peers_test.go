package grains

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// idleTimeout is the idle timeout of the counter kind on both peers: long
// enough that no grain passivates during a run, so activation is excluded
// once the warm-up has run, and so idle grains carry what a real idle grain
// carries (protoactor-go arms a receive timeout per grain for it).
const idleTimeout = 10 * time.Minute

// errNoPeer is returned for a peer name that peers() does not know.
var errNoPeer = errors.New("grains: no such peer")

// peer is one grain implementation under test.
type peer interface {
	// name is the peer's name in benchmark names (impl=name).
	name() string
	// local starts a node in this process that hosts the counter kind and
	// calls it itself. It ends when tb does.
	local(tb testing.TB) (node, error)
	// host starts, in a host process, a node that hosts the counter kind
	// (and, for one-way messages, whatever the peer needs to answer them),
	// and reports how to reach it. stop ends it.
	host(ctx context.Context) (info hostInfo, stop func(), err error)
	// join starts a node in this process that hosts no grains and calls the
	// grains of the host described by info. It ends when tb does.
	join(tb testing.TB, info hostInfo) (remoteNode, error)
}

// node calls counter grains through the peer's generated client.
type node interface {
	// client returns a function that calls Add with delta 1 on the counter
	// named identity, through a generated client made once, here, with ctx
	// as the call's context. protoactor-go's generated client takes no
	// context (every call carries its own timeout), so it ignores ctx.
	client(ctx context.Context, identity string) func() error
}

// remoteNode is a node in another process than the grains it calls.
type remoteNode interface {
	node
	// exchange sends one-way messages between this process and the host
	// until messages of them have arrived, counting both directions, with
	// up to oneWayInFlight round trips outstanding.
	exchange(messages int) error
}

// oneWayInFlight is how many messages each peer keeps in flight towards the
// host in the one-way benchmark. protoactor-go's own remote benchmark sends
// all its messages at once; a deep window lets both peers batch, and 4,096
// gave both more than 512 did (protoactor-go ~0.9 M msgs/s instead of ~0.7 M).
const oneWayInFlight = 4096

// peers returns every peer, protoactor-go first (benchstat's base column).
func peers() []peer {
	return []peer{protoactorPeer{}, protograinPeer{}}
}

// peerByName returns the peer called name.
func peerByName(name string) (peer, error) {
	for _, p := range peers() {
		if p.name() == name {
			return p, nil
		}
	}
	return nil, fmt.Errorf("%w: %q", errNoPeer, name)
}
