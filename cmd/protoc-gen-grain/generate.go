package main

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"strings"

	"github.com/dave/jennifer/jen"
	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/pluginpb"
)

// Import paths the generated code refers to.
const (
	clusterPackage = "github.com/protograin/protograin/cluster"
	contextPackage = "context"
	protoPackage   = "google.golang.org/protobuf/proto"
	statusPackage  = "google.golang.org/grpc/status"
	codesPackage   = "google.golang.org/grpc/codes"
)

// generate writes a _grain.pb.go file for each file to generate that has
// services, with the plugin parameters p. It checks every service first, so
// that an unsupported RPC fails the run without any output.
func generate(gen *protogen.Plugin, p *params) error {
	// The generator reads no editions features, so it supports every edition
	// protogen can parse up to 2023; advertising it lets buf and protoc pass
	// editions files instead of refusing them.
	gen.SupportedFeatures = uint64(pluginpb.CodeGeneratorResponse_FEATURE_PROTO3_OPTIONAL |
		pluginpb.CodeGeneratorResponse_FEATURE_SUPPORTS_EDITIONS)
	gen.SupportedEditionsMinimum = descriptorpb.Edition_EDITION_PROTO2
	gen.SupportedEditionsMaximum = descriptorpb.Edition_EDITION_2023

	configs := map[*protogen.Service]*grainConfig{}
	for _, file := range gen.Files {
		if !file.Generate {
			continue
		}
		if err := checkFile(file); err != nil {
			return err
		}
		fileConfigs, err := fileConfigs(gen, file)
		if err != nil {
			return err
		}
		maps.Copy(configs, fileConfigs)
	}
	names := packageNames(gen.Files, hasStateOption, p.grpc)
	for _, file := range gen.Files {
		if !file.Generate || len(file.Services) == 0 {
			continue
		}
		if err := generateFile(gen, file, names, configs); err != nil {
			return err
		}
	}
	return nil
}

// checkFile reports the first RPC of file that grains cannot serve.
func checkFile(file *protogen.File) error {
	for _, svc := range file.Services {
		for _, m := range svc.Methods {
			if err := checkMethod(m); err != nil {
				return fmt.Errorf("protoc-gen-grain: %s: service %s method %s: %w",
					file.Desc.Path(), svc.Desc.FullName(), m.Desc.Name(), err)
			}
		}
	}
	return nil
}

// checkMethod names every kind of RPC explicitly, so that a new kind cannot
// slip through as unary.
func checkMethod(m *protogen.Method) error {
	client, server := m.Desc.IsStreamingClient(), m.Desc.IsStreamingServer()
	switch {
	case !client && !server:
		return nil
	case client && !server:
		return fmt.Errorf("client streaming is not supported for grains yet")
	case !client && server:
		return fmt.Errorf("server streaming is not supported for grains yet")
	default:
		return fmt.Errorf("bidirectional streaming is not supported for grains yet")
	}
}

// fileGen writes one _grain.pb.go file.
type fileGen struct {
	file     *protogen.File
	names    map[*protogen.Service]*serviceNames
	declared nameSet // the top-level names of the file's Go package
	configs  map[*protogen.Service]*grainConfig
	out      *jen.File
}

func generateFile(gen *protogen.Plugin, file *protogen.File, names runNames, configs map[*protogen.Service]*grainConfig) error {
	fg := newFileGen(file, names, configs)
	fg.header()
	for _, svc := range file.Services {
		fg.service(svc)
	}
	fg.importNames(gen)

	var b bytes.Buffer
	if err := fg.out.Render(&b); err != nil {
		return fmt.Errorf("protoc-gen-grain: %s: %w", file.Desc.Path(), fg.renderError(err))
	}
	g := gen.NewGeneratedFile(file.GeneratedFilenamePrefix+"_grain.pb.go", file.GoImportPath)
	_, err := g.Write(b.Bytes())
	return err
}

