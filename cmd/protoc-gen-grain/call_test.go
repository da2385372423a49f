package main

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/protograin/protograin/cluster"
	"github.com/protograin/protograin/testdata/clash"
	"github.com/protograin/protograin/testdata/clash/req"
	clashstatus "github.com/protograin/protograin/testdata/clash/status"
	"github.com/protograin/protograin/testdata/deprecated"
	"github.com/protograin/protograin/testdata/editions"
	"github.com/protograin/protograin/testdata/empty"
	"github.com/protograin/protograin/testdata/imports"
	"github.com/protograin/protograin/testdata/imports/typespb"
	"github.com/protograin/protograin/testdata/multiservice"
	"github.com/protograin/protograin/testdata/nested"
	"github.com/protograin/protograin/testdata/oneway"
	"github.com/protograin/protograin/testdata/productwords"
	"github.com/protograin/protograin/testdata/proto2"
	"github.com/protograin/protograin/testdata/publicimport"
	"github.com/protograin/protograin/testdata/samepackage"
	"github.com/protograin/protograin/testdata/unary"
	"github.com/protograin/protograin/testdata/upperpkg"
	"github.com/protograin/protograin/testdata/wkt"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// echoGrain implements the unary golden's Echo service except Fail, which
// it leaves to the embedded UnimplementedEchoGrain.
type echoGrain struct {
	unary.UnimplementedEchoGrain
	says int64
}

func (g *echoGrain) Say(ctx cluster.GrainContext, req *unary.SayRequest) (*unary.SayResponse, error) {
	if req.GetText() == "" {
		return nil, status.Error(codes.InvalidArgument, "echo: nothing to say")
	}
	g.says++
	times := 1
	if req.Times != nil {
		times = int(req.GetTimes())
	}
	return &unary.SayResponse{Text: ctx.Identity() + ": " + strings.Repeat(req.GetText(), times)}, nil
}

// Count calls the grain "shadow" of the same kind through its GrainContext
// when the grain is "relay", to show generated clients work grain to grain.
func (g *echoGrain) Count(ctx cluster.GrainContext, req *unary.CountRequest) (*unary.CountResponse, error) {
	if ctx.Identity() == "relay" {
		return unary.NewEchoClient(ctx, "shadow").Count(ctx, req)
	}
	return &unary.CountResponse{Count: g.says}, nil
}

func newEchoKind(identities *[]string) *cluster.Kind {
	return unary.NewEchoKind(func(identity string) unary.EchoGrain {
		*identities = append(*identities, identity)
		return &echoGrain{}
	})
}

