package main

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/protograin/protograin/cluster"
	"github.com/protograin/protograin/internal/testnode"
	"github.com/protograin/protograin/testdata/oneway"
	"github.com/protograin/protograin/testdata/unary"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// pointerEmbedGrain embeds the Unimplemented type by pointer. Left nil, it
// is the mistake the generated New catches: every method it leaves out
// would panic.
type pointerEmbedGrain struct{ *unary.UnimplementedEchoGrain }

// panicOf runs f and returns what it panicked with, as text, or "" if it
// returned.
func panicOf(f func()) (msg string) {
	defer func() {
		if v := recover(); v != nil {
			msg = fmt.Sprint(v)
		}
	}()
	f()
	return ""
}

func TestNewRejectsANilEmbeddedUnimplemented(t *testing.T) {
	kind := unary.NewEchoKind(func(string) unary.EchoGrain { return pointerEmbedGrain{} })
	msg := panicOf(func() { kind.New("alice") })
	if !strings.Contains(msg, "UnimplementedEchoGrain") || !strings.Contains(msg, "nil") {
		t.Fatalf("New panicked with %q, want a panic naming the nil *UnimplementedEchoGrain", msg)
	}
	for _, g := range []unary.EchoGrain{&echoGrain{}, pointerEmbedGrain{&unary.UnimplementedEchoGrain{}}} {
		kind := unary.NewEchoKind(func(string) unary.EchoGrain { return g })
		if msg := panicOf(func() { kind.New("alice") }); msg != "" {
			t.Errorf("New of a %T panicked: %s", g, msg)
		}
	}
}

// TestNilEmbeddedUnimplementedFailsTheCall runs the kind on a real node:
// the first call fails at activation, with an error that names the type,
// for a method the grain would have left to the nil pointer as for any
// other.
func TestNilEmbeddedUnimplementedFailsTheCall(t *testing.T) {
	node := testnode.Start(t, "embed-test", unary.NewEchoKind(func(string) unary.EchoGrain { return pointerEmbedGrain{} }))
	ctx := t.Context()
	client := unary.NewEchoClient(node, "alice")
	_, err := client.Fail(ctx, &unary.CountRequest{})
	if !errors.Is(err, cluster.ErrGrainPanic) || status.Code(err) != codes.Internal {
		t.Fatalf("Fail = %v, want an Internal ErrGrainPanic from the activation", err)
	}
	if msg := status.Convert(err).Message(); !strings.Contains(msg, "activating") || !strings.Contains(msg, "UnimplementedEchoGrain") {
		t.Errorf("message %q does not say the activation failed on the nil UnimplementedEchoGrain", msg)
	}
}

// TestNilRequestIsRejected calls a real node through generated clients with
// a nil request. The client hands it on as it is, a nil *Request in the
// Call, and the node refuses it as a call without a request: an
// InvalidArgument error wrapping cluster.ErrBadRequest, before any grain
// sees it. The nil response of a grain is checked by
// TestKindHandleReturnsNoMessageForNil.
func TestNilRequestIsRejected(t *testing.T) {
	var activated atomic.Bool
	node := testnode.Start(t, "nil-request-test",
		unary.NewEchoKind(func(string) unary.EchoGrain {
			activated.Store(true)
			return &echoGrain{}
		}),
		oneway.NewPlayerKind(func(string) oneway.PlayerGrain {
			activated.Store(true)
			return oneway.UnimplementedPlayerGrain{}
		}),
	)
	ctx := t.Context()
	calls := map[string]func() error{
		"call": func() error {
			_, err := unary.NewEchoClient(node, "alice").Say(ctx, nil)
			return err
		},
		"one-way": func() error {
			return oneway.NewPlayerClient(node, "alice").Move(ctx, nil)
		},
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, cluster.ErrBadRequest) || status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s with a nil request: %v, want an InvalidArgument error wrapping cluster.ErrBadRequest", name, err)
		}
	}
	if activated.Load() {
		t.Error("a grain was activated for a call with a nil request")
	}
}
