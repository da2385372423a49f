package reminder

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/protograin/protograin/cluster/storage"
)

// ErrClosed is returned by the Scheduler's methods after Close (by Start
// and Refresh after Stop).
var ErrClosed = errors.New("reminder: scheduler closed")

// ErrStarted is returned by Start when the scheduler was started before.
var ErrStarted = errors.New("reminder: scheduler already started")

// ErrUnknownKind is returned by Register and Unregister for a grain whose
// kind is not in Config.Kinds: this node does not host it, so it could not
// fire the reminder either.
var ErrUnknownKind = errors.New("reminder: kind not hosted by this node")

// Defaults for the zero fields of Config.
const (
	DefaultRetryBackoff       = time.Second
	DefaultRetryBackoffMax    = time.Minute
	DefaultFireTimeout        = time.Minute
	DefaultListTimeout        = time.Minute
	DefaultMaxConcurrentFires = 64
	DefaultRelistEvery        = 5 * time.Minute
	DefaultProbeEvery         = time.Second
)

// Config configures a Scheduler. Store, Owns and Fire are required.
type Config struct {
	// Store keeps the reminders. The scheduler does not close it.
	Store storage.Store
	// Kinds lists the grain kinds this node hosts; only their reminders are
	// listed and accepted.
	Kinds []string
	// Owns reports whether this node owns the grain now (placement). It is
	// asked when listing and again just before each firing, so it must be
	// cheap and safe for concurrent use.
	Owns func(kind, identity string) bool
	// Fire delivers a due reminder to its grain. A nil error means it was
	// delivered; any other error makes the scheduler retry later. Fire runs
	// in its own goroutine, several at a time for different reminders, and
	// ctx ends after FireTimeout or when the scheduler is stopped. A Fire
	// that calls runtime.Goexit, ending that goroutine, failed: it is
	// retried as after an error.
	Fire func(ctx context.Context, r storage.Reminder) error
	// StoreFailure reports whether an error of Fire says that the store
	// failed (the grain's state could not be loaded or saved), rather than
	// the grain or the way to it. Such a firing waits in backoff as any
	// failed one, but the scheduler then probes the store, and once it saw
	// the store down and working again it tries the firing within
	// ProbeEvery rather than after its backoff (see the package
	// documentation). It must be safe for concurrent use. Nil means that
	// no error of Fire is the store's.
	StoreFailure func(err error) bool
	// Clock tells time and runs the timer. Nil means real time.
	Clock Clock
	// RetryBackoff is how long the first retry of a failed Fire waits; each
	// further failure doubles the wait, up to RetryBackoffMax (a Fire that
	// failed for the store may be retried sooner: see StoreFailure). Zero
	// means DefaultRetryBackoff and DefaultRetryBackoffMax; negative values
	// are refused.
	RetryBackoff, RetryBackoffMax time.Duration
	// FireTimeout bounds one Fire, and the store write after it. Zero means
	// DefaultFireTimeout; negative values are refused.
	FireTimeout time.Duration
	// ListTimeout bounds the listing of one kind (by Refresh or in the
	// background); each kind has a ListTimeout of its own, so that a kind
	// whose listing hangs does not starve the others. Zero means
	// DefaultListTimeout; negative values are refused.
	ListTimeout time.Duration
	// RelistEvery is how long after the last listing asked for (by Start,
	// Relist or RelistAfter) the scheduler asks for another one by itself,
	// as anti-entropy: it takes over a change another node made to the
	// store that no listing saw, such as a leaving node's write that landed
	// after this node's listings. Zero means DefaultRelistEvery; a negative
	// value turns it off.
	RelistEvery time.Duration
	// ListRetryBackoff is how long the background listing (see Relist)
	// waits before it lists again the kinds whose listing failed; each
	// further failure in a row doubles the wait, up to ListRetryBackoffMax
	// (or less, once the store works again: see ProbeEvery). Zero means
	// RetryBackoff and RetryBackoffMax; negative values are refused.
	ListRetryBackoff, ListRetryBackoffMax time.Duration
	// ProbeEvery is how often the scheduler probes the store while it
	// finds it down, after a firing or a listing failed for it, and the
	// time over which the firings and listings that wait for the store are
	// spread once a probe finds it working again. Zero means
	// DefaultProbeEvery; negative values are refused.
	ProbeEvery time.Duration
	// MaxConcurrentFires bounds how many Fires run at once; due reminders
	// beyond it wait for a free slot. Zero means DefaultMaxConcurrentFires;
	// negative values are refused.
	MaxConcurrentFires int
	// Logger receives failed firings, failed store writes after a firing,
	// failed background listings, and the store's outages as the probe
	// sees them begin and end. Nil means slog.Default().
	Logger *slog.Logger
}

