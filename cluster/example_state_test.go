package cluster_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/protograin/protograin/cluster"
	"github.com/protograin/protograin/cluster/storage/memstore"
)

// piggyBankKind is a grain kind with durable typed state: its balance, an
// Int64Value. Generated code sets NewState from the service's state option.
func piggyBankKind() *cluster.Kind {
	return &cluster.Kind{
		Name:     "example.PiggyBank",
		New:      func(string) any { return struct{}{} },
		NewState: func() proto.Message { return new(wrapperspb.Int64Value) },
		Methods: []cluster.Method{{
			Name:       "/example.PiggyBank/Deposit",
			NewRequest: func() proto.Message { return new(wrapperspb.Int64Value) },
			Handle: func(_ any, ctx cluster.GrainContext, req proto.Message) (proto.Message, error) {
				balance := ctx.State().Message().(*wrapperspb.Int64Value)
				balance.Value += req.(*wrapperspb.Int64Value).GetValue()
				return wrapperspb.Int64(balance.Value), nil // committed before the reply leaves
			},
		}},
	}
}

// A call retried with the same call ID is applied once: the retry gets the
// reply recorded with the first run's state change.
func ExampleWithCallID() {
	store := memstore.New() // every node of a cluster shares one store
	defer store.Close()
	cfg := exampleConfig(piggyBankKind())
	cfg.Store = store

	ctx := context.Background()
	node, err := cluster.Start(ctx, cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer node.Shutdown(ctx)

	deposit := cluster.Call{
		Kind:        "example.PiggyBank",
		Identity:    "alice",
		Method:      "/example.PiggyBank/Deposit",
		Request:     wrapperspb.Int64(5),
		NewResponse: func() proto.Message { return new(wrapperspb.Int64Value) },
	}
	for _, seq := range []uint64{1, 1, 2} { // call 1, a retry of call 1, call 2
		resp, err := node.Invoke(ctx, deposit, cluster.WithCallID("alices-phone", seq))
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("call %d: balance %d\n", seq, resp.(*wrapperspb.Int64Value).GetValue())
	}
	// Output:
	// call 1: balance 5
	// call 1: balance 5
	// call 2: balance 10
}

// alarm registers a reminder when it is activated and reports each firing.
type alarm struct{ rang chan string }

func (a *alarm) OnActivate(ctx cluster.GrainContext) error {
	return cluster.RegisterReminder(ctx, "wake-up", 0, 0) // due now, once
}

func (a *alarm) OnReminder(ctx cluster.GrainContext, name string) error {
	a.rang <- ctx.Identity() + ": " + name
	return nil
}

func ExampleRegisterReminder() {
	rang := make(chan string, 1)
	cfg := exampleConfig(&cluster.Kind{
		Name: "example.Alarm",
		New:  func(string) any { return &alarm{rang: rang} },
		Methods: []cluster.Method{{
			Name:       "/example.Alarm/Set",
			NewRequest: func() proto.Message { return new(wrapperspb.StringValue) },
			Handle: func(_ any, _ cluster.GrainContext, req proto.Message) (proto.Message, error) {
				return req, nil
			},
		}},
	})

	ctx := context.Background()
	node, err := cluster.Start(ctx, cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer node.Shutdown(ctx)

	_, err = node.Invoke(ctx, cluster.Call{
		Kind:        "example.Alarm",
		Identity:    "morning",
		Method:      "/example.Alarm/Set",
		Request:     wrapperspb.String(""),
		NewResponse: func() proto.Message { return new(wrapperspb.StringValue) },
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(<-rang)
	// Output: morning: wake-up
}

// order is a grain that ends its activation once it is delivered, rather
// than hold its memory until its kind's IdleTimeout.
type order struct{ gone chan string }

func (o *order) OnDeactivate(ctx cluster.GrainContext) error {
	o.gone <- ctx.Identity() + ": deactivated"
	return nil
}

func ExampleDeactivate() {
	gone := make(chan string, 1)
	cfg := exampleConfig(&cluster.Kind{
		Name: "example.Order",
		New:  func(string) any { return &order{gone: gone} },
		Methods: []cluster.Method{{
			Name:       "/example.Order/Deliver",
			NewRequest: func() proto.Message { return new(wrapperspb.StringValue) },
			Handle: func(_ any, ctx cluster.GrainContext, req proto.Message) (proto.Message, error) {
				// This call runs to its end; OnDeactivate runs after it.
				if err := cluster.Deactivate(ctx); err != nil {
					return nil, err
				}
				return wrapperspb.String("delivered to " + req.(*wrapperspb.StringValue).GetValue()), nil
			},
		}},
	})

	ctx := context.Background()
	node, err := cluster.Start(ctx, cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer node.Shutdown(ctx)

	resp, err := node.Invoke(ctx, cluster.Call{
		Kind:        "example.Order",
		Identity:    "order-1",
		Method:      "/example.Order/Deliver",
		Request:     wrapperspb.String("Bob"),
		NewResponse: func() proto.Message { return new(wrapperspb.StringValue) },
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(resp.(*wrapperspb.StringValue).GetValue())
	fmt.Println(<-gone)
	// Output:
	// delivered to Bob
	// order-1: deactivated
}

// kettle starts a timer when it is switched on, and switches itself off
// after three ticks.
type kettle struct {
	ticks   int
	boiled  chan string
	heating *cluster.Timer
}

func ExampleStartTimer() {
	boiled := make(chan string, 1)
	cfg := exampleConfig(&cluster.Kind{
		Name: "example.Kettle",
		New:  func(string) any { return &kettle{boiled: boiled} },
		Methods: []cluster.Method{{
			Name:       "/example.Kettle/SwitchOn",
			NewRequest: func() proto.Message { return new(wrapperspb.StringValue) },
			Handle: func(grain any, ctx cluster.GrainContext, req proto.Message) (proto.Message, error) {
				k := grain.(*kettle)
				var err error
				// Each tick is a turn of the grain, one at a time with its calls.
				k.heating, err = cluster.StartTimer(ctx, 0, time.Millisecond, func(ctx cluster.GrainContext) error {
					if k.ticks++; k.ticks == 3 {
						k.heating.Stop()
						k.boiled <- fmt.Sprintf("%s boiled after %d ticks", ctx.Identity(), k.ticks)
					}
					return nil
				})
				return req, err
			},
		}},
	})

	ctx := context.Background()
	node, err := cluster.Start(ctx, cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer node.Shutdown(ctx)

	_, err = node.Invoke(ctx, cluster.Call{
		Kind:        "example.Kettle",
		Identity:    "kitchen",
		Method:      "/example.Kettle/SwitchOn",
		Request:     wrapperspb.String(""),
		NewResponse: func() proto.Message { return new(wrapperspb.StringValue) },
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(<-boiled)
	// Output: kitchen boiled after 3 ticks
}

// Three calls to one identity of a kind of stateless workers run at once,
// on three activations of it: each waits until all three are in, which
// calls to an ordinary grain, one at a time, never would be.
func ExampleKind_statelessWorkers() {
	var in sync.WaitGroup
	in.Add(3)
	cfg := exampleConfig(&cluster.Kind{
		Name:             "example.Quote",
		StatelessWorkers: 3,
		New:              func(string) any { return struct{}{} },
		Methods: []cluster.Method{{
			Name:       "/example.Quote/Price",
			NewRequest: func() proto.Message { return new(wrapperspb.StringValue) },
			Handle: func(_ any, ctx cluster.GrainContext, req proto.Message) (proto.Message, error) {
				in.Done()
				in.Wait()
				return wrapperspb.String(ctx.Identity() + " priced for " + req.(*wrapperspb.StringValue).GetValue()), nil
			},
		}},
	})

	ctx := context.Background()
	node, err := cluster.Start(ctx, cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer node.Shutdown(ctx)

	answers := make(chan string, 3)
	for _, who := range []string{"Ann", "Bob", "Cy"} {
		go func() {
			resp, err := node.Invoke(ctx, cluster.Call{
				Kind:        "example.Quote",
				Identity:    "EURUSD",
				Method:      "/example.Quote/Price",
				Request:     wrapperspb.String(who),
				NewResponse: func() proto.Message { return new(wrapperspb.StringValue) },
			})
			if err != nil {
				answers <- err.Error()
				return
			}
			answers <- resp.(*wrapperspb.StringValue).GetValue()
		}()
	}
	got := []string{<-answers, <-answers, <-answers}
	slices.Sort(got)
	fmt.Println(strings.Join(got, "\n"))
	// Output:
	// EURUSD priced for Ann
	// EURUSD priced for Bob
	// EURUSD priced for Cy
}
