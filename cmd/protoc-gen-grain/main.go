package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"google.golang.org/protobuf/compiler/protogen"
)

// usage is printed by --help. It documents the parameters that protogen
// handles for us, since they are the only ones the plugin takes.
const usage = `protoc-gen-grain generates typed grain interfaces, clients and kinds for
proto services. It is run by protoc or buf, which send it a
CodeGeneratorRequest on standard input; it is not meant to be run by hand.

  go get -tool github.com/protograin/protograin/cmd/protoc-gen-grain
  buf.gen.yaml:  - local: ["go", "tool", "protoc-gen-grain"]
                   out: .
                   opt: paths=source_relative
  protoc:        protoc --go_out=. --grain_out=. --grain_opt=paths=source_relative x.proto

Parameters (comma-separated, as for protoc-gen-go):
  paths=import|source_relative   where output files go (default import)
  module=PREFIX                  strip PREFIX from output paths (with paths=import)
  M<file>=<import path>          override the Go import path of a .proto file

Proto options (import "protograin/v1/options.proto", which is in the proto/
directory of the protograin module):
  option (protograin.v1.grain) = {state: "StateMsg", flush: FLUSH_MODE_MANUAL};
      on a service: its typed state message (<Service>StateOf) and flush mode
  option (protograin.v1.method).read_only = true;
      on an RPC: not deduplicated, never followed by a flush

Flags:
  --version   print the version and exit
  --help      print this help and exit
`

func main() {
	if handleFlags(os.Args[1:], os.Stdout) {
		return
	}
	pluginOptions().Run(generate)
}

// pluginOptions are the protogen options of one plugin run. Tests build their
// Plugin from the same options, so they parse parameters as the binary does.
func pluginOptions() protogen.Options {
	return protogen.Options{ParamFunc: newParams().set}
}

// handleFlags answers --version and --help before protogen runs, because
// protogen rejects every command-line argument. It reports whether it
// handled the arguments; other arguments are left to protogen, which rejects
// them with an error.
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
// There are none yet; the FlagSet is the one place to add them, and it gives
// every unknown parameter a clear error instead of silently ignoring it.
type params struct {
	flags *flag.FlagSet
}

func newParams() *params {
	flags := flag.NewFlagSet("protoc-gen-grain", flag.ContinueOnError)
	flags.SetOutput(io.Discard)
	return &params{flags: flags}
}

// set is protogen.Options.ParamFunc: protogen calls it for each parameter it
// does not know itself.
func (p *params) set(name, value string) error {
	if p.flags.Lookup(name) == nil {
		return fmt.Errorf("unknown parameter %q: protoc-gen-grain takes only paths=, module= and M<file>= (see --help)", name)
	}
	if err := p.flags.Set(name, value); err != nil {
		return fmt.Errorf("parameter %s=%s: %w", name, value, err)
	}
	return nil
}