// withDefaults returns c with its zero fields filled in, or an error naming
// the first bad field.
func (c Config) withDefaults() (Config, error) {
	switch {
	case c.Store == nil:
		return c, errors.New("reminder: Config.Store is nil")
	case c.Owns == nil:
		return c, errors.New("reminder: Config.Owns is nil")
	case c.Fire == nil:
		return c, errors.New("reminder: Config.Fire is nil")
	case c.RetryBackoff < 0 || c.RetryBackoffMax < 0:
		return c, fmt.Errorf("reminder: Config.RetryBackoff %v and RetryBackoffMax %v must not be negative", c.RetryBackoff, c.RetryBackoffMax)
	case c.FireTimeout < 0:
		return c, fmt.Errorf("reminder: Config.FireTimeout %v is negative", c.FireTimeout)
	case c.ListTimeout < 0:
		return c, fmt.Errorf("reminder: Config.ListTimeout %v is negative", c.ListTimeout)
	case c.ListRetryBackoff < 0 || c.ListRetryBackoffMax < 0:
		return c, fmt.Errorf("reminder: Config.ListRetryBackoff %v and ListRetryBackoffMax %v must not be negative", c.ListRetryBackoff, c.ListRetryBackoffMax)
	case c.ProbeEvery < 0:
		return c, fmt.Errorf("reminder: Config.ProbeEvery %v is negative", c.ProbeEvery)
	case c.MaxConcurrentFires < 0:
		return c, fmt.Errorf("reminder: Config.MaxConcurrentFires %d is negative", c.MaxConcurrentFires)
	}
	for _, k := range c.Kinds {
		if err := (storage.Key{Kind: k}).Validate(); err != nil {
			return c, fmt.Errorf("reminder: Config.Kinds: %w", err)
		}
	}
	if c.Clock == nil {
		c.Clock = realClock{}
	}
	if c.RetryBackoff == 0 {
		c.RetryBackoff = DefaultRetryBackoff
	}
	if c.RetryBackoffMax == 0 {
		c.RetryBackoffMax = max(DefaultRetryBackoffMax, c.RetryBackoff)
	}
	if c.RetryBackoffMax < c.RetryBackoff {
		return c, fmt.Errorf("reminder: Config.RetryBackoffMax %v is below RetryBackoff %v", c.RetryBackoffMax, c.RetryBackoff)
	}
	if c.FireTimeout == 0 {
		c.FireTimeout = DefaultFireTimeout
	}
	if c.ListTimeout == 0 {
		c.ListTimeout = DefaultListTimeout
	}
	if c.RelistEvery == 0 {
		c.RelistEvery = DefaultRelistEvery
	}
	if c.ListRetryBackoff == 0 {
		c.ListRetryBackoff = c.RetryBackoff
	}
	if c.ListRetryBackoffMax == 0 {
		c.ListRetryBackoffMax = max(c.RetryBackoffMax, c.ListRetryBackoff)
	}
	if c.ListRetryBackoffMax < c.ListRetryBackoff {
		return c, fmt.Errorf("reminder: Config.ListRetryBackoffMax %v is below ListRetryBackoff %v", c.ListRetryBackoffMax, c.ListRetryBackoff)
	}
	if c.ProbeEvery == 0 {
		c.ProbeEvery = DefaultProbeEvery
	}
	if c.MaxConcurrentFires == 0 {
		c.MaxConcurrentFires = DefaultMaxConcurrentFires
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.Kinds = slices.Clone(c.Kinds)
	return c, nil
}

// Scheduler fires the reminders of the grains this node owns; see the package
// documentation. Its methods are safe for concurrent use.
//
// No lock is held across a call to the store: Register, Unregister and the
// firings never wait for a listing, nor a listing for them. Instead, the
// scheduler notes this node's store writes per reminder (see writes), and a
// listing leaves alone the reminders this node wrote while it listed.
type Scheduler struct {
	cfg    Config
	cfgErr error
	hosts  map[string]bool // cfg.Kinds as a set

	ctx    context.Context // ends at Stop (or Close); parent of every Fire and background listing
	cancel context.CancelFunc
	// writeCtx is the parent of the store writes after firings: it ends
	// when the context given to Stop ends, so that Stop can wait for them
	// as long as its caller allows, and no longer.
	writeCtx    context.Context
	writeCancel context.CancelFunc
	wake        chan struct{} // pokes the loop; capacity one
	// relist asks listLoop for a listing of every kind (see Relist);
	// capacity one, so that requests made while listings run coalesce.
	relist chan struct{}
	// relistRetry asks listLoop for a listing of the kind it carries, whose
	// last listing failed.
	relistRetry chan string
	// recovered tells listLoop that a probe found the store working again
	// (see storeWatch); capacity one.
	recovered chan struct{}
	done      chan struct{} // closed by Stop
	wg        sync.WaitGroup
	stop      sync.Once

	// own makes a call of Config.Owns and its effect on the schedule one
	// step: it is held by a listing while it asks Owns about the reminders
	// it listed and applies them, by a firing while it asks whether this
	// node still owns the grain and drops the entry if not (stillOwned),
	// and by Register while it asks and schedules. So a listing that keeps
	// an entry comes either before such a check (which is then the newer
	// word) or after it (and adds the entry back with the newer view). It
	// is never held across a call to the store. Lock order: own, then mu.
	own sync.Mutex

	mu       sync.Mutex    // guards the fields below
	entries  map[id]*entry // the schedule
	leaving  map[id]*entry // taken off the schedule while being fired
	queue    queue
	timer    Timer
	timerAt  time.Time // when timer fires; zero when there is none
	timerGen uint64    // tells the current timer from stopped ones
	// later is the pending timer of RelistAfter, at laterAt; laterGen
	// tells it from stopped ones.
	later    Timer
	laterAt  time.Time
	laterGen uint64
	// writes records this node's store writes of each reminder (Register,
	// Unregister, the write after a firing) that a listing may need to know
	// of: those in flight, and those that ended after a running listing
	// started. A listing reads the store at some moment after it started,
	// so what it read of such a reminder may be older than what this node
	// wrote, and the schedule, which this node updated with its write, is
	// the newer word: a listing leaves those reminders alone (see skipLocked).
	// A record goes once no running listing needs it (see endListingLocked).
	writes map[id]*writeRecord
	// seq counts the beginnings and ends of store writes: a listing notes it
	// as it starts, a write as it ends.
	seq uint64
	// listings counts the running listings by the seq they started at.
	listings map[uint64]int
	// kindSeq numbers the listings of each kind as they start, and applied
	// holds the number of the last one applied: a listing that ends after
	// one that started later is not applied, as what it read may be older
	// (Refresh may run beside the background listing).
	kindSeq, applied map[string]uint64
	inflight         int
	watch            storeWatch
	relists          uint64 // rounds of background listings done, failed or not (tests wait for them)
	started          bool
	stopped          bool // nothing fires any more (Stop)
	closed           bool // nothing is done any more (Close)
}

// writeRecord is what a Scheduler knows of its store writes of one
// reminder: how many are in flight, and the seq at which the last one
// ended.
type writeRecord struct {
	inflight int
	ended    uint64
	// relist is set when a listing left the reminder alone while a write
	// was in flight, though what it read disagreed with the schedule: the
	// write's end asks for another listing (see recheckLocked).
	relist bool
}

// New returns a Scheduler that does nothing until Start. A bad Config is
// reported by Start, Refresh, Register and Unregister, which all return the
// same error.
func New(cfg Config) *Scheduler {
	c, err := cfg.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	writeCtx, writeCancel := context.WithCancel(context.Background())
	s := &Scheduler{
		cfg:         c,
		cfgErr:      err,
		hosts:       make(map[string]bool, len(c.Kinds)),
		ctx:         ctx,
		cancel:      cancel,
		writeCtx:    writeCtx,
		writeCancel: writeCancel,
		wake:        make(chan struct{}, 1),
		relist:      make(chan struct{}, 1),
		relistRetry: make(chan string),
		recovered:   make(chan struct{}, 1),
		done:        make(chan struct{}),
		entries:     make(map[id]*entry),
		leaving:     make(map[id]*entry),
		writes:      make(map[id]*writeRecord),
		listings:    make(map[uint64]int),
		kindSeq:     make(map[string]uint64),
		applied:     make(map[string]uint64),
	}
	for _, k := range c.Kinds {
		s.hosts[k] = true
	}
	return s
}

// Start starts firing, and asks for a first listing of every hosted kind,
// which the scheduler runs in the background as it does those Relist asks
// for: Start does not wait for the store, and a listing that fails is
// logged and tried again with backoff, while the reminders of the kinds
// listed are scheduled and fire. Placement must know the members by then.
// The scheduler runs until Stop or Close. Start fails only for a bad
// Config, a second Start (ErrStarted), or after Stop (ErrClosed).
func (s *Scheduler) Start() error {
	if err := s.usable(); err != nil {
		return err
	}
	s.mu.Lock()
	switch {
	case s.stopped: // checked under mu, so that Stop's Wait cannot race the Add
		s.mu.Unlock()
		return ErrClosed
	case s.started:
		s.mu.Unlock()
		return ErrStarted
	}
	s.started = true
	s.wg.Add(2)
	s.mu.Unlock()
	go s.loop()
	go s.listLoop()
	s.Relist()
	return nil
}

// Register saves r in the store, replacing the reminder of the same grain and
// name, and schedules it if this node owns the grain. A Due in the past fires
// at once (or at Start, before the scheduler is started). If another node
// owns the grain, r is only saved: the owner schedules it at its next
// listing (Start, Refresh or Relist). A firing under way of the reminder
// r replaces is cancelled, as by Unregister. Bad reminders are refused
// with an error wrapping storage.ErrInvalid, and nothing is saved.
func (s *Scheduler) Register(ctx context.Context, r storage.Reminder) error {
	if err := s.checkGrain(r.Grain); err != nil {
		return err
	}
	if err := r.Validate(); err != nil {
		return fmt.Errorf("reminder: register: %w", err)
	}
	r.Due = r.Due.UTC() // as ListReminders returns it
	k := id{r.Grain, r.Name}
	s.beginWrite(k)
	err := s.cfg.Store.SaveReminder(ctx, r)
	s.own.Lock()
	defer s.own.Unlock()
	owns := err == nil && s.cfg.Owns(r.Grain.Kind, r.Grain.Identity)
	s.mu.Lock()
	defer s.mu.Unlock()
	// The write ends with its effect on the schedule, in one step, so a
	// listing that applies its result sees both or neither.
	s.endWriteLocked(k)
	if err != nil {
		return fmt.Errorf("reminder: register %q of grain %s: %w", r.Name, r.Grain, err)
	}
	// Two Registers of one reminder at once (the cluster does not make
	// them: a grain registers from its turns, one at a time) may land in
	// the store in one order and here in the other; the firing's
	// conditional write then fails, and the next listing mends the
	// schedule (see fired).
	if owns && !s.stopped {
		s.putLocked(k, r)
		s.poke()
	} else if e := s.lookupLocked(k); e != nil {
		e.bump() // a running firing must not overwrite r, nor deliver the old one
		s.removeLocked(e)
	}
	return nil
}

// Unregister deletes the reminder name of grain from the store and the
// schedule. Deleting a reminder that does not exist is not an error. A
// firing already under way is cancelled once the reminder is deleted: if
// it has not reached the grain by then, it does not (Config.Fire sees its
// context end), and it is neither retried nor written back.
func (s *Scheduler) Unregister(ctx context.Context, grain storage.Key, name string) error {
	if err := s.checkGrain(grain); err != nil {
		return err
	}
	k := id{grain, name}
	s.beginWrite(k)
	err := s.cfg.Store.DeleteReminder(ctx, grain, name)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endWriteLocked(k)
	if err != nil {
		// The delete may have landed all the same (a reply lost to ctx):
		// then the firing's conditional write fails on the missing
		// reminder, and the entry leaves the schedule (see fired).
		return fmt.Errorf("reminder: unregister %q of grain %s: %w", name, grain, err)
	}
	if e := s.lookupLocked(k); e != nil {
		e.bump() // a running firing must not write the reminder back, nor deliver it
		s.removeLocked(e)
	}
	return nil
}

// beginWrite notes that a store write of reminder k begins (see
// Scheduler.writes).
func (s *Scheduler) beginWrite(k id) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.beginWriteLocked(k)
}

