package runtime

import (
	"log/slog"
	"time"
)

// Config configures a System. The zero value is ready to use.
type Config struct {
	// Supervisor supervises the actors spawned with System.Spawn. Nil means
	// DefaultStrategy(). A failure escalated past it (Escalate, or the
	// restart limit reached) stops the actor and is logged at Error level.
	// It runs on the goroutine that ran the failing actor's turn (a worker,
	// or a Request's caller; see Ref.Request), for several actors at once
	// if they fail together, so its Decider must be safe for concurrent use
	// (see Decider). A Decider that calls runtime.Goexit there ends that
	// goroutine, and the failure is escalated, as for a panic: the actor
	// stops.
	Supervisor SupervisorStrategy
	// Logger receives failures, supervision decisions and, if
	// LogDeadLetters is set, dead letters. Nil means slog.Default().
	Logger *slog.Logger
	// LogDeadLetters logs every dead letter at Debug level. False by
	// default: subscribe with System.SubscribeDeadLetters instead.
	LogDeadLetters bool
	// Clock provides time to timers, restart windows and backoff. Nil means
	// the real clock; tests inject a fake one.
	Clock Clock
}

// Clock is the source of time of a System.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// AfterFunc calls f in its own goroutine after d and returns a function
	// that cancels the call, reporting whether it did. It must never call
	// f before returning.
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

// realClock is the Clock backed by package time.
type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) AfterFunc(d time.Duration, f func()) func() bool {
	return time.AfterFunc(d, f).Stop
}