// newFileGen prepares the generation of file's _grain.pb.go.
func newFileGen(file *protogen.File, names runNames, configs map[*protogen.Service]*grainConfig) *fileGen {
	return &fileGen{
		file:     file,
		names:    names.services,
		declared: names.declared[file.GoImportPath],
		configs:  configs,
		out:      jen.NewFilePathName(string(file.GoImportPath), string(file.GoPackageName)),
	}
}

// renderError explains why the file's Go code failed to render, which is a
// bug of the generator: it names the first service whose code fails on its
// own, and keeps the formatter's message without the source listing that
// jennifer appends to it.
func (fg *fileGen) renderError(err error) error {
	msg, _, _ := strings.Cut(err.Error(), "\n")
	msg = strings.TrimSuffix(strings.TrimPrefix(msg, "Error "), " while formatting source:")
	for _, svc := range fg.file.Services {
		one := *fg
		one.out = jen.NewFilePathName(string(fg.file.GoImportPath), string(fg.file.GoPackageName))
		one.service(svc)
		if one.out.Render(io.Discard) != nil {
			return fmt.Errorf("service %s: generated Go code does not format (%s)", svc.Desc.FullName(), msg)
		}
	}
	return fmt.Errorf("generated Go code does not format (%s)", msg)
}

// header writes the file header and the version handshake. The header names
// no protoc version, so goldens do not change with the toolchain.
func (fg *fileGen) header() {
	fg.out.HeaderComment("Code generated by protoc-gen-grain. DO NOT EDIT.")
	fg.out.HeaderComment("source: " + fg.file.Desc.Path())
	if isDeprecated(fg.file.Desc.Options()) {
		fg.out.HeaderComment("//")
		for _, line := range strings.Split(prose("Deprecated: the proto file %s is marked as deprecated.", fg.file.Desc.Path()), "\n") {
			fg.out.HeaderComment(line)
		}
	}
	fg.out.Comment(doc(prose(
		"This is a compile-time assertion that this generated file is compatible with the cluster package it " +
			"is compiled against. If it fails, regenerate with the protoc-gen-grain from the same protograin " +
			"version as the cluster package.",
	)))
	fg.out.Const().Id("_").Op("=").Qual(clusterPackage, "SupportPackageIsVersion1")
}

// importNames tells jennifer the real package name of every package the file
// may import, instead of letting it guess one from the path, and renames a
// package only where a local identifier of the generated bodies would shadow
// it. Hints for packages the file does not use are ignored by jennifer.
func (fg *fileGen) importNames(gen *protogen.Plugin) {
	fg.out.ImportName(clusterPackage, "cluster")
	fg.out.ImportName(contextPackage, "context")
	fg.out.ImportName(protoPackage, "proto")
	fg.out.ImportName(statusPackage, "status")
	fg.out.ImportName(codesPackage, "codes")
	for _, f := range gen.Files {
		if f.GoImportPath == fg.file.GoImportPath {
			continue
		}
		name := string(f.GoPackageName)
		if alias := importName(name, fg.declared); alias != name {
			fg.out.ImportAlias(string(f.GoImportPath), alias)
		} else {
			fg.out.ImportName(string(f.GoImportPath), name)
		}
	}
}

// service writes everything generated for one service.
func (fg *fileGen) service(svc *protogen.Service) {
	n := fg.names[svc]
	fg.constants(svc, n)
	fg.grainInterface(svc, n)
	fg.unimplemented(svc, n)
	fg.client(svc, n)
	fg.kind(svc, n)
	fg.stateOf(svc, n)
}

