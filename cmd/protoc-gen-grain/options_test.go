package main

import (
	"slices"
	"strings"
	"testing"

	protograinv1 "github.com/protograin/protograin/proto/protograin/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/pluginpb"
)

func TestBadOptionsAreRejected(t *testing.T) {
	const svc = "service protograin.testdata.errors.v1.Svc"
	tests := []struct {
		files []string
		want  string
	}{
		{
			files: []string{"testdata/errors/state_missing.proto"},
			want: "protoc-gen-grain: testdata/errors/state_missing.proto:12:3: " + svc + `: option (protograin.v1.grain).state ` +
				`names "Missing", which is not a message in this file or the files it imports`,
		},
		{
			files: []string{"testdata/errors/state_enum.proto"},
			want: "protoc-gen-grain: testdata/errors/state_enum.proto:11:3: " + svc + `: option (protograin.v1.grain).state ` +
				`names "Color", which is enum protograin.testdata.errors.v1.Color, not a message`,
		},
		{
			files: []string{"testdata/errors/state_field.proto"},
			want: "protoc-gen-grain: testdata/errors/state_field.proto:11:3: " + svc + `: option (protograin.v1.grain).state ` +
				`names "Msg.text", which is field protograin.testdata.errors.v1.Msg.text, not a message`,
		},
		{
			files: []string{"testdata/errors/state_map_entry.proto"},
			want: "protoc-gen-grain: testdata/errors/state_map_entry.proto:12:3: " + svc + `: option (protograin.v1.grain).state ` +
				`names "Msg.TagsEntry", which is the entry type of a map field, not a message`,
		},
		{
			files: []string{"testdata/errors/state_invalid_name.proto"},
			want: "protoc-gen-grain: testdata/errors/state_invalid_name.proto:11:3: " + svc + `: option (protograin.v1.grain).state ` +
				`"Msg..State" is not a valid message name`,
		},
		{
			// The state message is in the request, but the service's file
			// does not import it.
			files: []string{"testdata/errors/state_not_imported.proto", "testdata/errors/state_elsewhere.proto"},
			want: "protoc-gen-grain: testdata/errors/state_not_imported.proto:14:3: " + svc + `: option (protograin.v1.grain).state ` +
				`names "ElsewhereState", which is not a message in this file or the files it imports`,
		},
		{
			files: []string{"testdata/errors/workers_state.proto"},
			want: "protoc-gen-grain: testdata/errors/workers_state.proto:11:3: " + svc + ": option (protograin.v1.grain).stateless_workers " +
				"makes grains without state, which cannot also have option (protograin.v1.grain).state",
		},
		{
			files: []string{"testdata/errors/workers_manual.proto"},
			want: "protoc-gen-grain: testdata/errors/workers_manual.proto:11:3: " + svc + ": option (protograin.v1.grain).stateless_workers " +
				"makes grains without state, which have nothing to flush (FLUSH_MODE_MANUAL)",
		},
		{
			files: []string{"testdata/errors/workers_too_many.proto"},
			want: "protoc-gen-grain: testdata/errors/workers_too_many.proto:11:3: " + svc + ": option (protograin.v1.grain).stateless_workers " +
				"is 1025; a kind has at most 1024",
		},
		{
			files: []string{"testdata/errors/flush_unknown.proto"},
			want: "protoc-gen-grain: testdata/errors/flush_unknown.proto:13:3: " + svc + ": option (protograin.v1.grain).flush " +
				"has unknown value 7; this protoc-gen-grain knows FLUSH_MODE_UNSPECIFIED, FLUSH_MODE_AFTER_CALL and " +
				"FLUSH_MODE_MANUAL (is your copy of protograin/v1/options.proto newer than the plugin?)",
		},
		{
			// read_only does not make a streaming RPC acceptable.
			files: []string{"testdata/errors/read_only_streaming.proto"},
			want: "protoc-gen-grain: testdata/errors/read_only_streaming.proto:12:3: " + svc + " method Watch: " +
				"server streaming is not supported for grains yet",
		},
		{
			files: []string{"testdata/errors/one_way_response.proto"},
			want: "protoc-gen-grain: testdata/errors/one_way_response.proto:13:5: " + svc + " method Notify: " +
				"option (protograin.v1.method).one_way needs the response type google.protobuf.Empty, " +
				"not protograin.testdata.errors.v1.Msg",
		},
		{
			// A message called Empty is not google.protobuf.Empty.
			files: []string{"testdata/errors/one_way_local_empty.proto"},
			want: "protoc-gen-grain: testdata/errors/one_way_local_empty.proto:13:5: " + svc + " method Notify: " +
				"option (protograin.v1.method).one_way needs the response type google.protobuf.Empty, " +
				"not protograin.testdata.errors.v1.Empty",
		},
		{
			// one_way does not make a streaming RPC acceptable either.
			files: []string{"testdata/errors/one_way_streaming.proto"},
			want: "protoc-gen-grain: testdata/errors/one_way_streaming.proto:13:3: " + svc + " method Watch: " +
				"client streaming is not supported for grains yet",
		},
	}
	for _, tt := range tests {
		t.Run(tt.files[0], func(t *testing.T) {
			resp, err := runPlugin(request(compile(t, tt.files...), genParameter))
			if err != nil {
				t.Fatal(err)
			}
			if got := resp.GetError(); got != tt.want {
				t.Errorf("error\n got: %s\nwant: %s", got, tt.want)
			}
			if len(resp.GetFile()) != 0 {
				t.Errorf("failed run returned %d files, want none", len(resp.GetFile()))
			}
		})
	}
}

