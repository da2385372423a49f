package bench

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/protograin/protograin/runtime"
)

// protograinSystem adapts the protograin runtime to the benchmark scenarios.
type protograinSystem struct {
	sys *runtime.System
}

func newProtograinSystem(testing.TB) system {
	return &protograinSystem{sys: runtime.NewSystem(runtime.Config{})}
}

func (s *protograinSystem) close() { s.sys.Close() }

// spawn spawns an actor with the same throughput protoactor-go actors get and
// the default mailbox.
func (s *protograinSystem) spawn(newActor func() runtime.Actor) (*runtime.Ref, error) {
	ref, err := s.sys.Spawn(runtime.Props{New: newActor, Throughput: protoactorThroughput})
	if err != nil {
		return nil, fmt.Errorf("bench: protograin spawn: %w", err)
	}
	return ref, nil
}

func stopAll(refs []*runtime.Ref) {
	stopped := make([]<-chan struct{}, len(refs))
	for i, ref := range refs {
		stopped[i] = ref.Stop()
	}
	for _, ch := range stopped {
		<-ch
	}
}

// Ping-pong.

type protograinPinger struct {
	state   pingerState
	partner *runtime.Ref
}

func (p *protograinPinger) receive(c *runtime.Context) {
	switch m := c.Message().(type) {
	case *ping:
		p.send(c, p.state.pong())
	case *serve:
		p.send(c, p.state.start(m))
	case *introduce:
		p.partner = m.partner.(*runtime.Ref)
	}
}

// send sends n pings with c.Send, the call for sending from inside an actor,
// as protoactor-go's ctx.Send is.
func (p *protograinPinger) send(c *runtime.Context, n int) {
	msg := &ping{}
	for range n {
		_ = c.Send(p.partner, msg) // fails only once the partner is stopped
	}
}

type protograinPonger struct {
	partner *runtime.Ref
}

func (p *protograinPonger) receive(c *runtime.Context) {
	switch m := c.Message().(type) {
	case *ping:
		_ = c.Send(p.partner, m) // fails only once the partner is stopped
	case *introduce:
		p.partner = m.partner.(*runtime.Ref)
	}
}

type protograinPairs struct {
	pingers []*runtime.Ref
	pongers []*runtime.Ref
}

func (s *protograinSystem) newPairs(n, batch int) (pairs, error) {
	ps := &protograinPairs{}
	for range n {
		pinger, err := s.spawn(func() runtime.Actor {
			p := &protograinPinger{state: pingerState{batch: batch}}
			return runtime.ActorFunc(p.receive)
		})
		if err != nil {
			return nil, err
		}
		ponger, err := s.spawn(func() runtime.Actor {
			p := &protograinPonger{}
			return runtime.ActorFunc(p.receive)
		})
		if err != nil {
			return nil, err
		}
		if err := pinger.Send(&introduce{partner: ponger}); err != nil {
			return nil, err
		}
		if err := ponger.Send(&introduce{partner: pinger}); err != nil {
			return nil, err
		}
		ps.pingers = append(ps.pingers, pinger)
		ps.pongers = append(ps.pongers, ponger)
	}
	return ps, nil
}

func (ps *protograinPairs) run(rounds int) {
	var wg sync.WaitGroup
	wg.Add(len(ps.pingers))
	for _, pinger := range ps.pingers {
		if err := pinger.Send(&serve{rounds: rounds, done: wg.Done}); err != nil {
			panic(err) // the pingers were spawned by newPairs and are not stopped yet
		}
	}
	wg.Wait()
}

func (ps *protograinPairs) stop() {
	stopAll(ps.pingers)
	stopAll(ps.pongers)
}

// Request/response.

type protograinRequester struct {
	echo *runtime.Ref
}

func (s *protograinSystem) newEcho() (requester, error) {
	echo, err := s.spawn(func() runtime.Actor {
		return runtime.ActorFunc(func(c *runtime.Context) {
			if m, ok := c.Message().(*ping); ok {
				c.Respond(m)
			}
		})
	})
	if err != nil {
		return nil, err
	}
	return &protograinRequester{echo: echo}, nil
}

func (r *protograinRequester) request(ctx context.Context, msg any) (any, error) {
	return r.echo.Request(ctx, msg)
}

func (r *protograinRequester) stop() { <-r.echo.Stop() }

// Spawn and stop.

func (s *protograinSystem) spawner() func() error {
	props := runtime.Props{
		New: func() runtime.Actor {
			return runtime.ActorFunc(func(*runtime.Context) {})
		},
		Throughput: protoactorThroughput,
	}
	return func() error {
		ref, err := s.sys.Spawn(props)
		if err != nil {
			return fmt.Errorf("bench: protograin spawn: %w", err)
		}
		<-ref.Stop()
		return nil
	}
}

// Idle memory.

type protograinIdleSet struct {
	s     *protograinSystem
	props runtime.Props
	refs  []*runtime.Ref
	wg    sync.WaitGroup
}

func (s *protograinSystem) newIdle(n int) idleSet {
	set := &protograinIdleSet{s: s, refs: make([]*runtime.Ref, n)}
	set.props = runtime.Props{
		New:        func() runtime.Actor { return &protograinIdle{wg: &set.wg} },
		Throughput: protoactorThroughput,
	}
	return set
}

// protograinIdle is the same actor as protoactorIdle: a struct with one
// pointer.
type protograinIdle struct {
	wg *sync.WaitGroup
}

func (a *protograinIdle) Receive(c *runtime.Context) {
	if _, ok := c.Message().(*ping); ok {
		a.wg.Done()
	}
}

func (set *protograinIdleSet) spawn(i int) error {
	ref, err := set.s.sys.Spawn(set.props)
	if err != nil {
		return fmt.Errorf("bench: protograin spawn idle actor %d: %w", i, err)
	}
	set.refs[i] = ref
	set.wg.Add(1)
	if err := ref.Send(&ping{}); err != nil {
		set.wg.Done()
		return fmt.Errorf("bench: protograin send to idle actor %d: %w", i, err)
	}
	return nil
}

func (set *protograinIdleSet) wait() { set.wg.Wait() }

func (set *protograinIdleSet) stop() {
	for _, ref := range set.refs {
		ref.Stop()
	}
}
