package cluster_test

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/protograin/protograin/cluster"
)

// greeter is a grain that counts the greetings it sent. Generated code
// builds Kinds like greeterKind from a proto service.
type greeter struct{ count int }

func greeterKind() *cluster.Kind {
	return &cluster.Kind{
		Name: "example.Greeter",
		New:  func(string) any { return &greeter{} },
		Methods: []cluster.Method{{
			Name:       "/example.Greeter/Greet",
			NewRequest: func() proto.Message { return new(wrapperspb.StringValue) },
			Handle: func(grain any, ctx cluster.GrainContext, req proto.Message) (proto.Message, error) {
				g := grain.(*greeter)
				g.count++
				msg := fmt.Sprintf("%s greets %s (greeting #%d)", ctx.Identity(), req.(*wrapperspb.StringValue).GetValue(), g.count)
				return wrapperspb.String(msg), nil
			},
		}},
	}
}

// exampleConfig is the configuration of the examples' one-node clusters:
// loopback ports picked by the system, gossip tuned for one host, no logs.
func exampleConfig(kinds ...*cluster.Kind) cluster.Config {
	cfg := cluster.DefaultConfig()
	cfg.BindAddr = "127.0.0.1:0"
	cfg.GRPCAddr = "127.0.0.1:0"
	cfg.Gossip = cluster.GossipLocal
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.Kinds = kinds
	return cfg
}

func ExampleStart() {
	cfg := exampleConfig(greeterKind())

	ctx := context.Background()
	node, err := cluster.Start(ctx, cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer node.Shutdown(ctx)

	for range 2 {
		resp, err := node.Invoke(ctx, cluster.Call{
			Kind:        "example.Greeter",
			Identity:    "alice",
			Method:      "/example.Greeter/Greet",
			Request:     wrapperspb.String("bob"),
			NewResponse: func() proto.Message { return new(wrapperspb.StringValue) },
		})
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(resp.(*wrapperspb.StringValue).GetValue())
	}
	owner, _ := node.Owner("example.Greeter", "alice")
	fmt.Println("owned by this node:", owner.Name == node.Name())
	// Output:
	// alice greets bob (greeting #1)
	// alice greets bob (greeting #2)
	// owned by this node: true
}

// A call from a request scope has a deadline, so by default it hands the
// grain's turn to the grain's worker, to be able to return at the deadline.
// A caller whose grain methods return promptly can have the turn run on
// its own goroutine instead, which saves the hand-off.
func ExampleWithTurnOnCaller() {
	ctx := context.Background()
	node, err := cluster.Start(ctx, exampleConfig(greeterKind()))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer node.Shutdown(ctx)

	request, cancel := context.WithTimeout(ctx, time.Second) // a request's scope
	defer cancel()
	resp, err := node.Invoke(request, cluster.Call{
		Kind:        "example.Greeter",
		Identity:    "alice",
		Method:      "/example.Greeter/Greet",
		Request:     wrapperspb.String("carol"),
		NewResponse: func() proto.Message { return new(wrapperspb.StringValue) },
	}, cluster.WithTurnOnCaller())
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(resp.(*wrapperspb.StringValue).GetValue())
	// Output:
	// alice greets carol (greeting #1)
}
