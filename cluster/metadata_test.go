package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The metadata test kind: a grain that says what metadata its calls and
// one-way messages carry, and calls another grain to show what that call
// carries.
const (
	metaKind = "test.Meta"
	// methodMetaGet: StringValue → StringValue, the call's metadata; a
	// non-empty request names a grain to ask too, "own:" before the name
	// with a tenant of the asking grain's, or, with "put:" before it, a
	// grain to send a one-way Put.
	methodMetaGet = "/test.Meta/Get"
	methodMetaPut = "/test.Meta/Put" // StringValue → Empty, one-way: the message's metadata goes to the test's channel
)

// metaGrain is a grain of the metadata test kind: its OnActivate reports
// its metadata on activated.
type metaGrain struct{ activated chan<- string }

func (g *metaGrain) OnActivate(ctx GrainContext) error {
	g.activated <- renderMetadata(MetadataFrom(ctx))
	if strings.HasPrefix(ctx.Identity(), "greeter") {
		// A message to itself, sent while the hook runs (see hookContext).
		return Send(ctx, ctx, Call{Kind: metaKind, Identity: ctx.Identity(), Method: methodMetaPut, Request: wrapperspb.String("")})
	}
	return nil
}

// metaKindOf returns the metadata test kind; its one-way messages report
// their metadata on seen, the OnActivate of its grains on activated.
func metaKindOf(seen, activated chan<- string) *Kind {
	get := func(_ any, ctx GrainContext, req proto.Message) (proto.Message, error) {
		got := renderMetadata(MetadataFrom(ctx))
		if tag, ok := ctx.Value(ctxTag{}).(string); ok { // see TestWithContextKeepsTheGrainsScope
			got += " tag " + tag
		}
		other := req.(*wrapperspb.StringValue).GetValue()
		var opts []CallOption
		switch {
		case strings.HasPrefix(other, "put:"): // a one-way message to the grain named
			err := Send(ctx, ctx, Call{Kind: metaKind, Identity: other[len("put:"):], Method: methodMetaPut, Request: wrapperspb.String("")})
			return wrapperspb.String(got), err
		case strings.HasPrefix(other, "own:"): // a call with a tenant of the grain's own
			other = other[len("own:"):]
			opts = append(opts, WithMetadata("tenant", "the grain's"))
		}
		if other != "" {
			resp, err := ctx.Invoke(ctx, Call{Kind: metaKind, Identity: other, Method: methodMetaGet, Request: wrapperspb.String(""), NewResponse: newString}, opts...)
			if err != nil {
				return nil, err
			}
			got += " then " + other + ": " + resp.(*wrapperspb.StringValue).GetValue()
		}
		return wrapperspb.String(got), nil
	}
	put := func(_ any, ctx GrainContext, _ proto.Message) (proto.Message, error) {
		seen <- renderMetadata(MetadataFrom(ctx))
		return wrapperspb.String(""), nil
	}
	return &Kind{
		Name: metaKind,
		New:  func(string) any { return &metaGrain{activated} },
		Methods: []Method{
			{Name: methodMetaGet, NewRequest: newString, Handle: get},
			{Name: methodMetaPut, NewRequest: newString, Handle: put},
		},
	}
}

// renderMetadata writes md's pairs as "k=v,k=v", and what Get says of
// "k".
func renderMetadata(md Metadata) string {
	var pairs []string
	for k, v := range md.All() {
		pairs = append(pairs, k+"="+v)
	}
	k, ok := md.Get("k")
	return fmt.Sprintf("[%s] len %d, k=%q %v", strings.Join(pairs, ","), md.Len(), k, ok)
}

