package main

import (
	"reflect"
	"slices"
	"testing"

	"google.golang.org/protobuf/compiler/protogen"
)

func TestNameSetClaim(t *testing.T) {
	s := nameSet{}
	s.reserve("CounterKind")
	tests := []struct{ want, got string }{
		{"CounterKind_", s.claim("CounterKind")},  // reserved by protoc-gen-go
		{"CounterKind__", s.claim("CounterKind")}, // claimed just above
		{"CounterGrain", s.claim("CounterGrain")}, // free
		{"type_", s.claim("type")},                // Go keyword
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("claim = %q, want %q", tt.got, tt.want)
		}
	}
}

func TestImportNameAvoidsLocals(t *testing.T) {
	for _, local := range localIdents() {
		if got := importName(local); got != local+"_" {
			t.Errorf("importName(%q) = %q, want %q", local, got, local+"_")
		}
	}
	if got := importName("typespb"); got != "typespb" {
		t.Errorf("importName(typespb) = %q, want it unchanged", got)
	}
	// Predeclared names the generated code uses: a package named any made
	// "New: func(identity string) any" refer to the package.
	for _, predeclared := range []string{"any", "string", "error"} {
		if got := importName(predeclared); got != predeclared+"_" {
			t.Errorf("importName(%q) = %q, want %q", predeclared, got, predeclared+"_")
		}
	}
}

// TestProtocGenGoNamesHaveDefaultConstants: protoc-gen-go declares a
// Default_<Message>_<Field> constant for a field with an explicit default
// (proto2, editions), which a grain name must yield to like any other.
func TestProtocGenGoNamesHaveDefaultConstants(t *testing.T) {
	gen := plugin(t, "testdata/proto2/proto2.proto")
	names := protocGenGoNames(gen.Files[len(gen.Files)-1])
	if !slices.Contains(names, "Default_LookupRequest_Limit") {
		t.Errorf("protoc-gen-go's names %v lack Default_LookupRequest_Limit", names)
	}
}

// plugin compiles protos and returns the protogen view of them, as the
// generator sees it.
func plugin(t *testing.T, protos ...string) *protogen.Plugin {
	t.Helper()
	gen, err := pluginOptions().New(request(compile(t, protos...), "paths=source_relative"))
	if err != nil {
		t.Fatal(err)
	}
	return gen
}

func servicesByName(gen *protogen.Plugin) map[string]*protogen.Service {
	byName := map[string]*protogen.Service{}
	for _, f := range gen.Files {
		for _, s := range f.Services {
			byName[string(s.Desc.FullName())] = s
		}
	}
	return byName
}

func TestPackageNamesResolveCollisions(t *testing.T) {
	gen := plugin(t, "testdata/clash/clash.proto")
	names := packageNames(gen.Files, hasStateOption)
	svc := servicesByName(gen)

	counter := names[svc["protograin.testdata.clash.v1.Counter"]]
	want := &serviceNames{
		Kind:          "CounterKind",
		Grain:         "CounterGrain_", // message CounterGrain
		Unimplemented: "UnimplementedCounterGrain",
		Client:        "CounterClient",
		NewClient:     "NewCounterClient",
		NewKind:       "NewCounterKind",
		Methods: []methodNames{
			{Go: "Close", Const: "CounterCloseMethod"},
			{Go: "String", Const: "CounterStringMethod_"}, // message CounterStringMethod
			{Go: "Kind", Const: "CounterKindMethod"},
			{Go: "New", Const: "CounterNewMethod"},
			{Go: "Invoke", Const: "CounterInvokeMethod"},
			{Go: "OnActivate_", Const: "CounterOnActivateMethod"}, // cluster.Activator's hook
			{Go: "OnDeactivate_", Const: "CounterOnDeactivateMethod"},
			{Go: "OnReminder_", Const: "CounterOnReminderMethod"}, // cluster.ReminderReceiver's
			{Go: "GetValue", Const: "CounterGetValueMethod"},      // get_value
			{Go: "GetValue_", Const: "CounterGetValueMethod_"},    // GetValue, same Go name
			{Go: "Uses", Const: "CounterUsesMethod"},
		},
	}
	if !reflect.DeepEqual(counter, want) {
		t.Errorf("Counter names\n got: %+v\nwant: %+v", counter, want)
	}

	newCounter := names[svc["protograin.testdata.clash.v1.NewCounter"]]
	if newCounter.Kind != "NewCounterKind_" || newCounter.Client != "NewCounterClient_" || newCounter.NewClient != "NewNewCounterClient" {
		t.Errorf("NewCounter names %+v, want NewCounterKind_ and NewCounterClient_ (taken by Counter's constructors)", newCounter)
	}
	typ := names[svc["protograin.testdata.clash.v1.type"]]
	if typ.Kind != "TypeKind_" || typ.Grain != "TypeGrain" || typ.Methods[0].Go != "Func" || typ.Methods[1].Go != "Range" {
		t.Errorf("type names %+v, want TypeKind_ (enum TypeKind) and exported method names", typ)
	}
}

// TestPackageNamesAcrossFiles checks that a message in one file of a Go
// package pushes a generated name of another file aside, whichever order the
// files come in.
func TestPackageNamesAcrossFiles(t *testing.T) {
	for _, order := range [][]string{
		{"testdata/samepackage/a.proto", "testdata/samepackage/b.proto"},
		{"testdata/samepackage/b.proto", "testdata/samepackage/a.proto"},
	} {
		gen := plugin(t, order...)
		beta := packageNames(gen.Files, hasStateOption)[servicesByName(gen)["protograin.testdata.samepackage.v1.Beta"]]
		if beta.Kind != "BetaKind_" {
			t.Errorf("files %v: Beta's kind constant is %q, want BetaKind_ (message BetaKind in a.proto)", order, beta.Kind)
		}
	}
}

func TestProductWordsNeedNoRenaming(t *testing.T) {
	gen := plugin(t, "testdata/productwords/words.proto")
	names := packageNames(gen.Files, hasStateOption)
	for full, want := range map[string]string{
		"protograin.testdata.productwords.v1.Grain":  "GrainGrain",
		"protograin.testdata.productwords.v1.Client": "ClientGrain",
		"protograin.testdata.productwords.v1.Kind":   "KindGrain",
	} {
		if got := names[servicesByName(gen)[full]].Grain; got != want {
			t.Errorf("%s: grain interface %q, want %q", full, got, want)
		}
	}
}
