package main

import (
	"context"
	"errors"
	"testing"

	"github.com/protograin/protograin/cluster"
	"github.com/protograin/protograin/testdata/oneway"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
)

// playerGrain implements the oneway golden's Player: it records the moves
// and pings it gets.
type playerGrain struct {
	oneway.UnimplementedPlayerGrain
	x, y  int64
	pings int
}

func (g *playerGrain) Move(_ cluster.GrainContext, req *oneway.MoveRequest) (*emptypb.Empty, error) {
	if req.GetDx() == 0 && req.GetDy() == 0 {
		return nil, errors.New("player: a move must move")
	}
	g.x += req.GetDx()
	g.y += req.GetDy()
	return &emptypb.Empty{}, nil
}

func (g *playerGrain) Ping(cluster.GrainContext, *oneway.PingRequest) (*emptypb.Empty, error) {
	g.pings++
	return &emptypb.Empty{}, nil
}

func (g *playerGrain) Position(cluster.GrainContext, *oneway.PositionRequest) (*oneway.PositionResponse, error) {
	return &oneway.PositionResponse{X: g.x, Y: g.y}, nil
}

// senderStub is a Caller and a cluster.Sender that records what reaches
// each, to see which one a generated one-way method uses.
type senderStub struct {
	stubCaller
	sendErr error
	sent    []cluster.Call
	sentOps [][]cluster.CallOption
}

func (s *senderStub) Send(_ context.Context, call cluster.Call, opts ...cluster.CallOption) error {
	s.sent = append(s.sent, call)
	s.sentOps = append(s.sentOps, opts)
	return s.sendErr
}

// TestOneWayClientUsesSender checks that a one-way method goes through
// cluster.Sender when the Caller has it, with the call a generated client
// builds, its options, and the Sender's error; and that the service's
// normal method still goes through Invoke.
func TestOneWayClientUsesSender(t *testing.T) {
	stub := &senderStub{sendErr: errors.New("stub: cannot hand over")}
	client := oneway.NewPlayerClient(stub, "p1")
	req := &oneway.MoveRequest{Dx: 1}
	opt := cluster.WithoutRetry()
	if err := client.Move(context.Background(), req, opt); !errors.Is(err, stub.sendErr) {
		t.Fatalf("Move: got %v, want the Sender's error", err)
	}
	if len(stub.calls) != 0 || len(stub.sent) != 1 {
		t.Fatalf("Move made %d Invoke and %d Send calls, want 0 and 1", len(stub.calls), len(stub.sent))
	}
	call := stub.sent[0]
	if call.Kind != oneway.PlayerKind || call.Identity != "p1" || call.Method != oneway.PlayerMoveMethod || call.Request != req {
		t.Errorf("Send got %+v, want kind %s, identity p1, method %s and the request", call, oneway.PlayerKind, oneway.PlayerMoveMethod)
	}
	if _, ok := call.NewResponse().(*emptypb.Empty); !ok {
		t.Errorf("NewResponse allocates %T, want *emptypb.Empty", call.NewResponse())
	}
	if len(stub.sentOps[0]) != 1 || stub.sentOps[0][0] == nil {
		t.Errorf("Send got options %v, want the one passed", stub.sentOps[0])
	}

	stub.resp = &oneway.PositionResponse{X: 3}
	pos, err := client.Position(context.Background(), &oneway.PositionRequest{})
	if err != nil || pos.GetX() != 3 {
		t.Fatalf("Position: got %v, %v", pos, err)
	}
	if len(stub.calls) != 1 || len(stub.sent) != 1 {
		t.Errorf("Position made %d Invoke and %d Send calls in all, want 1 and 1", len(stub.calls), len(stub.sent))
	}
}

// TestOneWayClientFallsBackToInvoke checks that a one-way method works
// through a Caller that is not a Sender: the message runs as a call, so the
// grain's effect is visible when the method returns, and so is its error.
func TestOneWayClientFallsBackToInvoke(t *testing.T) {
	grains := map[string]*playerGrain{}
	kind := oneway.NewPlayerKind(func(identity string) oneway.PlayerGrain {
		g := &playerGrain{}
		grains[identity] = g
		return g
	})
	caller := newTestCaller(kind)
	client := oneway.NewPlayerClient(caller, "p1")
	ctx := context.Background()
	for _, move := range []*oneway.MoveRequest{{Dx: 1}, {Dy: 2}, {Dx: 3, Dy: -1}} {
		if err := client.Move(ctx, move); err != nil {
			t.Fatalf("Move(%v): %v", move, err)
		}
	}
	if err := client.Ping(ctx, &oneway.PingRequest{}); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	pos, err := client.Position(ctx, &oneway.PositionRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if pos.GetX() != 4 || pos.GetY() != 1 || grains["p1"].pings != 1 {
		t.Errorf("position (%d, %d) and %d pings, want (4, 1) and 1", pos.GetX(), pos.GetY(), grains["p1"].pings)
	}
	if err := client.Move(ctx, &oneway.MoveRequest{}); err == nil || err.Error() != "player: a move must move" {
		t.Errorf("empty Move: got %v, want the grain's error through the fallback", err)
	}
}

// TestOneWayKindMethods checks the Kind of a service with one-way methods:
// they are ordinary methods of the kind (the grain does not change when a
// method becomes one-way), and read_only still applies.
func TestOneWayKindMethods(t *testing.T) {
	kind := oneway.NewPlayerKind(func(string) oneway.PlayerGrain { return &playerGrain{} })
	want := map[string]bool{oneway.PlayerMoveMethod: false, oneway.PlayerPingMethod: true, oneway.PlayerPositionMethod: false}
	if len(kind.Methods) != len(want) {
		t.Fatalf("kind has %d methods, want %d", len(kind.Methods), len(want))
	}
	g := &playerGrain{}
	for _, m := range kind.Methods {
		readOnly, ok := want[m.Name]
		if !ok || m.ReadOnly != readOnly {
			t.Errorf("method %s: ReadOnly %v, want %v (known: %v)", m.Name, m.ReadOnly, readOnly, ok)
		}
		if m.Name != oneway.PlayerMoveMethod {
			continue
		}
		resp, err := m.Handle(g, grainContext{Context: context.Background()}, &oneway.MoveRequest{Dx: 2})
		if err != nil || !proto.Equal(resp, &emptypb.Empty{}) || g.x != 2 {
			t.Errorf("Handle(Move): %v, %v, x=%d; want Empty, nil, x=2", resp, err, g.x)
		}
	}
}