func TestGeneratedClientCallsGrain(t *testing.T) {
	var activated []string
	caller := newTestCaller(newEchoKind(&activated))
	ctx := context.Background()
	alice := unary.NewEchoClient(caller, "alice")

	resp, err := alice.Say(ctx, &unary.SayRequest{Text: "hi", Times: proto.Int32(2)})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetText() != "alice: hihi" {
		t.Errorf("Say returned %q, want %q", resp.GetText(), "alice: hihi")
	}
	if _, err := alice.Say(ctx, &unary.SayRequest{Text: "again"}); err != nil {
		t.Fatal(err)
	}
	counts := map[string]int64{"alice": 2, "bob": 0}
	for identity, want := range counts {
		got, err := unary.NewEchoClient(caller, identity).Count(ctx, &unary.CountRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if got.GetCount() != want {
			t.Errorf("%s: Count = %d, want %d", identity, got.GetCount(), want)
		}
	}
	if want := []string{"alice", "bob"}; !reflect.DeepEqual(activated, want) {
		t.Errorf("factory called for %v, want %v (once per identity)", activated, want)
	}
}

func TestGrainCallsGrainThroughItsContext(t *testing.T) {
	var activated []string
	caller := newTestCaller(newEchoKind(&activated))
	ctx := context.Background()
	if _, err := unary.NewEchoClient(caller, "shadow").Say(ctx, &unary.SayRequest{Text: "x"}); err != nil {
		t.Fatal(err)
	}
	got, err := unary.NewEchoClient(caller, "relay").Count(ctx, &unary.CountRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetCount() != 1 {
		t.Errorf("relay Count = %d, want shadow's count 1", got.GetCount())
	}
}

func TestGrainErrorsReachTheCaller(t *testing.T) {
	var activated []string
	caller := newTestCaller(newEchoKind(&activated))
	_, err := unary.NewEchoClient(caller, "alice").Say(context.Background(), &unary.SayRequest{})
	if status.Code(err) != codes.InvalidArgument || status.Convert(err).Message() != "echo: nothing to say" {
		t.Errorf("got %v, want the grain's InvalidArgument error unchanged", err)
	}
}

func TestEmbeddedUnimplementedReturnsUnimplemented(t *testing.T) {
	var activated []string
	caller := newTestCaller(newEchoKind(&activated))
	_, err := unary.NewEchoClient(caller, "alice").Fail(context.Background(), &unary.CountRequest{})
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("got %v, want code Unimplemented", err)
	}
	if want := "protograin: /protograin.testdata.unary.v1.Echo/Fail is not implemented"; status.Convert(err).Message() != want {
		t.Errorf("message %q, want %q", status.Convert(err).Message(), want)
	}
}

func TestClientBuildsTheCall(t *testing.T) {
	stub := &stubCaller{resp: &unary.SayResponse{Text: "ok"}}
	req := &unary.SayRequest{Text: "hi"}
	resp, err := unary.NewEchoClient(stub, "alice").Say(context.Background(), req, cluster.WithoutRetry())
	if err != nil || resp.GetText() != "ok" {
		t.Fatalf("Say = %v, %v; want the stub's response", resp, err)
	}
	if len(stub.calls) != 1 {
		t.Fatalf("%d calls, want 1", len(stub.calls))
	}
	call := stub.calls[0]
	if call.Kind != "protograin.testdata.unary.v1.Echo" {
		t.Errorf("Kind %q, want the service's full name", call.Kind)
	}
	if call.Method != "/protograin.testdata.unary.v1.Echo/Say" {
		t.Errorf("Method %q, want /protograin.testdata.unary.v1.Echo/Say", call.Method)
	}
	if call.Identity != "alice" {
		t.Errorf("Identity %q, want alice", call.Identity)
	}
	if call.Request != proto.Message(req) {
		t.Errorf("Request is not the caller's request message")
	}
	if _, ok := call.NewResponse().(*unary.SayResponse); !ok {
		t.Errorf("NewResponse returns %T, want *unary.SayResponse", call.NewResponse())
	}
	if len(stub.opts[0]) != 1 {
		t.Errorf("%d call options reached the Caller, want 1", len(stub.opts[0]))
	}
}

func TestClientRejectsWrongResponseType(t *testing.T) {
	tests := []struct {
		name string
		resp proto.Message
		want string
	}{
		{
			name: "other message",
			resp: wrapperspb.String("x"),
			want: "protograin: /protograin.testdata.unary.v1.Echo/Say: response has type *wrapperspb.StringValue, want *unary.SayResponse",
		},
		{
			name: "nil",
			resp: nil,
			want: "protograin: /protograin.testdata.unary.v1.Echo/Say: response has type <nil>, want *unary.SayResponse",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := unary.NewEchoClient(&stubCaller{resp: tt.resp}, "alice").Say(context.Background(), &unary.SayRequest{})
			if status.Code(err) != codes.Internal || status.Convert(err).Message() != tt.want {
				t.Errorf("got %v\nwant code Internal and message %q", err, tt.want)
			}
		})
	}
}

func TestClientPassesCallerErrorsThrough(t *testing.T) {
	sentinel := errors.New("cluster: no route")
	_, err := unary.NewEchoClient(&stubCaller{err: sentinel}, "alice").Say(context.Background(), &unary.SayRequest{})
	if !errors.Is(err, sentinel) {
		t.Errorf("got %v, want the Caller's error", err)
	}
}

func TestKindDescribesTheService(t *testing.T) {
	var activated []string
	kind := newEchoKind(&activated)
	if kind.Name != unary.EchoKind {
		t.Errorf("Name %q, want %q", kind.Name, unary.EchoKind)
	}
	wantMethods := []struct {
		name    string
		request proto.Message
	}{
		{unary.EchoSayMethod, &unary.SayRequest{}},
		{unary.EchoCountMethod, &unary.CountRequest{}},
		{unary.EchoFailMethod, &unary.CountRequest{}},
	}
	if len(kind.Methods) != len(wantMethods) {
		t.Fatalf("%d methods, want %d", len(kind.Methods), len(wantMethods))
	}
	for i, want := range wantMethods {
		m := kind.Methods[i]
		if m.Name != want.name {
			t.Errorf("method %d: Name %q, want %q", i, m.Name, want.name)
		}
		if got := m.NewRequest(); reflect.TypeOf(got) != reflect.TypeOf(want.request) {
			t.Errorf("%s: NewRequest returns %T, want %T", m.Name, got, want.request)
		}
	}
	if kind.IdleTimeout != 0 {
		t.Errorf("IdleTimeout %v, want zero (the cluster's default)", kind.IdleTimeout)
	}
}

