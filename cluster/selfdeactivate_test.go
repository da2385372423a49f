package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The kind of TestAGrainDeactivatesItself: Add adds to a total the
// activation keeps in memory, Done asks for the grain's deactivation
// (through a derived context when its request says "derived") and answers
// the total, and Wait waits until the test releases it.
const (
	retiringKind   = "test.Retiring"
	retiringAdd    = "/test.Retiring/Add"
	retiringDone   = "/test.Retiring/Done"
	retiringWait   = "/test.Retiring/Wait"
	eagerRetiring  = "eager" // an identity prefix: OnActivate asks
	derivedRetirer = "derived"
)

// retirements records what the grains of the retiring kind saw.
type retirements struct {
	news        chan string // identities of each activation
	deactivated chan string // identities whose OnDeactivate ran
	inHooks     chan error  // Deactivate's answers in OnActivate and OnDeactivate
	waiting     chan string // identities in Wait
	release     chan struct{}
}

type retiringGrain struct {
	r        *retirements
	identity string
	total    int64
}

func (g *retiringGrain) OnActivate(ctx GrainContext) error {
	if strings.HasPrefix(g.identity, eagerRetiring) {
		g.r.inHooks <- Deactivate(ctx)
	}
	return nil
}

func (g *retiringGrain) OnDeactivate(ctx GrainContext) error {
	g.r.deactivated <- g.identity
	g.r.inHooks <- Deactivate(ctx)
	return nil
}

func newRetiringKind(r *retirements) *Kind {
	method := grainMethod[*retiringGrain]
	return &Kind{
		Name:        retiringKind,
		IdleTimeout: -1, // only Deactivate ends an activation here
		New: func(identity string) any {
			r.news <- identity
			return &retiringGrain{r: r, identity: identity}
		},
		Methods: []Method{
			method(retiringAdd, newInt64, func(g *retiringGrain, _ GrainContext, req proto.Message) (proto.Message, error) {
				g.total += req.(*wrapperspb.Int64Value).GetValue()
				return wrapperspb.Int64(g.total), nil
			}),
			method(retiringDone, newString, func(g *retiringGrain, ctx GrainContext, req proto.Message) (proto.Message, error) {
				if req.(*wrapperspb.StringValue).GetValue() == derivedRetirer {
					ctx = WithContext(ctx, context.WithoutCancel(ctx))
				}
				if err := Deactivate(ctx); err != nil {
					return nil, err
				}
				return wrapperspb.Int64(g.total), nil
			}),
			method(retiringWait, newString, func(g *retiringGrain, _ GrainContext, _ proto.Message) (proto.Message, error) {
				g.r.waiting <- g.identity
				<-g.r.release
				return wrapperspb.Int64(g.total), nil
			}),
		},
	}
}

