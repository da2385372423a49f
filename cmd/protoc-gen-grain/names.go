package main

import (
	"go/token"
	"go/types"
	"maps"
	"sort"

	"google.golang.org/protobuf/compiler/protogen"
)

// This file is the one place that decides the Go names of generated code.
//
// The rule for every collision is the same and deterministic: a name that is
// already taken (or is a Go keyword) gets "_" appended until it is free. Names
// are claimed in a fixed order, so the same input always gives the same
// output:
//
//  1. Every top-level identifier protoc-gen-go generates for the Go package
//     (messages, enums, their values and _name/_value maps, oneof wrappers,
//     extensions, File_ descriptors) of every file of that package in the
//     request, and the forwarding declarations it writes for files imported
//     with "import public" from another Go package. With the grpc=true
//     parameter, also every exported identifier protoc-gen-go-grpc generates
//     for the services of the package (<S>Client, New<S>Client, <S>Server,
//     Unimplemented<S>Server, Unsafe<S>Server, Register<S>Server,
//     <S>_ServiceDesc, <S>_<M>_FullMethodName, and <S>_<M>Client and
//     <S>_<M>Server for streaming RPCs). These are fixed; generated grain
//     names yield to them.
//  2. The grain names of each service of the package, files in path order,
//     services in declaration order: <S>Kind, <S>Grain, Unimplemented<S>Grain,
//     <S>Client, New<S>Client, New<S>Kind, <S>StateOf (only for a service
//     whose (protograin.v1.grain) option names a state message), then
//     <S><M>Method for each RPC (<M> is the RPC's Go name before any renaming
//     within the service).
//
// Method names (on the grain interface, the Unimplemented type and the
// client) are unique per service. Two kinds of names are reserved there:
// OnActivate, OnDeactivate and OnReminder, because a grain implementing
// cluster.Activator, cluster.Deactivator or cluster.ReminderReceiver needs
// them for its hooks; and the methods whose signature go vet's stdmethods
// check imposes whatever the type (MarshalJSON, ReadByte, ...; see
// vetMethodNames), since generated methods of those names would fail go vet.
//
// Each Unimplemented type has an unexported method named after it,
// isNil<Unimplemented>, that the kind's New calls; it cannot clash with an
// RPC's method, whose Go name is exported, and it differs between the
// Unimplemented types of a package so that a grain may embed several.
//
// An imported package is named by its Go package name unless that is taken
// in the generated file: by an identifier the generated bodies declare, a
// predeclared identifier, or a top-level name of the file's own package
// (see importName).
//
// All files of one Go package must be generated in one run (buf does this by
// default) for names that collide across files to be resolved the same way.

// serviceNames are the generated Go identifiers of one service.
type serviceNames struct {
	Kind          string // const: the kind name, e.g. CounterKind
	Grain         string // interface grains implement, e.g. CounterGrain
	Unimplemented string // embeddable type, e.g. UnimplementedCounterGrain
	IsNil         string // unexported method of Unimplemented, e.g. isNilUnimplementedCounterGrain
	Client        string // client type, e.g. CounterClient
	NewClient     string // client constructor, e.g. NewCounterClient
	NewKind       string // cluster.Kind constructor, e.g. NewCounterKind
	StateOf       string // typed state accessor, e.g. CounterStateOf; "" without a state message
	Methods       []methodNames
}

// methodNames are the generated Go identifiers of one RPC.
type methodNames struct {
	Go    string // method name on the interface, Unimplemented and client, e.g. Add
	Const string // const holding the full method name, e.g. CounterAddMethod
}

// reservedMethodNames are the grain method names that generated methods
// must not take.
func reservedMethodNames() []string {
	return append(lifecycleMethodNames(), vetMethodNames()...)
}

// lifecycleMethodNames belong to the cluster's optional lifecycle
// interfaces.
func lifecycleMethodNames() []string {
	return []string{"OnActivate", "OnDeactivate", "OnReminder"}
}