func (fg *fileGen) constants(svc *protogen.Service, n *serviceNames) {
	full := string(svc.Desc.FullName())
	fg.out.Comment(doc(
		prose("%s is the grain kind of the %s service: the fully qualified service name, by which a cluster routes calls to its grains.", n.Kind, full),
		deprecation(svc.Desc.Options()),
	))
	fg.out.Const().Id(n.Kind).Op("=").Lit(full)
	if len(svc.Methods) == 0 {
		return
	}
	fg.out.Comment(doc(prose("Full method names of the %s service. Calls are routed by these names, never by an RPC's position in the service.", full)))
	fg.out.Const().DefsFunc(func(g *jen.Group) {
		for i, m := range svc.Methods {
			mn := n.Methods[i]
			g.Comment(doc(
				prose("%s is the full method name of %s.%s.", mn.Const, full, m.Desc.Name()),
				deprecation(m.Desc.Options()),
			))
			g.Id(mn.Const).Op("=").Lit(fullMethodName(m))
		}
	})
}

func (fg *fileGen) grainInterface(svc *protogen.Service, n *serviceNames) {
	full := string(svc.Desc.FullName())
	fg.out.Comment(doc(
		prose("%s is implemented by the grains of kind %s: one value per identity, which the cluster calls one method at a time.", n.Grain, full),
		leading(svc.Comments.Leading),
		prose("Embed %s in implementations so that they keep compiling when RPCs are added to the service. "+
			"A grain may also implement cluster.Activator and cluster.Deactivator.", n.Unimplemented),
		deprecation(svc.Desc.Options()),
	))
	fg.out.Type().Id(n.Grain).InterfaceFunc(func(g *jen.Group) {
		for i, m := range svc.Methods {
			mn := n.Methods[i]
			g.Comment(methodDoc(svc, m, mn, prose("%s handles the %s RPC.", mn.Go, m.Desc.FullName()),
				fg.readOnlyNote(svc, m, "the cluster neither deduplicates its calls nor flushes state after them, so it must not change the grain's state."),
				fg.oneWayNote(svc, m, "its sender does not wait for it, so an error it returns cannot reach the sender: "+
					"the node logs it. A panic is supervised as in a call.")))
			g.Id(mn.Go).Params(
				jen.Id("ctx").Qual(clusterPackage, "GrainContext"),
				jen.Id("req").Op("*").Add(ident(m.Input.GoIdent)),
			).Params(jen.Op("*").Add(ident(m.Output.GoIdent)), jen.Error())
		}
	})
}

func (fg *fileGen) unimplemented(svc *protogen.Service, n *serviceNames) {
	fg.out.Comment(doc(
		prose("%s implements %s with methods that return an error with code codes.Unimplemented. "+
			"Embed it by value in grain implementations for forward compatibility.", n.Unimplemented, n.Grain),
	))
	fg.out.Type().Id(n.Unimplemented).Struct()
	for i, m := range svc.Methods {
		mn := n.Methods[i]
		fg.out.Comment(doc(prose("%s returns an error with code codes.Unimplemented.", mn.Go)))
		fg.out.Func().Params(jen.Id(n.Unimplemented)).Id(mn.Go).Params(
			jen.Qual(clusterPackage, "GrainContext"),
			jen.Op("*").Add(ident(m.Input.GoIdent)),
		).Params(jen.Op("*").Add(ident(m.Output.GoIdent)), jen.Error()).Block(
			jen.Return(jen.Nil(), jen.Qual(statusPackage, "Error").Call(
				jen.Qual(codesPackage, "Unimplemented"),
				jen.Lit("protograin: ").Op("+").Id(mn.Const).Op("+").Lit(" is not implemented"),
			)),
		)
	}
	fg.out.Comment(doc(prose("%s reports whether u is nil: %s uses it to reject a grain that embeds a nil *%s.",
		n.IsNil, n.NewKind, n.Unimplemented)))
	fg.out.Func().Params(jen.Id("u").Op("*").Id(n.Unimplemented)).Id(n.IsNil).Params().Bool().Block(
		jen.Return(jen.Id("u").Op("==").Nil()),
	)
}