// TestMetadataReachesTheGrain: the metadata attached to a call or one-way
// message reaches the grain as it was sent, on the grain's node and from
// another, in order, a key set twice answering with its last value; a call
// the grain makes carries none of it, nor does the OnActivate it ran; a
// call without metadata has none.
func TestMetadataReachesTheGrain(t *testing.T) {
	seen, activated := make(chan string, 4), make(chan string, 8)
	nodes := startCluster(t, 2, func(string) []*Kind { return []*Kind{metaKindOf(seen, activated)} }, nil)
	a, b := nodes[0], nodes[1]
	onA := ownedInEveryView(t, nodes, a, metaKind, "on-a")
	onB := ownedInEveryView(t, nodes, b, metaKind, "on-b")
	inner := ownedInEveryView(t, nodes, a, metaKind, "inner") // the grain the grains call
	const want = `[k=1,tenant=acme,k=2] len 3, k="2" true`
	opts := []CallOption{WithMetadata("k", "1", "tenant", "acme"), WithMetadata("k", "2")}
	for _, tc := range []struct {
		name     string
		identity string
	}{{"on the grain's node", onA}, {"from another node", onB}} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := a.Invoke(context.Background(), Call{Kind: metaKind, Identity: tc.identity, Method: methodMetaGet,
				Request: wrapperspb.String(inner), NewResponse: newString}, opts...)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := resp.(*wrapperspb.StringValue).GetValue(), want+" then "+inner+`: [] len 0, k="" false`; got != want {
				t.Fatalf("the grain saw %s, want %s", got, want)
			}
			if err := a.Send(context.Background(), Call{Kind: metaKind, Identity: tc.identity, Method: methodMetaPut, Request: wrapperspb.String("")}, opts...); err != nil {
				t.Fatal(err)
			}
			if got := receive(t, seen, "the one-way message"); got != want {
				t.Fatalf("the one-way message saw %s, want %s", got, want)
			}
			resp, err = a.Invoke(context.Background(), Call{Kind: metaKind, Identity: tc.identity, Method: methodMetaGet,
				Request: wrapperspb.String(""), NewResponse: newString})
			if err != nil {
				t.Fatal(err)
			}
			if got := resp.(*wrapperspb.StringValue).GetValue(); got != `[] len 0, k="" false` {
				t.Fatalf("a call without metadata saw %s", got)
			}
		})
	}
	for range 3 { // onA, inner, onB
		if got := receive(t, activated, "an OnActivate"); got != `[] len 0, k="" false` {
			t.Fatalf("OnActivate of a grain activated by a call with metadata saw %s", got)
		}
	}
}

// TestBadMetadataIsRefused: a call or one-way message with metadata that
// WithMetadata cannot encode, or too much of it, fails with ErrBadRequest
// before anything is sent.
func TestBadMetadataIsRefused(t *testing.T) {
	seen, activated := make(chan string, 1), make(chan string, 1)
	nodes := startCluster(t, 1, func(string) []*Kind { return []*Kind{metaKindOf(seen, activated)} }, nil)
	n := nodes[0]
	for _, tc := range []struct {
		name string
		opts []CallOption
		want string
	}{
		{"an odd number of strings", []CallOption{WithMetadata("k")}, "WithMetadata takes pairs of keys and values, got 1 strings"},
		{"an empty key", []CallOption{WithMetadata("k", "v", "", "v")}, "metadata key 1 is empty"},
		{"a value that is not UTF-8", []CallOption{WithMetadata("k", "\xff")}, `metadata key "k" or its value is not valid UTF-8`},
		{"too much", []CallOption{WithMetadata("k", strings.Repeat("v", MaxMetadataBytes/2)), WithMetadata("k", strings.Repeat("v", MaxMetadataBytes/2))},
			"more than MaxMetadataBytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			call := Call{Kind: metaKind, Identity: "g", Method: methodMetaGet, Request: wrapperspb.String(""), NewResponse: newString}
			_, err := n.Invoke(context.Background(), call, tc.opts...)
			if !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Invoke: %v, want ErrBadRequest saying %q", err, tc.want)
			}
			call.Method = methodMetaPut
			err = n.Send(context.Background(), call, tc.opts...)
			if !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Send: %v, want ErrBadRequest saying %q", err, tc.want)
			}
		})
	}
	if got := n.Stats().Activations; got != 0 {
		t.Fatalf("%d grains were activated by refused calls", got)
	}
}

