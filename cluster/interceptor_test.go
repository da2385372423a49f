package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// interceptLog records what a node's interceptors saw, in order.
type interceptLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *interceptLog) add(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

// take returns the lines so far, and forgets them.
func (l *interceptLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	lines := l.lines
	l.lines = nil
	return lines
}

func shortMethod(method string) string { return method[strings.LastIndex(method, "/")+1:] }

func oneWayWord(oneWay bool) string {
	if oneWay {
		return "one-way"
	}
	return "call"
}

// recordOutgoing returns an outgoing interceptor that logs name and what
// it sends, and attaches "via"=name to it.
func recordOutgoing(l *interceptLog, name string) OutgoingInterceptor {
	return func(ctx context.Context, call Call, oneWay bool, invoke Invoker, opts ...CallOption) (proto.Message, error) {
		l.add("%s %s %s %s", name, oneWayWord(oneWay), shortMethod(call.Method), call.Identity)
		return invoke(ctx, call, append(opts, WithMetadata("via", name))...)
	}
}

// recordIncoming returns an incoming interceptor that logs name, what its
// grain handles and the metadata it carries.
func recordIncoming(l *interceptLog, name string) IncomingInterceptor {
	return func(ctx GrainContext, method string, oneWay bool, req proto.Message, handle Handler) (proto.Message, error) {
		via, _ := MetadataFrom(ctx).Get("via")
		l.add("%s %s %s %s via %s", name, oneWayWord(oneWay), shortMethod(method), ctx.Identity(), via)
		return handle(ctx, req)
	}
}

// TestInterceptorsRunAroundEveryCallAndMessage: a node's outgoing
// interceptors run, first outermost, around its calls and one-way
// messages, those of its grains and of their hooks included, and the
// metadata they attach reaches the grain; a node's incoming interceptors
// run around what its grains handle, wherever it came from.
func TestInterceptorsRunAroundEveryCallAndMessage(t *testing.T) {
	seen, activated := make(chan string, 4), make(chan string, 8)
	logs := map[string]*interceptLog{}
	var mu sync.Mutex
	nodes := startCluster(t, 2, func(string) []*Kind { return []*Kind{metaKindOf(seen, activated)} }, func(cfg *Config) {
		l := &interceptLog{}
		mu.Lock()
		logs[cfg.NodeName] = l
		mu.Unlock()
		cfg.OutgoingInterceptors = []OutgoingInterceptor{recordOutgoing(l, "o1"), recordOutgoing(l, "o2")}
		cfg.IncomingInterceptors = []IncomingInterceptor{recordIncoming(l, "i1"), recordIncoming(l, "i2")}
	})
	a, b := nodes[0], nodes[1]
	la, lb := logs[a.Name()], logs[b.Name()]
	onB := ownedInEveryView(t, nodes, b, metaKind, "on-b")
	inner := ownedInEveryView(t, nodes, a, metaKind, "inner")

	resp, err := a.Invoke(context.Background(), Call{Kind: metaKind, Identity: onB, Method: methodMetaGet,
		Request: wrapperspb.String(inner), NewResponse: newString})
	if err != nil {
		t.Fatal(err)
	}
	// Each call carries what both interceptors of its sender attached.
	want := `[via=o1,via=o2] len 2, k="" false`
	if got := resp.(*wrapperspb.StringValue).GetValue(); got != want+" then "+inner+": "+want {
		t.Fatalf("the grains saw %s, want %s then %s: %s", got, want, inner, want)
	}
	if err := a.Send(context.Background(), Call{Kind: metaKind, Identity: onB, Method: methodMetaPut, Request: wrapperspb.String("")}); err != nil {
		t.Fatal(err)
	}
	if got := receive(t, seen, "the one-way message"); got != want {
		t.Fatalf("the one-way message saw %s, want %s", got, want)
	}
	for _, c := range []struct {
		l    *interceptLog
		want []string
	}{
		{la, []string{
			"o1 call Get " + onB, "o2 call Get " + onB,
			"i1 call Get " + inner + " via o2", "i2 call Get " + inner + " via o2",
			"o1 one-way Put " + onB, "o2 one-way Put " + onB,
		}},
		{lb, []string{
			"i1 call Get " + onB + " via o2", "i2 call Get " + onB + " via o2",
			"o1 call Get " + inner, "o2 call Get " + inner,
			"i1 one-way Put " + onB + " via o2", "i2 one-way Put " + onB + " via o2",
		}},
	} {
		if got := c.l.take(); !slices.Equal(got, c.want) {
			t.Errorf("interceptors saw\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(c.want, "\n"))
		}
	}

	// A message a grain sends itself from OnActivate goes through them too.
	greeter := ownedInEveryView(t, nodes, a, metaKind, "greeter")
	if _, err := a.Invoke(context.Background(), Call{Kind: metaKind, Identity: greeter, Method: methodMetaGet,
		Request: wrapperspb.String(""), NewResponse: newString}); err != nil {
		t.Fatal(err)
	}
	if got := receive(t, seen, "the greeter's message to itself"); got != want {
		t.Fatalf("the message the greeter sent itself saw %s, want %s", got, want)
	}
	waitFor(t, waitTimeout, "the interceptors of the greeter's message", func() bool {
		la.mu.Lock()
		defer la.mu.Unlock()
		return len(la.lines) == 8
	})
	got, wantLines := la.take(), []string{
		"o1 call Get " + greeter, "o2 call Get " + greeter,
		"o1 one-way Put " + greeter, "o2 one-way Put " + greeter, // from OnActivate
		// The message the hook sent runs first, as the hook kept it for
		// the actor (see hookContext).
		"i1 one-way Put " + greeter + " via o2", "i2 one-way Put " + greeter + " via o2",
		"i1 call Get " + greeter + " via o2", "i2 call Get " + greeter + " via o2",
	}
	if !slices.Equal(got, wantLines) {
		t.Errorf("interceptors saw\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantLines, "\n"))
	}
}

// errIntercepted is what the interceptors of the tests below return.
var errIntercepted = errors.New("intercepted")

// TestAnInterceptorsErrorEndsTheCall: an outgoing interceptor that
// returns an error without sending the call or message fails it with that
// error, and no grain is activated; an incoming interceptor that returns
// an error, before or after the method ran, fails the call with it, and
// what the method changed is undone, as after any failed call.
func TestAnInterceptorsErrorEndsTheCall(t *testing.T) {
	nodes, banks := bankCluster(t, 1, nil, -1, func(cfg *Config) {
		cfg.OutgoingInterceptors = []OutgoingInterceptor{func(ctx context.Context, call Call, oneWay bool, invoke Invoker, opts ...CallOption) (proto.Message, error) {
			if call.Identity == "refused" {
				return nil, errIntercepted
			}
			return invoke(ctx, call, opts...)
		}}
		cfg.IncomingInterceptors = []IncomingInterceptor{func(ctx GrainContext, method string, oneWay bool, req proto.Message, handle Handler) (proto.Message, error) {
			amount, _ := req.(*wrapperspb.Int64Value)
			switch amount.GetValue() {
			case 7:
				return nil, errIntercepted // before the method
			case 13:
				if _, err := handle(ctx, req); err != nil {
					return nil, err
				}
				return nil, errIntercepted // after it
			}
			return handle(ctx, req)
		}}
	})
	n, b := nodes[0], banks[nodes[0].Name()]
	if _, err := n.Invoke(context.Background(), depositCall(accountKind, "refused", 1)); !errors.Is(err, errIntercepted) {
		t.Fatalf("a call an outgoing interceptor refused: %v, want its error", err)
	}
	if err := n.Send(context.Background(), depositCall(accountKind, "refused", 1)); !errors.Is(err, errIntercepted) {
		t.Fatalf("a message an outgoing interceptor refused: %v, want its error", err)
	}
	if got := n.Stats().Activations; got != 0 {
		t.Fatalf("%d grains activated for calls an interceptor refused", got)
	}

	deposit(t, n, accountKind, "g", 1)
	for _, amount := range []int64{7, 13} {
		_, err := n.Invoke(context.Background(), depositCall(accountKind, "g", amount))
		if err == nil || !strings.Contains(err.Error(), errIntercepted.Error()) {
			t.Fatalf("a deposit of %d an incoming interceptor failed: %v, want its error", amount, err)
		}
	}
	if runs := b.count("g", methodDeposit); runs != 2 {
		t.Fatalf("Deposit ran %d times, want twice: the first deposit and 13's, not 7's", runs)
	}
	if got := balance(t, n, accountKind, "g"); got != 1 {
		t.Fatalf("balance %d after the failed deposits, want 1: the deposit of 13 that the interceptor failed is undone", got)
	}
}

// ctxTag is the context key of TestWithContextKeepsTheGrainsScope.
type ctxTag struct{}

// TestWithContextKeepsTheGrainsScope: a GrainContext that an incoming
// interceptor hands the method with WithContext has the interceptor's
// values, and is the grain's in every other way: its state, its calls to
// other grains (stamped, and refused when reentrant), its reminders.
func TestWithContextKeepsTheGrainsScope(t *testing.T) {
	var b *bank
	seen, activated := make(chan string, 1), make(chan string, 8)
	nodes := startCluster(t, 1, func(name string) []*Kind {
		b = newBank(name)
		return []*Kind{newAccountKind(b, accountKind, FlushAfterCall, -1), metaKindOf(seen, activated)}
	}, func(cfg *Config) {
		cfg.IncomingInterceptors = []IncomingInterceptor{func(ctx GrainContext, method string, oneWay bool, req proto.Message, handle Handler) (proto.Message, error) {
			return handle(WithContext(ctx, context.WithValue(ctx, ctxTag{}, "tagged")), req)
		}}
	})
	n := nodes[0]
	resp, err := n.Invoke(context.Background(), Call{Kind: metaKind, Identity: "m", Method: methodMetaGet,
		Request: wrapperspb.String(""), NewResponse: newString}, WithMetadata("k", "v"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := resp.(*wrapperspb.StringValue).GetValue(), `[k=v] len 1, k="v" true tag tagged`; got != want {
		t.Fatalf("the method saw %s, want %s", got, want)
	}
	deposit(t, n, accountKind, "payer", 5)
	resp, err = n.Invoke(context.Background(), accountCall(accountKind, methodPay, "payer", "payee"))
	if err != nil {
		t.Fatalf("Pay, which calls another grain through the derived context: %v", err)
	}
	if got := resp.(*wrapperspb.Int64Value).GetValue(); got != 3 {
		t.Fatalf("Pay returned balance %d, want 3", got)
	}
	if got := balance(t, n, accountKind, "payee"); got != 2 {
		t.Fatalf("payee's balance %d, want the 2 paid", got)
	}
	if _, err := n.Invoke(context.Background(), accountCall(accountKind, methodPay, "payer", "payer")); !errors.Is(err, ErrReentrant) {
		t.Fatalf("Pay to itself: %v, want ErrReentrant", err)
	}
	remind(t, n, "payer", "ping", "1h")
	if f := nextFiring(t, b); f != "payer ping" {
		t.Fatalf("firing %q, want ping of payer", f)
	}
}

// TestAPanickingIncomingInterceptorIsTheGrainsPanic: an incoming
// interceptor runs in the grain's turn, so its panic is the grain's: the
// call fails with ErrGrainPanic, what the method changed is undone, and
// the grain goes on serving.
func TestAPanickingIncomingInterceptorIsTheGrainsPanic(t *testing.T) {
	nodes, _ := bankCluster(t, 1, nil, -1, func(cfg *Config) {
		cfg.IncomingInterceptors = []IncomingInterceptor{func(ctx GrainContext, method string, oneWay bool, req proto.Message, handle Handler) (proto.Message, error) {
			resp, err := handle(ctx, req)
			if amount, _ := req.(*wrapperspb.Int64Value); amount.GetValue() == 13 {
				panic("unlucky")
			}
			return resp, err
		}}
	})
	n := nodes[0]
	deposit(t, n, accountKind, "g", 1)
	if _, err := n.Invoke(context.Background(), depositCall(accountKind, "g", 13)); !errors.Is(err, ErrGrainPanic) {
		t.Fatalf("a deposit whose interceptor panicked: %v, want ErrGrainPanic", err)
	}
	if got := balance(t, n, accountKind, "g"); got != 1 {
		t.Fatalf("balance %d after the panic, want 1: the deposit is undone", got)
	}
}

// TestAnIncomingInterceptorThatHandsTheMethodNothingFailsTheCall: an
// interceptor that calls handle without a GrainContext or a request
// fails the call with an error that says so, as the method's own error,
// rather than the method running on nil.
func TestAnIncomingInterceptorThatHandsTheMethodNothingFailsTheCall(t *testing.T) {
	nodes, banks := bankCluster(t, 1, nil, -1, func(cfg *Config) {
		cfg.IncomingInterceptors = []IncomingInterceptor{func(ctx GrainContext, method string, oneWay bool, req proto.Message, handle Handler) (proto.Message, error) {
			if amount, _ := req.(*wrapperspb.Int64Value); amount.GetValue() == 7 {
				return handle(nil, req)
			}
			return handle(ctx, nil)
		}}
	})
	n := nodes[0]
	for _, amount := range []int64{7, 8} {
		_, err := n.Invoke(context.Background(), depositCall(accountKind, "g", amount))
		if err == nil || !strings.Contains(err.Error(), "an IncomingInterceptor handed /test.Account/Deposit no GrainContext or no request") {
			t.Fatalf("a deposit of %d handed nothing: %v, want the interceptor's mistake named", amount, err)
		}
	}
	if runs := banks[n.Name()].count("g", methodDeposit); runs != 0 {
		t.Fatalf("Deposit ran %d times on nothing", runs)
	}
}
