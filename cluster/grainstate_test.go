package cluster

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// openingGrain sets its typed state in OnActivate, outside any call.
type openingGrain struct{}

func (openingGrain) OnActivate(ctx GrainContext) error {
	ctx.State().Message().(*wrapperspb.Int64Value).Value = 100
	return nil
}

// A change OnActivate makes to the typed state message belongs to the
// activation, not to the next call: when that call fails and is rolled back,
// the change stays.
func TestRollbackKeepsChangesMadeBeforeTheCall(t *testing.T) {
	const kind = "test.Opening"
	const (
		methodFail = "/test.Opening/Fail"
		methodRead = "/test.Opening/Read"
	)
	k := &Kind{
		Name:     kind,
		New:      func(string) any { return openingGrain{} },
		NewState: newInt64,
		Methods: []Method{
			{Name: methodFail, NewRequest: newInt64, Handle: func(_ any, ctx GrainContext, _ proto.Message) (proto.Message, error) {
				ctx.State().Message().(*wrapperspb.Int64Value).Value = -1
				return nil, status.Error(codes.FailedPrecondition, "refused")
			}},
			{Name: methodRead, NewRequest: newInt64, ReadOnly: true, Handle: func(_ any, ctx GrainContext, _ proto.Message) (proto.Message, error) {
				return wrapperspb.Int64(ctx.State().Message().(*wrapperspb.Int64Value).GetValue()), nil
			}},
		},
	}
	nodes := startCluster(t, 1, func(string) []*Kind { return []*Kind{k} }, nil)
	ctx := context.Background()
	call := func(method string) (proto.Message, error) {
		return nodes[0].Invoke(ctx, Call{Kind: kind, Identity: "a", Method: method, Request: wrapperspb.Int64(0), NewResponse: newInt64})
	}
	if _, err := call(methodFail); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("Fail: %v, want FailedPrecondition", err)
	}
	resp, err := call(methodRead)
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.(*wrapperspb.Int64Value).GetValue(); got != 100 {
		t.Fatalf("state %d after a failed call, want the 100 OnActivate set", got)
	}
}
