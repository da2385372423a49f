package runtime

// Started is the first message an actor instance receives, after spawn and
// after each restart.
type Started struct{}

// Stopping is received when the actor begins to stop, before its children
// are stopped. Its timers are already cancelled.
type Stopping struct{}

// Stopped is the last message an actor receives, after its children have
// stopped.
type Stopped struct{}

// Restarting is received by the failed instance before it is replaced.
type Restarting struct{}

// Terminated is received by a watcher when an actor it watches has stopped.
type Terminated struct {
	// Who is the actor that stopped.
	Who *Ref
}

// System messages. They travel on the system queue, which is drained before
// the user queue. Struct types with one pointer field, or none, are stored
// in an interface without allocating.
type (
	sysStop       struct{}
	sysResume     struct{}
	sysRestart    struct{}
	sysWatch      struct{ who *Ref }
	sysUnwatch    struct{ who *Ref }
	sysTerminated struct{ who *Ref } // to a watcher
	sysChildDone  struct{ who *Ref } // to the parent
	sysFailure    struct{ f *Failure }
)

// User-queue markers. gracefulStop travels behind the messages it must let
// through; timerFired carries a timer's message so that a cancelled timer's
// queued message can be dropped.
type (
	gracefulStop struct{}
	timerFired   struct{ t *Timer }
)
