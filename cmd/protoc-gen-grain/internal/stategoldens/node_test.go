package stategoldens

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/protograin/protograin/cluster"
	"github.com/protograin/protograin/cluster/state"
	"google.golang.org/protobuf/proto"
)

// node is a cluster.Caller that hosts kinds in this process with durable
// state in memory. It keeps to the state contract as far as generated code
// can tell: an activation's typed state message comes from Kind.NewState
// and is loaded from the store; after a call that returned no error, a kind
// with Flush == FlushAfterCall commits what the call changed unless the
// method is ReadOnly; FlushManual commits only when the grain calls
// State().Flush; deactivation commits. Requests and responses go through
// the wire format, as between nodes.
type node struct {
	kinds map[string]*cluster.Kind

	mu          sync.Mutex
	activations map[grainKey]*activation
	store       map[grainKey]*record
}

type grainKey struct{ kind, identity string }

// record is a grain's committed state, as a store holds it.
type record struct {
	entries map[string][]byte
	message []byte // the typed state message in wire form
	commits int    // flushes that committed a change
	flushes int    // flushes, committing or not
}

type activation struct {
	mu    sync.Mutex // one call at a time, like a grain's mailbox
	grain any
	state *memState
}

func newNode(kinds ...*cluster.Kind) *node {
	n := &node{kinds: map[string]*cluster.Kind{}, activations: map[grainKey]*activation{}, store: map[grainKey]*record{}}
	for _, k := range kinds {
		n.kinds[k.Name] = k
	}
	return n
}

func (n *node) Invoke(ctx context.Context, call cluster.Call, _ ...cluster.CallOption) (proto.Message, error) {
	kind, ok := n.kinds[call.Kind]
	if !ok {
		return nil, fmt.Errorf("stategoldens: no kind %q", call.Kind)
	}
	method, ok := findMethod(kind, call.Method)
	if !ok {
		return nil, fmt.Errorf("stategoldens: kind %q has no method %q", call.Kind, call.Method)
	}
	req := method.NewRequest()
	if err := roundTrip(call.Request, req); err != nil {
		return nil, fmt.Errorf("stategoldens: request: %w", err)
	}

	key := grainKey{call.Kind, call.Identity}
	act, err := n.activate(kind, key)
	if err != nil {
		return nil, err
	}
	act.mu.Lock()
	defer act.mu.Unlock()
	resp, err := method.Handle(act.grain, grainContext{Context: ctx, Caller: n, key: key, state: act.state}, req)
	if err != nil {
		return nil, err // not flushed; the cluster also discards the call's changes, which no test here needs
	}
	if kind.Flush == cluster.FlushAfterCall && !method.ReadOnly && act.state.changed() {
		if err := act.state.Flush(ctx); err != nil {
			return nil, err
		}
	}
	out := call.NewResponse()
	if err := roundTrip(resp, out); err != nil {
		return nil, fmt.Errorf("stategoldens: response: %w", err)
	}
	return out, nil
}

// activate returns the activation of key, making it on the first call: the
// grain from the Kind's factory, its state loaded from the store.
func (n *node) activate(kind *cluster.Kind, key grainKey) (*activation, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if act, ok := n.activations[key]; ok {
		return act, nil
	}
	rec, ok := n.store[key]
	if !ok {
		rec = &record{entries: map[string][]byte{}}
		n.store[key] = rec
	}
	st := &memState{node: n, record: rec, buffer: map[string][]byte{}}
	if kind.NewState != nil {
		st.message = kind.NewState()
		if err := proto.Unmarshal(rec.message, st.message); err != nil {
			return nil, fmt.Errorf("stategoldens: loading %v: %w", key, err)
		}
	}
	act := &activation{grain: kind.New(key.identity), state: st}
	n.activations[key] = act
	return act, nil
}