// kindNew returns the Kind's New: it makes the grain with factory and
// panics if the grain embeds a nil *Unimplemented<S>Grain. Such a grain
// would otherwise panic on only the methods it leaves out, perhaps long
// after it was deployed; this way every activation fails, and the node's
// error says why, as grpc-go fails the registration of such a server. The
// method has a pointer receiver so that it sees the nil: the method sets
// of grains that embed the type by value, as its doc asks, include it only
// when the grain is a pointer, and then it is never nil. Each Unimplemented
// type has a method of its own name (n.IsNil), so that a grain embedding
// those of several services of one package still has each in its method
// set.
func kindNew(n *serviceNames) jen.Code {
	return jen.Func().Params(jen.Id("identity").String()).Any().Block(
		jen.Id("g").Op(":=").Id("factory").Call(jen.Id("identity")),
		jen.If(
			jen.List(jen.Id("u"), jen.Id("ok")).Op(":=").Id("g").Assert(jen.Interface(jen.Id(n.IsNil).Params().Bool())),
			jen.Id("ok").Op("&&").Id("u").Dot(n.IsNil).Call(),
		).Block(
			jen.Panic(jen.Lit(fmt.Sprintf("protograin: the grain embeds a nil *%s; embed %s by value", n.Unimplemented, n.Unimplemented))),
		),
		jen.Return(jen.Id("g")),
	)
}

func (fg *fileGen) client(svc *protogen.Service, n *serviceNames) {
	full := string(svc.Desc.FullName())
	dep := deprecation(svc.Desc.Options())
	fg.out.Comment(doc(
		prose("%s calls one grain of kind %s. It is safe for concurrent use if its Caller is.", n.Client, full),
		dep,
	))
	fg.out.Type().Id(n.Client).Struct(
		jen.Id("caller").Qual(clusterPackage, "Caller"),
		jen.Id("identity").String(),
	)
	fg.out.Comment(doc(
		prose("%s returns a client for the grain of kind %s named identity. caller delivers the calls: "+
			"usually a cluster node, or the cluster.GrainContext of a grain that calls another grain.", n.NewClient, full),
		dep,
	))
	fg.out.Func().Id(n.NewClient).Params(
		jen.Id("caller").Qual(clusterPackage, "Caller"),
		jen.Id("identity").String(),
	).Op("*").Id(n.Client).Block(
		jen.Return(jen.Op("&").Id(n.Client).Add(fields(
			field("caller", jen.Id("caller")),
			field("identity", jen.Id("identity")),
		))),
	)
	for i, m := range svc.Methods {
		fg.clientMethod(svc, m, n, n.Methods[i])
	}
}

func (fg *fileGen) clientMethod(svc *protogen.Service, m *protogen.Method, n *serviceNames, mn methodNames) {
	if fg.configs[svc].oneWay[m] {
		fg.sendMethod(svc, m, n, mn)
		return
	}
	output := ident(m.Output.GoIdent)
	fg.out.Comment(methodDoc(svc, m, mn, prose("%s calls the %s RPC on the client's grain.", mn.Go, m.Desc.FullName()),
		fg.readOnlyNote(svc, m, "its calls are not deduplicated, so a call the cluster retries may run more than once.")))
	fg.out.Func().Params(jen.Id("c").Op("*").Id(n.Client)).Id(mn.Go).Params(
		jen.Id("ctx").Qual(contextPackage, "Context"),
		jen.Id("req").Op("*").Add(ident(m.Input.GoIdent)),
		jen.Id("opts").Op("...").Qual(clusterPackage, "CallOption"),
	).Params(jen.Op("*").Add(output), jen.Error()).Block(
		jen.List(jen.Id("resp"), jen.Err()).Op(":=").Id("c").Dot("caller").Dot("Invoke").Call(
			jen.Id("ctx"),
			jen.Qual(clusterPackage, "Call").Add(fields(
				field("Kind", jen.Id(n.Kind)),
				field("Identity", jen.Id("c").Dot("identity")),
				field("Method", jen.Id(mn.Const)),
				field("Request", jen.Id("req")),
				field("NewResponse", jen.Func().Params().Qual(protoPackage, "Message").Block(
					jen.Return(jen.New(output)),
				)),
			)),
			jen.Id("opts").Op("..."),
		),
		jen.If(jen.Err().Op("!=").Nil()).Block(jen.Return(jen.Nil(), jen.Err())),
		jen.List(jen.Id("typed"), jen.Id("ok")).Op(":=").Id("resp").Assert(jen.Op("*").Add(output)),
		jen.If(jen.Op("!").Id("ok")).Block(
			jen.Return(jen.Nil(), jen.Qual(statusPackage, "Errorf").Call(
				jen.Qual(codesPackage, "Internal"),
				jen.Lit("protograin: %s: response has type %T, want %T"),
				jen.Id(mn.Const), jen.Id("resp"), jen.Id("typed"),
			)),
		),
		jen.Return(jen.Id("typed"), jen.Nil()),
	)
}