func TestKindHandleRejectsWrongTypes(t *testing.T) {
	var activated []string
	say := newEchoKind(&activated).Methods[0]
	ctx := grainContext{Context: context.Background(), kind: unary.EchoKind, identity: "alice"}
	tests := []struct {
		name  string
		grain any
		req   proto.Message
		code  codes.Code
		want  string
	}{
		{
			name:  "grain",
			grain: struct{}{},
			req:   &unary.SayRequest{Text: "hi"},
			code:  codes.Internal,
			want:  "protograin: /protograin.testdata.unary.v1.Echo/Say: grain has type struct {}, want an implementation of EchoGrain",
		},
		{
			name:  "nil grain",
			grain: nil,
			req:   &unary.SayRequest{Text: "hi"},
			code:  codes.Internal,
			want:  "protograin: /protograin.testdata.unary.v1.Echo/Say: grain has type <nil>, want an implementation of EchoGrain",
		},
		{
			name:  "request",
			grain: &echoGrain{},
			req:   &unary.CountRequest{},
			code:  codes.InvalidArgument,
			want:  "protograin: /protograin.testdata.unary.v1.Echo/Say: request has type *unary.CountRequest, want *unary.SayRequest",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := say.Handle(tt.grain, ctx, tt.req)
			if resp != nil {
				t.Errorf("response %v, want nil", resp)
			}
			if status.Code(err) != tt.code || status.Convert(err).Message() != tt.want {
				t.Errorf("got %v\nwant code %v and message %q", err, tt.code, tt.want)
			}
		})
	}
}

// nilGrain's Count returns neither a response nor an error, a grain's bug.
type nilGrain struct{ unary.UnimplementedEchoGrain }

func (nilGrain) Count(cluster.GrainContext, *unary.CountRequest) (*unary.CountResponse, error) {
	return nil, nil
}

// TestKindHandleReturnsNoMessageForNil checks that a grain's nil response
// leaves Handle as an untyped nil, which the cluster rejects as a response
// that is missing. A nil *CountResponse in a proto.Message would not be nil.
func TestKindHandleReturnsNoMessageForNil(t *testing.T) {
	kind := unary.NewEchoKind(func(string) unary.EchoGrain { return nilGrain{} })
	count, ok := findMethod(kind, unary.EchoCountMethod)
	if !ok {
		t.Fatal("no Count method")
	}
	ctx := grainContext{Context: context.Background(), kind: unary.EchoKind, identity: "alice"}
	resp, err := count.Handle(nilGrain{}, ctx, &unary.CountRequest{})
	if resp != nil || err != nil {
		t.Errorf("Handle = %#v, %v; want an untyped nil and no error", resp, err)
	}
}

// goldenService is one service of a golden package, built with a grain that
// only embeds its Unimplemented type.
type goldenService struct {
	kind      *cluster.Kind
	newClient func(cluster.Caller) any
}

