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
		if got := importName(local, nil); got != local+"_" {
			t.Errorf("importName(%q) = %q, want %q", local, got, local+"_")
		}
	}
	if got := importName("typespb", nil); got != "typespb" {
		t.Errorf("importName(typespb) = %q, want it unchanged", got)
	}
	// Predeclared names the generated code uses: a package named any made
	// "New: func(identity string) any" refer to the package.
	for _, predeclared := range []string{"any", "string", "error"} {
		if got := importName(predeclared, nil); got != predeclared+"_" {
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
	gen, _, err := newPlugin(request(compile(t, protos...), "paths=source_relative"))
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
	names := packageNames(gen.Files, hasStateOption, false).services
	svc := servicesByName(gen)

	counter := names[svc["protograin.testdata.clash.v1.Counter"]]
	want := &serviceNames{
		Kind:          "CounterKind",
		Grain:         "CounterGrain_", // message CounterGrain
		Unimplemented: "UnimplementedCounterGrain",
		IsNil:         "isNilUnimplementedCounterGrain",
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
			{Go: "MarshalJSON_", Const: "CounterMarshalJSONMethod"}, // go vet's stdmethods
			{Go: "ReadByte_", Const: "CounterReadByteMethod"},
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
		beta := packageNames(gen.Files, hasStateOption, false).services[servicesByName(gen)["protograin.testdata.samepackage.v1.Beta"]]
		if beta.Kind != "BetaKind_" {
			t.Errorf("files %v: Beta's kind constant is %q, want BetaKind_ (message BetaKind in a.proto)", order, beta.Kind)
		}
	}
}

func TestProductWordsNeedNoRenaming(t *testing.T) {
	gen := plugin(t, "testdata/productwords/words.proto")
	names := packageNames(gen.Files, hasStateOption, false).services
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

// TestImportNameAvoidsPackageNames: a package named like a top-level name of
// the generated file's own package, as Dep for a package declared
// go_package ".../dep;Dep" next to a message Dep, is renamed.
func TestImportNameAvoidsPackageNames(t *testing.T) {
	declared := nameSet{}
	declared.reserve("Dep", "DepotKind")
	if got := importName("Dep", declared); got != "Dep_" {
		t.Errorf("importName(Dep) = %q, want Dep_", got)
	}
	if got := importName("dep", declared); got != "dep" {
		t.Errorf("importName(dep) = %q, want it unchanged", got)
	}
	gen := plugin(t, "testdata/upperpkg/upperpkg.proto")
	file := gen.FilesByPath["testdata/upperpkg/upperpkg.proto"]
	names := packageNames(gen.Files, hasStateOption, false)
	if got := importName("Dep", names.declared[file.GoImportPath]); got != "Dep_" {
		t.Errorf("importName(Dep) in package upperpkg = %q, want Dep_ (message Dep)", got)
	}
}

// TestPublicImportNamesAreReserved: protoc-gen-go declares in the package
// of a file forwarding names for what the file imports publicly from
// another Go package, such as type UserKind = typespb.UserKind.
func TestPublicImportNamesAreReserved(t *testing.T) {
	gen := plugin(t, "testdata/publicimport/publicimport.proto")
	user := packageNames(gen.Files, hasStateOption, false).services[servicesByName(gen)["protograin.testdata.publicimport.v1.User"]]
	if user.Kind != "UserKind_" {
		t.Errorf("User's kind constant is %q, want UserKind_ (the forward of enum UserKind)", user.Kind)
	}
	// The imported file's own descriptor variable is not forwarded.
	byPath := map[string]*protogen.File{}
	for _, f := range gen.Files {
		byPath[f.Desc.Path()] = f
	}
	got := publicImportNames(gen.FilesByPath["testdata/publicimport/publicimport.proto"], byPath)
	want := []string{"UserKind", "UserKind_name", "UserKind_value", "UserKind_USER_KIND_UNSPECIFIED", "UserKind_USER_KIND_ADMIN", "GetRequest", "GetResponse"}
	if !slices.Equal(got, want) {
		t.Errorf("publicImportNames = %v, want %v", got, want)
	}
}

// TestGRPCNamesAreReserved: with grpc=true, the grain names yield to those
// of protoc-gen-go-grpc, of every service of the package.
func TestGRPCNamesAreReserved(t *testing.T) {
	gen := plugin(t, "testdata/multiservice/multi.proto")
	byName := servicesByName(gen)
	for _, grpc := range []bool{false, true} {
		first := packageNames(gen.Files, hasStateOption, grpc).services[byName["protograin.testdata.multiservice.v1.First"]]
		wantClient, wantNew := "FirstClient", "NewFirstClient"
		if grpc {
			wantClient, wantNew = "FirstClient_", "NewFirstClient_"
		}
		if first.Client != wantClient || first.NewClient != wantNew || first.Grain != "FirstGrain" {
			t.Errorf("grpc=%t: First's names %+v, want client %s, constructor %s and grain FirstGrain", grpc, first, wantClient, wantNew)
		}
	}
	file := gen.FilesByPath["testdata/multiservice/multi.proto"]
	names := grpcNames(file)
	for _, want := range []string{"FirstClient", "NewFirstClient", "FirstServer", "UnimplementedFirstServer", "UnsafeFirstServer",
		"RegisterFirstServer", "First_ServiceDesc", "First_Do_FullMethodName", "Second_Undo_FullMethodName"} {
		if !slices.Contains(names, want) {
			t.Errorf("grpcNames lacks %s", want)
		}
	}
	if slices.Contains(names, "First_DoClient") {
		t.Error("grpcNames has First_DoClient, which protoc-gen-go-grpc declares only for a streaming RPC")
	}
}