// sendMethod writes the client method of a one-way RPC: it sends through
// cluster.Send and returns only an error. NewResponse is still set, so that
// a Caller that is not a cluster.Sender can run the message as a call.
func (fg *fileGen) sendMethod(svc *protogen.Service, m *protogen.Method, n *serviceNames, mn methodNames) {
	fg.out.Comment(methodDoc(svc, m, mn,
		prose("%s sends the %s RPC to the client's grain as a one-way message.", mn.Go, m.Desc.FullName()),
		prose("It returns once the message has been handed over for delivery (queued in the grain's mailbox "+
			"on this node, or in the stream to the grain's owner), not when the grain has run it, and fails only "+
			"when it could not be handed over. Delivery is at-most-once: the message is not retried afterwards, and "+
			"one sent to a node that fails may be lost. Messages from one node to one grain arrive in the order they "+
			"were sent while the grain's owner does not change. The grain's error does not come back.")))
	fg.out.Func().Params(jen.Id("c").Op("*").Id(n.Client)).Id(mn.Go).Params(
		jen.Id("ctx").Qual(contextPackage, "Context"),
		jen.Id("req").Op("*").Add(ident(m.Input.GoIdent)),
		jen.Id("opts").Op("...").Qual(clusterPackage, "CallOption"),
	).Error().Block(
		jen.Return(jen.Qual(clusterPackage, "Send").Call(
			jen.Id("ctx"),
			jen.Id("c").Dot("caller"),
			jen.Qual(clusterPackage, "Call").Add(fields(
				field("Kind", jen.Id(n.Kind)),
				field("Identity", jen.Id("c").Dot("identity")),
				field("Method", jen.Id(mn.Const)),
				field("Request", jen.Id("req")),
				field("NewResponse", jen.Func().Params().Qual(protoPackage, "Message").Block(
					jen.Return(jen.New(ident(m.Output.GoIdent))),
				)),
			)),
			jen.Id("opts").Op("..."),
		)),
	)
}

func (fg *fileGen) kind(svc *protogen.Service, n *serviceNames) {
	full := string(svc.Desc.FullName())
	cfg := fg.configs[svc]
	var methods []jen.Code
	for i, m := range svc.Methods {
		methods = append(methods, fg.kindMethod(m, n, n.Methods[i], cfg.readOnly[m]))
	}
	kindFields := []jen.Code{
		field("Name", jen.Id(n.Kind)),
		field("New", kindNew(n)),
		field("Methods", jen.Index().Qual(clusterPackage, "Method").Add(fields(methods...))),
	}
	paragraphs := []string{prose("%s returns the kind %s for a cluster node to host. The node calls factory once per "+
		"activation to make the grain for identity; a grain that embeds a nil *%s fails its activation. "+
		"Set the Kind's configuration fields, such as IdleTimeout, before the node starts.",
		n.NewKind, full, n.Unimplemented)}
	stateFields, stateDocs := kindState(cfg, n)
	kindFields = append(kindFields, stateFields...)
	paragraphs = append(paragraphs, stateDocs...)
	paragraphs = append(paragraphs, deprecation(svc.Desc.Options()))

	fg.out.Comment(doc(paragraphs...))
	fg.out.Func().Id(n.NewKind).Params(
		jen.Id("factory").Func().Params(jen.Id("identity").String()).Id(n.Grain),
	).Op("*").Qual(clusterPackage, "Kind").Block(
		jen.Return(jen.Op("&").Qual(clusterPackage, "Kind").Add(fields(kindFields...))),
	)
}

