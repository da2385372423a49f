// Package otelcluster reports what a cluster node holds (cluster.Stats) as
// OpenTelemetry metrics, so that a dashboard or an alert sees a node whose
// grains fall behind their senders without polling Node.Stats by hand,
// measures grain calls per method (MeasureOutgoing, MeasureIncoming), and
// traces them across nodes (TraceOutgoing, TraceIncoming).
//
// The figures are observed, not counted on the call path: Register adds
// one callback to a meter of its own (named ScopeName, as instrumentation
// libraries name theirs), which reads Node.Stats once per collection
// (every export interval of the meter provider's reader, typically 10 s
// or more). Nothing is added to a grain call or a message.
//
// Usage, with a meter provider of the user's (the OpenTelemetry SDK's, or
// one an exporter's setup returns; otel.GetMeterProvider() for the
// global one):
//
//	reg, err := otelcluster.Register(node, provider)
//	if err != nil {
//		return err
//	}
//	defer reg.Unregister()
//
// Each observation carries the attribute protograin.node, the node's name,
// so that several nodes in one process (or one metrics backend) stay apart;
// the grains' figures come per kind as well, under protograin.kind, so that
// a dashboard shows which kind falls behind.
//
// Tracing is two interceptors, one for the calls a node sends and one for
// those its grains handle, with a tracer provider of the user's:
//
//	cfg.OutgoingInterceptors = append(cfg.OutgoingInterceptors, otelcluster.TraceOutgoing(provider, nil))
//	cfg.IncomingInterceptors = append(cfg.IncomingInterceptors, otelcluster.TraceIncoming(provider, nil))
//
// The span context travels in each call's metadata (cluster.WithMetadata),
// W3C trace context unless another propagator is given, so that a call
// from one grain to another, on any node, is a child of the call that made
// it. Unlike Register's metrics, tracing is on the call path: a span per
// call on each side, and the metadata's few dozen bytes.
//
// Per-method metrics are two interceptors as well, with a meter provider:
//
//	out, err := otelcluster.MeasureOutgoing(provider)
//	if err != nil {
//		return err
//	}
//	in, err := otelcluster.MeasureIncoming(provider)
//	if err != nil {
//		return err
//	}
//	cfg.OutgoingInterceptors = append(cfg.OutgoingInterceptors, out)
//	cfg.IncomingInterceptors = append(cfg.IncomingInterceptors, in)
//
// They record each call's duration in OpenTelemetry's RPC histograms,
// rpc.client.call.duration on the sending node and
// rpc.server.call.duration on the grain's, per kind, method and gRPC code
// (AttributeCode): each histogram's count is the calls, its buckets how
// long they took, and its sets with a code other than OK the failures.
// They are on the call path too, for a measurement per call on each side
// and, once a method's first call has made its attribute set, no
// allocation.
package otelcluster

import (
	"context"
	"errors"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/protograin/protograin/cluster"
)

// The names of the instruments Register creates, following OpenTelemetry's
// naming rules (lower case, dotted, units in braces for counts).
const (
	// MetricActivations is the number of grains active on the node, those
	// being activated or deactivated included (Stats.Activations).
	MetricActivations = "protograin.grain.activations"
	// MetricIdentities is the number of identities with an activation on
	// the node (Stats.Identities by kind): MetricActivations but for the
	// kinds of stateless workers, whose identities may have several.
	MetricIdentities = "protograin.grain.identities"
	// MetricCalls is the number of calls the node's grains have counted in:
	// running, queued, or given up by their callers but not yet reached
	// (Stats.Calls, what Config.MaxQueuedCalls bounds per grain).
	MetricCalls = "protograin.grain.calls"
	// MetricOneWayQueued is the number of one-way messages waiting for the
	// node's grains (Stats.QueuedOneWay, what Config.MaxQueuedOneWay bounds
	// per grain).
	MetricOneWayQueued = "protograin.oneway.queued"
	// MetricOneWayForwarding is the number of one-way messages waiting to be
	// forwarded to their grains' owners (Stats.Forwarding).
	MetricOneWayForwarding = "protograin.oneway.forwarding"
	// MetricOneWayDropped is the number of one-way messages from peers the
	// node dropped since it started (Stats.DroppedOneWay), a monotonic sum.
	MetricOneWayDropped = "protograin.oneway.dropped"
	// MetricRefused is the number of calls and one-way messages the node's
	// grains turned away with ErrMailboxFull since it started
	// (Stats.Refused), a monotonic sum.
	MetricRefused = "protograin.grain.refused"
	// MetricActivationsRefused is the number of activations the node
	// refused past Config.ActivationLimit since it started
	// (Stats.RefusedActivations), a monotonic sum.
	MetricActivationsRefused = "protograin.grain.activations.refused"
	// MetricHeapPassivations is the number of grains the node asked to
	// passivate early since it started, for a live heap over
	// Config.MaxHeapBytes (Stats.HeapPassivations), a monotonic sum.
	MetricHeapPassivations = "protograin.grain.passivations.heap"
)