// TestForwardMetadataPassesTheCallsPairsOn: with ForwardMetadata("tenant")
// on both nodes, a call with tenant and k reaches a grain, which calls a
// grain on the other node, which calls one on its own: each sees tenant,
// and only tenant; a one-way message a grain sends forwards it too; a pair
// the grain attaches itself comes after the forwarded one (Get answers the
// last); the grains' OnActivate, and a call that carried no tenant,
// forward nothing.
func TestForwardMetadataPassesTheCallsPairsOn(t *testing.T) {
	seen, activated := make(chan string, 4), make(chan string, 8)
	nodes := startCluster(t, 2, func(string) []*Kind { return []*Kind{metaKindOf(seen, activated)} }, func(cfg *Config) {
		cfg.OutgoingInterceptors = []OutgoingInterceptor{ForwardMetadata("tenant")}
	})
	a, b := nodes[0], nodes[1]
	first := ownedInEveryView(t, nodes, a, metaKind, "first")
	second := ownedInEveryView(t, nodes, b, metaKind, "second")
	third := ownedInEveryView(t, nodes, b, metaKind, "third")
	get := func(identity, next string, opts ...CallOption) string {
		t.Helper()
		resp, err := a.Invoke(context.Background(), Call{Kind: metaKind, Identity: identity, Method: methodMetaGet,
			Request: wrapperspb.String(next), NewResponse: newString}, opts...)
		if err != nil {
			t.Fatal(err)
		}
		return resp.(*wrapperspb.StringValue).GetValue()
	}

	// first calls second across nodes (its request names it); second's
	// own call, to third on its node, is made by a grain of the kind
	// that calls on: ask second to ask third.
	got := get(first, second, WithMetadata("k", "1", "tenant", "acme"))
	want := `[k=1,tenant=acme] len 2, k="1" true then ` + second + `: [tenant=acme] len 1, k="" false`
	if got != want {
		t.Fatalf("the call saw %s, want %s", got, want)
	}
	got = get(second, third, WithMetadata("tenant", "acme"))
	want = `[tenant=acme] len 1, k="" false then ` + third + `: [tenant=acme] len 1, k="" false`
	if got != want {
		t.Fatalf("the call saw %s, want %s", got, want)
	}
	got = get(first, "own:"+second, WithMetadata("tenant", "acme"))
	want = `[tenant=acme] len 1, k="" false then ` + second + `: [tenant=acme,tenant=the grain's] len 2, k="" false`
	if got != want {
		t.Fatalf("the call saw %s, want %s", got, want)
	}
	get(first, "put:"+second, WithMetadata("tenant", "acme", "k", "1"))
	if got := receive(t, seen, "the grain's one-way message"); got != `[tenant=acme] len 1, k="" false` {
		t.Fatalf("the grain's one-way message saw %s, want the tenant alone", got)
	}
	if got := get(first, second); got != `[] len 0, k="" false then `+second+`: [] len 0, k="" false` {
		t.Fatalf("a call without metadata forwarded %s", got)
	}
	for range 3 { // first, second, third
		if got := receive(t, activated, "an OnActivate"); got != `[] len 0, k="" false` {
			t.Fatalf("OnActivate of a grain activated by a forwarded call saw %s", got)
		}
	}
}

// TestForwardedMetadataOverTheBoundFailsTheGrainsCall: the pairs a grain
// forwards count against MaxMetadataBytes with its own; a call that would
// carry more fails with ErrBadRequest before it is sent, and the grain's
// caller gets that error, naming the bound.
func TestForwardedMetadataOverTheBoundFailsTheGrainsCall(t *testing.T) {
	seen, activated := make(chan string, 4), make(chan string, 8)
	nodes := startCluster(t, 1, func(string) []*Kind { return []*Kind{metaKindOf(seen, activated)} }, func(cfg *Config) {
		cfg.OutgoingInterceptors = []OutgoingInterceptor{ForwardMetadata("tenant")}
	})
	n := nodes[0]
	// The largest tenant a call may carry: its key and value, each with a
	// two-byte length at this size for the value, one for the key.
	big := strings.Repeat("x", MaxMetadataBytes-len("tenant")-1-2)
	call := Call{Kind: metaKind, Identity: "first", Method: methodMetaGet, Request: wrapperspb.String("own:second"), NewResponse: newString}
	_, err := n.Invoke(context.Background(), call, WithMetadata("tenant", big))
	if err == nil || !strings.Contains(err.Error(), "more than MaxMetadataBytes") {
		t.Fatalf("a grain's call with its own tenant after a forwarded one at the bound: %v, want the bound named", err)
	}
	call.Request = wrapperspb.String("second") // forwards the tenant alone: within the bound
	if _, err := n.Invoke(context.Background(), call, WithMetadata("tenant", big)); err != nil {
		t.Fatalf("a grain's call forwarding a tenant at the bound: %v", err)
	}
}