// kindState returns the Kind fields that the service's options ask for, and
// the doc paragraphs that explain them. A service without options gets
// none, so its code compiles against a cluster package without state.
func kindState(cfg *grainConfig, n *serviceNames) (kindFields []jen.Code, docs []string) {
	if cfg.state != nil {
		kindFields = append(kindFields, field("NewState", jen.Func().Params().Qual(protoPackage, "Message").Block(
			jen.Return(jen.New(ident(cfg.state.GoIdent))),
		)))
		docs = append(docs, prose("Its grains keep typed state, a %s message that the node allocates and loads "+
			"per activation; %s returns it during a call.", cfg.state.Desc.FullName(), n.StateOf))
	}
	if cfg.manual {
		kindFields = append(kindFields, field("Flush", jen.Qual(clusterPackage, "FlushManual")))
		docs = append(docs, prose("State changes are committed only when a grain calls ctx.State().Flush, "+
			"and when it is deactivated (FLUSH_MODE_MANUAL)."))
	}
	return kindFields, docs
}

// stateOf writes the typed accessor of a service's state message, if it has
// one. It asserts with comma-ok: a context without that state (another
// kind's, or a test's) gets nil, not a panic.
func (fg *fileGen) stateOf(svc *protogen.Service, n *serviceNames) {
	cfg := fg.configs[svc]
	if cfg.state == nil {
		return
	}
	state := ident(cfg.state.GoIdent)
	flush := "after the call"
	if cfg.manual {
		flush = "when the grain calls ctx.State().Flush, or at deactivation"
	}
	fg.out.Comment(doc(
		prose("%s returns the state message of the grain handling the call of ctx, which is never nil during a "+
			"call of kind %s. Change it in place: the next flush commits it (%s).", n.StateOf, svc.Desc.FullName(), flush),
		prose("It returns nil when ctx has no %s state message, as in a call of another kind.", cfg.state.Desc.FullName()),
		deprecation(svc.Desc.Options()),
	))
	fg.out.Func().Id(n.StateOf).Params(
		jen.Id("ctx").Qual(clusterPackage, "GrainContext"),
	).Op("*").Add(state).Block(
		jen.Id("st").Op(":=").Id("ctx").Dot("State").Call(),
		jen.If(jen.Id("st").Op("==").Nil()).Block(jen.Return(jen.Nil())),
		jen.List(jen.Id("msg"), jen.Id("_")).Op(":=").Id("st").Dot("Message").Call().Assert(jen.Op("*").Add(state)),
		jen.Return(jen.Id("msg")),
	)
}

// readOnlyNote returns the doc paragraph of a read-only method, saying what
// it means for the reader (grain or caller), or "".
func (fg *fileGen) readOnlyNote(svc *protogen.Service, m *protogen.Method, meaning string) string {
	if !fg.configs[svc].readOnly[m] {
		return ""
	}
	return prose("%s is read-only (protograin.v1.method): %s", m.Desc.Name(), meaning)
}

