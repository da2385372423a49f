package main

import (
	"context"
	"fmt"
	"sync"

	"github.com/protograin/protograin/cluster"
	"google.golang.org/protobuf/proto"
)

// testCaller is a cluster.Caller that delivers calls to grains in this
// process: it activates each identity of a kind on its first call with the
// Kind's New, finds the method by its full name and calls its Handle, one
// call at a time per activation. Requests and responses go through the wire
// format, as between nodes. It is the smallest stand-in for a cluster node
// that exercises everything generated code touches; the real node is tested
// end to end with the cluster package.
type testCaller struct {
	kinds map[string]*cluster.Kind

	mu          sync.Mutex
	activations map[string]*activation // by kind + "\x00" + identity
}

type activation struct {
	mu    sync.Mutex // one call at a time, like a grain's mailbox
	grain any
}

func newTestCaller(kinds ...*cluster.Kind) *testCaller {
	c := &testCaller{kinds: map[string]*cluster.Kind{}, activations: map[string]*activation{}}
	for _, k := range kinds {
		c.kinds[k.Name] = k
	}
	return c
}

func (c *testCaller) Invoke(ctx context.Context, call cluster.Call, _ ...cluster.CallOption) (proto.Message, error) {
	kind, ok := c.kinds[call.Kind]
	if !ok {
		return nil, fmt.Errorf("test caller: no kind %q", call.Kind)
	}
	method, ok := findMethod(kind, call.Method)
	if !ok {
		return nil, fmt.Errorf("test caller: kind %q has no method %q", call.Kind, call.Method)
	}
	req := method.NewRequest()
	if err := roundTrip(call.Request, req); err != nil {
		return nil, fmt.Errorf("test caller: request: %w", err)
	}

	act := c.activate(kind, call.Identity)
	act.mu.Lock()
	resp, err := method.Handle(act.grain, grainContext{Context: ctx, Caller: c, kind: kind.Name, identity: call.Identity}, req)
	act.mu.Unlock()
	if err != nil {
		return nil, err
	}
	out := call.NewResponse()
	if err := roundTrip(resp, out); err != nil {
		return nil, fmt.Errorf("test caller: response: %w", err)
	}
	return out, nil
}

func (c *testCaller) activate(kind *cluster.Kind, identity string) *activation {
	c.mu.Lock()
	defer c.mu.Unlock()
	key := kind.Name + "\x00" + identity
	act, ok := c.activations[key]
	if !ok {
		act = &activation{grain: kind.New(identity)}
		c.activations[key] = act
	}
	return act
}

func findMethod(kind *cluster.Kind, name string) (cluster.Method, bool) {
	for _, m := range kind.Methods {
		if m.Name == name {
			return m, true
		}
	}
	return cluster.Method{}, false
}

// roundTrip copies from into to through the wire format. Partial messages
// (proto2 required fields unset) are allowed, as the generated code does not
// validate messages.
func roundTrip(from, to proto.Message) error {
	data, err := proto.MarshalOptions{AllowPartial: true}.Marshal(from)
	if err != nil {
		return err
	}
	return proto.UnmarshalOptions{AllowPartial: true}.Unmarshal(data, to)
}

// grainContext is the cluster.GrainContext the test caller gives grains: its
// Caller is the test caller, so grains can call other grains.
type grainContext struct {
	context.Context
	cluster.Caller
	kind     string
	identity string
}

func (g grainContext) Kind() string     { return g.kind }
func (g grainContext) Identity() string { return g.identity }

// State returns nil: the goldens these tests call keep no state. The
// typed-state goldens are called with state by internal/stategoldens.
func (g grainContext) State() cluster.State { return nil }

// stubCaller answers every call with a fixed response and error and records
// the calls, to feed generated clients what a faulty Caller could return.
type stubCaller struct {
	resp  proto.Message
	err   error
	calls []cluster.Call
	opts  [][]cluster.CallOption
}

func (s *stubCaller) Invoke(_ context.Context, call cluster.Call, opts ...cluster.CallOption) (proto.Message, error) {
	s.calls = append(s.calls, call)
	s.opts = append(s.opts, opts)
	return s.resp, s.err
}