// deactivate flushes the activation of key and drops it, as passivation
// does; the next call activates the grain again from the store.
func (n *node) deactivate(key grainKey) error {
	n.mu.Lock()
	act, ok := n.activations[key]
	delete(n.activations, key)
	n.mu.Unlock()
	if !ok {
		return nil
	}
	act.mu.Lock()
	defer act.mu.Unlock()
	return act.state.Flush(context.Background())
}

// committed returns a copy of the committed record of key.
func (n *node) committed(key grainKey) record {
	n.mu.Lock()
	defer n.mu.Unlock()
	rec, ok := n.store[key]
	if !ok {
		return record{}
	}
	return record{entries: maps.Clone(rec.entries), message: slices.Clone(rec.message), commits: rec.commits, flushes: rec.flushes}
}

func findMethod(kind *cluster.Kind, name string) (cluster.Method, bool) {
	for _, m := range kind.Methods {
		if m.Name == name {
			return m, true
		}
	}
	return cluster.Method{}, false
}

func roundTrip(from, to proto.Message) error {
	data, err := proto.Marshal(from)
	if err != nil {
		return err
	}
	return proto.Unmarshal(data, to)
}

// grainContext is the cluster.GrainContext of one call.
type grainContext struct {
	context.Context
	cluster.Caller
	key   grainKey
	state cluster.State
}

func (g grainContext) Kind() string         { return g.key.kind }
func (g grainContext) Identity() string     { return g.key.identity }
func (g grainContext) State() cluster.State { return g.state }

// memState is a grain's cluster.State: entries and the typed message as
// loaded or last committed, and the entries' buffered changes.
type memState struct {
	node    *node
	record  *record           // guarded by node.mu
	buffer  map[string][]byte // nil value: removed
	message proto.Message     // nil when the kind has no typed state
}

var _ cluster.State = (*memState)(nil)

func (s *memState) Get(key string) ([]byte, error) {
	v, ok := s.TryGet(key)
	if !ok {
		return nil, fmt.Errorf("stategoldens: key %q: %w", key, state.ErrNotFound)
	}
	return v, nil
}

func (s *memState) TryGet(key string) ([]byte, bool) {
	if v, ok := s.buffer[key]; ok {
		return v, v != nil
	}
	s.node.mu.Lock()
	defer s.node.mu.Unlock()
	v, ok := s.record.entries[key]
	return v, ok
}

func (s *memState) Set(key string, value []byte) error {
	if value == nil {
		value = []byte{}
	}
	s.buffer[key] = slices.Clone(value)
	return nil
}

func (s *memState) Remove(key string) error {
	s.buffer[key] = nil
	return nil
}

func (s *memState) Keys() []string {
	s.node.mu.Lock()
	keys := maps.Clone(s.record.entries)
	s.node.mu.Unlock()
	for k, v := range s.buffer {
		if v == nil {
			delete(keys, k)
		} else {
			keys[k] = v
		}
	}
	return slices.Sorted(maps.Keys(keys))
}

func (s *memState) Message() proto.Message { return s.message }

// Flush commits the buffered entries and the typed message.
func (s *memState) Flush(context.Context) error {
	msg, err := s.marshalMessage()
	if err != nil {
		return err
	}
	s.node.mu.Lock()
	defer s.node.mu.Unlock()
	s.record.flushes++
	if len(s.buffer) == 0 && string(msg) == string(s.record.message) {
		return nil
	}
	for k, v := range s.buffer {
		if v == nil {
			delete(s.record.entries, k)
		} else {
			s.record.entries[k] = v
		}
	}
	s.record.message = msg
	s.record.commits++
	clear(s.buffer)
	return nil
}

// changed reports whether a flush would commit anything.
func (s *memState) changed() bool {
	msg, err := s.marshalMessage()
	if err != nil {
		return true // let Flush report it
	}
	s.node.mu.Lock()
	defer s.node.mu.Unlock()
	return len(s.buffer) > 0 || string(msg) != string(s.record.message)
}

func (s *memState) marshalMessage() ([]byte, error) {
	if s.message == nil {
		return nil, nil
	}
	return proto.MarshalOptions{Deterministic: true}.Marshal(s.message)
}
