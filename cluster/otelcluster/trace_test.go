package otelcluster_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/protograin/protograin/cluster"
	"github.com/protograin/protograin/cluster/otelcluster"
	"github.com/protograin/protograin/internal/testnode"
)

// The tracing test's kinds: a relay on one node that calls a leaf on the
// other.
const (
	relayKind   = "test.Relay"
	leafKind    = "test.Leaf"
	methodRelay = "/test.Relay/Relay" // StringValue leaf identity → StringValue; calls the leaf ("" calls none)
	methodLeaf  = "/test.Leaf/Leaf"   // StringValue → StringValue; "fail" fails
)

func newStringValue() proto.Message { return new(wrapperspb.StringValue) }

func stringKind(name, method string, handle func(ctx cluster.GrainContext, req string) (string, error)) *cluster.Kind {
	return &cluster.Kind{
		Name: name,
		New:  func(string) any { return struct{}{} },
		Methods: []cluster.Method{{
			Name:       method,
			NewRequest: newStringValue,
			Handle: func(_ any, ctx cluster.GrainContext, req proto.Message) (proto.Message, error) {
				resp, err := handle(ctx, req.(*wrapperspb.StringValue).GetValue())
				if err != nil {
					return nil, err
				}
				return wrapperspb.String(resp), nil
			},
		}},
	}
}

var errLeaf = errors.New("the leaf failed")

// TestTracingFollowsACallAcrossNodes: with the tracing interceptors on
// every node, a call from one node to a grain on another, which calls a
// grain on the first, is one trace under the caller's span: a client and
// a server span per call, each server span the child of its client span
// on the other node, and the inner call's client span the child of the
// outer call's server span; a one-way message gets a producer and a
// consumer span; a call that fails says so on both of its spans.
func TestTracingFollowsACallAcrossNodes(t *testing.T) {
	recorder := tracetest.NewSpanRecorder()
	provider := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	t.Cleanup(func() { _ = provider.Shutdown(context.Background()) })
	traced := func(kinds ...*cluster.Kind) func(*cluster.Config) {
		return func(cfg *cluster.Config) {
			cfg.Kinds = kinds
			cfg.OutgoingInterceptors = []cluster.OutgoingInterceptor{otelcluster.TraceOutgoing(provider, nil)}
			cfg.IncomingInterceptors = []cluster.IncomingInterceptor{otelcluster.TraceIncoming(provider, nil)}
		}
	}
	front := testnode.StartConfigured(t, "front", traced(stringKind(leafKind, methodLeaf, func(_ cluster.GrainContext, req string) (string, error) {
		if req == "fail" {
			return "", errLeaf
		}
		return "leaf", nil
	})))
	back := testnode.StartConfigured(t, "back", func(cfg *cluster.Config) {
		traced(stringKind(relayKind, methodRelay, func(ctx cluster.GrainContext, req string) (string, error) {
			if req == "" {
				return "relayed nothing", nil
			}
			resp, err := ctx.Invoke(ctx, cluster.Call{Kind: leafKind, Identity: "l", Method: methodLeaf,
				Request: wrapperspb.String(req), NewResponse: newStringValue})
			if err != nil {
				return "", err
			}
			return "relayed " + resp.(*wrapperspb.StringValue).GetValue(), nil
		}))(cfg)
		cfg.Seeds = []string{front.GossipAddr()}
	})
	waitFor(t, "the nodes to see each other", func() bool { return len(front.Members()) == 2 && len(back.Members()) == 2 })

	ctx, root := provider.Tracer("test").Start(context.Background(), "root")
	relay := cluster.Call{Kind: relayKind, Identity: "r", Method: methodRelay, Request: wrapperspb.String("ok"), NewResponse: newStringValue}
	if resp, err := front.Invoke(ctx, relay); err != nil || resp.(*wrapperspb.StringValue).GetValue() != "relayed leaf" {
		t.Fatalf("Relay = %v, %v; want relayed leaf", resp, err)
	}
	note := relay
	note.Request = wrapperspb.String("")
	if err := front.Send(ctx, note); err != nil {
		t.Fatal(err)
	}
	// The message is handled after Send returns: its consumer span, before
	// the next call's spans.
	waitFor(t, "the message's spans to end", func() bool { return len(recorder.Ended()) == 6 })
	failing := relay
	failing.Request = wrapperspb.String("fail")
	if _, err := front.Invoke(ctx, failing); err == nil || !strings.Contains(err.Error(), errLeaf.Error()) {
		t.Fatalf("Relay(fail) = %v, want the leaf's error", err)
	}
	root.End()
	// 1 root, 4 per relayed call (twice), 2 for the message.
	waitFor(t, "every span to end", func() bool { return len(recorder.Ended()) == 11 })

	spans := recorder.Ended()
	byID := map[trace.SpanID]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		if s.SpanContext().TraceID() != root.SpanContext().TraceID() {
			t.Fatalf("span %s is in trace %s, not the caller's %s", s.Name(), s.SpanContext().TraceID(), root.SpanContext().TraceID())
		}
		byID[s.SpanContext().SpanID()] = s
	}
	// Each span as "kind name < its parent's kind name", in the order they
	// started.
	slices.SortFunc(spans, func(a, b sdktrace.ReadOnlySpan) int { return a.StartTime().Compare(b.StartTime()) })
	var got []string
	for _, s := range spans[1:] {
		parent := byID[s.Parent().SpanID()]
		if parent == nil {
			t.Fatalf("the parent of span %s is not in the trace", s.Name())
		}
		line := fmt.Sprintf("%s %s < %s %s", s.SpanKind(), s.Name(), parent.SpanKind(), parent.Name())
		if s.Status().Code == otelcodes.Error {
			line += " (failed: " + attributeOf(s, otelcluster.AttributeCode) + ")"
		}
		got = append(got, line)
	}
	want := []string{
		"client test.Relay/Relay < internal root",
		"server test.Relay/Relay < client test.Relay/Relay",
		"client test.Leaf/Leaf < server test.Relay/Relay",
		"server test.Leaf/Leaf < client test.Leaf/Leaf",
		"producer test.Relay/Relay < internal root",
		"consumer test.Relay/Relay < producer test.Relay/Relay",
		"client test.Relay/Relay < internal root (failed: Unknown)",
		"server test.Relay/Relay < client test.Relay/Relay (failed: Unknown)",
		"client test.Leaf/Leaf < server test.Relay/Relay (failed: Unknown)",
		"server test.Leaf/Leaf < client test.Leaf/Leaf (failed: Unknown)",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("spans:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, s := range spans[1:] {
		for key, want := range map[string]string{"rpc.system": "protograin", "rpc.service": strings.Split(s.Name(), "/")[0],
			"rpc.method": strings.Split(s.Name(), "/")[1]} {
			if got := attributeOf(s, key); got != want {
				t.Errorf("span %s %s: %s = %q, want %q", s.SpanKind(), s.Name(), key, got, want)
			}
		}
	}
}

