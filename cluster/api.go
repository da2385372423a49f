package cluster

import (
	"context"
	"time"

	"google.golang.org/protobuf/proto"
)

// SupportPackageIsVersion1 is referenced by code that protoc-gen-grain
// generates. If your build fails on this name, the generated code and this
// module disagree: regenerate with a protoc-gen-grain built from the same
// version of github.com/protograin/protograin that your go.mod requires.
const SupportPackageIsVersion1 = true

// Caller sends unary calls to grains. A *Node is a Caller, and so is the
// GrainContext a grain method receives, so generated clients work both
// outside grains and from one grain to another.
//
// Users may implement Caller themselves, for instance to fake a grain in a
// unit test of code that uses a generated client.
type Caller interface {
	// Invoke delivers call to the grain call.Kind/call.Identity, activating it
	// on its owner node if needed, and returns the grain's response. The
	// response's dynamic type is the one call.NewResponse allocates.
	Invoke(ctx context.Context, call Call, opts ...CallOption) (proto.Message, error)
}

// Call is one unary grain call as a generated client builds it.
type Call struct {
	// Kind is the grain kind: the fully qualified proto service name.
	Kind string
	// Identity names the grain instance within its kind.
	Identity string
	// Method is the full method name, "/package.Service/Method". Calls are
	// routed by this name, never by a method's position in the service.
	Method string
	// Request is the request message. The callee must not keep or change it
	// after the call returns: a call to a grain on the same node passes it
	// without copying.
	Request proto.Message
	// NewResponse allocates an empty response message. It is used when the
	// response has to be decoded from the network.
	NewResponse func() proto.Message
}

// GrainContext is what a grain method receives: a context.Context carrying
// the caller's deadline and cancellation, the grain's own identity, and a
// Caller for calls to other grains.
type GrainContext interface {
	context.Context
	Caller
	// Kind returns the kind of the grain handling the call.
	Kind() string
	// Identity returns the identity of the grain handling the call.
	Identity() string
}

// Activator is implemented by grains that want to run code when they are
// activated, before their first call is delivered. An error fails the call
// that caused the activation, and the activation is discarded.
type Activator interface {
	OnActivate(ctx GrainContext) error
}

// Deactivator is implemented by grains that want to run code when they are
// deactivated: after their idle timeout, or when their node shuts down.
type Deactivator interface {
	OnDeactivate(ctx GrainContext) error
}

// Kind describes a grain kind a node can host. Generated code builds one per
// service with New<Service>Kind; set the configuration fields before the
// Kind is passed to Start, and do not change them afterwards.
type Kind struct {
	// Name is the kind name, the fully qualified proto service name.
	Name string
	// New creates the grain for one identity. It is called once per
	// activation, on the owner node.
	New func(identity string) any
	// Methods lists the kind's unary methods.
	Methods []Method

	// IdleTimeout is how long an activation may go without a call before it
	// is passivated. Zero means DefaultIdleTimeout; a negative value means
	// activations stay until their node shuts down.
	IdleTimeout time.Duration
}

// DefaultIdleTimeout is the idle timeout of a Kind whose IdleTimeout is zero.
const DefaultIdleTimeout = 5 * time.Minute

// Method describes one unary method of a Kind.
type Method struct {
	// Name is the full method name, "/package.Service/Method".
	Name string
	// NewRequest allocates an empty request message, to decode into.
	NewRequest func() proto.Message
	// Handle calls the method on grain, which was made by the Kind's New.
	Handle func(grain any, ctx GrainContext, req proto.Message) (proto.Message, error)
}
