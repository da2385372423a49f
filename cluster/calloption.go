package cluster

// CallOption changes how one call is made. Options are values built by the
// With... functions of this package; the zero set of options is the default.
//
// Long-lived things (nodes, kinds) are configured with structs; a CallOption
// is only for settings that vary from one call to the next.
type CallOption interface {
	// applyCall returns c with the option applied. It takes and returns
	// the config by value so that the config of a call stays on the
	// caller's stack (a pointer passed to an interface method escapes).
	applyCall(c callConfig) callConfig
}

// callConfig holds the settings of one call after its options are applied.
type callConfig struct {
	noRetry bool
	stamp   stamp // zero: the node stamps the call
}

type callOptionFunc func(*callConfig)

func (f callOptionFunc) applyCall(c callConfig) callConfig {
	f(&c)
	return c
}

// WithoutRetry makes a call fail at once with a retryable error instead of
// being retried within its deadline when the grain's owner is unreachable.
func WithoutRetry() CallOption {
	return callOptionFunc(func(c *callConfig) { c.noRetry = true })
}

// WithCallID stamps the call with clientID and seq instead of the node's own
// stamp. A grain runs a state-changing call at most once per stamp: it keeps
// the replies of each client's latest calls (a window, see package
// cluster/state) and answers a call whose stamp it recorded with the
// recorded reply, without running it again; a call below the client's
// window fails with ErrStaleCall. Use it to retry a call across process
// restarts: keep clientID stable, give each new call a higher seq, and reuse
// the stamp when retrying the same call. clientID must be non-empty valid
// UTF-8 without NUL bytes, and seq must not be zero; otherwise Invoke fails
// with ErrBadRequest.
func WithCallID(clientID string, seq uint64) CallOption {
	return callOptionFunc(func(c *callConfig) { c.stamp = stamp{clientID, seq} })
}
