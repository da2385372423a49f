package main

import (
	"go/token"
	"go/types"
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
//     request. These are fixed; generated grain names yield to them.
//  2. The grain names of each service of the package, files in path order,
//     services in declaration order: <S>Kind, <S>Grain, Unimplemented<S>Grain,
//     <S>Client, New<S>Client, New<S>Kind, <S>StateOf (only for a service
//     whose (protograin.v1.grain) option names a state message), then
//     <S><M>Method for each RPC (<M> is the RPC's Go name before any renaming
//     within the service).
//
// Method names (on the grain interface, the Unimplemented type and the
// client) are unique per service; OnActivate, OnDeactivate and OnReminder
// are reserved there because a grain implementing cluster.Activator,
// cluster.Deactivator or cluster.ReminderReceiver needs those names for its
// hooks.
//
// All files of one Go package must be generated in one run (buf does this by
// default) for names that collide across files to be resolved the same way.

// serviceNames are the generated Go identifiers of one service.
type serviceNames struct {
	Kind          string // const: the kind name, e.g. CounterKind
	Grain         string // interface grains implement, e.g. CounterGrain
	Unimplemented string // embeddable type, e.g. UnimplementedCounterGrain
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

// reservedMethodNames are grain method names that belong to the cluster's
// optional lifecycle interfaces.
func reservedMethodNames() []string {
	return []string{"OnActivate", "OnDeactivate", "OnReminder"}
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

// packageNames names the services of every Go package in the request. The
// result maps each service of each file to its names, including files that
// are not generated in this run, so that names match across runs that
// generate different files of one package. hasState reports whether a
// service names a state message and so gets a StateOf accessor.
func packageNames(files []*protogen.File, hasState func(*protogen.Service) bool) map[*protogen.Service]*serviceNames {
	byPackage := map[protogen.GoImportPath][]*protogen.File{}
	for _, f := range files {
		byPackage[f.GoImportPath] = append(byPackage[f.GoImportPath], f)
	}
	names := map[*protogen.Service]*serviceNames{}
	for _, pkgFiles := range byPackage {
		sort.Slice(pkgFiles, func(i, j int) bool {
			return pkgFiles[i].Desc.Path() < pkgFiles[j].Desc.Path()
		})
		taken := nameSet{}
		for _, f := range pkgFiles {
			taken.reserve(protocGenGoNames(f)...)
		}
		for _, f := range pkgFiles {
			for _, svc := range f.Services {
				names[svc] = nameService(taken, svc, hasState(svc))
			}
		}
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
// would be shadowed by a local identifier, or would shadow a predeclared
// one that the generated code uses (any, string, error; jennifer's list of
// reserved words lacks any).
func importName(pkg string) string {
	locals := nameSet{}
	locals.reserve(localIdents()...)
	locals.reserve(types.Universe.Names()...)
	return locals.claim(pkg)
}
