package cluster

// CallOption changes how one call is made. Options are values built by the
// With... functions of this package; the zero set of options is the default.
//
// Long-lived things (nodes, kinds) are configured with structs; a CallOption
// is only for settings that vary from one call to the next.
type CallOption interface {
	applyCall(*callConfig)
}

// callConfig holds the settings of one call after its options are applied.
type callConfig struct {
	noRetry bool
}

type callOptionFunc func(*callConfig)

func (f callOptionFunc) applyCall(c *callConfig) { f(c) }

// WithoutRetry makes a call fail at once with a retryable error instead of
// being retried within its deadline when the grain's owner is unreachable.
func WithoutRetry() CallOption {
	return callOptionFunc(func(c *callConfig) { c.noRetry = true })
}
