package cluster

import (
	"context"
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"
)

// Invoker sends a call or one-way message on: to the next
// OutgoingInterceptor of the node, or to the grain. For a one-way message
// it returns a nil response.
type Invoker func(ctx context.Context, call Call, opts ...CallOption) (proto.Message, error)

// OutgoingInterceptor runs around each call and one-way message a node
// sends (Config.OutgoingInterceptors): those of Invoke and Send, of the
// generated clients, and of the node's grains to other grains. oneWay
// says which it is. It calls invoke to send it on, at most once, and
// returns what invoke returned, or an error of its own; it may change ctx,
// call and opts on the way, to add metadata with WithMetadata (a trace
// context, say) or a deadline. It runs once per Invoke, around the
// retries within the call's deadline.
type OutgoingInterceptor func(ctx context.Context, call Call, oneWay bool, invoke Invoker, opts ...CallOption) (proto.Message, error)

// Handler runs a grain method: the next IncomingInterceptor of the node,
// or the method itself.
type Handler func(ctx GrainContext, req proto.Message) (proto.Message, error)

// IncomingInterceptor runs around each call and one-way message that a
// grain of the node handles (Config.IncomingInterceptors), in the grain's
// turn, whichever node it came from: method is its full name, oneWay says
// whether it is a one-way message (whose response goes nowhere). It calls
// handle to run the method, at most once, and returns what handle
// returned, or an error of its own: a call's caller gets it as the
// method's error, and the grain's state changes are undone, as after any
// failed call. It may pass handle a GrainContext with a context of its
// own (WithContext). It reads the metadata the sender attached with
// MetadataFrom(ctx). Hooks and reminders do not run through it.
type IncomingInterceptor func(ctx GrainContext, method string, oneWay bool, req proto.Message, handle Handler) (proto.Message, error)

// chainInterceptors sets the node's interceptors from cfg's, chained, and
// what the outgoing ones send a client's call or message on to.
func (n *Node) chainInterceptors(cfg *Config) {
	n.outgoing, n.incoming = chainOutgoing(cfg.OutgoingInterceptors), chainIncoming(cfg.IncomingInterceptors)
	n.invokeNext = func(ctx context.Context, call Call, opts ...CallOption) (proto.Message, error) {
		return n.invoke(ctx, call, nil, stamp{}, opts)
	}
	n.sendNext = func(ctx context.Context, call Call, opts ...CallOption) (proto.Message, error) {
		return nil, n.send(ctx, &call, opts)
	}
}

// chainOutgoing returns ics as one interceptor, the first outermost; nil
// for none, which the node then skips at no cost.
func chainOutgoing(ics []OutgoingInterceptor) OutgoingInterceptor {
	switch len(ics) {
	case 0:
		return nil
	case 1:
		return ics[0]
	}
	outer, rest := ics[0], chainOutgoing(ics[1:])
	return func(ctx context.Context, call Call, oneWay bool, invoke Invoker, opts ...CallOption) (proto.Message, error) {
		return outer(ctx, call, oneWay, func(ctx context.Context, call Call, opts ...CallOption) (proto.Message, error) {
			return rest(ctx, call, oneWay, invoke, opts...)
		}, opts...)
	}
}

// chainIncoming returns ics as one interceptor, the first outermost; nil
// for none.
func chainIncoming(ics []IncomingInterceptor) IncomingInterceptor {
	switch len(ics) {
	case 0:
		return nil
	case 1:
		return ics[0]
	}
	outer, rest := ics[0], chainIncoming(ics[1:])
	return func(ctx GrainContext, method string, oneWay bool, req proto.Message, handle Handler) (proto.Message, error) {
		return outer(ctx, method, oneWay, req, func(ctx GrainContext, req proto.Message) (proto.Message, error) {
			return rest(ctx, method, oneWay, req, handle)
		})
	}
}

