package cluster

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/protograin/protograin/cluster/storage"
)

// Sentinel errors. Errors returned by Invoke wrap one of them when the
// cluster, not the grain, decided the outcome, on the calling node and across
// nodes alike, and carry a gRPC code that status.Code reports.
var (
	// ErrUnknownKind: no member hosts the kind, or the owner does not
	// (codes.Unimplemented).
	ErrUnknownKind = errors.New("cluster: unknown grain kind")
	// ErrUnknownMethod: the kind has no such method (codes.Unimplemented).
	ErrUnknownMethod = errors.New("cluster: unknown method")
	// ErrBadRequest: the request could not be encoded or decoded
	// (codes.InvalidArgument).
	ErrBadRequest = errors.New("cluster: bad request")
	// ErrBadResponse: the grain returned no response, or one that could
	// not be encoded or decoded (codes.Internal).
	ErrBadResponse = errors.New("cluster: bad response")
	// ErrGrainPanic: the grain panicked while handling the call
	// (codes.Internal). The stack is logged on the owner node.
	ErrGrainPanic = errors.New("cluster: grain panicked")
	// ErrGrainFailed: the grain kept panicking until its restart limit was
	// reached and was deactivated; the next call activates it afresh
	// (codes.Aborted).
	ErrGrainFailed = errors.New("cluster: grain deactivated after repeated failures")
	// ErrActivation: the grain's OnActivate hook failed (codes.Unavailable).
	ErrActivation = errors.New("cluster: grain activation failed")
	// ErrReentrant: a grain called a grain that is waiting for it in the
	// chain of calls, which would deadlock (codes.FailedPrecondition).
	ErrReentrant = errors.New("cluster: reentrant grain call")
	// ErrNotOwner: the node that received the call does not own the grain
	// in its view of the cluster (codes.Unavailable). Invoke retries it.
	ErrNotOwner = errors.New("cluster: not the grain's owner")
	// ErrUnavailable: the owner could not be reached, or was closing
	// (codes.Unavailable). Invoke retries it within the call's deadline
	// unless WithoutRetry is given.
	ErrUnavailable = errors.New("cluster: owner unavailable")
	// ErrNodeClosed: the calling node is shut down (codes.Unavailable).
	ErrNodeClosed = errors.New("cluster: node is closed")
	// ErrNoQuorum: with Config.KeepMajority, the calling node does not see
	// a majority of the cluster's members, and serves and places no grain
	// until it does (codes.Unavailable). Invoke retries it within the
	// call's deadline, like ErrUnavailable; Send returns it at once. Start
	// returns it when every member the node reached through its seeds has
	// no majority, or the node cannot connect to a strict majority of the
	// members it heard of there, as on the minority side of a partition.
	ErrNoQuorum = errors.New("cluster: no majority of the cluster's members in sight")
	// ErrTagsTooLarge: the node's tags (transport address and kind names)
	// exceed MaxTagsSize.
	ErrTagsTooLarge = errors.New("cluster: node tags too large")
	// ErrNameInUse: Start found the node's name held by a member at another
	// address, and the cluster did not give it to this node before Start's
	// context ended or the failure detector would have declared a dead
	// holder failed: another node runs under that name (see
	// Config.NodeName).
	ErrNameInUse = errors.New("cluster: node name in use")
	// ErrSuperseded: a later start under the node's name replaced it in
	// the cluster, and the node stopped (see Node.Err).
	ErrSuperseded = errors.New("cluster: node superseded by a later start under its name")
	// ErrCorruptFrame: bytes from a peer could not be decoded as frames.
	ErrCorruptFrame = errors.New("cluster: corrupt frame")
	// ErrStaleActivation: the grain's state was committed by another
	// activation (on another node, during a membership change) since this
	// one loaded it, so this activation's changes were refused and it was
	// deactivated (codes.Aborted). The call had no effect on state; the
	// next call activates the grain again from the store. (A call that
	// the winning activation ran too, under the same stamp, gets the
	// winner's recorded reply instead of this error.)
	ErrStaleActivation = errors.New("cluster: stale grain activation")
	// ErrStaleCall: the grain keeps no reply for the call's stamp (client
	// ID, sequence number), and the call may have run, so it did not run
	// now (codes.FailedPrecondition). Either the stamp is below the window
	// of that client's latest calls the grain keeps replies for, so
	// whether it ran cannot be told; or the call ran and committed changes
	// by flushing them itself (State().Flush), and its reply was lost
	// before it was recorded after the call (its node failed, or the
	// commit after the call did).
	ErrStaleCall = errors.New("cluster: stale call sequence number")
	// ErrStateUnavailable: the grain's state could not be loaded from the
	// store (a stored state message that does not decode is
	// ErrStateUndecodable instead), or a commit failed for another reason
	// than a version conflict (codes.Unavailable). After a failed commit
	// it is unknown whether the call took effect, unless the error also
	// wraps storage.ErrNotCommitted: the store said that nothing was
	// committed, so the call had no effect on state and may be sent
	// again, with its stamp or without. Otherwise retrying it with the
	// same stamp (WithCallID) tells.
	ErrStateUnavailable = errors.New("cluster: grain state unavailable")
	// ErrMailboxFull: Send found Config.MaxQueuedOneWay one-way messages
	// waiting for the grain already (codes.ResourceExhausted); the message
	// was not queued. A peer's message that finds the mailbox full is
	// dropped, and its sender is not told. A call fails with it, on the
	// grain's node or from another one, when Config.MaxQueuedCalls calls
	// wait for the grain already: the call was not queued, and Invoke does
	// not retry it (the grain is busy, not misplaced).
	ErrMailboxFull = errors.New("cluster: grain mailbox full")
	// ErrTooManyActivations: the grain's owner holds
	// Config.ActivationLimit grains, and the call or message needed one
	// more (codes.ResourceExhausted); nothing was activated or run, and
	// Invoke does not retry it. A grain active already is not refused.
	ErrTooManyActivations = errors.New("cluster: node holds too many activations")
	// ErrStateUndecodable: the grain's stored typed state message does not
	// decode as this node's version of the message
	// (codes.FailedPrecondition): another version of the .proto wrote it
	// and a field changed incompatibly between the two (bytes that are not
	// valid UTF-8 in a field now declared string, say), or the stored
	// bytes are damaged, an exactly-once record's too (state.ErrCorrupt).
	// The call did not run, no activation is kept, and
	// nothing stored was changed. It is not transient: every call to the
	// grain fails so while a node of this version owns it, until a version
	// that decodes the state owns it or the stored state is repaired, so
	// retrying does not help, and Invoke does not retry it.
	ErrStateUndecodable = errors.New("cluster: grain state undecodable")
)