// beginWriteLocked is beginWrite with mu held.
func (s *Scheduler) beginWriteLocked(k id) {
	w := s.writes[k]
	if w == nil {
		w = &writeRecord{}
		s.writes[k] = w
	}
	w.inflight++
	s.seq++
}

// endWriteLocked notes that a store write of reminder k ended, landed or
// not: a failed write may have landed all the same. Callers apply the
// write's effect on the schedule under the same hold of mu.
func (s *Scheduler) endWriteLocked(k id) {
	s.seq++
	w := s.writes[k]
	w.inflight--
	w.ended = s.seq
	if w.inflight == 0 && w.relist {
		w.relist = false
		s.Relist()
	}
	if w.inflight == 0 && len(s.listings) == 0 {
		delete(s.writes, k) // no listing runs that could have read the store before it
	}
}

// skipLocked reports whether a listing that started at seq start must
// leave reminder k alone: this node has a write of k in flight, or ended
// one after the listing started, so what the listing read of k may be
// older than the schedule.
func (s *Scheduler) skipLocked(k id, start uint64) bool {
	w := s.writes[k]
	return w != nil && (w.inflight > 0 || w.ended > start)
}

// recheckLocked asks for another listing, once this node's write of k in
// flight (if any) has ended, for a reminder that a listing left alone (see
// skipLocked) though what it read disagreed with the schedule. That
// listing's word on k is lost, and it may have been the newer one: another
// node changed or deleted the reminder after this node's write, or the
// grain's ownership moved while this node wrote. The next listing starts
// after the write, and does not skip k for it. A listing that read what
// the schedule holds asks for nothing, so a node whose grains keep
// registering does not list without pause.
func (s *Scheduler) recheckLocked(k id) {
	if w := s.writes[k]; w != nil && w.inflight > 0 {
		w.relist = true
		return
	}
	s.Relist()
}

