package bench

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// protoactorThroughput is the dispatcher throughput (messages an actor
// handles before it yields its goroutine) of every protoactor-go actor here.
// It is protoactor-go's default and the lowest value its own in-process
// benchmark tries; protograin actors get the same number.
const protoactorThroughput = 300

// protoactorTimeout bounds each future (request, stop). protoactor-go needs
// one per call; it is long enough never to fire here.
const protoactorTimeout = 10 * time.Second

// protoactorSystem adapts protoactor-go to the benchmark scenarios.
type protoactorSystem struct {
	sys        *actor.ActorSystem
	dispatcher actor.Dispatcher
}

func newProtoactorSystem(testing.TB) system {
	// protoactor-go logs at info level to stderr by default; discard it so
	// logging costs nothing and benchmark output stays parseable.
	sys := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.DiscardHandler)
	}))
	return &protoactorSystem{sys: sys, dispatcher: actor.NewDefaultDispatcher(protoactorThroughput)}
}

func (s *protoactorSystem) close() { s.sys.Shutdown() }

// props builds props with the shared dispatcher and protoactor-go's default
// (unbounded) mailbox, plus any further options.
func (s *protoactorSystem) props(producer actor.Producer, opts ...actor.PropsOption) *actor.Props {
	return actor.PropsFromProducer(producer, append(opts, actor.WithDispatcher(s.dispatcher))...)
}

func (s *protoactorSystem) stopAll(pids []*actor.PID) {
	futures := make([]*actor.Future, len(pids))
	for i, pid := range pids {
		futures[i] = s.sys.Root.StopFuture(pid)
	}
	for _, f := range futures {
		_ = f.Wait() // a timeout only means the actor is already gone
	}
}

// Ping-pong.

type protoactorPinger struct {
	state   pingerState
	partner *actor.PID
}

func (p *protoactorPinger) Receive(c actor.Context) {
	switch m := c.Message().(type) {
	case *ping:
		p.send(c, p.state.pong())
	case *serve:
		p.send(c, p.state.start(m))
	case *introduce:
		p.partner = m.partner.(*actor.PID)
	}
}

func (p *protoactorPinger) send(c actor.Context, n int) {
	msg := &ping{}
	for range n {
		c.Send(p.partner, msg)
	}
}

type protoactorPonger struct {
	partner *actor.PID
}

func (p *protoactorPonger) Receive(c actor.Context) {
	switch m := c.Message().(type) {
	case *ping:
		c.Send(p.partner, m)
	case *introduce:
		p.partner = m.partner.(*actor.PID)
	}
}

type protoactorPairs struct {
	s       *protoactorSystem
	pingers []*actor.PID
	pongers []*actor.PID
}

func (s *protoactorSystem) newPairs(n, batch int) (pairs, error) {
	ps := &protoactorPairs{s: s}
	// A bounded mailbox a little larger than a batch is what protoactor-go's
	// own benchmark uses, and it is ~25% faster here than the default
	// unbounded one: the peer gets its best setting.
	mailbox := actor.WithMailbox(actor.Bounded(batch + 10))
	pingerProps := s.props(func() actor.Actor { return &protoactorPinger{state: pingerState{batch: batch}} }, mailbox)
	pongerProps := s.props(func() actor.Actor { return &protoactorPonger{} }, mailbox)
	for range n {
		pinger := s.sys.Root.Spawn(pingerProps)
		ponger := s.sys.Root.Spawn(pongerProps)
		s.sys.Root.Send(pinger, &introduce{partner: ponger})
		s.sys.Root.Send(ponger, &introduce{partner: pinger})
		ps.pingers = append(ps.pingers, pinger)
		ps.pongers = append(ps.pongers, ponger)
	}
	return ps, nil
}

func (ps *protoactorPairs) run(rounds int) {
	var wg sync.WaitGroup
	wg.Add(len(ps.pingers))
	for _, pinger := range ps.pingers {
		ps.s.sys.Root.Send(pinger, &serve{rounds: rounds, done: wg.Done})
	}
	wg.Wait()
}

func (ps *protoactorPairs) stop() {
	ps.s.stopAll(ps.pingers)
	ps.s.stopAll(ps.pongers)
}

// Request/response.

type protoactorRequester struct {
	s    *protoactorSystem
	echo *actor.PID
}

func (s *protoactorSystem) newEcho() (requester, error) {
	echo := s.sys.Root.Spawn(s.props(func() actor.Actor {
		return actor.ReceiveFunc(func(c actor.Context) {
			if m, ok := c.Message().(*ping); ok {
				c.Respond(m)
			}
		})
	}))
	return &protoactorRequester{s: s, echo: echo}, nil
}

// request ignores ctx: protoactor-go futures take a timeout instead.
func (r *protoactorRequester) request(_ context.Context, msg any) (any, error) {
	return r.s.sys.Root.RequestFuture(r.echo, msg, protoactorTimeout).Result()
}

func (r *protoactorRequester) stop() { r.s.stopAll([]*actor.PID{r.echo}) }

// Spawn and stop.

func (s *protoactorSystem) spawner() func() error {
	props := s.props(func() actor.Actor {
		return actor.ReceiveFunc(func(actor.Context) {})
	})
	return func() error {
		pid := s.sys.Root.Spawn(props)
		if err := s.sys.Root.StopFuture(pid).Wait(); err != nil {
			return fmt.Errorf("bench: protoactor stop: %w", err)
		}
		return nil
	}
}

// Idle memory.

type protoactorIdle struct {
	wg *sync.WaitGroup
}

func (a *protoactorIdle) Receive(c actor.Context) {
	if _, ok := c.Message().(*ping); ok {
		a.wg.Done()
	}
}

type protoactorIdleSet struct {
	s     *protoactorSystem
	props *actor.Props
	pids  []*actor.PID
	wg    sync.WaitGroup
}

func (s *protoactorSystem) newIdle(n int) idleSet {
	set := &protoactorIdleSet{s: s, pids: make([]*actor.PID, n)}
	set.props = s.props(func() actor.Actor { return &protoactorIdle{wg: &set.wg} })
	return set
}

func (set *protoactorIdleSet) spawn(i int) error {
	set.wg.Add(1)
	set.pids[i] = set.s.sys.Root.Spawn(set.props)
	set.s.sys.Root.Send(set.pids[i], &ping{})
	return nil
}

func (set *protoactorIdleSet) wait() { set.wg.Wait() }

func (set *protoactorIdleSet) stop() {
	for _, pid := range set.pids {
		set.s.sys.Root.Stop(pid)
	}
}
