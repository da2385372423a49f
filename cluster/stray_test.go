package cluster

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
)

// TestGrainThatMovedWhileActivatingIsDeactivated checks that a grain whose
// owner changed while it was activating (its OnActivate ran when a new
// member joined) is deactivated on the old owner once it is active, since
// the membership change could not deactivate it then, and that its next
// call reaches the new owner.
func TestGrainThatMovedWhileActivatingIsDeactivated(t *testing.T) {
	t.Parallel()
	entered, release := make(chan struct{}), make(chan struct{})
	deactivated := make(chan string, 4)
	kind := &Kind{
		Name:        slowKind,
		IdleTimeout: -1,
		New: func(identity string) any {
			return &slowGrain{identity: identity, entered: entered, release: release, deactivated: deactivated}
		},
		Methods: []Method{{
			Name:       methodAdd,
			NewRequest: newInt64,
			Handle:     func(_ any, _ GrainContext, req proto.Message) (proto.Message, error) { return req, nil },
		}},
	}
	cfgA, cfgB := testConfig(t), testConfig(t)
	cfgA.NodeName, cfgB.NodeName = cfgA.NodeName+"-a", cfgB.NodeName+"-b"
	cfgA.Kinds, cfgB.Kinds = []*Kind{kind}, []*Kind{kind}
	cfgA.PassivationInterval, cfgB.PassivationInterval = time.Hour, time.Hour // no sweeps but the ones under test
	id := movingIdentity(slowKind, cfgA.NodeName, cfgB.NodeName)
	a := startNode(t, cfgA)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release) // before the nodes close, which wait for the grain
		}
	})
	call := addCall(id, 1)
	call.Kind = slowKind
	called := make(chan error, 1)
	go func() {
		_, err := a.Invoke(context.Background(), call)
		called <- err
	}()
	receive(t, entered, "OnActivate on node a")
	cfgB.Seeds = []string{a.GossipAddr()}
	b := startNode(t, cfgB)
	waitConverged(t, []*Node{a, b}, 2)
	close(release)
	if err := receive(t, called, "the first call"); err != nil {
		t.Fatalf("first call: %v", err)
	}
	if got := receive(t, deactivated, "OnDeactivate on node a"); got != id {
		t.Fatalf("OnDeactivate(%q), want %q", got, id)
	}
	waitFor(t, waitTimeout, "the activation gone from node a", func() bool {
		return a.acts.peek(actKey{slowKind, id}) == nil
	})
	if _, err := a.Invoke(context.Background(), call); err != nil {
		t.Fatalf("second call: %v", err)
	}
	if b.acts.peek(actKey{slowKind, id}) == nil {
		t.Fatal("the second call did not activate the grain on node b")
	}
}

// slowKind is the kind of TestGrainThatMovedWhileActivatingIsDeactivated.
const slowKind = "test.Slow"

// slowGrain is a grain whose first activation waits in OnActivate until
// release is closed, and which reports its deactivations.
type slowGrain struct {
	identity    string
	entered     chan struct{}
	release     <-chan struct{}
	deactivated chan<- string
}

func (g *slowGrain) OnActivate(GrainContext) error {
	select {
	case <-g.release: // a later activation, on node b
		return nil
	default:
	}
	close(g.entered)
	<-g.release
	return nil
}

func (g *slowGrain) OnDeactivate(GrainContext) error {
	g.deactivated <- g.identity
	return nil
}

// TestOnlyTheOwnerActivates checks that a node does not activate a grain
// that another member owns in its view, whatever view the call was placed
// by (an older one, or the one before the grain moved while the call
// waited for its last activation to go): the call gets ErrNotOwner, which
// makes a caller place the grain again, and no activation is left.
func TestOnlyTheOwnerActivates(t *testing.T) {
	t.Parallel()
	nodes, recs, _ := recorderCluster(t, 0, nil)
	id := recorderOwnedBy(t, nodes, nodes[1], "stray")
	hk := nodes[0].kinds[recorderKind]
	if _, err := nodes[0].acts.get(context.Background(), hk, id); !errors.Is(err, ErrNotOwner) {
		t.Fatalf("get on a node that does not own the grain = %v, want ErrNotOwner", err)
	}
	if got := recs[nodes[0].Name()].activations(id); got != 0 {
		t.Errorf("%s made the grain %d times", nodes[0].Name(), got)
	}
	if nodes[0].acts.peek(actKey{recorderKind, id}) != nil {
		t.Error("the refused activation is still in the table")
	}
	// Its owner still activates it.
	if err := nodes[2].Send(context.Background(), recordCall(id, 1)); err != nil {
		t.Fatal(err)
	}
	waitValues(t, recs[nodes[1].Name()], id, []int64{1})
}