// oneWayNote returns the doc paragraph of a one-way method, saying what it
// means for the grain, or "".
func (fg *fileGen) oneWayNote(svc *protogen.Service, m *protogen.Method, meaning string) string {
	if !fg.configs[svc].oneWay[m] {
		return ""
	}
	return prose("%s is one-way (protograin.v1.method): %s", m.Desc.Name(), meaning)
}

// kindMethod is the cluster.Method entry of one RPC. Its Handle checks both
// dynamic types instead of asserting blindly: a mismatch is a bug elsewhere,
// and it should fail one call with a clear error, not crash the node. A nil
// response from the grain becomes an untyped nil, so that the cluster sees
// that the grain returned neither a response nor an error; a typed nil
// pointer in a proto.Message would not be nil.
func (fg *fileGen) kindMethod(m *protogen.Method, n *serviceNames, mn methodNames, readOnly bool) jen.Code {
	input := ident(m.Input.GoIdent)
	elems := []jen.Code{
		field("Name", jen.Id(mn.Const)),
		field("NewRequest", jen.Func().Params().Qual(protoPackage, "Message").Block(
			jen.Return(jen.New(input)),
		)),
	}
	if readOnly {
		elems = append(elems, field("ReadOnly", jen.True()))
	}
	return fields(append(elems, field("Handle", jen.Func().Params(
		jen.Id("grain").Any(),
		jen.Id("ctx").Qual(clusterPackage, "GrainContext"),
		jen.Id("req").Qual(protoPackage, "Message"),
	).Params(jen.Qual(protoPackage, "Message"), jen.Error()).Block(
		jen.List(jen.Id("g"), jen.Id("ok")).Op(":=").Id("grain").Assert(jen.Id(n.Grain)),
		jen.If(jen.Op("!").Id("ok")).Block(
			jen.Return(jen.Nil(), jen.Qual(statusPackage, "Errorf").Call(
				jen.Qual(codesPackage, "Internal"),
				jen.Lit("protograin: %s: grain has type %T, want an implementation of "+n.Grain),
				jen.Id(mn.Const), jen.Id("grain"),
			)),
		),
		jen.List(jen.Id("r"), jen.Id("ok")).Op(":=").Id("req").Assert(jen.Op("*").Add(input)),
		jen.If(jen.Op("!").Id("ok")).Block(
			jen.Return(jen.Nil(), jen.Qual(statusPackage, "Errorf").Call(
				jen.Qual(codesPackage, "InvalidArgument"),
				jen.Lit("protograin: %s: request has type %T, want %T"),
				jen.Id(mn.Const), jen.Id("req"), jen.Id("r"),
			)),
		),
		jen.List(jen.Id("resp"), jen.Err()).Op(":=").Id("g").Dot(mn.Go).Call(jen.Id("ctx"), jen.Id("r")),
		jen.If(jen.Err().Op("!=").Nil()).Block(jen.Return(jen.Nil(), jen.Err())),
		jen.If(jen.Id("resp").Op("==").Nil()).Block(
			jen.Comment("Neither a response nor an error: an untyped nil, which the cluster rejects."),
			jen.Return(jen.Nil(), jen.Nil()),
		),
		jen.Return(jen.Id("resp"), jen.Nil()),
	)),
	)...)
}

// fields is a composite literal body with one element per line, in the order
// given (jen.Dict would sort the keys).
func fields(elems ...jen.Code) *jen.Statement {
	return jen.Custom(jen.Options{Open: "{", Close: "}", Separator: ",", Multi: true}, elems...)
}

// field is one keyed element of a composite literal.
func field(key string, value jen.Code) jen.Code {
	return jen.Id(key).Op(":").Add(value)
}

// ident refers to a generated Go type, qualified by jennifer when it lives in
// another package.
func ident(id protogen.GoIdent) *jen.Statement {
	return jen.Qual(string(id.GoImportPath), id.GoName)
}

