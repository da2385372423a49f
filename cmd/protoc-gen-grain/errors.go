package main

import (
	"errors"
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
)

// This file formats the errors the plugin reports about a service or a
// method, and their position in the .proto file.

// descError is the error the plugin reports about d, a service or a
// method: "protoc-gen-grain: <position>: service <S>[ method <M>]: <err>",
// with the position as position gives it.
func descError(d protoreflect.Descriptor, err error) error {
	what := "service " + string(d.FullName())
	if m, ok := d.(protoreflect.MethodDescriptor); ok {
		what = fmt.Sprintf("service %s method %s", m.Parent().FullName(), m.Name())
	}
	var field []int32
	if opt := (*optionError)(nil); errors.As(err, &opt) {
		field = opt.field
	}
	return fmt.Errorf("protoc-gen-grain: %s: %s: %w", position(d, field), what, err)
}

// optionError is an error in one option of a service or a method, which
// descError points at. field leads from the options message of the service
// or method to the option: the extension's number, then the number of a
// field of the extension's message, if the error is about one field.
type optionError struct {
	field []int32
	err   error
}

func (e *optionError) Error() string { return e.err.Error() }
func (e *optionError) Unwrap() error { return e.err }

// inOption marks err as an error in the field name of the option x, or in
// the option as a whole when name is "".
func inOption(err error, x protoreflect.ExtensionType, name protoreflect.Name) error {
	xd := x.TypeDescriptor()
	field := []int32{int32(xd.Number())}
	if name != "" {
		field = append(field, int32(xd.Message().Fields().ByName(name).Number()))
	}
	return &optionError{field: field, err: err}
}

// position is where d, a service or a method, is in its file, as compilers
// print it: "path:line:column", both one-based. With field (see
// optionError), it is where that option of d is set if the file records it:
// the statement that sets the field, or the one that sets the whole option
// as a message literal; else it is d's declaration. Without source info,
// as in a descriptor set built without it, it is the file's path alone.
func position(d protoreflect.Descriptor, field []int32) string {
	file := d.ParentFile()
	locs := file.SourceLocations()
	loc := locs.ByDescriptor(d)
	if len(loc.Path) == 0 {
		return file.Path()
	}
	if len(field) > 0 {
		options := append(slices.Clone(loc.Path), optionsField(d))
		if at, ok := optionLocation(locs, options, field); ok {
			loc = at
		}
	}
	return fmt.Sprintf("%s:%d:%d", file.Path(), loc.StartLine+1, loc.StartColumn+1)
}

// optionLocation finds where field of the options message at the source
// path options is set: the first location under the longest leading part
// of field that has any.
func optionLocation(locs protoreflect.SourceLocations, options protoreflect.SourcePath, field []int32) (protoreflect.SourceLocation, bool) {
	for n := len(field); n > 0; n-- {
		want := append(slices.Clone(options), field[:n]...)
		for i := range locs.Len() {
			if loc := locs.Get(i); len(loc.Path) >= len(want) && slices.Equal(loc.Path[:len(want)], want) {
				return loc, true
			}
		}
	}
	return protoreflect.SourceLocation{}, false
}

// optionsField is the number of the options field in the descriptor proto
// of d, a service or a method.
func optionsField(d protoreflect.Descriptor) int32 {
	var desc proto.Message = &descriptorpb.ServiceDescriptorProto{}
	if _, ok := d.(protoreflect.MethodDescriptor); ok {
		desc = &descriptorpb.MethodDescriptorProto{}
	}
	return int32(desc.ProtoReflect().Descriptor().Fields().ByName("options").Number())
}
