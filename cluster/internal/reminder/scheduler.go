package reminder

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"slices"
	"strings"
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
	// ctx ends after FireTimeout or when the scheduler is stopped.
	Fire func(ctx context.Context, r storage.Reminder) error
	// Clock tells time and runs the timer. Nil means real time.
	Clock Clock
	// RetryBackoff is how long the first retry of a failed Fire waits; each
	// further failure doubles the wait, up to RetryBackoffMax. Zero means
	// DefaultRetryBackoff and DefaultRetryBackoffMax; negative values are
	// refused.
	RetryBackoff, RetryBackoffMax time.Duration
	// FireTimeout bounds one Fire, and the store write after it. Zero means
	// DefaultFireTimeout; negative values are refused.
	FireTimeout time.Duration
	// ListTimeout bounds one listing of the store (of every kind it lists,
	// by Refresh or in the background), so that a hung store delays the
	// listings asked for meanwhile by that much at most. Zero means
	// DefaultListTimeout; negative values are refused.
	ListTimeout time.Duration
	// ListRetryBackoff is how long the background listing (see Relist)
	// waits before it lists again the kinds whose listing failed; each
	// further failure in a row doubles the wait, up to ListRetryBackoffMax.
	// Zero means RetryBackoff and RetryBackoffMax; negative values are
	// refused.
	ListRetryBackoff, ListRetryBackoffMax time.Duration
	// MaxConcurrentFires bounds how many Fires run at once; due reminders
	// beyond it wait for a free slot. Zero means DefaultMaxConcurrentFires;
	// negative values are refused.
	MaxConcurrentFires int
	// Logger receives failed firings, failed store writes after a firing
	// and failed background listings. Nil means slog.Default().
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
	if c.ListRetryBackoff == 0 {
		c.ListRetryBackoff = c.RetryBackoff
	}
	if c.ListRetryBackoffMax == 0 {
		c.ListRetryBackoffMax = max(c.RetryBackoffMax, c.ListRetryBackoff)
	}
	if c.ListRetryBackoffMax < c.ListRetryBackoff {
		return c, fmt.Errorf("reminder: Config.ListRetryBackoffMax %v is below ListRetryBackoff %v", c.ListRetryBackoffMax, c.ListRetryBackoff)
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

// keyLocks is the number of locks that serialize store writes per reminder.
// A small fixed number bounds memory; collisions only make unrelated
// reminders wait for each other's store write.
const keyLocks = 64

// Scheduler fires the reminders of the grains this node owns; see the package
// documentation. Its methods are safe for concurrent use.
type Scheduler struct {
	cfg    Config
	cfgErr error
	hosts  map[string]bool // cfg.Kinds as a set
	seed   maphash.Seed

	ctx    context.Context // ends at Stop (or Close); parent of every Fire and background listing
	cancel context.CancelFunc
	wake   chan struct{} // pokes the loop; capacity one
	// relist asks listLoop for a listing of every kind (see Relist), and
	// relistRetry for one of the kinds whose listing failed; capacity one
	// each, so that requests made while a listing runs coalesce.
	relist, relistRetry chan struct{}
	done                chan struct{} // closed by Stop
	wg                  sync.WaitGroup
	stop                sync.Once

	// listing is held for writing by a listing while it lists the store and
	// updates the schedule, and for reading by every store write of
	// Register, Unregister and the firings, so a listing never misses a
	// write of this node that the schedule already shows.
	listing sync.RWMutex
	// keys serialize the store writes of one reminder, so a firing's write
	// cannot overwrite a Register that happened meanwhile.
	keys [keyLocks]sync.Mutex

	mu       sync.Mutex    // guards the fields below
	entries  map[id]*entry // the schedule
	leaving  map[id]*entry // taken off the schedule while being fired
	queue    queue
	timer    Timer
	timerAt  time.Time // when timer fires; zero when there is none
	timerGen uint64    // tells the current timer from stopped ones
	inflight int
	relists  uint64 // background listings done, failed or not (tests wait for them)
	started  bool
	stopped  bool // nothing fires any more (Stop)
	closed   bool // nothing is done any more (Close)
}

// New returns a Scheduler that does nothing until Start. A bad Config is
// reported by Start, Refresh, Register and Unregister, which all return the
// same error.
func New(cfg Config) *Scheduler {
	c, err := cfg.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	s := &Scheduler{
		cfg:         c,
		cfgErr:      err,
		hosts:       make(map[string]bool, len(c.Kinds)),
		seed:        maphash.MakeSeed(),
		ctx:         ctx,
		cancel:      cancel,
		wake:        make(chan struct{}, 1),
		relist:      make(chan struct{}, 1),
		relistRetry: make(chan struct{}, 1),
		done:        make(chan struct{}),
		entries:     make(map[id]*entry),
		leaving:     make(map[id]*entry),
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

// Refresh makes the schedule match the store and the current ownership,
// and returns once it does: it lists every hosted kind, adds the reminders
// of grains this node now owns, drops those it no longer owns, and takes
// over changes other nodes made. Relist does the same in the background.
// The listing of a kind that fails leaves that kind's part of the schedule
// as it was, and the other kinds are updated all the same; the error names
// each kind that failed. Refresh does not retry: Relist does.
func (s *Scheduler) Refresh(ctx context.Context) error {
	if err := s.usable(); err != nil {
		return err
	}
	s.mu.Lock()
	stopped := s.stopped
	s.mu.Unlock()
	if stopped {
		return ErrClosed // it would schedule what never fires
	}
	_, err := s.refresh(ctx, s.cfg.Kinds)
	return err
}

// refresh lists the given kinds within ListTimeout and makes their part of
// the schedule match the store and the current ownership (see Refresh). It
// returns the kinds whose listing failed, with an error naming each, or
// ErrClosed if the scheduler stopped meanwhile.
func (s *Scheduler) refresh(ctx context.Context, kinds []string) (failed []string, err error) {
	s.listing.Lock()
	defer s.listing.Unlock()
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ListTimeout)
	defer cancel()
	listed, failed, err := s.list(ctx, kinds)
	fresh := make(map[string]bool, len(kinds)) // the kinds listed
	for _, k := range kinds {
		fresh[k] = !slices.Contains(failed, k)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return nil, ErrClosed // it would schedule what never fires
	}
	for k, e := range s.entries {
		l, ok := listed[k]
		switch {
		case !fresh[k.grain.Kind]: // not listed: left as it was
		case !ok: // deleted by another node: a running firing must not write it back
			e.gen++
			s.removeLocked(e)
		case !l.owned: // moved: a running firing still records its outcome
			s.removeLocked(e)
		}
	}
	for k, e := range s.leaving {
		if _, ok := listed[k]; !ok && fresh[k.grain.Kind] {
			e.gen++
		}
	}
	for k, l := range listed {
		if l.owned {
			s.adoptLocked(k, l.r)
		}
	}
	s.poke()
	return failed, err
}

// listed is one reminder found in the store by a listing.
type listed struct {
	r     storage.Reminder
	owned bool // this node owns the grain
}

// list lists the reminders of the given kinds, noting which grains this
// node owns. A kind whose listing fails is left out of the result and
// returned in failed; err joins the failures, naming each kind.
func (s *Scheduler) list(ctx context.Context, kinds []string) (all map[id]listed, failed []string, err error) {
	all = make(map[id]listed)
	var errs []error
	for _, kind := range kinds {
		rs, err := s.cfg.Store.ListReminders(ctx, kind)
		if err != nil {
			failed = append(failed, kind)
			errs = append(errs, fmt.Errorf("reminder: list reminders of kind %q: %w", kind, err))
			continue
		}
		for _, r := range rs {
			all[id{r.Grain, r.Name}] = listed{r, s.cfg.Owns(r.Grain.Kind, r.Grain.Identity)}
		}
	}
	if len(errs) == 0 {
		return all, nil, nil
	}
	return all, failed, listError(errs)
}

// listError is the error of a listing that failed for some kinds: one
// error per kind, each naming it, on one line.
type listError []error

// Error returns the error of each kind, separated by semicolons.
func (e listError) Error() string {
	msgs := make([]string, len(e))
	for i, err := range e {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "; ")
}

// Unwrap returns the error of each kind.
func (e listError) Unwrap() []error { return e }

// adoptLocked schedules r, listed from the store, unless the schedule
// already holds it as stored. When the store holds something else, another
// node wrote it after this one: it replaces the entry, and a firing under
// way for the entry will not write its outcome over it. An entry that left
// the schedule while being fired and is listed unchanged comes back as it
// is, so that the firing's outcome still applies to it.
func (s *Scheduler) adoptLocked(k id, r storage.Reminder) {
	if e, ok := s.entries[k]; ok {
		if !same(e.stored, r) {
			s.putLocked(k, r)
		}
		return
	}
	if e, ok := s.leaving[k]; ok && same(e.stored, r) {
		delete(s.leaving, k)
		e.gone = false
		s.entries[k] = e
		return
	}
	s.putLocked(k, r)
}

// same reports whether a and b are the same reminder record.
func same(a, b storage.Reminder) bool {
	return a.Grain == b.Grain && a.Name == b.Name && a.Due.Equal(b.Due) && a.Period == b.Period
}

// Register saves r in the store, replacing the reminder of the same grain and
// name, and schedules it if this node owns the grain. A Due in the past fires
// at once (or at Start, before the scheduler is started). If another node
// owns the grain, r is only saved: the owner schedules it at its next
// listing (Start, Refresh or Relist). Bad reminders are refused with an
// error wrapping storage.ErrInvalid, and nothing is saved.
func (s *Scheduler) Register(ctx context.Context, r storage.Reminder) error {
	if err := s.checkGrain(r.Grain); err != nil {
		return err
	}
	if err := r.Validate(); err != nil {
		return fmt.Errorf("reminder: register: %w", err)
	}
	r.Due = r.Due.UTC() // as ListReminders returns it
	k := id{r.Grain, r.Name}
	s.listing.RLock()
	defer s.listing.RUnlock()
	unlock := s.lockKey(k)
	defer unlock()
	if err := s.cfg.Store.SaveReminder(ctx, r); err != nil {
		return fmt.Errorf("reminder: register %q of grain %s: %w", r.Name, r.Grain, err)
	}
	owns := s.cfg.Owns(r.Grain.Kind, r.Grain.Identity)
	s.mu.Lock()
	defer s.mu.Unlock()
	if owns && !s.stopped {
		s.putLocked(k, r)
		s.poke()
	} else if e := s.lookupLocked(k); e != nil {
		e.gen++ // a running firing must not overwrite r
		s.removeLocked(e)
	}
	return nil
}

// Unregister deletes the reminder name of grain from the store and the
// schedule. Deleting a reminder that does not exist is not an error. A
// firing already under way still completes.
func (s *Scheduler) Unregister(ctx context.Context, grain storage.Key, name string) error {
	if err := s.checkGrain(grain); err != nil {
		return err
	}
	k := id{grain, name}
	s.listing.RLock()
	defer s.listing.RUnlock()
	unlock := s.lockKey(k)
	defer unlock()
	if err := s.cfg.Store.DeleteReminder(ctx, grain, name); err != nil {
		return fmt.Errorf("reminder: unregister %q of grain %s: %w", name, grain, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.lookupLocked(k); e != nil {
		e.gen++ // a running firing must not write the reminder back
		s.removeLocked(e)
	}
	return nil
}

// Len returns the number of reminders scheduled on this node, including
// those being fired.
func (s *Scheduler) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries)
}

// Stop ends the firing for good: it stops the timer, cancels the context
// of running Fires and waits for them and their store writes to return.
// Register and Unregister still save to and delete from the store, and
// schedule nothing; Start and Refresh return ErrClosed, and Relist does
// nothing. A background listing under way is cancelled and waited for. A
// node that leaves stops firing before its grains deactivate, whose hooks
// may still change their reminders for the grains' next owners. It is
// idempotent.
func (s *Scheduler) Stop() {
	s.stop.Do(func() {
		s.mu.Lock()
		s.stopped = true
		if s.timer != nil {
			s.timer.Stop()
			s.timer, s.timerAt = nil, time.Time{}
		}
		s.mu.Unlock()
		close(s.done)
		s.cancel()
	})
	s.wg.Wait()
}

// Close stops the scheduler as Stop does, and refuses every later call
// with ErrClosed. It is idempotent. The store is not closed.
func (s *Scheduler) Close() {
	s.Stop()
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

// lockKey locks the store writes of reminder k and returns the unlock.
func (s *Scheduler) lockKey(k id) func() {
	var h maphash.Hash
	h.SetSeed(s.seed)
	h.WriteString(k.grain.Kind)
	h.WriteByte(0)
	h.WriteString(k.grain.Identity)
	h.WriteByte(0)
	h.WriteString(k.name)
	m := &s.keys[h.Sum64()%keyLocks]
	m.Lock()
	return m.Unlock
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
// doubled, so that its firing sees the new generation and does not write
// over r.
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
	e.gen++
	e.stored, e.due, e.at, e.failures = r, r.Due, r.Due, 0
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
		e.running = true
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
