package otelcluster

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/protograin/protograin/cluster"
)

// The names of the histograms MeasureOutgoing and MeasureIncoming record
// into: OpenTelemetry's RPC metrics, as its semantic conventions name them
// after v1.37 (a Release Candidate, the step before stable), in seconds;
// they replace rpc.client.duration and rpc.server.duration, in
// milliseconds, which the conventions deprecate, and match grpc-go's
// grpc.client.call.duration and grpc.server.call.duration.
//
// The attributes are those of the spans of TraceOutgoing and TraceIncoming
// (rpc.system "protograin", rpc.service the grain kind, rpc.method the
// method's short name, AttributeOneWay on one-way messages), so that a
// dashboard goes from a slow method's histogram to its spans on the same
// keys, and AttributeCode, the call's gRPC code, on every measurement:
// "OK" for a call that succeeded. Not the grain's identity, whose values
// have no bound. The conventions' newest attribute names
// (rpc.system.name, rpc.response.status_code, error.type) are left for a
// change that moves the spans too.
const (
	// MetricClientCallDuration is the duration of each call and one-way
	// message a node sends, from its Invoke (or Send) until it returns:
	// the owner's turn and the network's round trip for a call, retries
	// within its deadline included; the hand-over for a one-way message.
	MetricClientCallDuration = "rpc.client.call.duration"
	// MetricServerCallDuration is the duration of each call and one-way
	// message a node's grains handle: the method's turn, from when it
	// starts to when it returns or panics, time waiting in the grain's
	// mailbox excluded.
	MetricServerCallDuration = "rpc.server.call.duration"
)

// latencyBounds are the histograms' bucket boundaries, in seconds: gRPC's
// for its own call durations (grpc-go's stats/opentelemetry
// DefaultLatencyBounds, after proposal A66), from 10 µs to 100 s. The RPC
// conventions advise boundaries from 5 ms up, which would put nearly every
// grain call (a few µs on the grain's node, a fraction of a millisecond
// across nodes) in the first bucket. A view of the meter provider's
// replaces them.
var latencyBounds = []float64{0, 0.00001, 0.00005, 0.0001, 0.0003, 0.0006, 0.0008, 0.001, 0.002, 0.003, 0.004,
	0.005, 0.006, 0.008, 0.01, 0.013, 0.016, 0.02, 0.025, 0.03, 0.04, 0.05, 0.065, 0.08, 0.1, 0.13, 0.16, 0.2,
	0.25, 0.3, 0.4, 0.5, 0.65, 0.8, 1, 2, 5, 10, 20, 50, 100}

// MeasureOutgoing returns an interceptor for Config.OutgoingInterceptors
// that records the duration of each call and one-way message a node sends
// in the histogram MetricClientCallDuration, which it creates on
// provider's meter for ScopeName: the calls per method, how long they
// took, and how many failed with which code, from the count and the
// buckets of each attribute set.
//
// Put it after TraceOutgoing in the list, if both are there: it then runs
// inside the call's span, which the SDK may keep as the exemplar of the
// measurement's bucket.
//
// It costs two readings of the clock and a measurement per call: the
// attribute sets are made once per method and code and kept (up to
// maxAttributeSets), and a call allocates nothing for them.
func MeasureOutgoing(provider metric.MeterProvider) (cluster.OutgoingInterceptor, error) {
	m, err := newMeasurer(provider, MetricClientCallDuration,
		"Duration of the calls and one-way messages the node sent, until they returned or were handed over.")
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, call cluster.Call, oneWay bool, invoke cluster.Invoker, opts ...cluster.CallOption) (proto.Message, error) {
		start := time.Now()
		resp, err := invoke(ctx, call, opts...)
		m.record(ctx, start, callKey{kind: call.Kind, method: call.Method, oneWay: oneWay, code: status.Code(err)})
		return resp, err
	}, nil
}