// TestATracedMethodThatPanicsFails: the server span of a method that
// panics ends failed, with the code its caller gets (Internal), as the
// client span does.
func TestATracedMethodThatPanicsFails(t *testing.T) {
	recorder := tracetest.NewSpanRecorder()
	provider := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	t.Cleanup(func() { _ = provider.Shutdown(context.Background()) })
	n := testnode.StartConfigured(t, "panicking", func(cfg *cluster.Config) {
		cfg.Kinds = []*cluster.Kind{stringKind(leafKind, methodLeaf, func(cluster.GrainContext, string) (string, error) {
			panic("the leaf panicked")
		})}
		cfg.OutgoingInterceptors = []cluster.OutgoingInterceptor{otelcluster.TraceOutgoing(provider, nil)}
		cfg.IncomingInterceptors = []cluster.IncomingInterceptor{otelcluster.TraceIncoming(provider, nil)}
	})
	call := cluster.Call{Kind: leafKind, Identity: "l", Method: methodLeaf, Request: wrapperspb.String("x"), NewResponse: newStringValue}
	if _, err := n.Invoke(context.Background(), call); !errors.Is(err, cluster.ErrGrainPanic) {
		t.Fatalf("Leaf = %v, want ErrGrainPanic", err)
	}
	waitFor(t, "both spans to end", func() bool { return len(recorder.Ended()) == 2 })
	for _, s := range recorder.Ended() {
		if s.Status().Code != otelcodes.Error || attributeOf(s, otelcluster.AttributeCode) != "Internal" {
			t.Errorf("the %s span of the panicking method ended with status %v, code %q; want an error, Internal",
				s.SpanKind(), s.Status(), attributeOf(s, otelcluster.AttributeCode))
		}
	}
}

// attributeOf returns the value of span's attribute key, as a string.
func attributeOf(span sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range span.Attributes() {
		if kv.Key == attribute.Key(key) {
			return kv.Value.Emit()
		}
	}
	return ""
}