// TestUnreadableOptionsAreRejected feeds options whose bytes do not decode
// as protograin's, as from a copy of options.proto that changed a field's
// type, or a broken request. It sets them in a file that imports
// options.proto: in other files, field 53170 is not protograin's (see
// TestForeignOptionsAreNotRead).
func TestUnreadableOptionsAreRejected(t *testing.T) {
	// Field 1 (state, a string) with invalid UTF-8.
	badGrain := protowire.AppendTag(nil, 1, protowire.BytesType)
	badGrain = protowire.AppendBytes(badGrain, []byte{0xff, 0xfe})
	unknown := protowire.AppendTag(nil, protograinv1.E_Grain.TypeDescriptor().Number(), protowire.BytesType)
	unknown = protowire.AppendBytes(unknown, badGrain)

	tests := []struct {
		name   string
		set    func(*descriptorpb.ServiceDescriptorProto)
		prefix string
	}{
		{
			name: "service",
			set: func(svc *descriptorpb.ServiceDescriptorProto) {
				svc.Options = &descriptorpb.ServiceOptions{}
				svc.Options.ProtoReflect().SetUnknown(unknown)
			},
			// The service sets no option in its source, so the error
			// points at the service.
			prefix: "protoc-gen-grain: testdata/readonly/readonly.proto:12:1: service protograin.testdata.readonly.v1.Catalog: " +
				"reading option (protograin.v1.grain): ",
		},
		{
			name: "method",
			set: func(svc *descriptorpb.ServiceDescriptorProto) {
				unknown := protowire.AppendTag(nil, protograinv1.E_Method.TypeDescriptor().Number(), protowire.BytesType)
				unknown = protowire.AppendBytes(unknown, []byte{0x08}) // read_only's tag, then nothing
				svc.Method[1].Options = &descriptorpb.MethodOptions{}
				svc.Method[1].Options.ProtoReflect().SetUnknown(unknown)
			},
			// The method's source sets the option, which the test then
			// replaced: the error points at that statement.
			prefix: "protoc-gen-grain: testdata/readonly/readonly.proto:18:5: service protograin.testdata.readonly.v1.Catalog method List: " +
				"reading option (protograin.v1.method): ",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := request(compile(t, "testdata/readonly/readonly.proto"), genParameter)
			file := req.ProtoFile[len(req.ProtoFile)-1]
			tt.set(file.Service[0])
			resp, err := runPlugin(req)
			if err != nil {
				t.Fatal(err)
			}
			// The rest of the message is protobuf's decoding error, whose
			// text protobuf keeps unstable on purpose.
			if got := resp.GetError(); !strings.HasPrefix(got, tt.prefix) || len(got) == len(tt.prefix) {
				t.Errorf("error\n got: %s\nwant: %s<decoding error>", got, tt.prefix)
			}
			if len(resp.GetFile()) != 0 {
				t.Errorf("failed run returned %d files, want none", len(resp.GetFile()))
			}
		})
	}
}

