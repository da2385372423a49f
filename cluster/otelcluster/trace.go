package otelcluster

import (
	"context"
	"maps"
	"slices"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/protograin/protograin/cluster"
)

// The attributes of the spans the tracing interceptors start, besides
// OpenTelemetry's rpc.system ("protograin"), rpc.service (the grain kind)
// and rpc.method (the method's short name). The measurements of
// MeasureOutgoing and MeasureIncoming have the same, but the identity.
const (
	// AttributeIdentity is the identity of the grain called.
	AttributeIdentity = "protograin.grain.identity"
	// AttributeOneWay is true on the spans and measurements of one-way
	// messages.
	AttributeOneWay = "protograin.oneway"
	// AttributeCode is the gRPC code a call ended with, as its name
	// ("NotFound"; "Unknown" for a grain's own error): on the spans of the
	// calls that failed, and on every measurement, "OK" for a call that
	// succeeded, so that a query of the failures needs no absent value.
	AttributeCode = "protograin.code"
)

// TraceOutgoing returns an interceptor for Config.OutgoingInterceptors
// that traces the calls and one-way messages a node sends: a span for
// each, a child of the span in the caller's context (a client span for a
// call, a producer span for a one-way message, named "kind/Method"), ended
// when the call returns or the message is handed over, and whose context
// propagator injects into the call's metadata, for TraceIncoming on the
// grain's node. Tracers come from provider under ScopeName; propagator
// nil means W3C trace context (propagation.TraceContext).
//
// Retries within a call's deadline are one span. A span costs what the
// provider's tracer makes it cost, and the metadata a few dozen bytes per
// call.
func TraceOutgoing(provider trace.TracerProvider, propagator propagation.TextMapPropagator) cluster.OutgoingInterceptor {
	tracer, propagator := provider.Tracer(ScopeName), orTraceContext(propagator)
	return func(ctx context.Context, call cluster.Call, oneWay bool, invoke cluster.Invoker, opts ...cluster.CallOption) (proto.Message, error) {
		kind := trace.SpanKindClient
		if oneWay {
			kind = trace.SpanKindProducer
		}
		ctx, span := tracer.Start(ctx, spanName(call.Method), trace.WithSpanKind(kind),
			trace.WithAttributes(callAttributes(call.Kind, call.Identity, call.Method, oneWay)...))
		defer span.End()
		carrier := propagation.MapCarrier{}
		propagator.Inject(ctx, carrier)
		if len(carrier) > 0 {
			opts = append(slices.Clip(opts), cluster.WithMetadata(pairs(carrier)...))
		}
		resp, err := invoke(ctx, call, opts...)
		endSpan(span, err)
		return resp, err
	}
}

// TraceIncoming returns an interceptor for Config.IncomingInterceptors
// that traces the calls and one-way messages a node's grains handle: a
// span for each (a server span for a call, a consumer span for a one-way
// message), the child of the sender's span that propagator extracts from
// the call's metadata (TraceOutgoing's), around the grain's method, which
// gets it in its context: the calls the method makes are its children.
// Tracers come from provider under ScopeName; propagator nil means W3C
// trace context. A method that panics ends its span failed, with the code
// its caller gets, Internal.
func TraceIncoming(provider trace.TracerProvider, propagator propagation.TextMapPropagator) cluster.IncomingInterceptor {
	tracer, propagator := provider.Tracer(ScopeName), orTraceContext(propagator)
	return func(ctx cluster.GrainContext, method string, oneWay bool, req proto.Message, handle cluster.Handler) (proto.Message, error) {
		kind := trace.SpanKindServer
		if oneWay {
			kind = trace.SpanKindConsumer
		}
		parent := propagator.Extract(ctx, metadataCarrier(cluster.MetadataFrom(ctx)))
		spanCtx, span := tracer.Start(parent, spanName(method), trace.WithSpanKind(kind),
			trace.WithAttributes(callAttributes(ctx.Kind(), ctx.Identity(), method, oneWay)...))
		returned := false
		defer func() {
			if !returned { // a panic, or runtime.Goexit: the caller gets ErrGrainPanic
				span.SetStatus(otelcodes.Error, "the grain's method panicked")
				span.SetAttributes(codeAttribute(codes.Internal))
			}
			span.End()
		}()
		resp, err := handle(cluster.WithContext(ctx, spanCtx), req)
		returned = true
		endSpan(span, err)
		return resp, err
	}
}

// orTraceContext returns p, or W3C trace context if p is nil.
func orTraceContext(p propagation.TextMapPropagator) propagation.TextMapPropagator {
	if p == nil {
		return propagation.TraceContext{}
	}
	return p
}

// spanName names a call's span "kind/Method", after OpenTelemetry's RPC
// conventions: the full method name without its leading slash.
func spanName(method string) string { return strings.TrimPrefix(method, "/") }

// callAttributes returns the attributes of a call's span: its method's,
// and the grain's identity.
func callAttributes(kind, identity, method string, oneWay bool) []attribute.KeyValue {
	attrs := methodAttributes(make([]attribute.KeyValue, 0, 5), kind, method, oneWay)
	return append(attrs, attribute.String(AttributeIdentity, identity))
}

// methodAttributes appends to attrs the attributes that say which method a
// call or one-way message is of, after OpenTelemetry's RPC conventions,
// and whether it is a one-way message: what its spans and its measurements
// (MeasureOutgoing, MeasureIncoming) have in common, so that a dashboard
// goes from one to the other on the same keys.
func methodAttributes(attrs []attribute.KeyValue, kind, method string, oneWay bool) []attribute.KeyValue {
	attrs = append(attrs,
		attribute.String("rpc.system", "protograin"),
		attribute.String("rpc.service", kind),
		attribute.String("rpc.method", method[strings.LastIndex(method, "/")+1:]),
	)
	if oneWay {
		attrs = append(attrs, attribute.Bool(AttributeOneWay, true))
	}
	return attrs
}

// codeAttribute returns the AttributeCode of a call that ended with code,
// the code status.Code finds in its error: that of a status error (every
// error the cluster returns has one), Unknown for a grain's plain error.
func codeAttribute(code codes.Code) attribute.KeyValue {
	return attribute.String(AttributeCode, code.String())
}

// endSpan records err, if any, on span.
func endSpan(span trace.Span, err error) {
	if err == nil {
		return
	}
	span.RecordError(err)
	span.SetStatus(otelcodes.Error, err.Error())
	span.SetAttributes(codeAttribute(status.Code(err)))
}

// pairs returns c's keys and values in turn, sorted by key, for
// WithMetadata.
func pairs(c propagation.MapCarrier) []string {
	kv := make([]string, 0, 2*len(c))
	for _, k := range slices.Sorted(maps.Keys(c)) {
		kv = append(kv, k, c[k])
	}
	return kv
}

// metadataCarrier reads a call's metadata as a propagator's carrier.
type metadataCarrier cluster.Metadata

// Get implements propagation.TextMapCarrier.
func (c metadataCarrier) Get(key string) string {
	v, _ := cluster.Metadata(c).Get(key)
	return v
}

// Set implements propagation.TextMapCarrier: an incoming call's metadata
// is not changed.
func (metadataCarrier) Set(string, string) {}

// Keys implements propagation.TextMapCarrier.
func (c metadataCarrier) Keys() []string {
	var keys []string
	for k := range cluster.Metadata(c).All() {
		keys = append(keys, k)
	}
	return keys
}