// goldenServices lists every service of every golden package. Building it is
// the compile test of the goldens; calling it exercises their Kind, client
// and Unimplemented code.
func goldenServices() []goldenService {
	return []goldenService{
		{unary.NewEchoKind(func(string) unary.EchoGrain { return unary.UnimplementedEchoGrain{} }),
			func(c cluster.Caller) any { return unary.NewEchoClient(c, "id") }},
		{imports.NewStoreKind(func(string) imports.StoreGrain { return imports.UnimplementedStoreGrain{} }),
			func(c cluster.Caller) any { return imports.NewStoreClient(c, "id") }},
		{samepackage.NewAlphaKind(func(string) samepackage.AlphaGrain { return samepackage.UnimplementedAlphaGrain{} }),
			func(c cluster.Caller) any { return samepackage.NewAlphaClient(c, "id") }},
		{samepackage.NewBetaKind(func(string) samepackage.BetaGrain { return samepackage.UnimplementedBetaGrain{} }),
			func(c cluster.Caller) any { return samepackage.NewBetaClient(c, "id") }},
		{wkt.NewClockKind(func(string) wkt.ClockGrain { return wkt.UnimplementedClockGrain{} }),
			func(c cluster.Caller) any { return wkt.NewClockClient(c, "id") }},
		{clash.NewCounterKind(func(string) clash.CounterGrain_ { return clash.UnimplementedCounterGrain{} }),
			func(c cluster.Caller) any { return clash.NewCounterClient(c, "id") }},
		{clash.NewNewCounterKind(func(string) clash.NewCounterGrain { return clash.UnimplementedNewCounterGrain{} }),
			func(c cluster.Caller) any { return clash.NewNewCounterClient(c, "id") }},
		{clash.NewTypeKind(func(string) clash.TypeGrain { return clash.UnimplementedTypeGrain{} }),
			func(c cluster.Caller) any { return clash.NewTypeClient(c, "id") }},
		{productwords.NewGrainKind(func(string) productwords.GrainGrain { return productwords.UnimplementedGrainGrain{} }),
			func(c cluster.Caller) any { return productwords.NewGrainClient(c, "id") }},
		{productwords.NewClientKind(func(string) productwords.ClientGrain { return productwords.UnimplementedClientGrain{} }),
			func(c cluster.Caller) any { return productwords.NewClientClient(c, "id") }},
		{productwords.NewKindKind(func(string) productwords.KindGrain { return productwords.UnimplementedKindGrain{} }),
			func(c cluster.Caller) any { return productwords.NewKindClient(c, "id") }},
		{deprecated.NewOldKind(func(string) deprecated.OldGrain { return deprecated.UnimplementedOldGrain{} }),
			func(c cluster.Caller) any { return deprecated.NewOldClient(c, "id") }},
		{deprecated.NewCurrentKind(func(string) deprecated.CurrentGrain { return deprecated.UnimplementedCurrentGrain{} }),
			func(c cluster.Caller) any { return deprecated.NewCurrentClient(c, "id") }},
		{proto2.NewLegacyKind(func(string) proto2.LegacyGrain { return proto2.UnimplementedLegacyGrain{} }),
			func(c cluster.Caller) any { return proto2.NewLegacyClient(c, "id") }},
		{editions.NewModernKind(func(string) editions.ModernGrain { return editions.UnimplementedModernGrain{} }),
			func(c cluster.Caller) any { return editions.NewModernClient(c, "id") }},
		{nested.NewNestKind(func(string) nested.NestGrain { return nested.UnimplementedNestGrain{} }),
			func(c cluster.Caller) any { return nested.NewNestClient(c, "id") }},
		{empty.NewPlaceholderKind(func(string) empty.PlaceholderGrain { return empty.UnimplementedPlaceholderGrain{} }),
			func(c cluster.Caller) any { return empty.NewPlaceholderClient(c, "id") }},
		{publicimport.NewUserKind(func(string) publicimport.UserGrain { return publicimport.UnimplementedUserGrain{} }),
			func(c cluster.Caller) any { return publicimport.NewUserClient(c, "id") }},
		{upperpkg.NewDepotKind(func(string) upperpkg.DepotGrain { return upperpkg.UnimplementedDepotGrain{} }),
			func(c cluster.Caller) any { return upperpkg.NewDepotClient(c, "id") }},
		{multiservice.NewFirstKind(func(string) multiservice.FirstGrain { return multiservice.UnimplementedFirstGrain{} }),
			func(c cluster.Caller) any { return multiservice.NewFirstClient(c, "id") }},
		{multiservice.NewSecondKind(func(string) multiservice.SecondGrain { return multiservice.UnimplementedSecondGrain{} }),
			func(c cluster.Caller) any { return multiservice.NewSecondClient(c, "id") }},
		{multiservice.NewThirdKind(func(string) multiservice.ThirdGrain { return multiservice.UnimplementedThirdGrain{} }),
			func(c cluster.Caller) any { return multiservice.NewThirdClient(c, "id") }},
		{oneway.NewPlayerKind(func(string) oneway.PlayerGrain { return oneway.UnimplementedPlayerGrain{} }),
			func(c cluster.Caller) any { return oneway.NewPlayerClient(c, "id") }},
	}
}