// vetMethodNames are the methods of go vet's stdmethods check whose
// signature it checks on every type: a generated method of one of these
// names has the grain's signature, not the standard one, and fails go vet.
// Format, ReadFrom, Scan, Seek and WriteTo are checked only when their
// first parameter is the standard one (fmt.State, io.Reader, ...), which a
// generated method's context never is; As, Is and Unwrap only on types that
// implement error, which generated types never do.
func vetMethodNames() []string {
	return []string{
		"GobDecode", "GobEncode", "MarshalJSON", "MarshalXML", "ReadByte", "ReadRune",
		"UnmarshalJSON", "UnmarshalXML", "UnreadByte", "UnreadRune", "WriteByte",
	}
}

// nameSet hands out unique identifiers within one scope.
type nameSet map[string]bool

// reserve marks names as taken without renaming them.
func (s nameSet) reserve(names ...string) {
	for _, n := range names {
		s[n] = true
	}
}

// claim returns want, or want with "_" appended until it is neither taken nor
// a Go keyword, and marks the result taken.
func (s nameSet) claim(want string) string {
	name := want
	for s[name] || token.IsKeyword(name) {
		name += "_"
	}
	s[name] = true
	return name
}

// runNames are the generated names of every Go package in a request.
type runNames struct {
	// services maps each service of each file to its names.
	services map[*protogen.Service]*serviceNames
	// declared holds, per Go package, every top-level name the generated
	// code of the package declares, protoc-gen-go's and the grain names
	// alike.
	declared map[protogen.GoImportPath]nameSet
}

// packageNames names the services of every Go package in the request,
// including files that are not generated in this run, so that names match
// across runs that generate different files of one package. hasState
// reports whether a service names a state message and so gets a StateOf
// accessor; grpc reserves the names protoc-gen-go-grpc generates.
func packageNames(files []*protogen.File, hasState func(*protogen.Service) bool, grpc bool) runNames {
	byPath := map[string]*protogen.File{}
	byPackage := map[protogen.GoImportPath][]*protogen.File{}
	for _, f := range files {
		byPath[f.Desc.Path()] = f
		byPackage[f.GoImportPath] = append(byPackage[f.GoImportPath], f)
	}
	names := runNames{
		services: map[*protogen.Service]*serviceNames{},
		declared: map[protogen.GoImportPath]nameSet{},
	}
	for pkg, pkgFiles := range byPackage {
		sort.Slice(pkgFiles, func(i, j int) bool {
			return pkgFiles[i].Desc.Path() < pkgFiles[j].Desc.Path()
		})
		taken := nameSet{}
		for _, f := range pkgFiles {
			taken.reserve(protocGenGoNames(f)...)
			taken.reserve(publicImportNames(f, byPath)...)
			if grpc {
				taken.reserve(grpcNames(f)...)
			}
		}
		for _, f := range pkgFiles {
			for _, svc := range f.Services {
				names.services[svc] = nameService(taken, svc, hasState(svc))
			}
		}
		names.declared[pkg] = taken
	}
	return names
}

// nameService claims the names of svc in the package scope taken.
func nameService(taken nameSet, svc *protogen.Service, hasState bool) *serviceNames {
	s := svc.GoName
	n := &serviceNames{
		Kind:          taken.claim(s + "Kind"),
		Grain:         taken.claim(s + "Grain"),
		Unimplemented: taken.claim("Unimplemented" + s + "Grain"),
		Client:        taken.claim(s + "Client"),
		NewClient:     taken.claim("New" + s + "Client"),
		NewKind:       taken.claim("New" + s + "Kind"),
	}
	n.IsNil = "isNil" + n.Unimplemented
	if hasState {
		n.StateOf = taken.claim(s + "StateOf")
	}
	methods := nameSet{}
	methods.reserve(reservedMethodNames()...)
	for _, m := range svc.Methods {
		n.Methods = append(n.Methods, methodNames{
			Go:    methods.claim(m.GoName),
			Const: taken.claim(s + m.GoName + "Method"),
		})
	}
	return n
}

