package reminder

import "time"

// Clock is the scheduler's source of time. Tests pass a fake one to fire
// reminders without waiting.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// AfterFunc calls f in its own goroutine once the time is at (at once
	// if it is already past), unless the returned Timer is stopped first.
	// It takes a time rather than a duration so that a timer set from a
	// reading of Now that is no longer current still goes off when due: a
	// fake clock moved between the two would otherwise put it late.
	AfterFunc(at time.Time, f func()) Timer
}

// Timer is a pending call of Clock.AfterFunc.
type Timer interface {
	// Stop prevents the call if it has not happened yet, and reports
	// whether it did prevent it.
	Stop() bool
}

// realClock is the Clock of the time package.
type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) AfterFunc(at time.Time, f func()) Timer { return time.AfterFunc(time.Until(at), f) }