// TestEveryGoldenMethodIsCallable calls every client method of every golden
// service through the test caller, by reflection, and checks that the call
// reaches the grain's embedded Unimplemented method under the right full
// method name.
func TestEveryGoldenMethodIsCallable(t *testing.T) {
	ctxType := reflect.TypeOf((*context.Context)(nil)).Elem()
	for _, svc := range goldenServices() {
		t.Run(svc.kind.Name, func(t *testing.T) {
			client := reflect.ValueOf(svc.newClient(newTestCaller(svc.kind)))
			if client.NumMethod() != len(svc.kind.Methods) {
				t.Fatalf("client has %d methods, kind has %d", client.NumMethod(), len(svc.kind.Methods))
			}
			for i := range client.NumMethod() {
				method := client.Method(i)
				if method.Type().NumIn() != 3 || method.Type().In(0) != ctxType {
					t.Fatalf("%s has signature %v, want (context.Context, *Request, ...cluster.CallOption)", client.Type().Method(i).Name, method.Type())
				}
				req := reflect.New(method.Type().In(1).Elem())
				out := method.Call([]reflect.Value{reflect.ValueOf(context.Background()), req})
				// A one-way method returns only an error; the test caller
				// is a plain Caller, so cluster.Send runs it as a call and
				// the grain's error comes back.
				err, _ := out[len(out)-1].Interface().(error)
				if status.Code(err) != codes.Unimplemented {
					t.Errorf("%s: got %v, want code Unimplemented", client.Type().Method(i).Name, err)
				}
				if !strings.Contains(status.Convert(err).Message(), "/"+svc.kind.Name+"/") {
					t.Errorf("%s: message %q does not name the method", client.Type().Method(i).Name, status.Convert(err).Message())
				}
			}
		})
	}
}

// clashGrain implements the clash golden's Counter, whose RPCs OnActivate
// and OnReminder are generated as OnActivate_ and OnReminder_ so that the
// grain can still implement cluster.Activator and cluster.ReminderReceiver.
type clashGrain struct {
	clash.UnimplementedCounterGrain
	activated bool
}

var (
	_ clash.CounterGrain_      = (*clashGrain)(nil)
	_ cluster.Activator        = (*clashGrain)(nil)
	_ cluster.ReminderReceiver = (*clashGrain)(nil)
)

func (g *clashGrain) OnReminder(cluster.GrainContext, string) error { return nil }

func (g *clashGrain) OnActivate(cluster.GrainContext) error {
	g.activated = true
	return nil
}

func (g *clashGrain) OnActivate_(cluster.GrainContext, *clash.Empty) (*clash.Empty, error) {
	return &clash.Empty{}, nil
}

func (g *clashGrain) Uses(_ cluster.GrainContext, thing *req.Thing) (*clashstatus.Health, error) {
	return &clashstatus.Health{Ok: thing.GetName() == "ok"}, nil
}

func TestClashingNamesStillWork(t *testing.T) {
	caller := newTestCaller(clash.NewCounterKind(func(string) clash.CounterGrain_ { return &clashGrain{} }))
	client := clash.NewCounterClient(caller, "id")
	ctx := context.Background()
	if _, err := client.OnActivate_(ctx, &clash.Empty{}); err != nil {
		t.Errorf("OnActivate_: %v", err)
	}
	if _, err := client.OnReminder_(ctx, &clash.Empty{}); status.Code(err) != codes.Unimplemented {
		t.Errorf("OnReminder_ of a grain that does not implement it: %v, want Unimplemented", err)
	}
	health, err := client.Uses(ctx, &req.Thing{Name: "ok"})
	if err != nil || !health.GetOk() {
		t.Errorf("Uses = %v, %v; want ok", health, err)
	}
	// The renamed identifiers keep the proto names on the wire.
	names := map[string]string{
		clash.CounterOnActivateMethod: "/protograin.testdata.clash.v1.Counter/OnActivate",
		clash.CounterGetValueMethod:   "/protograin.testdata.clash.v1.Counter/get_value",
		clash.CounterGetValueMethod_:  "/protograin.testdata.clash.v1.Counter/GetValue",
		clash.NewCounterKind_:         "protograin.testdata.clash.v1.NewCounter",
		clash.TypeKind_:               "protograin.testdata.clash.v1.type",
		clash.CounterStringMethod_:    "/protograin.testdata.clash.v1.Counter/String",
	}
	for got, want := range names {
		if got != want {
			t.Errorf("constant %q, want %q", got, want)
		}
	}
}

