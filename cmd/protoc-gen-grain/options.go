package main

import (
	"errors"
	"fmt"
	"strings"

	protograinv1 "github.com/protograin/protograin/proto/protograin/v1"
	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

// This file reads the protograin options (proto/protograin/v1/options.proto)
// of services and methods and checks them.

// grainConfig is what the options of one service ask of its generated code.
// The zero value is a service without options.
type grainConfig struct {
	// state is the service's typed state message; nil when it has none.
	state *protogen.Message
	// manual is set for FLUSH_MODE_MANUAL.
	manual bool
	// workers is the stateless_workers option: zero for an ordinary kind.
	workers uint32
	// readOnly holds the methods marked read_only.
	readOnly map[*protogen.Method]bool
	// oneWay holds the methods marked one_way, checked to return
	// google.protobuf.Empty.
	oneWay map[*protogen.Method]bool
}

// Option names as users write them, for error messages.
const (
	stateOption   = "option (protograin.v1.grain).state"
	flushOption   = "option (protograin.v1.grain).flush"
	workersOption = "option (protograin.v1.grain).stateless_workers"
	oneWayOption  = "option (protograin.v1.method).one_way"
)

// emptyMessage is the response type a one-way method must have: the
// sender gets no response, so the grain has none to give.
const emptyMessage protoreflect.FullName = "google.protobuf.Empty"

// optionTypes resolves the protograin extensions when options are decoded.
// It is built per call instead of relying on the global registry, so the
// plugin reads its options the same way whoever decoded the request.
func optionTypes() *protoregistry.Types {
	types := new(protoregistry.Types)
	for _, x := range []protoreflect.ExtensionType{protograinv1.E_Grain, protograinv1.E_Method} {
		if err := types.RegisterExtension(x); err != nil {
			panic(err) // two fixed, distinct extensions: cannot fail
		}
	}
	return types
}

// decodeOptions decodes the options message opts into into, with the
// protograin extensions resolved. opts may hold them parsed or as unknown
// fields, depending on whether the request was decoded with the extensions
// registered; their bytes are the same either way.
func decodeOptions(opts, into proto.Message) error {
	b, err := proto.Marshal(opts)
	if err != nil {
		return err
	}
	return proto.UnmarshalOptions{Resolver: optionTypes()}.Unmarshal(b, into)
}

// grainOptions returns the (protograin.v1.grain) option of svc, or nil.
// It reads the option only where svc's file sees protograin's extension
// (see seesOption).
func grainOptions(svc *protogen.Service) (*protograinv1.GrainOptions, error) {
	if !seesOption(svc.Desc.ParentFile(), protograinv1.E_Grain) {
		return nil, nil
	}
	opts := new(descriptorpb.ServiceOptions)
	if err := decodeOptions(svc.Desc.Options(), opts); err != nil {
		return nil, inOption(fmt.Errorf("reading option (protograin.v1.grain): %w", err), protograinv1.E_Grain, "")
	}
	grain, _ := proto.GetExtension(opts, protograinv1.E_Grain).(*protograinv1.GrainOptions)
	return grain, nil
}

// methodOptions returns the (protograin.v1.method) option of m, or nil.
// It reads the option only where m's file sees protograin's extension (see
// seesOption).
func methodOptions(m *protogen.Method) (*protograinv1.MethodOptions, error) {
	if !seesOption(m.Desc.ParentFile(), protograinv1.E_Method) {
		return nil, nil
	}
	opts := new(descriptorpb.MethodOptions)
	if err := decodeOptions(m.Desc.Options(), opts); err != nil {
		return nil, inOption(fmt.Errorf("reading option (protograin.v1.method): %w", err), protograinv1.E_Method, "")
	}
	method, _ := proto.GetExtension(opts, protograinv1.E_Method).(*protograinv1.MethodOptions)
	return method, nil
}

// seesOption reports whether the file fd or a file it imports, directly or
// not, declares the extension x: the same full name, extending the same
// options message with the same number. Options are decoded by number, and
// protograin's numbers are in the range that protobuf leaves to in-house
// options, so another option set may use them: its options must not be
// read as protograin's. A file that sets protograin's options imports
// protograin/v1/options.proto (or a copy of it), and protoc and buf refuse
// two extensions of one number in a request, so an option of x's number in
// a file that sees x is x.
func seesOption(fd protoreflect.FileDescriptor, x protoreflect.ExtensionType) bool {
	want := x.TypeDescriptor()
	seen := map[string]bool{}
	var sees func(fd protoreflect.FileDescriptor) bool
	sees = func(fd protoreflect.FileDescriptor) bool {
		if seen[fd.Path()] {
			return false
		}
		seen[fd.Path()] = true
		if fd.Package() == want.FullName().Parent() {
			got := fd.Extensions().ByName(want.Name())
			if got != nil && got.Number() == want.Number() && got.ContainingMessage().FullName() == want.ContainingMessage().FullName() {
				return true
			}
		}
		imports := fd.Imports()
		for i := range imports.Len() {
			if sees(imports.Get(i).FileDescriptor) {
				return true
			}
		}
		return false
	}
	return sees(fd)
}

// hasStateOption reports whether svc names a state message. Naming uses it
// for every service of a package, including services of files that are not
// generated in this run and so are not checked; an option that cannot be
// read counts as none there.
func hasStateOption(svc *protogen.Service) bool {
	opts, err := grainOptions(svc)
	return err == nil && opts.GetState() != ""
}

// fileConfigs reads and checks the options of every service of file.
// Errors name the position, service and method like checkFile's.
func fileConfigs(gen *protogen.Plugin, file *protogen.File) (map[*protogen.Service]*grainConfig, error) {
	configs := map[*protogen.Service]*grainConfig{}
	for _, svc := range file.Services {
		cfg, err := serviceConfig(gen, file, svc)
		if err != nil {
			return nil, descError(svc.Desc, err)
		}
		for _, m := range svc.Methods {
			opts, err := methodOptions(m)
			if err != nil {
				return nil, descError(m.Desc, err)
			}
			if opts.GetReadOnly() {
				cfg.readOnly[m] = true
			}
			if opts.GetOneWay() {
				if out := m.Output.Desc.FullName(); out != emptyMessage {
					err := fmt.Errorf("%s needs the response type %s, not %s", oneWayOption, emptyMessage, out)
					return nil, descError(m.Desc, inOption(err, protograinv1.E_Method, "one_way"))
				}
				cfg.oneWay[m] = true
			}
		}
		configs[svc] = cfg
	}
	return configs, nil
}

// serviceConfig reads and checks the grain option of svc, a service of file.
func serviceConfig(gen *protogen.Plugin, file *protogen.File, svc *protogen.Service) (*grainConfig, error) {
	cfg := &grainConfig{readOnly: map[*protogen.Method]bool{}, oneWay: map[*protogen.Method]bool{}}
	opts, err := grainOptions(svc)
	if err != nil {
		return nil, err
	}
	switch flush := opts.GetFlush(); flush {
	case protograinv1.FlushMode_FLUSH_MODE_UNSPECIFIED, protograinv1.FlushMode_FLUSH_MODE_AFTER_CALL:
	case protograinv1.FlushMode_FLUSH_MODE_MANUAL:
		cfg.manual = true
	default:
		return nil, inOption(fmt.Errorf("%s has unknown value %d; this protoc-gen-grain knows FLUSH_MODE_UNSPECIFIED, "+
			"FLUSH_MODE_AFTER_CALL and FLUSH_MODE_MANUAL (is your copy of protograin/v1/options.proto newer than the plugin?)",
			flushOption, flush), protograinv1.E_Grain, "flush")
	}
	if name := opts.GetState(); name != "" {
		if cfg.state, err = findStateMessage(gen, file, name); err != nil {
			return nil, inOption(err, protograinv1.E_Grain, "state")
		}
	}
	if cfg.workers = opts.GetStatelessWorkers(); cfg.workers > 0 {
		if err := checkWorkers(cfg); err != nil {
			return nil, inOption(err, protograinv1.E_Grain, "stateless_workers")
		}
	}
	return cfg, nil
}

// maxWorkers is the most stateless workers a kind may have
// (cluster.Kind.StatelessWorkers checks the same bound when a node starts).
const maxWorkers = 1024

// checkWorkers checks that a service with the stateless_workers option
// asks for nothing a stateless worker lacks.
func checkWorkers(cfg *grainConfig) error {
	switch {
	case cfg.workers > maxWorkers:
		return fmt.Errorf("%s is %d; a kind has at most %d", workersOption, cfg.workers, maxWorkers)
	case cfg.state != nil:
		return fmt.Errorf("%s makes grains without state, which cannot also have %s", workersOption, stateOption)
	case cfg.manual:
		return fmt.Errorf("%s makes grains without state, which have nothing to flush (FLUSH_MODE_MANUAL)", workersOption)
	}
	return nil
}

// findStateMessage resolves the state option's name like a type name in a
// .proto file: a leading dot makes it fully qualified; otherwise it is looked
// up relative to the file's package, then to each parent package, then as a
// full name. Only the file and the files it imports, directly or not, are
// searched, because only they are sure to be in the request.
func findStateMessage(gen *protogen.Plugin, file *protogen.File, name string) (*protogen.Message, error) {
	if !protoreflect.FullName(strings.TrimPrefix(name, ".")).IsValid() {
		return nil, fmt.Errorf("%s %q is not a valid message name", stateOption, name)
	}
	visible, err := visibleFiles(file.Desc)
	if err != nil {
		return nil, err
	}
	for _, candidate := range scopedNames(file.Desc.Package(), name) {
		d, err := visible.FindDescriptorByName(candidate)
		if errors.Is(err, protoregistry.NotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		md, ok := d.(protoreflect.MessageDescriptor)
		switch {
		case !ok:
			return nil, fmt.Errorf("%s names %q, which is %s %s, not a message", stateOption, name, descriptorKind(d), d.FullName())
		case md.IsMapEntry():
			return nil, fmt.Errorf("%s names %q, which is the entry type of a map field, not a message", stateOption, name)
		}
		if m := findMessage(gen.FilesByPath[md.ParentFile().Path()], md.FullName()); m != nil {
			return m, nil
		}
		return nil, fmt.Errorf("%s names %q: message %s is not in the request", stateOption, name, md.FullName())
	}
	return nil, fmt.Errorf("%s names %q, which is not a message in this file or the files it imports", stateOption, name)
}

// scopedNames lists the full names a type name written in package pkg may
// mean, innermost scope first.
func scopedNames(pkg protoreflect.FullName, name string) []protoreflect.FullName {
	if full, ok := strings.CutPrefix(name, "."); ok {
		return []protoreflect.FullName{protoreflect.FullName(full)}
	}
	var names []protoreflect.FullName
	for scope := pkg; scope != ""; scope = scope.Parent() {
		names = append(names, scope.Append(protoreflect.Name(name)))
	}
	return append(names, protoreflect.FullName(name))
}

// visibleFiles registers fd and everything it imports, directly or not.
func visibleFiles(fd protoreflect.FileDescriptor) (*protoregistry.Files, error) {
	files := new(protoregistry.Files)
	seen := map[string]bool{}
	var add func(fd protoreflect.FileDescriptor) error
	add = func(fd protoreflect.FileDescriptor) error {
		if seen[fd.Path()] {
			return nil
		}
		seen[fd.Path()] = true
		imports := fd.Imports()
		for i := range imports.Len() {
			if err := add(imports.Get(i).FileDescriptor); err != nil {
				return err
			}
		}
		return files.RegisterFile(fd)
	}
	return files, add(fd)
}

// findMessage finds the message full in file, nested messages included.
func findMessage(file *protogen.File, full protoreflect.FullName) *protogen.Message {
	if file == nil {
		return nil
	}
	var find func(msgs []*protogen.Message) *protogen.Message
	find = func(msgs []*protogen.Message) *protogen.Message {
		for _, m := range msgs {
			if m.Desc.FullName() == full {
				return m
			}
			if found := find(m.Messages); found != nil {
				return found
			}
		}
		return nil
	}
	return find(file.Messages)
}

// descriptorKind names the kind of a proto element that is not a message.
func descriptorKind(d protoreflect.Descriptor) string {
	switch d := d.(type) {
	case protoreflect.EnumDescriptor:
		return "enum"
	case protoreflect.EnumValueDescriptor:
		return "enum value"
	case protoreflect.FieldDescriptor:
		if d.IsExtension() {
			return "extension"
		}
		return "field"
	case protoreflect.OneofDescriptor:
		return "oneof"
	case protoreflect.ServiceDescriptor:
		return "service"
	case protoreflect.MethodDescriptor:
		return "method"
	default:
		return "element"
	}
}
