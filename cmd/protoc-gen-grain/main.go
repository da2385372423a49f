package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"

	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/pluginpb"
)

// usage is printed by --help. It documents every parameter the plugin
// takes: those protogen handles for us, and the plugin's own.
const usage = `protoc-gen-grain generates typed grain interfaces, clients and kinds for
proto services. It is run by protoc or buf, which send it a
CodeGeneratorRequest on standard input; it is not meant to be run by hand.

  go get -tool github.com/protograin/protograin/cmd/protoc-gen-grain
  buf.gen.yaml:  - local: ["go", "tool", "protoc-gen-grain"]
                   out: .
                   opt: paths=source_relative
                   strategy: all  # if a Go package's .proto files span directories
  protoc:        protoc --go_out=. --grain_out=. --grain_opt=paths=source_relative x.proto

Parameters (comma-separated, as for protoc-gen-go; any other is an error):
  paths=import|source_relative   where output files go (default import)
  module=PREFIX                  strip PREFIX from output paths (with paths=import)
  M<file>=<import path>          override the Go import path of a .proto file
                                 (<file> is its path, ending in .proto)
  grpc=true                      protoc-gen-go-grpc writes into the same Go
                                 packages: generated names yield to its
                                 identifiers (<S>Client, New<S>Client, ...),
                                 so the client is <S>Client_ (default false)

Proto options (import "protograin/v1/options.proto", which is in the proto/
directory of the protograin module; see its comments):
  on a service, option (protograin.v1.grain) = {state: "S", flush: ...}:
    state: "<message>"        typed state message, read with <Service>StateOf
    flush: FLUSH_MODE_MANUAL  commit state only on Flush and at deactivation
    stateless_workers: <n>    up to n activations per identity on each host, no state
  on an RPC, option (protograin.v1.method).<name> = true:
    read_only: true           changes no state: not deduplicated, never flushed
    one_way: true             a one-way message; returns google.protobuf.Empty

Flags:
  --version   print the version and exit
  --help      print this help and exit
`

func main() {
	if handleFlags(os.Args[1:], os.Stdout) {
		return
	}
	if err := run(os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", filepath.Base(os.Args[0]), err)
		os.Exit(1)
	}
}

// run is protogen's Options.Run, except that the plugin checks the
// parameter before protogen parses it: it reads a CodeGeneratorRequest from
// stdin and writes the response to stdout. Like protogen, it returns the
// errors that stop it from answering (arguments, a bad request or
// parameter), which main prints before exiting 1; generation errors are in
// the response, which protoc and buf print.
func run(args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) > 0 {
		return fmt.Errorf("unknown argument %q (this program should be run by protoc, not directly)", args[0])
	}
	in, err := io.ReadAll(stdin)
	if err != nil {
		return err
	}
	req := &pluginpb.CodeGeneratorRequest{}
	if err := proto.Unmarshal(in, req); err != nil {
		return err
	}
	resp, err := respond(req)
	if err != nil {
		return err
	}
	out, err := proto.Marshal(resp)
	if err != nil {
		return err
	}
	_, err = stdout.Write(out)
	return err
}

// respond runs the generator on req. It returns an error for a bad
// parameter; generation errors are in the response. Tests call it too, so
// that they parse parameters as the binary does.
func respond(req *pluginpb.CodeGeneratorRequest) (*pluginpb.CodeGeneratorResponse, error) {
	gen, p, err := newPlugin(req)
	if err != nil {
		return nil, err
	}
	if err := generate(gen, p); err != nil {
		gen.Error(err)
	}
	return gen.Response(), nil
}

// newPlugin checks the parameter of req and returns the protogen view of
// req with the plugin's own parameters.
func newPlugin(req *pluginpb.CodeGeneratorRequest) (*protogen.Plugin, *params, error) {
	p := newParams()
	if err := p.check(req.GetParameter()); err != nil {
		return nil, nil, err
	}
	gen, err := protogen.Options{ParamFunc: p.set}.New(req)
	if err != nil {
		return nil, nil, err
	}
	return gen, p, nil
}

// handleFlags answers --version and --help before the request is read,
// because a plugin takes no other command-line argument. It reports whether
// it handled the arguments; other arguments are left to run, which rejects
// them with an error, as protogen does.
func handleFlags(args []string, stdout io.Writer) bool {
	if len(args) != 1 {
		return false
	}
	switch args[0] {
	case "--version", "-version":
		fmt.Fprintf(stdout, "protoc-gen-grain %s\n", version())
		return true
	case "--help", "-help", "-h":
		fmt.Fprint(stdout, usage)
		return true
	}
	return false
}