// foreignOptions declares in-house options with protograin's number,
// 53170, from the range that protobuf leaves to organisations, and sets
// them to bytes that would read as FLUSH_MODE_MANUAL and read_only = true.
// The file does not import protograin/v1/options.proto.
const foreignOptions = `syntax = "proto3";
package protograin.testdata.foreign.v1;
import "google/protobuf/descriptor.proto";
option go_package = "github.com/protograin/protograin/testdata/foreign";
message Sharding { int32 replicas = 2; }
extend google.protobuf.ServiceOptions { Sharding sharding = 53170; }
message Audit { bool logged = 1; }
extend google.protobuf.MethodOptions { Audit audit = 53170; }
message M {}
service Bank {
  option (sharding) = {replicas: 2};
  rpc Deposit(M) returns (M) { option (audit) = {logged: true}; }
}
`

// TestForeignOptionsAreNotRead checks that another option set's extension
// with protograin's number is not read as protograin's options, whether the
// request was decoded with protograin's extensions registered (the binary:
// they are registered by number, so the foreign bytes parse as protograin's)
// or not (in-process: they stay unknown fields).
func TestForeignOptionsAreNotRead(t *testing.T) {
	const path = "testdata/foreign/foreign.proto"
	files := compileSources(t, map[string]string{path: foreignOptions}, path)
	req := request(files, genParameter)
	b, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	parsed := &pluginpb.CodeGeneratorRequest{}
	if err := proto.Unmarshal(b, parsed); err != nil { // protograinv1 is linked in: registered
		t.Fatal(err)
	}
	if !proto.HasExtension(parsed.ProtoFile[len(parsed.ProtoFile)-1].Service[0].Options, protograinv1.E_Grain) {
		t.Fatal("the foreign option did not decode as protograin's; the test does not test what it says")
	}
	for name, req := range map[string]*pluginpb.CodeGeneratorRequest{"unknown fields": req, "parsed": parsed} {
		resp, err := runPlugin(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetError() != "" || len(resp.GetFile()) != 1 {
			t.Fatalf("%s: error %q, %d files; want one file", name, resp.GetError(), len(resp.GetFile()))
		}
		src := resp.GetFile()[0].GetContent()
		if strings.Contains(src, "ReadOnly") || strings.Contains(src, "FlushManual") {
			t.Errorf("%s: the kind has ReadOnly or FlushManual, from options that are not protograin's:\n%s", name, src)
		}
	}
}

// TestOptionsDecodedEitherWay checks that options are read the same whether
// the request was decoded with protograin's extensions registered (as the
// binary does: they are parsed) or not (they are unknown fields).
func TestOptionsDecodedEitherWay(t *testing.T) {
	parsed := &descriptorpb.ServiceOptions{}
	proto.SetExtension(parsed, protograinv1.E_Grain, &protograinv1.GrainOptions{
		State: "BatchState",
		Flush: protograinv1.FlushMode_FLUSH_MODE_MANUAL,
	})
	b, err := proto.Marshal(parsed)
	if err != nil {
		t.Fatal(err)
	}
	unknown := &descriptorpb.ServiceOptions{}
	if err := (proto.UnmarshalOptions{Resolver: noExtensions{}}).Unmarshal(b, unknown); err != nil {
		t.Fatal(err)
	}
	if proto.HasExtension(unknown, protograinv1.E_Grain) || len(unknown.ProtoReflect().GetUnknown()) == 0 {
		t.Fatal("decoding without the extension parsed it anyway; the test does not test what it says")
	}
	for name, opts := range map[string]*descriptorpb.ServiceOptions{"parsed": parsed, "unknown fields": unknown} {
		into := &descriptorpb.ServiceOptions{}
		if err := decodeOptions(opts, into); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		grain, _ := proto.GetExtension(into, protograinv1.E_Grain).(*protograinv1.GrainOptions)
		if grain.GetState() != "BatchState" || grain.GetFlush() != protograinv1.FlushMode_FLUSH_MODE_MANUAL {
			t.Errorf("%s: read %v, want state BatchState and manual flush", name, grain)
		}
	}
}

// noExtensions resolves no extension, so decoding keeps them unknown.
type noExtensions struct{}

func (noExtensions) FindExtensionByName(protoreflect.FullName) (protoreflect.ExtensionType, error) {
	return nil, protoregistry.NotFound
}

func (noExtensions) FindExtensionByNumber(protoreflect.FullName, protoreflect.FieldNumber) (protoreflect.ExtensionType, error) {
	return nil, protoregistry.NotFound
}

func TestScopedNames(t *testing.T) {
	tests := []struct {
		pkg, name string
		want      []protoreflect.FullName
	}{
		{"a.b", "State", []protoreflect.FullName{"a.b.State", "a.State", "State"}},
		{"a.b", "c.State", []protoreflect.FullName{"a.b.c.State", "a.c.State", "c.State"}},
		{"a.b", ".a.State", []protoreflect.FullName{"a.State"}},
		{"", "State", []protoreflect.FullName{"State"}},
	}
	for _, tt := range tests {
		if got := scopedNames(protoreflect.FullName(tt.pkg), tt.name); !slices.Equal(got, tt.want) {
			t.Errorf("scopedNames(%q, %q) = %v, want %v", tt.pkg, tt.name, got, tt.want)
		}
	}
}

// TestStateNameResolution resolves names as the state option may write them
// from the package protograin.testdata.stateimport.v1, whose file imports
// protograin.testdata.stateimport.types.v1.
func TestStateNameResolution(t *testing.T) {
	gen := plugin(t, "testdata/stateimport/stateimport.proto")
	file := gen.FilesByPath["testdata/stateimport/stateimport.proto"]
	tests := []struct {
		name string
		want string // full name of the message found; "" for an error
	}{
		{"PostRequest", "protograin.testdata.stateimport.v1.PostRequest"},
		{".protograin.testdata.stateimport.v1.PostRequest", "protograin.testdata.stateimport.v1.PostRequest"},
		{"protograin.testdata.stateimport.types.v1.LedgerState", "protograin.testdata.stateimport.types.v1.LedgerState"},
		{"types.v1.LedgerState", "protograin.testdata.stateimport.types.v1.LedgerState"},             // from parent package protograin.testdata.stateimport
		{"stateimport.types.v1.LedgerState", "protograin.testdata.stateimport.types.v1.LedgerState"}, // from parent package protograin.testdata
		{"LedgerState", ""},           // another package, not a parent
		{".types.v1.LedgerState", ""}, // fully qualified: no scopes
		{"protograin.v1.GrainOptions", "protograin.v1.GrainOptions"},
		{"google.protobuf.ServiceOptions", "google.protobuf.ServiceOptions"}, // imported indirectly, through options.proto
	}
	for _, tt := range tests {
		m, err := findStateMessage(gen, file, tt.name)
		switch {
		case tt.want == "" && err == nil:
			t.Errorf("%q: found %s, want an error", tt.name, m.Desc.FullName())
		case tt.want != "" && err != nil:
			t.Errorf("%q: %v", tt.name, err)
		case tt.want != "" && string(m.Desc.FullName()) != tt.want:
			t.Errorf("%q: found %s, want %s", tt.name, m.Desc.FullName(), tt.want)
		}
	}
}

func TestStateAccessorNames(t *testing.T) {
	gen := plugin(t, "testdata/stateclash/stateclash.proto", "testdata/state/state.proto", "testdata/unary/unary.proto")
	names := packageNames(gen.Files, hasStateOption, false).services
	byName := servicesByName(gen)
	tests := map[string]string{
		"protograin.testdata.stateclash.v1.Vault": "VaultStateOf_", // VaultStateOf is a message
		"protograin.testdata.state.v1.Account":    "AccountStateOf",
		"protograin.testdata.unary.v1.Echo":       "", // no state option, no accessor
	}
	for svc, want := range tests {
		if got := names[byName[svc]].StateOf; got != want {
			t.Errorf("%s: StateOf %q, want %q", svc, got, want)
		}
	}
}
