package stores

import (
	"context"
	"fmt"
	"log/slog"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/protograin/protograin/cluster"
	"github.com/protograin/protograin/cluster/storage"
)

// accountKind is the kind of every grain the benchmarks touch.
const accountKind = "bench.Account"

// depositMethod adds its request to the account's balance, kept in the
// grain's state, and answers the new balance.
const depositMethod = "/bench.Account/Deposit"

// account is a grain kind with durable state: its balance. Its calls flush
// after each call (the default), so a call's reply leaves once the store
// committed the new balance.
func account() *cluster.Kind {
	return &cluster.Kind{
		Name:     accountKind,
		New:      func(string) any { return struct{}{} },
		NewState: func() proto.Message { return new(wrapperspb.Int64Value) },
		Methods: []cluster.Method{{
			Name:       depositMethod,
			NewRequest: func() proto.Message { return new(wrapperspb.Int64Value) },
			Handle: func(_ any, ctx cluster.GrainContext, req proto.Message) (proto.Message, error) {
				balance := ctx.State().Message().(*wrapperspb.Int64Value)
				balance.Value += req.(*wrapperspb.Int64Value).GetValue()
				return wrapperspb.Int64(balance.Value), nil
			},
		}},
	}
}

// deposits is the workload of BenchmarkGrainCalls: a node of its own on s,
// one process, gossip and gRPC on loopback, whose grains deposit 1 per
// call. prepare activates the grain (its state loaded) before the clock
// starts.
func deposits(tb testing.TB, s storage.Store) workload {
	cfg := cluster.DefaultConfig()
	cfg.BindAddr = "127.0.0.1:0"
	cfg.GRPCAddr = "127.0.0.1:0"
	cfg.Gossip = cluster.GossipLocal
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.Kinds = []*cluster.Kind{account()}
	cfg.Store = s
	ctx := context.Background()
	node, err := cluster.Start(ctx, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { node.Shutdown(ctx) })

	deposit := func(grain storage.Key, amount int64) (int64, error) {
		resp, err := node.Invoke(ctx, cluster.Call{
			Kind:        grain.Kind,
			Identity:    grain.Identity,
			Method:      depositMethod,
			Request:     wrapperspb.Int64(amount),
			NewResponse: func() proto.Message { return new(wrapperspb.Int64Value) },
		})
		if err != nil {
			return 0, err
		}
		return resp.(*wrapperspb.Int64Value).GetValue(), nil
	}
	return workload{
		prepare: func(grain storage.Key) error {
			_, err := deposit(grain, 0)
			return err
		},
		run: func(grain storage.Key, n int) error {
			start, err := deposit(grain, 0)
			if err != nil {
				return err
			}
			for i := range n {
				balance, err := deposit(grain, 1)
				if err != nil {
					return err
				}
				if want := start + int64(i) + 1; balance != want {
					return fmt.Errorf("deposit %d to %s: balance %d; want %d", i+1, grain, balance, want)
				}
			}
			return nil
		},
	}
}