// TestVetMethodNamesRenamed checks the clash golden's RPCs MarshalJSON and
// ReadByte, which go vet's stdmethods check would reject with the grain's
// signatures (TestGoldensVet runs go vet on the golden).
func TestVetMethodNamesRenamed(t *testing.T) {
	client := reflect.TypeOf(clash.NewCounterClient(newTestCaller(), "id"))
	for _, name := range []string{"MarshalJSON", "ReadByte"} {
		if _, ok := client.MethodByName(name); ok {
			t.Errorf("the client has a method %s", name)
		}
		if _, ok := client.MethodByName(name + "_"); !ok {
			t.Errorf("the client has no method %s_", name)
		}
	}
}

// twoKinds serves the multiservice golden's First and Second with one type.
// It leaves Second's Undo to a nil *UnimplementedSecondGrain.
type twoKinds struct {
	*multiservice.UnimplementedSecondGrain // nil
	multiservice.UnimplementedFirstGrain
}

// Do is an RPC of both services, which both embedded types have.
func (*twoKinds) Do(cluster.GrainContext, *multiservice.Msg) (*multiservice.Msg, error) {
	return &multiservice.Msg{}, nil
}

// TestNilEmbedNextToAnotherUnimplemented embeds two Unimplemented types of
// one package, one by nil pointer: each has a nil check of its own name,
// so the one of the nil pointer is still in the grain's method set.
func TestNilEmbedNextToAnotherUnimplemented(t *testing.T) {
	kind := multiservice.NewSecondKind(func(string) multiservice.SecondGrain { return &twoKinds{} })
	if msg := panicOf(func() { kind.New("alice") }); !strings.Contains(msg, "nil *UnimplementedSecondGrain") {
		t.Errorf("New panicked with %q, want a panic naming the nil *UnimplementedSecondGrain", msg)
	}
	first := multiservice.NewFirstKind(func(string) multiservice.FirstGrain { return &twoKinds{} })
	if msg := panicOf(func() { first.New("alice") }); msg != "" {
		t.Errorf("NewFirstKind's New panicked: %s", msg)
	}
}

func TestGoldensWithForeignTypes(t *testing.T) {
	ctx := context.Background()
	t.Run("imports", func(t *testing.T) {
		caller := newTestCaller(imports.NewStoreKind(func(string) imports.StoreGrain { return storeGrain{} }))
		resp, err := imports.NewStoreClient(caller, "id").Put(ctx, &typespb.PutRequest{Key: "k", Value: []byte("abc")})
		if err != nil || resp.GetVersion() != 3 {
			t.Errorf("Put = %v, %v; want version 3", resp, err)
		}
	})
	t.Run("well-known types", func(t *testing.T) {
		caller := newTestCaller(wkt.NewClockKind(func(string) wkt.ClockGrain { return clockGrain{} }))
		now, err := wkt.NewClockClient(caller, "id").Now(ctx, &emptypb.Empty{})
		if err != nil || now.GetSeconds() != 42 {
			t.Errorf("Now = %v, %v; want 42 s", now, err)
		}
	})
	t.Run("nested", func(t *testing.T) {
		caller := newTestCaller(nested.NewNestKind(func(string) nested.NestGrain { return nestGrain{} }))
		deeper, err := nested.NewNestClient(caller, "id").Dig(ctx, &nested.Outer_Inner{Path: "a/b"})
		if err != nil || deeper.GetFound() != "a/b" {
			t.Errorf("Dig = %v, %v; want a/b", deeper, err)
		}
	})
}

type storeGrain struct {
	imports.UnimplementedStoreGrain
}

func (storeGrain) Put(_ cluster.GrainContext, req *typespb.PutRequest) (*typespb.PutResponse, error) {
	return &typespb.PutResponse{Version: int64(len(req.GetValue()))}, nil
}

type clockGrain struct{ wkt.UnimplementedClockGrain }

func (clockGrain) Now(cluster.GrainContext, *emptypb.Empty) (*timestamppb.Timestamp, error) {
	return &timestamppb.Timestamp{Seconds: 42}, nil
}

type nestGrain struct{ nested.UnimplementedNestGrain }

func (nestGrain) Dig(_ cluster.GrainContext, req *nested.Outer_Inner) (*nested.Outer_Inner_Deeper, error) {
	return &nested.Outer_Inner_Deeper{Found: req.GetPath()}, nil
}