// callMethod runs method m of the grain for a call or one-way message, with
// ctx and req, through the node's incoming interceptors if it has any.
func (g *grainActor) callMethod(ctx GrainContext, m *hostedMethod, oneWay bool, req proto.Message) (proto.Message, error) {
	in := g.node().incoming
	if in == nil {
		return m.Handle(g.grain, ctx, req)
	}
	grain := g.grain
	return in(ctx, m.Name, oneWay, req, func(ctx GrainContext, req proto.Message) (proto.Message, error) {
		if ctx == nil || noMessage(req) {
			// The interceptor's mistake, reported as the method's error.
			return nil, fmt.Errorf("cluster: an IncomingInterceptor handed %s no GrainContext or no request", m.Name)
		}
		return m.Handle(grain, ctx, req)
	})
}

// WithContext returns g with ctx as its context.Context: its deadline,
// cancellation and values are ctx's, and the rest (the grain's kind,
// identity and state, its calls and messages to other grains) is g's. An
// IncomingInterceptor uses it to hand the method a context of its own, a
// span's say. ctx should derive from g.
func WithContext(g GrainContext, ctx context.Context) GrainContext {
	return &derivedContext{Context: ctx, g: g}
}

// derivedContext is WithContext's GrainContext.
type derivedContext struct {
	context.Context
	g GrainContext
}

// Kind implements GrainContext.
func (d *derivedContext) Kind() string { return d.g.Kind() }

// Identity implements GrainContext.
func (d *derivedContext) Identity() string { return d.g.Identity() }

// State implements GrainContext.
func (d *derivedContext) State() State { return d.g.State() }

// Invoke implements Caller, as g's does.
func (d *derivedContext) Invoke(ctx context.Context, call Call, opts ...CallOption) (proto.Message, error) {
	return d.g.Invoke(ctx, call, opts...)
}

// Send implements Sender, as g's does.
func (d *derivedContext) Send(ctx context.Context, call Call, opts ...CallOption) error {
	return Send(ctx, d.g, call, opts...)
}

// scope implements grainScope, so that reminders can be registered
// through it.
func (d *derivedContext) scope() (*Node, *activation) {
	if s, ok := d.g.(grainScope); ok {
		return s.scope()
	}
	return nil, nil
}

// ForwardMetadata returns an interceptor for Config.OutgoingInterceptors
// that passes the metadata of the call or one-way message a grain is
// handling on to the calls and messages the grain sends while it handles
// it: the pairs whose key is among keys, or every pair if keys is empty.
// Metadata does not flow by itself (see MetadataFrom), as gRPC's does
// not: a tenant, a principal or a request ID the grains' callees should
// see is named here, and goes from grain to grain, on one node and across
// nodes, as far as the nodes that run this interceptor. A pair the grain
// attaches itself with WithMetadata comes after the forwarded ones, so
// Metadata.Get answers with the grain's; both count against
// MaxMetadataBytes, and a call over it fails with ErrBadRequest before it
// is sent. What a grain sends from its
// hooks, its reminders or outside a call (a client's Invoke) forwards
// nothing: no call's metadata is in its context.
func ForwardMetadata(keys ...string) OutgoingInterceptor {
	keys = slices.Clone(keys)
	return func(ctx context.Context, call Call, oneWay bool, invoke Invoker, opts ...CallOption) (proto.Message, error) {
		md := MetadataFrom(ctx)
		if md.Len() == 0 {
			return invoke(ctx, call, opts...)
		}
		var kv []string
		for k, v := range md.All() {
			if len(keys) == 0 || slices.Contains(keys, k) {
				kv = append(kv, k, v)
			}
		}
		if kv == nil {
			return invoke(ctx, call, opts...)
		}
		// The caller's opts are not changed: a new slice, the forwarded
		// pairs first.
		return invoke(ctx, call, append([]CallOption{WithMetadata(kv...)}, opts...)...)
	}
}

// innerContext returns the GrainContext that ctx derives from (WithContext),
// or ctx.
func innerContext(ctx GrainContext) GrainContext {
	for {
		d, ok := ctx.(*derivedContext)
		if !ok {
			return ctx
		}
		ctx = d.g
	}
}