// TestAGrainDeactivatesItself: a grain that calls Deactivate in a call
// finishes the call, runs the calls already counted in, then OnDeactivate,
// and its activation goes: the next call activates it afresh. In
// OnDeactivate, Deactivate does nothing; in OnActivate, it ends the
// activation once the call that activated it has run; a context no node
// made is refused.
func TestAGrainDeactivatesItself(t *testing.T) {
	t.Parallel()
	r := &retirements{news: make(chan string, 64), deactivated: make(chan string, 64), inHooks: make(chan error, 64),
		waiting: make(chan string, 64), release: make(chan struct{})}
	cfg := testConfig(t)
	cfg.Kinds = []*Kind{newRetiringKind(r)}
	n := startNode(t, cfg)
	t.Cleanup(func() { close(r.release) }) // before the node closes
	call := func(method, id string, req proto.Message) (int64, error) {
		resp, err := n.Invoke(t.Context(), Call{Kind: retiringKind, Identity: id, Method: method, Request: req, NewResponse: newInt64})
		if err != nil {
			return 0, err
		}
		return resp.(*wrapperspb.Int64Value).GetValue(), nil
	}
	must := func(method, id string, req proto.Message) int64 {
		t.Helper()
		got, err := call(method, id, req)
		if err != nil {
			t.Fatalf("%s on %s: %v", method, id, err)
		}
		return got
	}
	// deactivated waits for id's deactivation, after which the node has
	// the activations left.
	deactivated := func(id string, left int) {
		t.Helper()
		if got := receive(t, r.deactivated, "OnDeactivate of "+id); got != id {
			t.Fatalf("OnDeactivate of %s; want %s", got, id)
		}
		if err := receive(t, r.inHooks, "Deactivate's answer in OnDeactivate"); err != nil {
			t.Errorf("Deactivate in OnDeactivate: %v; want nil", err)
		}
		waitFor(t, waitTimeout, id+"'s activation gone", func() bool { return n.Stats().Activations == left })
	}

	for i, how := range []string{"plain", derivedRetirer} {
		id := "done-" + how
		must(retiringAdd, id, wrapperspb.Int64(5))
		receive(t, r.news, "the activation of "+id)
		if got := must(retiringDone, id, wrapperspb.String(how)); got != 5 {
			t.Errorf("Done on %s (%s): total %d; want 5, the call that asks runs to its end", id, how, got)
		}
		deactivated(id, i) // the grains of the rounds before are active again
		if got := must(retiringAdd, id, wrapperspb.Int64(1)); got != 1 {
			t.Errorf("a call to %s after it deactivated: total %d; want 1, from a new activation", id, got)
		}
		receive(t, r.news, "the new activation of "+id)
	}

	// The calls counted in when the grain asks run first: Done waits
	// behind Wait, and Add behind Done.
	id := "queued"
	must(retiringAdd, id, wrapperspb.Int64(10))
	receive(t, r.news, "the activation of "+id)
	type answer struct {
		total int64
		err   error
	}
	waited, done, added := make(chan answer, 1), make(chan answer, 1), make(chan answer, 1)
	before := n.Stats().Calls
	inBehind := func(method string, req proto.Message, into chan answer, calls int) {
		go func() {
			total, err := call(method, id, req)
			into <- answer{total, err}
		}()
		waitFor(t, waitTimeout, fmt.Sprintf("%d calls counted in", calls), func() bool { return n.Stats().Calls == before+calls })
	}
	inBehind(retiringWait, wrapperspb.String(""), waited, 1)
	receive(t, r.waiting, id+" in Wait")
	inBehind(retiringDone, wrapperspb.String("plain"), done, 2)
	inBehind(retiringAdd, wrapperspb.Int64(1), added, 3)
	r.release <- struct{}{}
	for _, a := range []struct {
		name string
		got  chan answer
		want int64
	}{{"Wait", waited, 10}, {"Done", done, 10}, {"Add", added, 11}} {
		if got := receive(t, a.got, a.name); got.err != nil || got.total != a.want {
			t.Errorf("%s on %s: %d, %v; want %d, on the activation that asked", a.name, id, got.total, got.err, a.want)
		}
	}
	deactivated(id, 2)

	// In OnActivate, Deactivate ends the activation once the call that
	// activated the grain has run: each call here has an activation of its
	// own.
	for i, add := range []int64{3, 1} {
		if got := must(retiringAdd, eagerRetiring, wrapperspb.Int64(add)); got != add {
			t.Errorf("call %d, whose OnActivate called Deactivate: total %d; want %d, on an activation of its own", i+1, got, add)
		}
		receive(t, r.news, "an activation of "+eagerRetiring)
		if err := receive(t, r.inHooks, "Deactivate's answer in OnActivate"); err != nil {
			t.Errorf("Deactivate in OnActivate: %v; want nil", err)
		}
		deactivated(eagerRetiring, 2)
	}

	for _, ctx := range []GrainContext{fakeGrainContext{context.Background()}, WithContext(fakeGrainContext{context.Background()}, context.Background())} {
		if err := Deactivate(ctx); !errors.Is(err, ErrBadRequest) {
			t.Errorf("Deactivate(%T): %v; want ErrBadRequest", ctx, err)
		}
	}
}
