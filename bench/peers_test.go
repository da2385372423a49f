package bench

import (
	"context"
	"testing"
)

// The adapters below are how every scenario drives every peer. Each adapter
// writes its actors the way a user of that runtime would, and the harness in
// bench_test.go does the timing, so the only code that differs between two
// columns of a benchstat table is the runtime's own.

// peer is one actor runtime under test.
type peer struct {
	// name is the value of the impl= part of the sub-benchmark names, which
	// benchstat -col /impl turns into columns.
	name string
	// newSystem starts a fresh actor system. The caller closes it.
	newSystem func(tb testing.TB) system
}

// peers lists the runtimes compared. It is a function, not a package-level
// variable, so nothing can mutate the list between benchmarks.
func peers() []peer {
	return []peer{
		{name: "protograin", newSystem: newProtograinSystem},
		{name: "protoactor", newSystem: newProtoactorSystem},
	}
}

// system is one running actor system of a peer.
type system interface {
	// newPairs spawns n pinger/ponger pairs. A pinger keeps at most batch
	// pings in flight: it sends batch pings, waits for as many pongs, and
	// only then sends the next batch, as protoactor-go's own in-process
	// benchmark does.
	newPairs(n, batch int) (pairs, error)
	// newEcho spawns one actor that responds to each request with the
	// request message itself.
	newEcho() (requester, error)
	// spawner returns a function that spawns one actor, stops it and waits
	// until it has stopped. What the function needs for every spawn (the
	// props) is built once, outside the timed loop.
	spawner() func() error
	// newIdle reserves room for n actor references, so that the memory of
	// that bookkeeping is allocated before an idle-memory measurement starts.
	newIdle(n int) idleSet
	// close stops every actor and the system itself.
	close()
}

// pairs is a set of ping-pong pairs.
type pairs interface {
	// run makes every pinger exchange rounds pings and pongs with its ponger
	// and returns once all pingers have their last pong.
	run(rounds int)
	// stop stops every actor of the set and waits until they have stopped.
	stop()
}

// requester sends request/response round trips to one echo actor.
type requester interface {
	// request sends msg and returns the response. It is safe for concurrent
	// use.
	request(ctx context.Context, msg any) (any, error)
	// stop stops the echo actor.
	stop()
}

// idleSet is a set of actors that handled one message each and then sit
// idle in memory.
type idleSet interface {
	// spawn spawns actor i of the set and sends it one message.
	spawn(i int) error
	// wait returns once every actor spawned so far has handled its message,
	// so each one is fully started and then idle.
	wait()
	// stop stops the actors without waiting; the system's close cleans up.
	stop()
}

// The messages both peers exchange. They are pointers to empty structs, sent
// as the same value again and again, so neither side allocates a message per
// send and both box the same type into an interface.

// ping is the message of every scenario: pings, pongs, requests, responses.
type ping struct{}

// introduce tells a ping-pong actor who its partner is (a *runtime.Ref or a
// *actor.PID). It is sent once, before timing starts.
type introduce struct {
	partner any
}

// serve tells a pinger to start a run of rounds pings and to call done when
// the last pong has arrived.
type serve struct {
	rounds int
	done   func()
}

// pingerState is the batching logic every peer's pinger actor runs, so the
// pingers differ only in how they send.
type pingerState struct {
	batch    int    // pings sent at a time
	left     int    // pings of this run not sent yet
	inflight int    // pings of the current batch whose pong has not arrived
	done     func() // called when the run's last pong arrives
}

// start begins a run and returns how many pings to send now.
func (s *pingerState) start(m *serve) int {
	s.left, s.done = m.rounds, m.done
	return s.next()
}

// pong records one pong and returns how many pings to send now: none while
// pongs of the current batch are outstanding or once the run is over.
func (s *pingerState) pong() int {
	s.inflight--
	if s.inflight > 0 {
		return 0
	}
	if s.left == 0 {
		s.done()
		return 0
	}
	return s.next()
}

func (s *pingerState) next() int {
	n := min(s.batch, s.left)
	s.left -= n
	s.inflight = n
	return n
}