// AttributeNode is the attribute that carries the node's name on every
// observation.
const AttributeNode = "protograin.node"

// AttributeKind is the attribute that carries the grain kind on the
// observations of MetricActivations, MetricIdentities, MetricCalls and
// MetricOneWayQueued, one per kind the node hosts (Stats.Kinds): their sum
// over the kinds is the node's figure.
const AttributeKind = "protograin.kind"

// ScopeName is the instrumentation scope of the meter Register takes from
// its provider: this package's import path.
const ScopeName = "github.com/protograin/protograin/cluster/otelcluster"

// Register creates the instruments above on provider's meter for
// ScopeName, and a callback that observes n's Stats on each collection.
// Unregister the returned
// registration when the node is closed (its Stats still answer, with what
// it held last, but the figures are no longer worth reporting).
//
// Register a node once per meter provider, and unregister a closed node
// before a node of the same name is registered there: the SDK adds up the
// observations that two callbacks make with the same attributes, so a
// second registration doubles every figure, and a closed node left
// registered adds what it held last to its successor's.
func Register(n *cluster.Node, provider metric.MeterProvider) (metric.Registration, error) {
	meter := provider.Meter(ScopeName)
	var errs []error
	gauge := func(name, unit, desc string) metric.Int64ObservableUpDownCounter {
		g, err := meter.Int64ObservableUpDownCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return g
	}
	activations := gauge(MetricActivations, "{activation}", "Grains active on the node, those activating or deactivating included.")
	identities := gauge(MetricIdentities, "{identity}", "Identities with an activation on the node; fewer than the activations for a kind of stateless workers.")
	calls := gauge(MetricCalls, "{call}", "Calls the node's grains have counted in: running, queued, or given up by their callers but not yet reached.")
	queued := gauge(MetricOneWayQueued, "{message}", "One-way messages waiting for the node's grains.")
	forwarding := gauge(MetricOneWayForwarding, "{message}", "One-way messages waiting to be forwarded to their grains' owners.")
	counter := func(name, unit, desc string) metric.Int64ObservableCounter {
		c, err := meter.Int64ObservableCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	dropped := counter(MetricOneWayDropped, "{message}", "One-way messages from peers the node dropped since it started: for a full mailbox or forward queue, or undeliverable.")
	refused := counter(MetricRefused, "{message}", "Calls and one-way messages the node's grains turned away with ErrMailboxFull since it started.")
	refusedActivations := counter(MetricActivationsRefused, "{activation}", "Activations the node refused past Config.ActivationLimit since it started.")
	heapPassivations := counter(MetricHeapPassivations, "{activation}", "Grains the node asked to passivate early since it started, for a live heap over Config.MaxHeapBytes.")
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("otelcluster: create the instruments: %w", err)
	}
	node := metric.WithAttributeSet(attribute.NewSet(attribute.String(AttributeNode, n.Name())))
	// A node's kinds are fixed at its start: their attribute sets are
	// made once, not at each collection.
	kinds := make(map[string]metric.MeasurementOption)
	for kind := range n.Stats().Kinds {
		kinds[kind] = metric.WithAttributeSet(attribute.NewSet(attribute.String(AttributeNode, n.Name()), attribute.String(AttributeKind, kind)))
	}
	reg, err := meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		s := n.Stats()
		for kind, k := range s.Kinds {
			o.ObserveInt64(activations, int64(k.Activations), kinds[kind])
			o.ObserveInt64(identities, int64(k.Identities), kinds[kind])
			o.ObserveInt64(calls, int64(k.Calls), kinds[kind])
			o.ObserveInt64(queued, int64(k.QueuedOneWay), kinds[kind])
		}
		o.ObserveInt64(forwarding, int64(s.Forwarding), node)
		o.ObserveInt64(dropped, int64(s.DroppedOneWay), node)
		o.ObserveInt64(refused, int64(s.Refused), node)
		o.ObserveInt64(refusedActivations, int64(s.RefusedActivations), node)
		o.ObserveInt64(heapPassivations, int64(s.HeapPassivations), node)
		return nil
	}, activations, identities, calls, queued, forwarding, dropped, refused, refusedActivations, heapPassivations)
	if err != nil {
		return nil, fmt.Errorf("otelcluster: register the stats callback: %w", err)
	}
	return reg, nil
}