// MeasureIncoming returns an interceptor for Config.IncomingInterceptors
// that records the duration of each call and one-way message a node's
// grains handle in the histogram MetricServerCallDuration, which it
// creates on provider's meter for ScopeName. A method that panics is
// recorded with the code its caller gets, Internal, before the panic goes
// on to the grain's supervisor. Calls that no grain of the node runs (an
// unknown method, a mailbox full) are not recorded: MeasureOutgoing sees
// them on the caller's node.
//
// Put it after TraceIncoming in the list, if both are there, for the
// reason MeasureOutgoing gives; it costs what MeasureOutgoing costs.
func MeasureIncoming(provider metric.MeterProvider) (cluster.IncomingInterceptor, error) {
	m, err := newMeasurer(provider, MetricServerCallDuration,
		"Duration of the calls and one-way messages the node's grains handled, in their turn.")
	if err != nil {
		return nil, err
	}
	return func(ctx cluster.GrainContext, method string, oneWay bool, req proto.Message, handle cluster.Handler) (proto.Message, error) {
		key := callKey{kind: ctx.Kind(), method: method, oneWay: oneWay, code: codes.Internal}
		start := time.Now()
		returned := false
		defer func() {
			if !returned { // a panic, or runtime.Goexit: the caller gets ErrGrainPanic
				m.record(ctx, start, key)
			}
		}()
		resp, err := handle(ctx, req)
		returned = true
		key.code = status.Code(err)
		m.record(ctx, start, key)
		return resp, err
	}, nil
}

// measurer records the durations of one histogram, with its attribute
// sets.
type measurer struct {
	histogram metric.Float64Histogram
	sets      attributeSets
}

// newMeasurer creates the histogram name on provider's meter for
// ScopeName.
func newMeasurer(provider metric.MeterProvider, name, desc string) (*measurer, error) {
	h, err := provider.Meter(ScopeName).Float64Histogram(name, metric.WithUnit("s"), metric.WithDescription(desc),
		metric.WithExplicitBucketBoundaries(latencyBounds...))
	if err != nil {
		return nil, fmt.Errorf("otelcluster: create the histogram %s: %w", name, err)
	}
	return &measurer{histogram: h}, nil
}

// record records the time since start under key's attributes.
func (m *measurer) record(ctx context.Context, start time.Time, key callKey) {
	m.histogram.Record(ctx, time.Since(start).Seconds(), m.sets.get(key)...)
}

// callKey is what a measurement's attributes are made of.
type callKey struct {
	kind   string
	method string // the full name, "/kind/Method"
	oneWay bool
	code   codes.Code
}

// maxAttributeSets bounds the attribute sets a measurer keeps. The kinds
// and methods a node's grains handle are few, but those a node sends come
// from its callers' Call values, and a caller that made up method names
// would otherwise grow the cache without end. Past the bound, a
// measurement makes its set anew. What the meter provider keeps of them
// is its own to bound: the SDK's has no limit unless given one
// (sdkmetric.WithCardinalityLimit).
const maxAttributeSets = 1024

// attributeSets keeps the measurement options (the attribute set) of each
// callKey, so that a measurement does not make them: a set is a sorted
// copy of its attributes, and the option an interface value that holds it,
// three allocations that every call would otherwise pay. The map is read
// without a lock, on every call of every grain, and replaced by a copy
// with one set more when a key is new, which happens once per method and
// code: readers on many cores do not contend on a lock's counter, as they
// would on a sync.RWMutex's, and a struct key does not escape to the heap,
// as it would as a sync.Map's key.
type attributeSets struct {
	sets atomic.Pointer[map[callKey][]metric.RecordOption]
	mu   sync.Mutex // held by those who add a set
}

// get returns the measurement options of key's attributes.
func (a *attributeSets) get(key callKey) []metric.RecordOption {
	if sets := a.sets.Load(); sets != nil {
		if opts, ok := (*sets)[key]; ok {
			return opts
		}
	}
	return a.add(key)
}

// add makes the measurement options of key's attributes, and keeps them
// unless maxAttributeSets are kept already.
func (a *attributeSets) add(key callKey) []metric.RecordOption {
	a.mu.Lock()
	defer a.mu.Unlock()
	var sets map[callKey][]metric.RecordOption
	if p := a.sets.Load(); p != nil {
		sets = *p
	}
	if opts, ok := sets[key]; ok { // another caller added it first
		return opts
	}
	attrs := methodAttributes(make([]attribute.KeyValue, 0, 5), key.kind, key.method, key.oneWay)
	attrs = append(attrs, codeAttribute(key.code))
	opts := []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(attrs...))}
	if len(sets) < maxAttributeSets {
		grown := make(map[callKey][]metric.RecordOption, len(sets)+1)
		maps.Copy(grown, sets)
		grown[key] = opts
		a.sets.Store(&grown)
	}
	return opts
}
