package runtime

import (
	"errors"
	"fmt"
)

var (
	// ErrSystemStopped is returned by System.Spawn after Shutdown or Close.
	ErrSystemStopped = errors.New("runtime: actor system stopped")
	// ErrStopped is returned when a message is sent to an actor that has
	// stopped or is stopping, and by Request when the actor stopped before
	// it handled the request.
	ErrStopped = errors.New("runtime: actor stopped")
	// ErrPanic is wrapped by the *PanicError a Request returns when the
	// handler panicked, or called runtime.Goexit.
	ErrPanic = errors.New("runtime: actor panicked")
	// ErrGoexit is the Failure.Reason of an actor whose handler, or
	// Props.New, called runtime.Goexit (t.FailNow does), and the
	// PanicError.Value of its Request: the runtime treats a Goexit as a
	// panic.
	ErrGoexit = errors.New("runtime: actor called runtime.Goexit")
	// ErrMailboxFull is returned by Send to a bounded mailbox that is full
	// and whose policy is MailboxFail.
	ErrMailboxFull = errors.New("runtime: mailbox full")
	// ErrNoReply is returned by Request when the actor handled the request
	// without responding and without detaching the reply.
	ErrNoReply = errors.New("runtime: actor did not reply")
	// ErrNilMessage is returned when nil is sent: nil cannot be told apart
	// from "no message".
	ErrNilMessage = errors.New("runtime: nil message")
	// ErrInvalidProps is wrapped by the error Spawn returns for unusable
	// Props.
	ErrInvalidProps = errors.New("runtime: invalid props")
)

// PanicError is the error a Request returns when the handler panicked, or
// called runtime.Goexit. It wraps ErrPanic and, when the panic value is an
// error, that error too (ErrGoexit for a Goexit).
type PanicError struct {
	// Value is the value passed to panic, or ErrGoexit.
	Value any
	// Stack is the stack of the panicking goroutine.
	Stack []byte
}

// Error returns "runtime: actor panicked: " and the panic value, or
// ErrGoexit's message for a Goexit.
func (e *PanicError) Error() string {
	if e.Value == ErrGoexit {
		return ErrGoexit.Error()
	}
	return fmt.Sprintf("%v: %v", ErrPanic, e.Value)
}

// Unwrap returns ErrPanic and, if the panic value is an error, that error.
func (e *PanicError) Unwrap() []error {
	if err, ok := e.Value.(error); ok {
		return []error{ErrPanic, err}
	}
	return []error{ErrPanic}
}