// modulePath is the module protoc-gen-grain belongs to.
const modulePath = "github.com/protograin/protograin"

// version is the protograin version the binary was built from.
func version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "(devel)"
	}
	return moduleVersion(info)
}

// moduleVersion finds the protograin version in build info: the main module's
// version after go install ...@vX.Y.Z, a dependency's version when the plugin
// is a go tool of another module, "(devel)" when built in a checkout.
func moduleVersion(info *debug.BuildInfo) string {
	mod := &info.Main
	if mod.Path != modulePath {
		mod = nil
		for _, dep := range info.Deps {
			if dep.Path == modulePath {
				mod = dep
			}
		}
	}
	switch {
	case mod == nil || mod.Version == "":
		return "(devel)"
	case mod.Replace != nil && mod.Replace.Version == "":
		return mod.Version + " (replaced by " + mod.Replace.Path + ")"
	case mod.Replace != nil:
		return mod.Replace.Version
	default:
		return mod.Version
	}
}

// params holds the plugin parameters that protogen does not handle itself.
// The FlagSet is the one place to add them; check gives every parameter the
// plugin does not take a clear error instead of leaving it to protogen,
// which ignores some silently.
type params struct {
	flags *flag.FlagSet
	// grpc reserves the identifiers protoc-gen-go-grpc generates, for
	// packages where it generates code too (grpc=true).
	grpc bool
}

func newParams() *params {
	p := &params{flags: flag.NewFlagSet("protoc-gen-grain", flag.ContinueOnError)}
	p.flags.SetOutput(io.Discard)
	p.flags.BoolVar(&p.grpc, "grpc", false, "reserve the identifiers protoc-gen-go-grpc generates")
	return p
}

// check checks the raw, comma-separated parameter before protogen parses
// it. It checks the value of paths= itself, so that every bad value gets an
// error of the same form (see params.badValue). protogen ignores a parameter
// without a name ("=x"), takes any parameter that starts with M as an
// M<file> mapping (so Module=x, meant as module=x, maps a file "odule"),
// and accepts parameters only protoc-gen-go uses (annotate_code,
// default_api_level, apilevelM<file>). check refuses all of them; it lets
// empty parameters, as from a trailing comma, through for protogen to
// ignore, as protoc-gen-go does.
func (p *params) check(raw string) error {
	for _, param := range strings.Split(raw, ",") {
		name, value, hasValue := strings.Cut(param, "=")
		switch {
		case param == "":
		case name == "":
			return fmt.Errorf("parameter %q has no name", param)
		case name == "paths" || name == "module" || p.flags.Lookup(name) != nil:
			if !hasValue || value == "" {
				return p.needsValue(name)
			}
			if name == "paths" && value != "import" && value != "source_relative" {
				return p.badValue(name, value)
			}
		case strings.HasPrefix(name, "M") && strings.HasSuffix(name, ".proto"):
			if value == "" {
				return p.needsValue(name)
			}
		default:
			return unknownParameter(name)
		}
	}
	return nil
}

// set is protogen.Options.ParamFunc: protogen calls it for each parameter it
// does not know itself.
func (p *params) set(name, value string) error {
	if p.flags.Lookup(name) == nil {
		return unknownParameter(name)
	}
	if err := p.flags.Set(name, value); err != nil {
		// flag's own error says only "parse error".
		return p.badValue(name, value)
	}
	return nil
}

// wantValue describes the values the parameter name takes, for errors.
func (p *params) wantValue(name string) string {
	switch {
	case name == "paths":
		return "import or source_relative"
	case name == "module":
		return "the Go import path prefix to strip from output paths"
	case strings.HasPrefix(name, "M") && strings.HasSuffix(name, ".proto"):
		return "the Go import path of " + name[1:]
	}
	if f := p.flags.Lookup(name); f != nil {
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			return "true or false"
		}
	}
	return "a value"
}

// needsValue is the error for a parameter given without a value.
func (p *params) needsValue(name string) error {
	return fmt.Errorf("parameter %s needs a value: want %s", name, p.wantValue(name))
}

// badValue is the error for a parameter whose value the plugin does not
// take.
func (p *params) badValue(name, value string) error {
	return fmt.Errorf("parameter %s=%s: want %s", name, value, p.wantValue(name))
}

// unknownParameter is the error for a parameter the plugin does not take.
func unknownParameter(name string) error {
	return fmt.Errorf("unknown parameter %q: protoc-gen-grain takes only paths=, module=, grpc= and M<file>.proto= (see --help)", name)
}
