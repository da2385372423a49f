package stores

import (
	"context"
	"encoding/binary"
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

// statementMethod deposits as depositMethod does and answers a statement
// of statementSize bytes, a reply as large as a grain's that returns a
// record: the grain keeps each reply in its exactly-once window.
const (
	statementMethod = "/bench.Account/Statement"
	statementSize   = 1024
)

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
				return wrapperspb.Int64(deposit(ctx, req)), nil
			},
		}, {
			Name:       statementMethod,
			NewRequest: func() proto.Message { return new(wrapperspb.Int64Value) },
			Handle: func(_ any, ctx cluster.GrainContext, req proto.Message) (proto.Message, error) {
				statement := make([]byte, statementSize)
				binary.BigEndian.PutUint64(statement, uint64(deposit(ctx, req)))
				return wrapperspb.Bytes(statement), nil
			},
		}},
	}
}

// deposit adds req, an Int64Value, to the balance in ctx's state and
// returns the new balance.
func deposit(ctx cluster.GrainContext, req proto.Message) int64 {
	balance := ctx.State().Message().(*wrapperspb.Int64Value)
	balance.Value += req.(*wrapperspb.Int64Value).GetValue()
	return balance.Value
}

// deposits is the workload of BenchmarkGrainCalls: a node of its own on s,
// one process, gossip and gRPC on loopback, whose grains deposit 1 per
// call. prepare activates the grain (its state loaded) before the clock
// starts.
func deposits(tb testing.TB, s storage.Store) workload {
	return accountCalls(tb, s, depositMethod)
}

// statements is the workload of BenchmarkGrainCallsLargeReply: deposits
// whose replies are statements of statementSize bytes.
func statements(tb testing.TB, s storage.Store) workload {
	return accountCalls(tb, s, statementMethod)
}

// accountCalls is a workload of calls to method, depositMethod or
// statementMethod, of an account on a node of its own on s.
func accountCalls(tb testing.TB, s storage.Store, method string) workload {
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
		call := cluster.Call{
			Kind:        grain.Kind,
			Identity:    grain.Identity,
			Method:      method,
			Request:     wrapperspb.Int64(amount),
			NewResponse: func() proto.Message { return new(wrapperspb.Int64Value) },
		}
		if method == statementMethod {
			call.NewResponse = func() proto.Message { return new(wrapperspb.BytesValue) }
		}
		resp, err := node.Invoke(ctx, call)
		if err != nil {
			return 0, err
		}
		if statement, ok := resp.(*wrapperspb.BytesValue); ok {
			if len(statement.GetValue()) != statementSize {
				return 0, fmt.Errorf("a statement of %d bytes; want %d", len(statement.GetValue()), statementSize)
			}
			return int64(binary.BigEndian.Uint64(statement.GetValue())), nil
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