// errStateNotCommitted is the sentinel of an ErrStateUnavailable failure
// whose commit committed nothing: errors.Is finds both ErrStateUnavailable
// and storage.ErrNotCommitted in it, on the calling node and across nodes.
var errStateNotCommitted = fmt.Errorf("%w: %w", ErrStateUnavailable, storage.ErrNotCommitted)

// reason says which sentinel an error frame stands for, so that a remote
// caller gets the same errors.Is behaviour as a local one. The values are
// part of the wire format: never renumber them.
type reason uint8

const (
	reasonNone reason = iota // the grain's own error
	reasonUnknownKind
	reasonUnknownMethod
	reasonBadRequest
	reasonBadResponse
	reasonGrainPanic
	reasonGrainFailed
	reasonActivation
	reasonNotOwner
	reasonUnavailable
	reasonNodeClosed
	reasonReentrant
	reasonStaleActivation
	reasonStaleCall
	reasonStateUnavailable
	reasonStateNotCommitted
	reasonMailboxFull
	reasonStateUndecodable
	reasonTooManyActivations
	reasonCount // first unused value
)

var reasonErrors = [reasonCount]error{
	reasonNone:          nil,
	reasonUnknownKind:   ErrUnknownKind,
	reasonUnknownMethod: ErrUnknownMethod,
	reasonBadRequest:    ErrBadRequest,
	reasonBadResponse:   ErrBadResponse,
	reasonGrainPanic:    ErrGrainPanic,
	reasonGrainFailed:   ErrGrainFailed,
	reasonActivation:    ErrActivation,
	reasonNotOwner:      ErrNotOwner,
	reasonUnavailable:   ErrUnavailable,
	reasonNodeClosed:    ErrNodeClosed,
	reasonReentrant:     ErrReentrant,

	reasonStaleActivation:   ErrStaleActivation,
	reasonStaleCall:         ErrStaleCall,
	reasonStateUnavailable:  ErrStateUnavailable,
	reasonStateNotCommitted: errStateNotCommitted,
	reasonMailboxFull:       ErrMailboxFull,
	reasonStateUndecodable:  ErrStateUndecodable,

	reasonTooManyActivations: ErrTooManyActivations,
}

// Error is the error Invoke returns when the cluster decided a call's
// outcome (as opposed to a grain returning its own error): it carries a
// gRPC code for status.Code and wraps one of the ErrX sentinels.
type Error struct {
	// Code is the gRPC code of the failure.
	Code codes.Code
	// Msg describes the failure.
	Msg string
	// Err is the sentinel the failure stands for (or, for a commit that
	// committed nothing, one that wraps both ErrStateUnavailable and
	// storage.ErrNotCommitted).
	Err error
}

// Error returns the message.
func (e *Error) Error() string { return e.Msg }

// Unwrap returns the sentinel.
func (e *Error) Unwrap() error { return e.Err }

// GRPCStatus returns the error as a gRPC status, for status.Code and
// status.FromError.
func (e *Error) GRPCStatus() *status.Status { return status.New(e.Code, e.Msg) }

// newError builds an *Error for sentinel with a formatted message.
func newError(code codes.Code, sentinel error, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...), Err: sentinel}
}

// reasonOf returns the reason code of err for the wire.
func reasonOf(err error) reason {
	var e *Error
	if !errors.As(err, &e) {
		return reasonNone
	}
	for r, s := range reasonErrors {
		if s != nil && s == e.Err {
			return reason(r)
		}
	}
	return reasonNone
}

// toStatus converts the outcome of a grain call to a code and message for the
// wire: status errors keep theirs, context errors get theirs, and anything
// else is Unknown with its message.
func toStatus(err error) (codes.Code, string) {
	if s, ok := status.FromError(err); ok {
		return s.Code(), s.Message()
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		s := status.FromContextError(err)
		return s.Code(), s.Message()
	}
	return codes.Unknown, err.Error()
}

// fromWire rebuilds the error of a reply frame on the calling node. A peer
// that is closing is, for its callers, an owner that is unavailable: they
// retry elsewhere.
func fromWire(code codes.Code, msg string, r reason) error {
	if r == reasonNodeClosed {
		r = reasonUnavailable
	}
	if r != reasonNone && r < reasonCount {
		return &Error{Code: code, Msg: msg, Err: reasonErrors[r]}
	}
	return status.Error(code, msg)
}

// contextError turns a context error into the matching gRPC status error.
func contextError(err error) error {
	return status.FromContextError(err).Err()
}

// retryable reports whether a call that failed with err may be sent again:
// the owner was unreachable or not the owner any more, so the grain did not
// run it (or ran it on a node that has since failed).
func retryable(err error) bool {
	return errors.Is(err, ErrNotOwner) || errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNoQuorum)
}
