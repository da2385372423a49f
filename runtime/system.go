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

	// closed is set by the first Shutdown or Close: spawns fail from then
	// on. top holds the actors spawned by System.Spawn until they stop,
	// spread over shards (see topShard).
	closed atomic.Bool
	top    [topShards]topShard

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
	if s.closed.Load() {
		return nil, ErrSystemStopped
	}
	r, err := s.newRef(&p, nil)
	if err != nil {
		return nil, err
	}
	sh := s.topShard(r)
	sh.mu.Lock()
	// Checked again under the shard's lock: closeTop sets closed before it
	// locks each shard to collect its actors, so a spawn either sees closed
	// here or is collected.
	if s.closed.Load() {
		sh.mu.Unlock()
		return nil, ErrSystemStopped
	}
	sh.add(r)
	sh.mu.Unlock()
	if !p.StartOnFirstMessage {
		r.schedule() // delivers *Started
	}
	return r, nil
}

// topShards is how many parts the set of top-level actors is split into.
const topShards = 32

// topShard is one part of the set of top-level actors, each with its own
// lock. The trick: one lock for the whole set was taken twice by every
// Spawn and once by every stop of a top-level actor; with a cluster
// activating grains from 64 goroutines that lock was where most of them
// waited (bench/grains BenchmarkActivation: 0.49 s of mutex delay in the
// host's 1.7 s profile). An actor's shard follows from its ID, so
// consecutive spawns take different locks. The padding keeps two shards'
// locks off one cache line.
//
// The set is a list linked through the actors' Refs rather than a map:
// the two links fit in what was padding in a Ref, where a map's entry
// cost about 36 B per actor, a hash and, now and then, the map's growth
// on every Spawn (3.6% of the CPU of the host of bench/grains
// BenchmarkActivation).
type topShard struct {
	mu   sync.Mutex
	head *Ref // the first actor of the list; guarded by mu
	_    [48]byte
}

// add links r at the head of the list. sh.mu is held.
func (sh *topShard) add(r *Ref) {
	r.topNext = sh.head
	if sh.head != nil {
		sh.head.topPrev = r
	}
	sh.head = r
}

// remove unlinks r, if it is linked. sh.mu is held.
func (sh *topShard) remove(r *Ref) {
	switch {
	case r.topPrev != nil:
		r.topPrev.topNext = r.topNext
	case sh.head == r:
		sh.head = r.topNext
	default:
		return // not in the list
	}
	if r.topNext != nil {
		r.topNext.topPrev = r.topPrev
	}
	r.topPrev, r.topNext = nil, nil
}

// topShard returns the part of the set of top-level actors that holds r.
func (s *System) topShard(r *Ref) *topShard { return &s.top[r.id%topShards] }

// Shutdown stops every actor gracefully (each processes the messages queued
// before the stop, then stops its children and waits for them) and waits
// until all have stopped or ctx ends, returning ctx.Err() in that case; the
// actors keep stopping, and Close can end them abruptly. New spawns fail
// from the first call on. Shutdown may be called again, to wait again. It
// must not be called from an actor's Receive, which would wait for itself.
func (s *System) Shutdown(ctx context.Context) error {
	refs := s.closeTop()
	defer s.workers.close()
	return stopTop(ctx, refs, stopGraceful)
}

// Close stops every actor abruptly: each finishes its current message, and
// what is still queued becomes dead letters. Close waits until all actors
// have stopped, so a handler that never returns blocks it, and it must not
// be called from an actor's Receive. It is idempotent.
func (s *System) Close() {
	refs := s.closeTop()
	defer s.workers.close()
	_ = stopTop(context.Background(), refs, stopAbrupt) // Background never ends
}

// maxStoppers is how many goroutines stopTop stops actors on at most.
const maxStoppers = 1024

// stopTop stops refs, abruptly or gracefully (how is stopAbrupt or
// stopGraceful), and waits until all have stopped, or until ctx ends: then
// it returns ctx.Err(), and the actors keep stopping.
//
// The trick: goroutines of its own, the stoppers, take the actors in turn,
// and each runs the stopping turn of an idle actor itself (see
// Ref.runInline). Asking every actor to stop at once scheduled them all:
// nearly every stop started a worker goroutine and grew its stack, and in
// waves of 1,024 they still did, since only 16 workers wait parked (at
// GOMAXPROCS 2). A stopper grows its stack once and takes actor after
// actor, and no stop waits for a hand-off to a worker. BenchmarkShutdown
// (100,000 idle actors): 1.67 µs per actor in waves, 0.56 µs with
// stoppers. There are as many stoppers as there were stops in a wave, so
// that slow stops (a Stopping handler waiting on I/O, say) overlap as much
// as they did: 16 stoppers, one per parked worker, were about as fast on
// idle actors (0.61 µs), but would take slow ones 16 at a time.
//
// When ctx ends the stoppers go on: asking every actor left to stop on a
// worker instead would start a goroutine for nearly each, which is what a
// node's Close, a Shutdown with a context that has ended, used to do.
func stopTop(ctx context.Context, refs []*Ref, how uint32) error {
	if len(refs) == 0 {
		return nil
	}
	run := &stopRun{refs: refs, how: how, taken: make(chan struct{})}
	for range min(len(refs), maxStoppers) {
		go run.stopper()
	}
	if err := waitDone(ctx, run.taken); err != nil {
		return err
	}
	for _, r := range refs {
		if !r.Stopped() {
			if err := waitDone(ctx, r.Done()); err != nil {
				return err
			}
		}
	}
	return nil
}

// stopRun is the actors of one stopTop, taken in turn by its stoppers.
type stopRun struct {
	refs  []*Ref
	how   uint32
	next  atomic.Int64  // the index of the next actor to take
	taken chan struct{} // closed when the last actor is taken
}

// stopper takes actors in turn and stops them, running the stopping turns
// of the idle ones, until none is left.
func (run *stopRun) stopper() {
	for {
		i := int(run.next.Add(1)) - 1
		if i >= len(run.refs) {
			return
		}
		if i == len(run.refs)-1 {
			close(run.taken)
		}
		run.refs[i].requestStop(run.how, true)
	}
}

// waitDone waits until done is closed or ctx ends, and returns ctx.Err()
// then.
func waitDone(ctx context.Context, done <-chan struct{}) error {
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// closeTop refuses further spawns and returns the live top-level actors.
func (s *System) closeTop() []*Ref {
	s.closed.Store(true)
	return s.topWhere(func(*Ref) bool { return true })
}

// removeTop forgets a top-level actor that has stopped.
func (s *System) removeTop(r *Ref) {
	sh := s.topShard(r)
	sh.mu.Lock()
	sh.remove(r)
	sh.mu.Unlock()
}

// topChildren returns the top-level actors that are not stopping, the
// siblings an AllForOne root strategy acts on.
func (s *System) topChildren() []*Ref {
	return s.topWhere(func(r *Ref) bool { return r.stopReq.Load() == 0 })
}

// topWhere returns the top-level actors for which pick is true, one shard
// at a time.
func (s *System) topWhere(pick func(r *Ref) bool) []*Ref {
	var refs []*Ref
	for i := range s.top {
		sh := &s.top[i]
		sh.mu.Lock()
		for r := sh.head; r != nil; r = r.topNext {
			if pick(r) {
				refs = append(refs, r)
			}
		}
		sh.mu.Unlock()
	}
	return refs
}
