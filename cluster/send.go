package cluster

import "context"

// Sender is implemented by Callers that deliver one-way messages: a *Node,
// and the GrainContext a grain method receives. It is separate from Caller
// so that a user's own Caller (a fake in a test, say) need not implement it;
// Send falls back to Invoke for those.
type Sender interface {
	// Send hands call over for delivery to the grain call.Kind/call.Identity
	// and returns without waiting for the grain to run it (see the package
	// doc, "One-way messages").
	Send(ctx context.Context, call Call, opts ...CallOption) error
}

// Send delivers call as a one-way message through caller: with its Send if
// caller is a Sender, otherwise by calling Invoke and discarding the
// response, so that it then returns when the grain has run the call, with
// its error. Generated clients use it for methods marked
// (protograin.v1.method).one_way.
func Send(ctx context.Context, caller Caller, call Call, opts ...CallOption) error {
	if s, ok := caller.(Sender); ok {
		return s.Send(ctx, call, opts...)
	}
	_, err := caller.Invoke(ctx, call, opts...)
	return err
}