// protocGenGoNames lists the exported top-level identifiers protoc-gen-go
// declares for f.
func protocGenGoNames(f *protogen.File) []string {
	names := []string{f.GoDescriptorIdent.GoName}
	names = append(names, enumNames(f.Enums)...)
	names = append(names, extensionNames(f.Extensions)...)
	for _, m := range f.Messages {
		names = append(names, messageNames(m)...)
	}
	return names
}

func messageNames(m *protogen.Message) []string {
	names := []string{m.GoIdent.GoName}
	for _, field := range m.Fields {
		if field.Oneof != nil {
			names = append(names, field.GoIdent.GoName) // the oneof wrapper type
		}
		if field.Desc.HasDefault() {
			names = append(names, "Default_"+m.GoIdent.GoName+"_"+field.GoName) // its default's constant
		}
	}
	names = append(names, enumNames(m.Enums)...)
	names = append(names, extensionNames(m.Extensions)...)
	for _, nested := range m.Messages {
		names = append(names, messageNames(nested)...)
	}
	return names
}

func enumNames(enums []*protogen.Enum) []string {
	var names []string
	for _, e := range enums {
		names = append(names, e.GoIdent.GoName, e.GoIdent.GoName+"_name", e.GoIdent.GoName+"_value")
		for _, v := range e.Values {
			names = append(names, v.GoIdent.GoName)
		}
	}
	return names
}

func extensionNames(exts []*protogen.Extension) []string {
	var names []string
	for _, x := range exts {
		names = append(names, "E_"+x.GoIdent.GoName)
	}
	return names
}

// localIdents are the identifiers the generated function bodies declare. An
// imported package must not be named like one of them, or the local would
// shadow the package where the body refers to it.
func localIdents() []string {
	return []string{"c", "caller", "ctx", "err", "factory", "g", "grain", "identity", "msg", "ok", "opts", "r", "req", "resp", "st", "typed"}
}

// importName returns the name the generated file uses for an imported Go
// package whose package name is pkg: pkg itself, with "_" appended while it
// would be shadowed by a local identifier, would shadow a predeclared one
// that the generated code uses (any, string, error; jennifer's list of
// reserved words lacks any), or would clash with a top-level name declared
// in the file's own package, as a message Dep would with a package named
// Dep.
func importName(pkg string, declared nameSet) string {
	taken := nameSet{}
	taken.reserve(localIdents()...)
	taken.reserve(types.Universe.Names()...)
	maps.Copy(taken, declared)
	return taken.claim(pkg)
}

// publicImportNames lists the forwarding declarations protoc-gen-go writes
// into f's package for the files f imports with "import public" from
// another Go package: one for each exported top-level name of the imported
// file but its File_ descriptor. byPath holds the files of the request.
func publicImportNames(f *protogen.File, byPath map[string]*protogen.File) []string {
	var names []string
	imports := f.Desc.Imports()
	for i := range imports.Len() {
		imp := imports.Get(i)
		pub, ok := byPath[imp.Path()]
		if !imp.IsPublic || !ok || pub.GoImportPath == f.GoImportPath {
			continue
		}
		for _, name := range protocGenGoNames(pub) {
			if name != pub.GoDescriptorIdent.GoName {
				names = append(names, name)
			}
		}
	}
	return names
}

// grpcNames lists the exported top-level identifiers protoc-gen-go-grpc
// declares for the services of f.
func grpcNames(f *protogen.File) []string {
	var names []string
	for _, svc := range f.Services {
		s := svc.GoName
		names = append(names, s+"Client", "New"+s+"Client", s+"Server", "Unimplemented"+s+"Server",
			"Unsafe"+s+"Server", "Register"+s+"Server", s+"_ServiceDesc")
		for _, m := range svc.Methods {
			names = append(names, s+"_"+m.GoName+"_FullMethodName")
			if m.Desc.IsStreamingClient() || m.Desc.IsStreamingServer() {
				names = append(names, s+"_"+m.GoName+"Client", s+"_"+m.GoName+"Server")
			}
		}
	}
	return names
}