// beginListingLocked notes that a listing starts, and returns the seq it
// started at.
func (s *Scheduler) beginListingLocked() uint64 {
	s.listings[s.seq]++
	return s.seq
}

// endListingLocked notes that the listing that started at start ended, and
// forgets the writes that no running listing needs any more.
func (s *Scheduler) endListingLocked(start uint64) {
	if s.listings[start]--; s.listings[start] == 0 {
		delete(s.listings, start)
	}
	oldest, any := uint64(0), false
	for st := range s.listings {
		if !any || st < oldest {
			oldest, any = st, true
		}
	}
	for k, w := range s.writes {
		if w.inflight == 0 && (!any || w.ended <= oldest) {
			delete(s.writes, k)
		}
	}
}

// Len returns the number of reminders scheduled on this node, including
// those being fired.
func (s *Scheduler) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries)
}

// Stop ends the firing for good: it stops the timers, cancels the
// context of running Fires and of a background listing under way, and
// waits for them. It also waits for the store writes that record the
// outcome of firings that succeeded, until ctx ends; it then cancels those
// too, and waits for them to return (at once with a store that honours its
// context): a write cancelled so is logged, and its firing may repeat,
// which at-least-once allows. Register and Unregister still save to and
// delete from the store, and schedule nothing; Start and Refresh return
// ErrClosed, and Relist does nothing. A node that leaves stops firing
// before its grains deactivate, whose hooks may still change their
// reminders for the grains' next owners. It is idempotent; a later call
// waits as the first does, within its own ctx.
func (s *Scheduler) Stop(ctx context.Context) {
	s.stop.Do(func() {
		s.mu.Lock()
		s.stopped = true
		if s.timer != nil {
			s.timer.Stop()
			s.timer, s.timerAt = nil, time.Time{}
		}
		if s.later != nil {
			s.later.Stop()
			s.later, s.laterAt = nil, time.Time{}
		}
		if s.watch.timer != nil {
			s.watch.timer.Stop()
			s.watch.timer = nil
		}
		s.mu.Unlock()
		close(s.done)
		s.cancel()
	})
	cancelWrites := context.AfterFunc(ctx, s.writeCancel)
	defer cancelWrites()
	s.wg.Wait()
}