// fullMethodName is the name calls are routed by: "/package.Service/Method".
func fullMethodName(m *protogen.Method) string {
	return "/" + string(m.Parent.Desc.FullName()) + "/" + string(m.Desc.Name())
}

// methodDoc documents a method of the grain interface or the client: the
// proto comment, preceded by the generated sentence fallback unless the
// comment already starts with the method's Go name, so that every doc
// comment starts with the name it documents. A Go name changed by a
// collision gets a note saying which RPC it is.
func methodDoc(svc *protogen.Service, m *protogen.Method, mn methodNames, fallback string, notes ...string) string {
	comment := leading(m.Comments.Leading)
	if strings.HasPrefix(comment, mn.Go+" ") {
		fallback = "" // the proto comment already starts with the name, as Go doc wants
	}
	var renamed string
	if mn.Go != m.GoName {
		renamed = prose("The Go name of %s has a trailing underscore because %s is taken by another RPC, "+
			"or reserved for a grain lifecycle hook or a method whose signature go vet checks.", m.Desc.Name(), m.GoName)
	}
	paragraphs := append([]string{fallback, comment, renamed}, notes...)
	return doc(append(paragraphs, deprecation(m.Desc.Options()))...)
}

// leading returns the text of a proto leading comment without its comment
// markers, or "" when there is none. The text is cleaned for Go source (see
// cleanComment).
func leading(c protogen.Comments) string {
	return strings.TrimSpace(cleanComment(string(c)))
}

// cleanComment makes proto comment text fit for a Go comment. Go source
// must be valid UTF-8 without NUL characters or byte order marks, while a
// .proto file's comments may hold any bytes: invalid UTF-8 becomes U+FFFD,
// and NULs and byte order marks are dropped.
func cleanComment(s string) string {
	return strings.Map(func(r rune) rune {
		if r == 0 || r == '\uFEFF' {
			return -1
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
}

// deprecation returns the Deprecated paragraph for a proto element whose
// options mark it deprecated, or "".
func deprecation(opts protoreflect.ProtoMessage) string {
	if isDeprecated(opts) {
		return "Deprecated: do not use."
	}
	return ""
}

// isDeprecated reports whether the options of a file, service or method set
// deprecated = true.
func isDeprecated(opts protoreflect.ProtoMessage) bool {
	switch o := opts.(type) {
	case *descriptorpb.FileOptions:
		return o.GetDeprecated()
	case *descriptorpb.ServiceOptions:
		return o.GetDeprecated()
	case *descriptorpb.MethodOptions:
		return o.GetDeprecated()
	}
	return false
}

// doc formats paragraphs as a Go comment, skipping empty ones. Each line of
// a paragraph keeps its own indentation, so code blocks in proto comments
// stay code blocks in Go doc.
func doc(paragraphs ...string) string {
	var lines []string
	for _, p := range paragraphs {
		if p == "" {
			continue
		}
		if len(lines) > 0 {
			lines = append(lines, "//")
		}
		for _, line := range strings.Split(p, "\n") {
			line = strings.TrimRight(line, " \t")
			if line == "" {
				lines = append(lines, "//")
				continue
			}
			lines = append(lines, "// "+strings.TrimPrefix(line, " "))
		}
	}
	return strings.Join(lines, "\n")
}

// proseWidth is the line width generated prose is wrapped at, not counting
// the comment marker and indentation.
const proseWidth = 76

// prose formats a generated doc sentence and wraps it at proseWidth. Proto
// comments are not wrapped: their author chose their lines.
func prose(format string, args ...any) string {
	var b strings.Builder
	lineLen := 0
	for _, word := range strings.Fields(fmt.Sprintf(format, args...)) {
		switch {
		case lineLen == 0:
		case lineLen+1+len(word) > proseWidth:
			b.WriteByte('\n')
			lineLen = 0
		default:
			b.WriteByte(' ')
			lineLen++
		}
		b.WriteString(word)
		lineLen += len(word)
	}
	return b.String()
}
