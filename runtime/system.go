package runtime

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
)

// System hosts actors. Create it with NewSystem and end it with Shutdown or
// Close. All methods are safe for concurrent use.
type System struct {
	clock  Clock
	logger *slog.Logger
	root   SupervisorStrategy
	logDL  bool

	nextID atomic.Uint64

	mu     sync.Mutex
	closed bool
	top    map[*Ref]struct{} // actors spawned by System.Spawn, until they stop

	// rootMu serialises the root supervisor, which runs on the goroutines
	// of the failing top-level actors.
	rootMu sync.Mutex

	dlMu      sync.Mutex
	dlSubs    atomic.Pointer[[]*deadLetterSub] // copy on write
	dlDropped atomic.Uint64

	// beforeIdle, if set, runs on an actor's goroutine just before the
	// actor goes idle. Tests use it to send into the window where a lost
	// wake-up would happen; it is nil otherwise.
	beforeIdle func(*Ref)

	slots     sync.Pool     // *replySlot
	envelopes envelopePool  // queue nodes
	workers   workers       // goroutines that run actors' turns
	closedCh  chan struct{} // closed; the Done channel of actors that stopped before anyone asked
}

// NewSystem returns a running System configured by cfg.
func NewSystem(cfg Config) *System {
	s := &System{
		clock:    cfg.Clock,
		logger:   cfg.Logger,
		root:     cfg.Supervisor,
		logDL:    cfg.LogDeadLetters,
		top:      make(map[*Ref]struct{}),
		closedCh: make(chan struct{}),
	}
	close(s.closedCh)
	if s.clock == nil {
		s.clock = realClock{}
	}
	if s.logger == nil {
		s.logger = slog.Default()
	}
	if s.root == nil {
		s.root = DefaultStrategy()
	}
	s.slots.New = newReplySlot
	s.envelopes.init()
	s.workers.init()
	return s
}

// Spawn starts a top-level actor, supervised by Config.Supervisor. It fails
// with ErrSystemStopped after Shutdown or Close, with an error wrapping
// ErrInvalidProps for unusable Props, and with one wrapping ErrPanic (a
// *PanicError) if Props.New panics.
func (s *System) Spawn(p Props) (*Ref, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	if s.isClosed() {
		return nil, ErrSystemStopped
	}
	r, err := s.newRef(&p, nil)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrSystemStopped
	}
	s.top[r] = struct{}{}
	s.mu.Unlock()
	r.schedule() // delivers *Started
	return r, nil
}

func (s *System) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Shutdown stops every actor gracefully (each processes the messages queued
// before the stop, then stops its children and waits for them) and waits
// until all have stopped or ctx ends, returning ctx.Err() in that case; the
// actors keep stopping, and Close can end them abruptly. New spawns fail
// from the first call on. Shutdown may be called again, to wait again. It
// must not be called from an actor's Receive, which would wait for itself.
func (s *System) Shutdown(ctx context.Context) error {
	refs := s.closeTop()
	for _, r := range refs {
		r.GracefulStop()
	}
	for _, r := range refs {
		select {
		case <-r.Done():
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Close stops every actor abruptly: each finishes its current message, and
// what is still queued becomes dead letters. Close waits until all actors
// have stopped, so a handler that never returns blocks it, and it must not
// be called from an actor's Receive. It is idempotent.
func (s *System) Close() {
	refs := s.closeTop()
	for _, r := range refs {
		r.Stop()
	}
	for _, r := range refs {
		<-r.Done()
	}
}

// closeTop refuses further spawns and returns the live top-level actors.
func (s *System) closeTop() []*Ref {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.workers.close()
	refs := make([]*Ref, 0, len(s.top))
	for r := range s.top {
		refs = append(refs, r)
	}
	return refs
}

// removeTop forgets a top-level actor that has stopped.
func (s *System) removeTop(r *Ref) {
	s.mu.Lock()
	delete(s.top, r)
	s.mu.Unlock()
}

// topChildren returns the top-level actors that are not stopping, the
// siblings an AllForOne root strategy acts on.
func (s *System) topChildren() []*Ref {
	s.mu.Lock()
	defer s.mu.Unlock()
	refs := make([]*Ref, 0, len(s.top))
	for r := range s.top {
		if r.stopReq.Load() == 0 {
			refs = append(refs, r)
		}
	}
	return refs
}