// Close stops the scheduler as Stop does with a context that has ended
// (it cancels the store writes after firings at once, as in a crash), and
// refuses every later call with ErrClosed. It is idempotent. The store is
// not closed.
func (s *Scheduler) Close() {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s.Stop(ctx)
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
}

// usable returns the Config error or ErrClosed, if any.
func (s *Scheduler) usable() error {
	if s.cfgErr != nil {
		return s.cfgErr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	return nil
}

// checkGrain returns why reminders of grain cannot be handled here, if so.
func (s *Scheduler) checkGrain(grain storage.Key) error {
	if err := s.usable(); err != nil {
		return err
	}
	if err := grain.Validate(); err != nil {
		return fmt.Errorf("reminder: %w", err)
	}
	if !s.hosts[grain.Kind] {
		return fmt.Errorf("%w: %q", ErrUnknownKind, grain.Kind)
	}
	return nil
}

// lookupLocked returns the entry of k, on the schedule or leaving it, or
// nil.
func (s *Scheduler) lookupLocked(k id) *entry {
	if e, ok := s.entries[k]; ok {
		return e
	}
	return s.leaving[k]
}

// putLocked schedules r, as stored, in place of whatever k held. An entry
// that is leaving the schedule while being fired is taken back rather than
// doubled, so that its firing sees the new generation, is cancelled, and
// does not write over r.
func (s *Scheduler) putLocked(k id, r storage.Reminder) {
	e := s.lookupLocked(k)
	switch {
	case e == nil:
		e = &entry{id: k, index: -1}
	case e.gone:
		delete(s.leaving, k)
		e.gone = false
	}
	s.entries[k] = e
	e.bump()
	e.stored, e.due, e.at, e.failures, e.storeWait = r, r.Due, r.Due, 0, false
	switch {
	case e.running: // the firing reschedules it when it returns
	case e.index >= 0:
		heap.Fix(&s.queue, e.index)
	default:
		heap.Push(&s.queue, e)
	}
}

// removeLocked takes e off the schedule. It leaves e's generation alone:
// callers that replaced or deleted the stored reminder raise it, so that a
// running firing does not write over their change.
func (s *Scheduler) removeLocked(e *entry) {
	delete(s.entries, e.id)
	if e.running {
		e.gone = true
		s.leaving[e.id] = e
	} else if e.index >= 0 {
		heap.Remove(&s.queue, e.index)
		s.poke() // the timer may be set for e
	}
}

// poke wakes the loop to look at the heap again.
func (s *Scheduler) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// loop is the scheduler's goroutine: each time it is poked, by the timer or
// by a change of the schedule, it starts the due firings and sets the timer
// for the next one.
func (s *Scheduler) loop() {
	defer s.wg.Done()
	for {
		select {
		case <-s.done:
			return
		case <-s.wake:
			s.dispatch()
		}
	}
}

// dispatch starts a firing for each due entry while slots are free, then
// arms the timer for the earliest entry left.
func (s *Scheduler) dispatch() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	now := s.cfg.Clock.Now()
	for len(s.queue) > 0 && !s.queue[0].at.After(now) && s.inflight < s.cfg.MaxConcurrentFires {
		e := heap.Pop(&s.queue).(*entry)
		e.running, e.storeWait = true, false
		s.inflight++
		s.wg.Add(1)
		go s.fire(e, e.reminder(), e.gen)
	}
	s.armLocked()
}

// armLocked sets the timer for the earliest entry in the heap, keeping the
// timer that is already set for that time. With every slot taken, no timer
// is needed: the next firing to return pokes the loop.
func (s *Scheduler) armLocked() {
	var next time.Time
	if len(s.queue) > 0 && s.inflight < s.cfg.MaxConcurrentFires {
		next = s.queue[0].at
	}
	if next.Equal(s.timerAt) {
		return
	}
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	s.timerAt = next
	if !next.IsZero() {
		s.timerGen++
		gen := s.timerGen
		s.timer = s.cfg.Clock.AfterFunc(next, func() { s.timerFired(gen) })
	}
}

// timerFired runs when timer gen goes off. A timer stopped too late to
// prevent the call must not forget the timer that replaced it.
func (s *Scheduler) timerFired(gen uint64) {
	s.mu.Lock()
	if gen == s.timerGen {
		s.timer, s.timerAt = nil, time.Time{}
	}
	s.mu.Unlock()
	s.poke()
}
