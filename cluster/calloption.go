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
	noRetry      bool
	turnOnCaller bool
	stamp        stamp // zero: the node stamps the call
	metadata     Metadata
	metadataErr  error // a WithMetadata given bad pairs
}

// applyCallOptions returns the config of a call made with opts; nil
// options are skipped.
func applyCallOptions(opts []CallOption) callConfig {
	var cc callConfig
	for _, o := range opts {
		if o != nil {
			cc = o.applyCall(cc)
		}
	}
	return cc
}

// Each option is a type of its own rather than a closure over a
// *callConfig: a closure is a call the compiler cannot see into, so the
// config it was given a pointer to escaped, and every call made with an
// option allocated it.

type withoutRetry struct{}

func (withoutRetry) applyCall(c callConfig) callConfig {
	c.noRetry = true
	return c
}

type withCallID stamp

func (o withCallID) applyCall(c callConfig) callConfig {
	c.stamp = stamp(o)
	return c
}

type withTurnOnCaller struct{}

func (withTurnOnCaller) applyCall(c callConfig) callConfig {
	c.turnOnCaller = true
	return c
}

// WithoutRetry makes a call fail at once with a retryable error instead of
// being retried within its deadline when the grain's owner is unreachable.
func WithoutRetry() CallOption {
	return withoutRetry{}
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
	return withCallID{clientID, seq}
}

// WithTurnOnCaller lets a call to a grain of this node run the grain's
// method on the calling goroutine when the grain is idle, even though ctx
// can end. The call then returns when the method does, even past ctx's
// deadline or cancellation; the method still sees ctx, and should watch it.
// A method that calls runtime.Goexit then ends the calling goroutine (see
// Node.Invoke). A call to a busy grain still waits under ctx and returns
// at its deadline.
//
// Without it, only a call whose context can never end runs there; a call
// under a deadline is handed to the grain's worker goroutine and back, so
// that it can return at its deadline while the method runs on. Use the
// option where the grain's methods return promptly, to save that hand-off:
// see BenchmarkLocalCallsTurnOnCaller in bench/grains. It changes nothing for
// a grain owned by another node, whose requests run on the goroutine that
// serves them there, while the caller here returns at its deadline.
func WithTurnOnCaller() CallOption {
	return withTurnOnCaller{}
}
