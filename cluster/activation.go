package cluster

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	goruntime "runtime"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/protograin/protograin/cluster/state"
	"github.com/protograin/protograin/cluster/storage"
	"github.com/protograin/protograin/runtime"
)

// hostedKind is a Kind this node hosts, with its methods indexed.
type hostedKind struct {
	*Kind
	n       *Node // the node that hosts it
	methods map[string]*hostedMethod
	idle    time.Duration // negative: never passivate
	// maxCalls is the bound of Config.MaxQueuedCalls on the calls counted
	// in on an activation of the kind (see callBound), kept here, on a
	// line every call reads, rather than in the Node.
	maxCalls int32
	// keySeed is keyHash's state after the kind's name and the separator:
	// a call hashes only the identity to find its shard (see keyHash).
	keySeed uint64
	// handedOver is set, for a FlushManual kind, while no member that
	// hosts the kind has yet to release grains to this node: an
	// activation then waits for nobody, which it learns from this one
	// load (see handoffs). Other kinds do not wait, and leave it unset.
	handedOver atomic.Bool
	// workers, for a kind of stateless workers (Kind.StatelessWorkers),
	// holds one hostedKind per worker an identity may have; nil for other
	// kinds, and in the workers' own, which are this one's but for workers
	// and keySeed (the kind itself has no activations). A worker is an
	// activation of the grain under its worker's hostedKind, which the
	// table tells apart by pointer as it would two kinds (see actTable.find),
	// and places by the worker's own keySeed: so the workers of an identity
	// need no field in every activation, and their activations keep the
	// grain's identity and kind name, which is all the grain and the logs see.
	workers []*hostedKind
}

// keyHash is the package's keyHash of the grain (hk's kind, identity),
// without hashing the kind's name again. The activation table places a
// grain by it, both when a call looks it up (activations.shardOf) and
// when a table is rebuilt (actTable.rebuild).
func (hk *hostedKind) keyHash(identity string) uint64 { return hashString(hk.keySeed, identity) }

type hostedMethod struct {
	*Method
	request protoreflect.FullName // the request type, to check local calls
}

func newHostedKind(n *Node, k *Kind) *hostedKind {
	hk := &hostedKind{Kind: k, n: n, methods: make(map[string]*hostedMethod, len(k.Methods)), idle: k.IdleTimeout, maxCalls: maxCallsIn}
	if n != nil {
		hk.maxCalls = callBound(n.cfg.MaxQueuedCalls)
	}
	if hk.idle == 0 {
		hk.idle = DefaultIdleTimeout
	}
	hk.keySeed = kindSeed(k.Name)
	for i := range k.Methods {
		m := &k.Methods[i]
		hk.methods[m.Name] = &hostedMethod{Method: m, request: m.NewRequest().ProtoReflect().Descriptor().FullName()}
	}
	if k.StatelessWorkers > 0 {
		hk.workers = make([]*hostedKind, k.StatelessWorkers)
		for i := range hk.workers {
			// Every field but workers and the seed, which score spreads
			// over the table as it spreads grains over members.
			hk.workers[i] = &hostedKind{Kind: k, n: n, methods: hk.methods, idle: hk.idle, maxCalls: hk.maxCalls,
				keySeed: score(hk.keySeed, uint64(i))}
		}
	}
	return hk
}

// stateless reports whether the kind's grains are stateless workers.
func (hk *hostedKind) stateless() bool { return hk.StatelessWorkers > 0 }

type actKey struct{ kind, identity string }

// activation is one grain in memory on its owner, running on an actor.
//
// Its life: created in the table by the first call, which runs New and
// OnActivate and spawns the actor (later calls wait on ready); serves calls;
// then marked deactivating (idle, not the owner any more, or node shutdown),
// which makes new calls wait on gone; runs OnDeactivate on its actor; stops;
// leaves the table and closes gone. An idle grain is marked deactivating by
// its own actor, and only once what it had buffered is committed (see
// grainActor.passivate): a passivation whose commit fails leaves it
// serving calls.
//
// An idle grain costs its activation, so the struct is kept small (96
// bytes, a size class): what only activating or deactivating grains need
// lives elsewhere (activating; gone is made by the first call that waits),
// the shard is found again from the key, and the runtime.Actor is the
// activation itself (see grainActor).
type activation struct {
	// identity and hk are the grain's key (see key): its kind's name is
	// hk.Name, not kept twice.
	identity string
	hk       *hostedKind
	grain    any
	// state is loaded before New and used on the actor only; nil while
	// there is none (see grainState and touchState).
	state *grainState
	ref   *runtime.Ref
	// pending is set while the grain is activating; it is finished when
	// activation succeeded or failed. Success clears it, which lets it
	// go: an idle grain keeps no channel. Failure leaves it, with the
	// error, for the calls that still hold a.
	pending atomic.Pointer[activating]

	// calls counts the calls between get and release, and has the
	// callsClosed bit while the activation is deactivating (see enter).
	//
	// The usedFlag of flags says that a call was released since a
	// passivation sweep last looked; lastUsed is when the sweep that saw
	// it looked (nanoseconds on the table's clock), so the last call was
	// released before it. See release for why a call does not read the
	// clock itself.
	lastUsed atomic.Int64
	calls    atomic.Int32
	// flags holds usedFlag and deactivatedFlag. They share a word so that
	// oneWays fits in the 96 bytes an activation takes (a size class of
	// the allocator: two words more would take 112 per idle grain).
	flags atomic.Uint32
	// oneWays counts the one-way messages in the actor's mailbox, for
	// Config.MaxQueuedOneWay (see admitOneWay). The actor counts the
	// messages it runs out in groups, in oneWaysRun, which it alone uses:
	// an atomic write per message on a line that the senders also write
	// would cost each message a cache miss on both sides.
	oneWays atomic.Int32

	// Guarded by the mutex of the shard that holds the activation, but
	// oneWaysRun (the actor's, see oneWays; declared here, it takes the
	// padding after the flags).
	deactivating bool          // being deactivated by the node: new calls wait for gone; see close
	failed       bool          // its actor stopped by itself (restart limit reached)
	removed      bool          // out of the table
	oneWaysRun   uint8         // one-way messages run and not yet counted out of oneWays
	gone         chan struct{} // closed when out of the table; made by the first call that waits
}

// The bits of activation.flags.
const (
	// usedFlag: a call was released since a passivation sweep last looked
	// (see release and idleFor).
	usedFlag uint32 = 1 << iota
	// deactivatedFlag is set by the actor when it runs OnDeactivate, or
	// earlier when the grain moved to another node (sweepMoved); from then
	// on the actor runs no call or message (see grainActor.usable). It
	// lives in the activation rather than in grainActor's run so that it
	// survives restarts.
	deactivatedFlag
	// askedFlag: a sweep asked the actor to passivate the grain, and the
	// actor has not handled the request yet; sweeps ask no more meanwhile
	// (see activations.passivate).
	askedFlag
	// keptFlag: the commit before the grain's passivation committed
	// nothing, and the grain stays until its IdleTimeout asks again (see
	// grainActor.passivate). Trims leave it be meanwhile (see
	// activations.trim): each would otherwise ask a store that is down for
	// its commit once more. A use ends it (see idleFor): the grain is then
	// idle afresh, and a trim may ask it again.
	keptFlag
	// timersFlag: the grain started a timer (StartTimer), so its removal
	// looks for timers to stop; the removal of the others takes no lock
	// for it.
	timersFlag
	// retireFlag: the grain called Deactivate in OnActivate; the
	// activation retires once it is ready (see activations.activate).
	retireFlag
)

// key returns the grain's key.
func (a *activation) key() actKey { return actKey{a.hk.Name, a.identity} }

// callsClosed is the bit of activation.calls that closes the activation
// to calls that find it without the shard's lock.
const callsClosed = 1 << 30

// enter counts a call in, unless the activation is closed to calls. It
// takes no lock: a call that finds the activation in the table (see
// actTable.find) adds itself to the count and backs out if the count has
// callsClosed. The bit is set under the shard's write lock, with
// deactivating (see close) or as the activation leaves the table (see
// remove); a passivation sets it only while the count is zero. So a
// passivation either sees the call and leaves the grain be, or the call
// sees the bit and takes get's slow path, which takes the write lock and
// then waits for the grain to go.
func (a *activation) enter() bool {
	if a.calls.Add(1)&callsClosed != 0 {
		a.out()
		return false
	}
	return true
}

// out counts a call out. The last one out of a closed activation tells a
// deactivation that waits for it (see activations.waitCallsOut).
func (a *activation) out() {
	if a.calls.Add(-1) == callsClosed {
		a.hk.n.acts.lastCallOut(a)
	}
}

// idle reports whether no call is in and the activation is open.
func (a *activation) idle() bool { return a.calls.Load() == 0 }

// close marks the activation deactivating: new calls wait for it to go.
// With ifIdle (a passivation, on the grain's actor: see closeIdle), it does
// so only while no call is in and none was released since the sweep last
// looked (see idleFor), and reports whether it did. The shard's write lock
// is held.
func (a *activation) close(ifIdle bool) bool {
	switch {
	case !ifIdle:
		a.calls.Or(callsClosed)
	case !a.calls.CompareAndSwap(0, callsClosed):
		return false
	case a.flags.Load()&usedFlag != 0:
		// A call came and went between the sweep's look and the swap; the
		// bit now keeps others out, so the flag says for sure. Such a
		// grain was just used: open it again. A call that saw the bit
		// meanwhile waits for the write lock, and then finds the grain
		// open (deactivating is still false); one that is adding itself
		// backs out on its own.
		a.calls.Add(-callsClosed)
		return false
	}
	a.deactivating = true
	return true
}

// activating is what calls wait on while a grain activates.
//
// Its channel is made by the first call that waits (wait), not with the
// activation: most grains are activated by a call that nobody else joins
// (every first call of bench/grains BenchmarkActivation), and the channel
// was 96 of the bytes and one of the allocations of each activation; a
// mutex that nobody else takes costs less.
type activating struct {
	mu    sync.Mutex
	done  bool          // guarded by mu; set by finish
	ready chan struct{} // guarded by mu; made by the first wait, closed by finish
	err   error         // why activation failed; set before done
	// again says that the activating call's context ended before the
	// activation was done: the calls that waited for it activate the grain
	// again under their own, rather than fail with an error that belongs
	// to that call. Set before done.
	again bool
	// early are the one-way messages the grain sent itself from
	// OnActivate, for its actor once it is spawned (see hookContext);
	// guarded by mu. drained is set when activate took them.
	early   []*oneWayCall
	drained bool
}

// keep keeps m for the actor, and reports false if the activation is past
// taking it (m then goes the usual way).
func (p *activating) keep(m *oneWayCall) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drained {
		return false
	}
	p.early = append(p.early, m)
	return true
}

// takeEarly returns the messages keep kept, and keeps no more.
func (p *activating) takeEarly() []*oneWayCall {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.drained = true
	early := p.early
	p.early = nil
	return early
}

// errActivateAgain is what ready returns to a call that waited for an
// activation whose activating call gave up (see activating.again); get
// starts over.
var errActivateAgain = errors.New("cluster: activate again")

// wait returns a channel closed when activation is over: nil if it is
// over already.
func (p *activating) wait() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		return nil
	}
	if p.ready == nil {
		p.ready = make(chan struct{})
	}
	return p.ready
}

// finish ends the activation with err, waking the calls that wait.
func (p *activating) finish(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.err, p.done = err, true
	if p.ready != nil {
		close(p.ready)
	}
}

// activated reports whether the activation is ready and succeeded.
func (a *activation) activated() bool {
	return a.pending.Load() == nil
}

// stoppedByItself reports whether a's actor stopped on its own, after
// repeated panics: it is out of use, and sweepFailed takes it out of the
// table at its next sweep. Its count of calls may stay high until then:
// the calls whose callers gave up and left their count to the grain (see
// handOff) are dead letters now, which nobody counts out. So a call that
// finds it past Config.MaxQueuedCalls goes on, to learn that the grain
// failed (and the next to activate it again), rather than fail as if the
// grain had calls waiting.
func (a *activation) stoppedByItself() bool {
	return a.activated() && a.ref.Stopped()
}

// goneChan returns the channel closed when a leaves the table. The shard's
// lock is held.
func (a *activation) goneChan() chan struct{} {
	if a.gone == nil {
		a.gone = make(chan struct{})
		if a.removed {
			close(a.gone)
		}
	}
	return a.gone
}

// actShards is how many independently locked parts the activation table
// has, so that calls to different grains rarely wait for the same lock.
const actShards = 64

// activations is a node's activation table.
type activations struct {
	n      *Node
	shards [actShards]actShard
	// clock is the time since the table was made (or Config.clock): the
	// clock of activation.lastUsed.
	clock func() time.Duration

	// mu guards the deactivations: those started and not done (pending),
	// the channel closed when that drops to zero, those waiting for a
	// deactivator (queue), the deactivators running, and those of them
	// whose job has lasted past deactivationPatience (slow; see
	// slowWatch).
	mu           sync.Mutex
	pending      int
	drained      chan struct{}
	queue        []victim
	deactivators int
	slow         int
	// ending holds what the deactivations in progress keep outside their
	// activations (see deactivation), by activation; guarded by mu.
	ending map[*activation]*deactivation
	// timers are the grain timers of the activations that have some
	// (StartTimer), stopped when their activation leaves the table, and
	// all of them when the node closes (timersClosed). timersMu is taken
	// after a shard's mutex, never before.
	timersMu     sync.Mutex
	timers       map[*activation][]*Timer
	timersClosed bool

	// held counts the activations in the table; trimNow wakes the node's
	// sweep when that passes Config.MaxActivations (see admit and trim),
	// and heapNow after each garbage collection, with
	// Config.MaxHeapBytes (see shed).
	held    atomic.Int64
	trimNow chan struct{}
	heapNow chan struct{}
}

// How grains are deactivated in the background (see startDeactivations).
const (
	// deactivatorsPerProc is how many deactivators per GOMAXPROCS
	// startDeactivations starts at most.
	deactivatorsPerProc = 8
	// deactivationPatience is how long a deactivation may take before
	// another deactivator starts on the victims behind it.
	deactivationPatience = 10 * time.Millisecond
)

// actShard is one part of the table. Calls find their activation in it
// without its mutex (see actTable); the mutex orders the writers, and
// guards the fields of its activations that say so. Sweeps look under the
// read lock, so that they can run together and a writer waits for them
// only in this shard.
type actShard struct {
	mu  sync.RWMutex
	tab atomic.Pointer[actTable] // replaced by writers when it grows or shrinks
}

func newActivations(n *Node) *activations {
	epoch := time.Now()
	t := &activations{n: n, clock: func() time.Duration { return time.Since(epoch) }, trimNow: make(chan struct{}, 1), heapNow: make(chan struct{}, 1)}
	if n != nil && n.cfg.clock != nil {
		t.clock = n.cfg.clock
	}
	for i := range t.shards {
		t.shards[i].tab.Store(newActTable(0))
	}
	return t
}

// shardOf returns the part of the table that holds the grain (hk,
// identity), and the grain's key hash (hostedKind.keyHash), which also
// places it in the shard's table.
func (t *activations) shardOf(hk *hostedKind, identity string) (*actShard, uint64) {
	h := hk.keyHash(identity)
	return t.shard(h), h
}

// shard returns the part of the table that holds the grains whose key
// hashes to h.
func (t *activations) shard(h uint64) *actShard { return &t.shards[h%actShards] }

// shardOfActivation returns the part of the table that holds a, and its
// key's hash.
func (t *activations) shardOfActivation(a *activation) (*actShard, uint64) {
	return t.shardOf(a.hk, a.identity)
}

// each calls fn for every activation in the table, with its shard's read
// lock held.
func (t *activations) each(fn func(a *activation)) {
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.RLock()
		sh.tab.Load().each(fn)
		sh.mu.RUnlock()
	}
}

// get returns the activation of (hk, identity), activating it if this is its
// first call, and counts a call on it; release must follow. Concurrent first
// calls activate once: one runs the activation, the others wait for it.
func (t *activations) get(ctx context.Context, hk *hostedKind, identity string) (*activation, error) {
	return t.getWithin(ctx, hk, identity, maxCallsIn)
}

// getWithin is get for a call that an activation with max calls counted in
// already refuses (see Config.MaxQueuedCalls): it then fails with
// ErrMailboxFull, and counts nothing.
func (t *activations) getWithin(ctx context.Context, hk *hostedKind, identity string, max int32) (*activation, error) {
	if hk.workers != nil {
		return t.getWorker(ctx, hk, identity, max)
	}
	sh, h := t.shardOf(hk, identity)
	if a := sh.tab.Load().find(h, hk, identity); a != nil {
		// sh.lookup with the bound. It costs nothing: the one comparison
		// that looked for callsClosed now looks for the bound too, as the
		// bit makes the count greater than any bound (see callBound).
		if in := a.calls.Add(1); in <= max || in&callsClosed == 0 && a.stoppedByItself() {
			if a, err := t.ready(ctx, a); err != errActivateAgain {
				return a, err
			}
		} else {
			a.out()
			if in&callsClosed == 0 {
				return nil, t.n.callsFull(a)
			}
		}
	}
	for {
		sh.mu.Lock()
		tab := sh.tab.Load()
		a := tab.find(h, hk, identity)
		if a == nil {
			if !t.admit() {
				sh.mu.Unlock()
				return nil, t.n.activationsFull(hk, identity)
			}
			return t.activateNew(ctx, sh, tab, h, hk, identity)
		}
		if a.deactivating {
			gone := a.goneChan()
			sh.mu.Unlock()
			select {
			case <-gone:
				continue
			case <-ctx.Done():
				return nil, contextError(ctx.Err())
			}
		}
		in := a.calls.Add(1)
		sh.mu.Unlock()
		if in > max && !a.stoppedByItself() {
			a.out()
			return nil, t.n.callsFull(a)
		}
		if a, err := t.ready(ctx, a); err != errActivateAgain {
			return a, err
		}
	}
}

// activateNew activates the grain (hk, identity), which is not in sh's
// table tab and which admit let in, for a call it counts in: it inserts the
// activation, lets go of sh.mu, which the caller holds, and activates it.
func (t *activations) activateNew(ctx context.Context, sh *actShard, tab *actTable, h uint64, hk *hostedKind, identity string) (*activation, error) {
	a := &activation{identity: identity, hk: hk}
	a.pending.Store(new(activating))
	a.calls.Store(1)
	sh.tab.Store(tab.insert(h, a))
	sh.mu.Unlock()
	if err := t.activate(ctx, a); err != nil {
		return nil, err
	}
	return a, nil
}

// getWorker is getWithin for hk, a kind of stateless workers (see
// Kind.StatelessWorkers): it counts the call in on one of identity's
// workers, in order the first whose activation is idle, else the first
// that has none, which the call activates, else the one with the fewest
// calls counted in, which the call waits on. One-way messages do not count:
// the actor counts those it ran out in groups, so a worker that ran one
// would look busy for long after. An idle worker is taken by moving its count from zero to one, and a
// new one by inserting it under its shard's lock, so that calls arriving
// together each take a worker of their own while there are any. Workers are
// taken in order so that a steady load keeps the same few busy, and the
// others passivate once idle. A node at its Config.ActivationLimit starts
// no worker more: the call waits on one it has, and is refused only if the
// identity has none.
func (t *activations) getWorker(ctx context.Context, hk *hostedKind, identity string, max int32) (*activation, error) {
look:
	for {
		var least *hostedKind
		leastLoad := int32(math.MaxInt32)
		for _, w := range hk.workers {
			sh, h := t.shardOf(w, identity)
			a := sh.tab.Load().find(h, w, identity)
			if a == nil {
				sh.mu.Lock()
				tab := sh.tab.Load()
				if tab.find(h, w, identity) != nil {
					sh.mu.Unlock() // another call took it meanwhile
					continue
				}
				if t.admit() {
					return t.activateNew(ctx, sh, tab, h, w, identity)
				}
				sh.mu.Unlock()
				if least == nil {
					return nil, t.n.activationsFull(hk, identity)
				}
				break // wait on a worker the identity has
			}
			// A closed activation's count has callsClosed, more than any
			// open one's: it is taken last, and getWithin then waits for
			// it to go.
			load := a.calls.Load()
			if load == 0 && a.calls.CompareAndSwap(0, 1) {
				a, err := t.ready(ctx, a)
				if err == errActivateAgain {
					continue look // it failed: look again
				}
				return a, err
			}
			if load < leastLoad {
				least, leastLoad = w, load
			}
		}
		if least != nil {
			return t.getWithin(ctx, least, identity, max)
		}
	}
}

// readyWorker is getWorker for a one-way message that may not wait, nor
// activate a worker (see readyActivation): it takes the first worker of
// identity that is active, ready and idle, as getWorker takes one, and
// returns it counted in; or nil, and the message takes getWorker's path.
// A worker with messages queued may take more: they run in turn.
func (t *activations) readyWorker(hk *hostedKind, identity string) *activation {
	for _, w := range hk.workers {
		sh, h := t.shardOf(w, identity)
		a := sh.tab.Load().find(h, w, identity)
		if a == nil || !a.calls.CompareAndSwap(0, 1) {
			continue
		}
		if a.activated() {
			return a
		}
		t.release(a)
	}
	return nil
}

// lookup is get's fast path: it counts a call in on the activation of
// (hk, identity) and returns it, or returns nil if there is none or it is
// closed to calls. It takes no lock.
func (t *activations) lookup(hk *hostedKind, identity string) *activation {
	sh, h := t.shardOf(hk, identity)
	return sh.lookup(h, hk, identity)
}

// lookup is activations.lookup in sh, for a key that hashes to h.
func (sh *actShard) lookup(h uint64, hk *hostedKind, identity string) *activation {
	if a := sh.tab.Load().find(h, hk, identity); a != nil && a.enter() {
		return a
	}
	return nil
}

// peek returns the table's entry for key, if any, without counting a call
// in: for what reads only its counts (Node.laneRoom), and for tests.
func (t *activations) peek(key actKey) *activation {
	hk := t.n.kinds[key.kind]
	if hk == nil {
		return nil
	}
	sh, h := t.shardOf(hk, key.identity)
	return sh.tab.Load().find(h, hk, key.identity)
}

// ready waits until a, counted in, is activated, and returns it or why it
// could not be.
func (t *activations) ready(ctx context.Context, a *activation) (*activation, error) {
	if p := a.pending.Load(); p != nil {
		if ready := p.wait(); ready != nil {
			select {
			case <-ready:
			case <-ctx.Done():
				t.release(a)
				return nil, contextError(ctx.Err())
			}
		}
		if p.err != nil {
			t.release(a)
			if p.again {
				return nil, errActivateAgain
			}
			return nil, p.err
		}
	}
	return a, nil
}

// release counts a call out and marks the activation used. It takes no
// lock (see activation.calls); it marks the use first, so that a
// passivation that sees no call also sees this use.
//
// The trick: a call does not read the clock, the passivation sweep does
// (see idleFor). Reading it on every release took 49 ns per call in a
// profile of bench/grains LocalCalls with one caller, for a time that only
// a sweep every PassivationInterval looks at; without it that benchmark
// made 5.4% more calls per second. The flag is written only when it is
// not set already, so that calls between two sweeps only read it.
func (t *activations) release(a *activation) {
	a.markUsed()
	a.out()
}

// markUsed marks the activation used since the last sweep looked (see
// release), as a call does, and as a timer's tick with TimerKeepsActive.
func (a *activation) markUsed() {
	if a.flags.Load()&usedFlag == 0 {
		a.flags.Or(usedFlag)
	}
}

// activate creates the grain, runs OnActivate with the first caller's
// context and spawns its actor. On failure the activation leaves the table,
// and the calls waiting for it get the error; if the failure came as that
// caller's context ended, they activate the grain again instead.
//
// It activates only a grain this node owns in its view: a call placed by
// an older view, or one that waited for the grain's previous activation to
// go (it moved), would otherwise activate a stray here, beside the one on
// the owner, until a sweep found it. Those calls get ErrNotOwner and place
// the grain again. A membership change while the grain activates is looked
// at once it is done (below).
//
// Kind.New, OnActivate and the store's Load run on the goroutine that
// delivers the first call (its caller's, a peer's request's, a one-way
// lane's, a reminder's firing's), and one that calls runtime.Goexit ends
// it: the deferred call
// then fails the activation as if they had panicked. Taken for a success,
// it left in the table an activation without an actor, which the next call
// took for one that had failed after repeated panics, and a sweep crashed
// the node on.
func (t *activations) activate(ctx context.Context, a *activation) (err error) {
	if t.n.cfg.activating != nil {
		t.n.cfg.activating()
	}
	view := t.n.view.Load()
	returned := false
	defer func() {
		if !returned {
			t.n.log.Error("cluster: grain called runtime.Goexit while activating, on the goroutine that delivered the first call, which ends",
				"kind", a.hk.Name, "identity", a.identity)
			err = newError(codes.Internal, ErrGrainPanic, "cluster: grain %s/%s called runtime.Goexit while activating",
				a.hk.Name, a.identity)
		}
		p := a.pending.Load()
		t.sendEarly(a, p.takeEarly(), err)
		if err != nil {
			if ctx.Err() != nil {
				// This call gave up (its deadline, or its caller): it
				// gets its context's error, and the calls waiting for
				// the activation try again under their own contexts.
				err = contextError(ctx.Err())
				p.again = true
			}
			t.remove(a)
		} else {
			a.pending.Store(nil)
			if a.flags.Load()&timersFlag != 0 {
				t.armTimers(a) // OnActivate's
			}
		}
		p.finish(err)
		// The grain asked in OnActivate to go: the activating call, counted
		// in at insertion, and those counted in before the retirement
		// closes it run first (see retire).
		if err == nil && a.flags.Load()&retireFlag != 0 {
			t.retire(a)
		}
		// A membership change while the grain was activating could not
		// deactivate it, should it have moved: look again now, at this
		// grain only. (A sweep of the whole table here was one per
		// activation that ended during a change.)
		if err == nil && t.n.view.Load() != view && !t.n.owns(a.hk.Name, a.identity) {
			a.flags.Or(deactivatedFlag) // as sweepMoved does
			t.retire(a)
		}
	}()
	err = t.activateIn(ctx, a, view)
	returned = true
	return err
}

// activateIn is activate's work, for a grain that this node owns in view.
func (t *activations) activateIn(ctx context.Context, a *activation, view *placement) error {
	if err := t.n.checkOwnerIn(view, a.hk.Name, a.identity); err != nil {
		return err
	}
	// A member that held a FlushManual grain before this node joined, or
	// before it left, may not have committed what it acknowledged yet:
	// wait for it (see handoffs), or this activation would load a state
	// that its commit makes stale, and lose all it acknowledges itself.
	if a.hk.Flush == FlushManual {
		if err := t.n.awaitRelease(ctx, a.hk, a.identity); err != nil {
			return err
		}
	}
	if !a.hk.stateless() { // a stateless worker has nothing stored to load
		if err := t.loadState(ctx, a); err != nil {
			return err
		}
	}
	if err := t.newGrain(ctx, a); err != nil {
		return err
	}
	// A restart gets the same grainActor: it holds nothing of its own.
	// The grain's actor ignores *Started, so it gets no turn of its own at
	// spawn (StartOnFirstMessage): the first call's turn delivers it. That
	// saves each activation a hand-off to a worker goroutine and back.
	ref, err := t.n.system.Spawn(runtime.Props{New: a.newActor, StartOnFirstMessage: true})
	if err != nil {
		return newError(codes.Unavailable, ErrNodeClosed, "cluster: activate %s/%s: %v", a.hk.Name, a.identity, err)
	}
	a.ref = ref
	return nil
}

// sendEarly hands the actor of a, just spawned, the one-way messages the
// grain sent itself from OnActivate, in order; when the activation failed
// (err), they are dropped with a log line, as messages to a grain that
// fails are.
func (t *activations) sendEarly(a *activation, early []*oneWayCall, err error) {
	for _, m := range early {
		if err == nil {
			a.oneWays.Add(1) // unbounded: the grain sent them itself, and they were taken
			if err = a.ref.Send(m); err != nil {
				a.oneWays.Add(-1)
			}
		}
		if err != nil {
			t.n.log.Warn("cluster: dropped a one-way message a grain sent itself while activating", "kind", a.hk.Name,
				"identity", a.identity, "method", m.method.Name, "err", err)
		}
	}
}

// loadState loads a's state from the node's store (see loadState). A store
// that panics (a damaged file, a bug in a store of the user's) fails the
// activation with ErrStateUnavailable, as a store's error does, and the
// panic is logged with its stack: the load runs on the first caller's
// goroutine, which the panic would otherwise end (with the process, unless
// something recovers it), and activate would take a recovered panic for a
// success.
func (t *activations) loadState(ctx context.Context, a *activation) (err error) {
	defer func() {
		if p := recover(); p != nil {
			t.n.log.Error("cluster: the store panicked while loading a grain's state", "kind", a.hk.Name, "identity", a.identity,
				"panic", p, "stack", string(debug.Stack()))
			a.state = nil
			err = newError(codes.Unavailable, ErrStateUnavailable, "cluster: load the state of grain %s/%s: the store panicked: %v",
				a.hk.Name, a.identity, p)
		}
	}()
	a.state, err = loadState(ctx, t.n, a.key(), a.hk.Kind)
	return err
}

// newGrain calls the kind's New and the grain's OnActivate, turning a panic
// in either into an error. OnActivate sees the loaded state; what it changes
// is flushed with the first call that changes state, or at deactivation.
func (t *activations) newGrain(ctx context.Context, a *activation) (err error) {
	defer func() {
		if p := recover(); p != nil {
			t.n.log.Error("cluster: grain panicked while activating", "kind", a.hk.Name, "identity", a.identity,
				"panic", p, "stack", string(debug.Stack()))
			err = newError(codes.Internal, ErrGrainPanic, "cluster: grain %s/%s panicked while activating: %v",
				a.hk.Name, a.identity, p)
		}
	}()
	a.grain = a.hk.New(a.identity)
	if a.grain == nil {
		return newError(codes.Internal, ErrActivation, "cluster: kind %q: New returned nil", a.hk.Name)
	}
	if act, ok := a.grain.(Activator); ok {
		h := t.n.hookContext(ctx, a, false)
		defer h.over.Store(true)
		if err := act.OnActivate(h); err != nil {
			return newError(codes.Unavailable, ErrActivation, "cluster: activate %s/%s: %v", a.hk.Name, a.identity, err)
		}
	}
	return nil
}

// newActor returns the activation's actor (runtime.Props.New).
func (a *activation) newActor() runtime.Actor { return (*grainActor)(a) }

// stateFor returns the State the grain of a sees in a turn stamped tracked:
// its grainState (see touchState), or noState for a stateless worker.
func (a *activation) stateFor(n *Node, tracked stamp) State {
	if a.hk.stateless() {
		return noState{a.key()}
	}
	return a.touchState(n, tracked)
}

// touchState returns the activation's state, making it if the activation
// has none yet (see grainState): an empty Buffer at the zero version, which
// is what loading it found, for the call in progress stamped tracked (see
// grainState.begin). It runs where the grain runs.
func (a *activation) touchState(n *Node, tracked stamp) *grainState {
	if a.state != nil {
		return a.state
	}
	key := storage.Key{Kind: a.hk.Name, Identity: a.identity}
	buf, err := state.New(n.store, key, n.cfg.State)
	if err != nil {
		// state.Load accepted the same Config when the grain activated,
		// and New checks no more than Load.
		panic(fmt.Sprintf("cluster: grain %s: make its state: %v", key, err))
	}
	a.state = &grainState{n: n, key: key, buf: buf, call: tracked}
	// The call in progress began with nothing buffered: its mark is the
	// new buffer's, so that a rollback drops what it changes.
	a.state.mark = buf.Mark()
	return a.state
}

// remove takes a out of the table, closed to calls, and closes gone, if a
// call made it. A call that still finds a (see actTable) then takes get's
// slow path, which no longer does.
func (t *activations) remove(a *activation) {
	sh, h := t.shardOfActivation(a)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	a.calls.Or(callsClosed)
	if tab, ok := sh.tab.Load().remove(h, a); ok {
		sh.tab.Store(tab)
		t.held.Add(-1)
	}
	if !a.removed && a.gone != nil {
		close(a.gone)
	}
	a.removed = true
	if a.flags.Load()&timersFlag != 0 {
		t.stopTimers(a)
	}
}

// failed handles an activation whose actor stopped on its own: its
// supervisor gave up after repeated panics. It leaves the table so that the
// next call activates the grain afresh.
func (t *activations) failed(a *activation) {
	sh, _ := t.shardOfActivation(a)
	sh.mu.Lock()
	if a.deactivating || a.failed {
		sh.mu.Unlock()
		return
	}
	a.failed = true
	sh.mu.Unlock()
	t.n.log.Error("cluster: grain deactivated after repeated panics", "kind", a.hk.Name, "identity", a.identity)
	t.remove(a)
}

// sweep says why deactivateWhere deactivates activations.
type sweep uint8

const (
	// sweepAll takes every activation picked (the node shuts down): the
	// calls and messages queued to each run before its OnDeactivate.
	sweepAll sweep = iota
	// sweepMoved takes activations whose grains this node no longer owns:
	// they take no turn from now on (they are deactivated as soon as the
	// actor looks), and what is queued to them goes where the grain lives
	// now (calls are placed again, one-way messages sent on after
	// OnDeactivate), rather than run here beside the grain's new
	// activation for as long as the queue lasts.
	sweepMoved
)

// deactivateWhere starts deactivating every activated activation for which
// pick is true, and returns how many it started, taking those why says
// (see sweep). It looks under each shard's read lock, so that the periodic
// sweeps do not stop writers, and takes the write lock only to mark what it
// found, checking it again. A passivation does not come here: it closes
// nothing before the grain's actor committed its state (see passivate).
func (t *activations) deactivateWhere(why sweep, pick func(a *activation, now time.Duration) bool) int {
	now := t.clock()
	candidate := func(a *activation) bool {
		return !a.removed && !a.deactivating && !a.failed && a.activated() && pick(a, now)
	}
	var victims, found []*activation
	for i := range t.shards {
		sh := &t.shards[i]
		found = found[:0]
		sh.mu.RLock()
		sh.tab.Load().each(func(a *activation) {
			if candidate(a) {
				found = append(found, a)
			}
		})
		sh.mu.RUnlock()
		if len(found) == 0 {
			continue
		}
		sh.mu.Lock()
		for _, a := range found {
			if candidate(a) && a.close(false) {
				if why == sweepMoved {
					a.flags.Or(deactivatedFlag) // see grainActor.usable
				}
				victims = append(victims, a)
			}
		}
		sh.mu.Unlock()
	}
	t.startDeactivations(victims)
	return len(victims)
}

// retire starts deactivating a, because its state can no longer be trusted
// (a commit failed), because its grain moved while it was activating, or
// because the grain asked (Deactivate). It may run on a's actor, so it only
// marks a and leaves the deactivation to a goroutine: calls arriving from
// now on wait for the next activation, and calls already queued are sent
// there by handle when the state failed, and run first otherwise.
func (t *activations) retire(a *activation) {
	sh, _ := t.shardOfActivation(a)
	sh.mu.Lock()
	if a.deactivating || a.failed {
		sh.mu.Unlock()
		return
	}
	a.close(false)
	sh.mu.Unlock()
	t.startDeactivations([]*activation{a})
}

// job says what a deactivator does with a victim.
type job uint8

const (
	// jobDeactivate: the victim is marked deactivating; run its
	// OnDeactivate on its actor, then stop it (see deactivate).
	jobDeactivate job = iota
	// jobPassivate: the victim was idle at a sweep, and is still open; ask
	// its actor to passivate it (see askPassivation), which may keep it.
	jobPassivate
	// jobStop: the victim's actor marked it deactivating and runs its
	// OnDeactivate itself (a passivation, see closeIdle): stop it once
	// that is done.
	jobStop
)

// victim is a deactivator's work: an activation and what to do with it.
type victim struct {
	a   *activation
	job job
	// seen is, for jobPassivate, the victim's lastUsed as the sweep that
	// asked saw it (see activations.passivate).
	seen time.Duration
}

// startDeactivations deactivates victims, already marked deactivating, in
// the background, counting them for waitDeactivations.
//
// The trick: victims wait in a queue for a few goroutines, the
// deactivators, each of which takes one after the other. A goroutine per
// victim was one per grain when a node left the cluster, or when a new
// member took over a share of the grains: BenchmarkDeactivateAll (50,000
// grains) peaked at 27,000 goroutines and took 7.86 µs per grain; with
// deactivators, 53 goroutines and 6.20 µs. A deactivation that waits (an
// OnDeactivate hook or a state flush waiting on I/O, or on a grain that is
// itself in the queue) must not hold up the victims behind it, so while it
// lasts past deactivationPatience it stops counting among the
// deactivators: one more comes in its place if victims wait, and victims
// queued later find as many deactivators as before (see slowWatch). The
// new ones do the same, so slow deactivations overlap, as many as there
// are, within a few patiences.
//
// Passivations go through the same queue (startJobs with jobPassivate), so
// that a sweep that finds many idle grains asks their actors a few at a
// time, as it deactivated them: each asks the store for a commit.
func (t *activations) startDeactivations(victims []*activation) {
	t.startJobs(jobDeactivate, victims, nil)
}

// startJobs queues victims for the deactivators with j (see job),
// counting them for waitDeactivations, and starts deactivators as
// startDeactivations says.
func (t *activations) startJobs(j job, victims []*activation, seen []time.Duration) {
	if len(victims) == 0 {
		return
	}
	t.mu.Lock()
	if t.pending == 0 {
		t.drained = make(chan struct{})
	}
	t.pending += len(victims)
	for i, a := range victims {
		v := victim{a: a, job: j}
		if seen != nil {
			v.seen = seen[i]
		}
		t.queue = append(t.queue, v)
	}
	start := max(0, min(len(t.queue), deactivatorsPerProc*goruntime.GOMAXPROCS(0)-(t.deactivators-t.slow)))
	t.deactivators += start
	t.mu.Unlock()
	for range start {
		go t.deactivator()
	}
}

// deactivator deactivates the queued victims one after the other until the
// queue is empty.
func (t *activations) deactivator() { t.deactivateFrom(victim{}, false) }

// deactivateFrom is deactivator, for a goroutine that takes over, with
// resumed set, from one that a runtime.Goexit ended in the middle of v's
// job: it first sends on what is left of v's one-way messages, then goes
// on with the queue.
//
// A job runs no grain code on this goroutine but for one thing: a one-way
// message that reached the activation after its OnDeactivate is sent on
// to the next activation, which may be here, and is then activated on
// this goroutine (see sendLeftovers), where an OnActivate that calls
// runtime.Goexit (t.FailNow, or a library's) ends it. The deferred call
// tells that by working, set while a job runs, and hands the rest of the
// job and the queue to a new goroutine. Without it the victim was never
// counted out, and waitDeactivations (Shutdown) waited for it until its
// deadline; the messages after the one that exited were lost.
func (t *activations) deactivateFrom(v victim, resumed bool) {
	var watch *slowWatch
	working := false
	defer func() {
		if working {
			t.mu.Lock()
			watch.endLocked()
			t.mu.Unlock()
			go t.deactivateFrom(v, true)
		}
	}()
	for {
		if !resumed {
			t.mu.Lock()
			if watch != nil {
				watch.endLocked()
			}
			if v.a != nil {
				if t.pending--; t.pending == 0 {
					close(t.drained)
				}
			}
			if len(t.queue) == 0 {
				t.queue = nil
				t.deactivators--
				t.mu.Unlock()
				return
			}
			v = t.queue[0]
			t.queue[0] = victim{}
			t.queue = t.queue[1:]
			t.mu.Unlock()
		}
		watch = t.watchSlow()
		working = true
		switch {
		case resumed:
			t.sendLeftovers(v.a) // what the Goexit left of them
		case v.job == jobPassivate:
			t.askPassivation(v.a, v.seen)
		case v.job == jobStop:
			t.stopAfterPassivation(v.a)
		default:
			t.deactivate(v.a)
		}
		working, resumed = false, false
	}
}

// slowWatch watches one job of a deactivator. Once the job has lasted
// deactivationPatience, the watch counts its deactivator as slow, which
// startJobs does not count among the deactivators it may start, and starts
// one more deactivator if victims wait. A job that never ends (an
// OnDeactivate that hangs) thus holds no victim up, the ones queued later
// included, and costs one timer: a watch that looked again every patience
// kept waking up for as long as the job hung, after the node's Close too.
type slowWatch struct {
	t     *activations
	timer *time.Timer
	// slow and over are guarded by t.mu: the watch fired (and counted in
	// t.slow), and the job ended.
	slow, over bool
}

// watchSlow starts watching the job a deactivator begins.
func (t *activations) watchSlow() *slowWatch {
	w := &slowWatch{t: t}
	w.timer = time.AfterFunc(deactivationPatience, w.fire)
	return w
}

// fire counts the job as slow, unless it ended, and starts a deactivator
// in its place if victims wait.
func (w *slowWatch) fire() {
	t := w.t
	t.mu.Lock()
	more := false
	if !w.over {
		w.slow = true
		t.slow++
		if more = len(t.queue) > 0; more {
			t.deactivators++
		}
	}
	t.mu.Unlock()
	if more {
		go t.deactivator()
	}
}

// endLocked ends the watch of a job that ended, with t.mu held: its
// deactivator counts as one that takes victims again.
func (w *slowWatch) endLocked() {
	w.timer.Stop()
	w.over = true
	if w.slow {
		w.t.slow--
	}
}

// waitDeactivations waits until no deactivation is in progress, or ctx
// ends.
func (t *activations) waitDeactivations(ctx context.Context) error {
	for {
		t.mu.Lock()
		if t.pending == 0 {
			t.mu.Unlock()
			return nil
		}
		drained := t.drained
		t.mu.Unlock()
		select {
		case <-drained:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// deactivate runs OnDeactivate on the grain's actor, after the calls queued
// before it, then stops the actor and takes it out of the table. Calls that
// reach the actor after OnDeactivate are answered with errDeactivated and
// retried on the next activation; one-way messages are kept (keepOneWay)
// and sent there once the grain is out of the table.
//
// Nothing may reach the mailbox once the actor has stopped, or it would be
// lost as a dead letter: a one-way message has nobody to retry it. So the
// actor stops only when the calls counted in before the activation closed
// have all left (a stream's reader holds one for a whole batch of one-way
// messages, see oneWayTarget), and stops gracefully, after what they
// queued. All of it within DeactivateTimeout.
func (t *activations) deactivate(a *activation) {
	ctx, cancel := context.WithTimeout(context.Background(), t.n.cfg.DeactivateTimeout)
	defer cancel()
	_, err := a.ref.Request(ctx, deactivateMsg{})
	if err != nil && !errors.Is(err, runtime.ErrStopped) {
		// Nobody waits for a deactivation, so the log is where this goes.
		t.n.log.Warn("cluster: grain deactivation failed", "kind", a.hk.Name, "identity", a.identity, "err", err)
	}
	t.stop(ctx, a)
}

// stop stops the actor of a, which is marked deactivating, once the calls
// counted in before it closed have left (or ctx ends) and what is queued
// to it has run; then it takes a out of the table and sends on the one-way
// messages kept for its next activation (see deactivate).
func (t *activations) stop(ctx context.Context, a *activation) {
	t.waitCallsOut(ctx, a)
	<-a.ref.GracefulStop()
	t.remove(a)
	t.sendLeftovers(a)
}

// askPassivation asks the actor of a, idle at the last sweep, to passivate
// it (see grainActor.passivate), and waits for its answer, within
// DeactivateTimeout: whether the actor keeps the grain or deactivates it is
// its own affair, and a deactivation it starts goes on through jobStop. The
// wait only keeps this deactivator on the grain while it lasts, so that the
// passivations of many idle grains take a few deactivators at a time (and
// their commits a few connections), and a slow one brings in help as a slow
// deactivation does (see slowWatch). An actor that is busy past the wait
// still runs the passivation when it comes to it.
func (t *activations) askPassivation(a *activation, seen time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), t.n.cfg.DeactivateTimeout)
	defer cancel()
	_, err := a.ref.Request(ctx, passivateMsg{seen: seen})
	if err != nil && !errors.Is(err, runtime.ErrStopped) && !errors.Is(err, context.DeadlineExceeded) {
		t.n.log.Warn("cluster: grain passivation failed", "kind", a.hk.Name, "identity", a.identity, "err", err)
	}
}

// stopAfterPassivation is jobStop: the actor of a closed it and runs its
// OnDeactivate (see grainActor.passivate); stop waits for that turn to end,
// as GracefulStop stops the actor only after it.
func (t *activations) stopAfterPassivation(a *activation) {
	ctx, cancel := context.WithTimeout(context.Background(), t.n.cfg.DeactivateTimeout)
	defer cancel()
	t.stop(ctx, a)
}

// deactivation is what a deactivation in progress keeps outside its
// activation, which every idle grain would pay for: the channel closed
// when the last call counted in leaves, while the deactivator waits for
// that, and the one-way messages that reached the actor after its
// OnDeactivate. It is made by the first of them to need it, and dropped by
// sendLeftovers.
type deactivation struct {
	callsOut  chan struct{}
	leftovers []*oneWayCall
}

// deactivation returns a's record, making it if there is none. t.mu is
// held.
func (t *activations) deactivation(a *activation) *deactivation {
	d := t.ending[a]
	if d == nil {
		if t.ending == nil {
			t.ending = make(map[*activation]*deactivation)
		}
		d = new(deactivation)
		t.ending[a] = d
	}
	return d
}

// waitCallsOut waits until no call is counted in on a, which is closed to
// calls, or until ctx ends.
func (t *activations) waitCallsOut(ctx context.Context, a *activation) {
	if a.calls.Load() == callsClosed {
		return // the usual case: a passivation closes only idle grains
	}
	t.mu.Lock()
	if a.calls.Load() == callsClosed {
		t.mu.Unlock()
		return
	}
	out := make(chan struct{})
	t.deactivation(a).callsOut = out
	t.mu.Unlock()
	select {
	case <-out:
	case <-ctx.Done():
	case <-a.ref.Done():
		// An actor that stopped by itself (repeated panics) takes nothing
		// more, and the calls whose callers gave up that it held as it
		// stopped stay counted in (see handOff).
	}
}

// lastCallOut wakes the deactivation that waits for a's calls to leave, if
// one does (see waitCallsOut): the last one has. It takes t.mu after the
// count dropped, so a deactivator that read the count before registering
// its channel is woken.
func (t *activations) lastCallOut(a *activation) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if d := t.ending[a]; d != nil && d.callsOut != nil {
		close(d.callsOut)
		d.callsOut = nil
	}
}

// keepOneWay keeps m, which reached a's actor after its OnDeactivate or a
// failed commit, for sendLeftovers. It runs on a's actor.
func (t *activations) keepOneWay(a *activation, m *oneWayCall) {
	t.mu.Lock()
	d := t.deactivation(a)
	d.leftovers = append(d.leftovers, m)
	t.mu.Unlock()
}

// sendLeftovers sends the one-way messages kept for a, whose actor has
// stopped and which is out of the table, to the grain's next activation,
// here or on its new owner, in the order they reached a's actor; and drops
// a's record. A message sent after the activation closed may run before
// them.
func (t *activations) sendLeftovers(a *activation) {
	t.mu.Lock()
	d := t.ending[a]
	delete(t.ending, a)
	t.mu.Unlock()
	if d == nil {
		return
	}
	// A message may activate the grain here, on this goroutine, and a
	// Goexit in its OnActivate ends it: the deferred call keeps the
	// messages after it for the goroutine that takes over (see
	// deactivateFrom).
	i, sending := 0, false
	defer func() {
		if sending {
			t.exitedLeftovers(a, d.leftovers[i], d.leftovers[i+1:])
		}
	}()
	for i = range d.leftovers {
		sending = true
		t.n.resendOneWay(a.key(), d.leftovers[i])
		sending = false
	}
}

// exitedLeftovers takes over from sendLeftovers when the resend of a's
// message m activated the grain on the goroutine, and its OnActivate (or
// Kind.New, or the store's Load) called runtime.Goexit: it runs among the
// deferred calls of the goroutine that the Goexit ends. The activation failed as after a panic, and
// m with it: it is logged as dropped, as a peer's message behind a failed
// activation is. rest, the messages after it, go back in a's record, for
// the deactivator that takes over, which sends them on in order.
func (t *activations) exitedLeftovers(a *activation, m *oneWayCall, rest []*oneWayCall) {
	req := frame{kind: a.hk.Name, identity: a.identity, method: m.method.Name}
	t.n.dropOneWay(&req, goexitDropped(&req))
	if len(rest) > 0 {
		t.mu.Lock()
		t.deactivation(a).leftovers = rest
		t.mu.Unlock()
	}
}

// passivate asks the actors of the activations idle for longer than their
// kind's idle timeout to passivate them, and returns how many it asked. A
// busy activation is never passivated.
//
// It marks nothing: the actor first commits what the grain has buffered,
// and only then closes the activation, if no call came meanwhile, and runs
// OnDeactivate, all in one turn (see grainActor.passivate). A commit that
// fails keeps the grain, idle from then: a store that is down is asked for
// each idle grain's commit once per idle timeout, not at every sweep. The
// request carries the grain's last use as the sweep saw it, so that one
// that waited behind a long turn, while a later sweep noted a use (and
// cleared usedFlag), does not passivate a grain used a moment ago. The
// sweep does not write that last use itself: a sweep that set it to its
// own time made the request of the sweep before out of date, and a grain
// whose requests took longer to reach its actor than its idle timeout was
// never passivated. While a request waits (askedFlag), sweeps ask no
// more: a grain behind a long turn gets one request, not one a sweep.
func (t *activations) passivate() int {
	now := t.clock()
	var idle []*activation
	var seen []time.Duration
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.RLock()
		sh.tab.Load().each(func(a *activation) {
			// idleFor first: it notes a use even while a request waits.
			if !a.removed && !a.deactivating && !a.failed && a.activated() &&
				a.idle() && a.hk.idle >= 0 && t.idleFor(a, now) >= a.hk.idle && a.flags.Load()&askedFlag == 0 {
				a.flags.Or(askedFlag)
				idle = append(idle, a)
				seen = append(seen, time.Duration(a.lastUsed.Load()))
			}
		})
		sh.mu.RUnlock()
	}
	t.startJobs(jobPassivate, idle, seen)
	return len(idle)
}

// admit counts an activation about to enter the table, and reports true;
// or, if that would take the table past Config.ActivationLimit, counts
// nothing and reports false. The count comes first, so that activations
// entering other shards at once cannot pass the limit together; it costs
// an activation one comparison when no limit is set. It wakes the node's
// sweep to trim the table (see trim) if it now holds more than
// Config.MaxActivations, or if it refused.
func (t *activations) admit() bool {
	held := t.held.Add(1)
	limit := int64(t.n.cfg.ActivationLimit)
	admitted := limit <= 0 || held <= limit
	if !admitted {
		t.held.Add(-1)
	}
	if max := t.n.cfg.MaxActivations; !admitted || max > 0 && held > int64(max) {
		select {
		case t.trimNow <- struct{}{}:
		default: // a trim is due already
		}
	}
	return admitted
}

// trimmedShare is how far below Config.MaxActivations a trim brings the
// table: to nine tenths of it, so that the next trim, which looks at every
// activation, is due after a tenth of the limit's activations more, not
// after the next one.
const trimmedShare = 10

// trim asks the least recently used idle grains to passivate, if the table
// holds more than Config.MaxActivations, or Config.ActivationLimit's
// activations (it refuses the next), so that it holds nine tenths of
// MaxActivations once they have gone (of ActivationLimit without it), and
// at least one activation fewer than ActivationLimit; it returns how many
// it asked. Grains with
// a call counted in (a one-way message's turn counts none: its grain is
// asked, and passivates after the turn unless used meanwhile), activating
// or deactivating, those whose store committed nothing at their last
// passivation and that were not used since (keptFlag: their IdleTimeout
// asks again), and those of kinds that never passivate (a negative
// IdleTimeout) are left be: if too few remain, it asks them all, and notes
// the shortfall (see Node.crowded).
// The passivations are those of idle grains (see passivate): what a grain
// buffered is committed first, and a grain used since it was picked stays.
//
// Least recently used is to the resolution of the looks at a grain: each
// look (a sweep, a trim) notes the calls released since the one before at
// its own time (idleFor), so the grains used between the same two looks
// tie, and a trim picks among them in no particular order.
//
// A grain asked may stay (it was used meanwhile, or its store refused the
// commit), and no activation may come to wake another trim: the sweep
// trims at every tick too, so that the node is back under the limit
// within a PassivationInterval of the last such refusal.
func (t *activations) trim() int {
	max, limit := t.n.cfg.MaxActivations, t.n.cfg.ActivationLimit
	held := t.held.Load()
	if (max <= 0 || held <= int64(max)) && (limit <= 0 || held < int64(limit)) {
		return 0
	}
	aim := cmp.Or(max, limit)
	target := aim - aim/trimmedShare
	if limit > 0 {
		target = min(target, limit-1)
	}
	return t.trimTo(target)
}

// trimTo is trim's look at every activation, and its requests: it asks as
// many of the least recently used idle grains to passivate as the table
// holds over target, not counting those going already.
func (t *activations) trimTo(target int) int {
	type candidate struct {
		a    *activation
		seen time.Duration // its lastUsed, as this look left it
	}
	now := t.clock()
	var idle []candidate
	held, going := 0, 0
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.RLock()
		sh.tab.Load().each(func(a *activation) {
			held++
			switch {
			case a.deactivating || a.failed || a.flags.Load()&askedFlag != 0:
				going++
			case a.activated() && a.idle() && a.hk.idle >= 0:
				// First: a use since the last look is noted, and ends a
				// keep (see idleFor).
				t.idleFor(a, now)
				if a.flags.Load()&keptFlag != 0 {
					// Its store committed nothing lately, and it has not
					// been used since: its IdleTimeout asks again, not
					// each trim.
					break
				}
				idle = append(idle, candidate{a, time.Duration(a.lastUsed.Load())})
			}
		})
		sh.mu.RUnlock()
	}
	excess := held - going - target
	if excess <= 0 {
		return 0
	}
	if excess > len(idle) {
		t.n.crowdedNode(held, len(idle))
		excess = len(idle)
	}
	slices.SortFunc(idle, func(x, y candidate) int { return cmp.Compare(x.seen, y.seen) })
	victims := make([]*activation, 0, excess)
	seen := make([]time.Duration, 0, excess)
	for _, c := range idle {
		if len(victims) == excess {
			break
		}
		if c.a.flags.Or(askedFlag)&askedFlag == 0 { // not asked meanwhile
			victims = append(victims, c.a)
			seen = append(seen, c.seen)
		}
	}
	t.startJobs(jobPassivate, victims, seen)
	return len(victims)
}

// closeIdle marks a deactivating for its passivation, if no call is in and
// none was released since the sweep that asked for it looked (see close),
// and if nothing else deactivates it already; and if it did, queues its
// stop (jobStop), counted for waitDeactivations from now on. It runs on the
// actor of a, which runs OnDeactivate next, in the same turn.
//
// A call that is counted in, or that was since the sweep looked, keeps the
// grain: the passivation either sees the call and leaves the grain be, or
// the call sees the activation closed and waits for the next one, as with
// any deactivation. A call counted in now waits for this turn, behind it
// in the mailbox, and then runs on the grain.
func (t *activations) closeIdle(a *activation, seen time.Duration) bool {
	sh, _ := t.shardOfActivation(a)
	sh.mu.Lock()
	// Under the write lock, no sweep looks meanwhile: a use that a sweep
	// noted since the one that asked moved lastUsed (and cleared the flag),
	// one it has not noted yet has the flag set (see close).
	closed := !a.removed && !a.deactivating && !a.failed && a.lastUsed.Load() == int64(seen) && a.close(true)
	sh.mu.Unlock()
	if closed {
		t.startJobs(jobStop, []*activation{a}, nil)
	}
	return closed
}

// idleFor returns how long a has gone without a call at now, the time the
// sweep started, erring on the short side. A call released since the last
// look counts as released at this look: the clock is read after the flag
// is cleared, so the time is never before the release. A grain used just
// before a sweep is thus idle from that sweep on, and is passivated
// between IdleTimeout and IdleTimeout plus two PassivationIntervals after
// its last call.
//
// A use noted ends the grain's keep (keptFlag): its IdleTimeout starts over
// from it, so the keep no longer says when it is due, and a grain used more
// often than its IdleTimeout would otherwise stay out of the trims' reach
// for good once a short outage of the store had kept it.
func (t *activations) idleFor(a *activation, now time.Duration) time.Duration {
	if a.flags.And(^usedFlag)&usedFlag != 0 {
		a.flags.And(^keptFlag)
		a.lastUsed.Store(int64(t.clock()))
		return 0
	}
	return now - time.Duration(a.lastUsed.Load())
}

// sweepStrays deactivates activations this node does not own in its
// current view. Membership changes catch most of them at once; this catches
// those that were still activating then, or were activated by a call that
// checked ownership just before the view changed.
func (t *activations) sweepStrays() int {
	p := t.n.view.Load()
	return t.deactivateWhere(sweepMoved, func(a *activation, _ time.Duration) bool {
		owner, ok := p.owner(a.hk.Name, a.identity)
		return !ok || owner.Name != t.n.name
	})
}

// sweepFailed removes activations whose actor stopped by itself.
func (t *activations) sweepFailed() {
	var stopped []*activation
	t.each(func(a *activation) {
		if !a.deactivating && !a.failed && a.stoppedByItself() {
			stopped = append(stopped, a)
		}
	})
	for _, a := range stopped {
		t.failed(a)
	}
}

// deactivateAll deactivates every activation (node shutdown) and waits for
// them, or for ctx.
func (t *activations) deactivateAll(ctx context.Context) error {
	t.deactivateWhere(sweepAll, func(*activation, time.Duration) bool { return true })
	// Activations still activating finish, then are caught by a later pass
	// or by the actor system's shutdown.
	return t.waitDeactivations(ctx)
}

// count returns the number of activations in the table.
func (t *activations) count() int {
	n := 0
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.RLock()
		n += sh.tab.Load().live
		sh.mu.RUnlock()
	}
	return n
}

func isDone(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// grainCall is the message a call sends to the grain's actor.
//
// It holds the GrainContext the method gets, so that a call allocates one
// object for both instead of two, and that context holds the call's
// context, callers and stamp, which the message would otherwise keep a
// second copy of: 112 bytes instead of 208, the cluster's one allocation
// on a local call.
type grainCall struct {
	// gctx is the call's context (Context), the grains waiting on it
	// (callers, outermost first) and its stamp, set by the caller; the
	// actor fills in the rest before running the method.
	gctx   grainContext
	method *hostedMethod
	req    proto.Message
}

// tracked returns the stamp under which the call's effects on state are
// recorded (see grainActor.handle): its stamp, or none for a ReadOnly
// method.
func (m *grainCall) tracked() stamp {
	if m.method.ReadOnly {
		return stamp{}
	}
	return m.gctx.stamp
}

// newGrainCall makes the message of a call.
func newGrainCall(ctx context.Context, m *hostedMethod, req proto.Message, callers []actKey, st stamp) *grainCall {
	return &grainCall{gctx: grainContext{Context: ctx, callers: callers, stamp: st}, method: m, req: req}
}

// reminderCall delivers a due reminder to the grain's actor.
type reminderCall struct {
	ctx  context.Context
	name string
}

// deactivateMsg asks the grain's actor to run OnDeactivate.
type deactivateMsg struct{}

// passivateMsg asks the grain's actor to passivate it, if it is still idle
// and its state can be committed (see grainActor.passivate). seen is the
// activation's lastUsed as the sweep that asked saw it.
type passivateMsg struct{ seen time.Duration }

// errDeactivated answers calls that reach an actor after its OnDeactivate;
// the caller retries them on the next activation.
var errDeactivated = errors.New("cluster: activation deactivated")

// grainActor is an activation seen as its actor: its methods run one call
// at a time, on the actor's turn. It is the activation itself, not a value
// of its own, so that an idle grain does not keep a second object (or 16
// bytes of pointers back to its node and activation). A restart after a
// panic runs the same grainActor around the same grain value: the grain
// keeps its fields (the panicking call's changes to them are not rolled
// back), while its durable state drops the call's buffered changes.
type grainActor activation

// act returns the activation g is.
func (g *grainActor) act() *activation { return (*activation)(g) }

// node returns the node that hosts g.
func (g *grainActor) node() *Node { return g.hk.n }

// Receive implements runtime.Actor.
func (g *grainActor) Receive(c *runtime.Context) {
	switch m := c.Message().(type) {
	case *grainCall:
		g.handle(c, m)
	case *oneWayCall:
		g.handleOneWay(m)
	case *reminderCall:
		g.remind(c, m)
	case deactivateMsg:
		g.onDeactivate(c)
	case passivateMsg:
		g.passivate(m.seen)
		c.Respond(struct{}{})
	case timerTick:
		g.tick(m)
	}
}

// handle runs one call. It skips calls whose caller already gave up, and
// sends calls that arrive after OnDeactivate, or after a failed commit, to
// the next activation (the caller retries them).
//
// For a method that is not ReadOnly, with a stamp, handle gives exactly-once
// effects: a stamp the grain recorded gets the recorded reply without
// running the method; a new one runs it, and if the call changed state, its
// reply is recorded and, in FlushAfterCall mode, committed with the changes
// before the reply is sent.
func (g *grainActor) handle(c *runtime.Context, m *grainCall) {
	if m.take() {
		g.act().out() // its caller gave up and left it to the grain (see handOff)
	}
	if g.unusable() {
		c.RespondError(errDeactivated)
		return
	}
	if err := m.gctx.Err(); err != nil {
		c.RespondError(contextError(err))
		return
	}
	st := m.tracked()
	tracked := st.seq != 0
	if tracked {
		reply, seen, err := g.state.seen(st)
		if err != nil {
			c.RespondError(staleCallError(g.act().key(), err))
			return
		}
		if seen {
			c.Respond(&encodedReply{raw: reply})
			return
		}
	}
	resp, err := g.run(m, st)
	var reply any = resp
	if err == nil && !m.method.ReadOnly {
		reply, err = g.commit(m, resp, tracked)
	}
	// The method may have made the state (touchState): read it again.
	if ferr := g.state.failure(); ferr != nil {
		// A commit failed during or after the call: its error says more
		// than whatever the grain made of it, and the activation goes.
		err = ferr
		g.node().acts.retire(g.act())
		if tracked && errors.Is(err, ErrStaleActivation) {
			reply, err = g.winnersReply(m, st, err)
		}
	}
	if err != nil {
		c.RespondError(err)
		return
	}
	c.Respond(reply)
}

// winnersReply answers a call whose commit lost to another activation's,
// lost being that error: with the reply the winner recorded under the
// call's stamp, if it ran the call too. It did when the call was retried
// under its stamp after a commit whose outcome was unknown and that landed
// meanwhile, or retried on another node while two nodes ran the grain: its
// effect is in the store, and lost ("no effect on state") would let its
// caller apply it again under a new stamp. If the winner recorded nothing
// for the stamp, lost stands; if the store cannot tell, the caller is told
// to retry under the stamp. Only the winner's records are read, not its
// typed message: a message this version cannot decode (another version's,
// during a rolling upgrade) does not keep the call from its reply.
func (g *grainActor) winnersReply(m *grainCall, st stamp, lost error) (any, error) {
	ctx, cancel := g.node().storeContext(m.gctx.Context)
	defer cancel()
	key := g.act().key()
	winner, err := loadBuffer(ctx, g.node(), key, true)
	switch {
	case errors.Is(err, ErrStateUndecodable):
		return nil, err // damaged records: a retry under the stamp fails the same way
	case err != nil:
		return nil, newError(codes.Unavailable, ErrStateUnavailable,
			"cluster: grain %s/%s: another activation committed first, and whether it ran this call under its stamp is unknown: %v; a retry with the same call ID tells",
			key.kind, key.identity, err)
	}
	raw, seen, err := winner.seen(st)
	switch {
	case err != nil:
		return nil, staleCallError(key, err)
	case seen:
		return &encodedReply{raw: raw}, nil
	}
	return nil, lost
}

// usable reports whether the activation may still run calls.
func (g *grainActor) usable() bool {
	return g.flags.Load()&deactivatedFlag == 0 && g.state.failure() == nil
}

// unusable reports whether the activation may no longer run calls, and if
// so makes sure that it goes, so that the calls sent on find another. A
// commit that failed where no handler looked afterwards (a Flush in
// OnActivate) left it unusable but in the table, open: calls came back to
// it until their deadline.
func (g *grainActor) unusable() bool {
	if g.usable() {
		return false
	}
	g.node().acts.retire(g.act()) // nothing if it is going already
	return true
}

// run calls the method, its effects on state recorded under st (see
// grainCall.tracked). A call that fails, returns no response or panics
// leaves no change in the state.
func (g *grainActor) run(m *grainCall, st stamp) (resp proto.Message, err error) {
	g.state.begin(st)
	done := false
	defer func() {
		if !done { // a panic: the actor's supervisor takes it from here
			g.state.rollback()
		}
	}()
	gc := &m.gctx
	gc.n, gc.a = g.node(), g.act()
	resp, err = g.callMethod(gc, m.method, false, m.req)
	done = true
	if err == nil && noMessage(resp) {
		err = newError(codes.Internal, ErrBadResponse, "cluster: %s of grain %s/%s returned neither a response nor an error",
			m.method.Name, g.hk.Name, g.identity)
	}
	if err != nil {
		g.state.rollback()
	}
	return resp, err
}

// commit follows a call that succeeded: it hands the typed state message to
// the buffer and, if the call changed state, records its reply under its
// stamp and, in FlushAfterCall mode, commits both. It returns the reply to
// send. A call that changed nothing records nothing: running it again is
// harmless to state.
//
// Whether the call changed state is not whether the buffer is dirty: a call
// that flushed itself, or that undid changes buffered before it (from
// OnActivate, a one-way message, an earlier call in FlushManual mode),
// leaves it clean, yet running it again would apply it twice.
func (g *grainActor) commit(m *grainCall, resp proto.Message, tracked bool) (any, error) {
	st := g.state
	if err := st.failure(); err != nil { // a Flush by the grain failed
		st.rollback()
		return nil, err
	}
	if err := st.sync(); err != nil {
		st.rollback()
		return nil, err
	}
	if !st.changed() {
		return resp, nil
	}
	var raw []byte
	if tracked {
		var err error
		if raw, err = marshalDeterministic(resp); err != nil {
			st.rollback()
			return nil, newError(codes.Internal, ErrBadResponse, "cluster: encode the response of %s/%s %s: %v",
				g.hk.Name, g.identity, m.method.Name, err)
		}
		if err := st.buf.Record(m.gctx.stamp.client, m.gctx.stamp.seq, raw); err != nil {
			st.rollback()
			return nil, staleCallError(g.act().key(), err)
		}
	}
	if g.hk.Flush == FlushAfterCall {
		if err := g.flushAfter(m.gctx.Context); err != nil {
			// A commit that committed nothing leaves the activation
			// usable (see grainState.flush): the call, which fails, must
			// leave no change and no recorded reply behind for the next
			// commit, while the changes buffered before it stay.
			flushed := st.flushedInTurn()
			st.rollback()
			switch {
			case st.failure() != nil:
				return nil, err
			case flushed:
				// Not "no effect": what the call flushed itself stays.
				return nil, newError(codes.Unavailable, ErrStateUnavailable,
					"%v; what the call flushed itself before stays committed, and its reply is lost", err)
			}
			return nil, newError(codes.Unavailable, errStateNotCommitted,
				"%v; the call did not take effect, and may be retried", err)
		}
	}
	if raw == nil {
		return resp, nil
	}
	return &encodedReply{msg: resp, raw: raw}, nil
}

// flushAfter commits what a call or reminder left buffered (see
// Node.commitState).
func (g *grainActor) flushAfter(ctx context.Context) error {
	return g.node().commitState(ctx, g.state)
}

// commitState commits what s has buffered, after a call (flushAfter) or
// when the grain flushes (grainState.Flush). The commit keeps ctx's values
// but not its deadline or cancellation: once the grain's method has run, or
// has decided to flush, giving up on the commit halfway would only make its
// outcome unknown and cost the activation, while the caller, gone or not,
// can learn the outcome by retrying with the same call ID. It ends instead
// after Config.CommitTimeout, or when the node closes.
func (n *Node) commitState(ctx context.Context, s *grainState) error {
	ctx, cancel := n.storeContext(ctx)
	defer cancel()
	return s.flush(ctx)
}

// storeContext returns a context for a store call that follows a grain's
// turn: ctx's values without its deadline or cancellation, ended after
// Config.CommitTimeout or when the node closes.
func (n *Node) storeContext(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), n.cfg.CommitTimeout)
	stop := context.AfterFunc(n.life, cancel)
	return ctx, func() {
		stop()
		cancel()
	}
}

// remind delivers a reminder to the grain's OnReminder, then commits what
// it changed as after a call (reminders carry no stamp: they fire at least
// once). An error is returned to the scheduler, which fires it again later.
func (g *grainActor) remind(c *runtime.Context, m *reminderCall) {
	if g.unusable() {
		c.RespondError(errDeactivated)
		return
	}
	if err := m.ctx.Err(); err != nil {
		// The firing gave up while this waited in the mailbox (a busy
		// grain, or the node stopping its reminders): the scheduler counts
		// it failed and fires the due time again, so it must not run now
		// as well. Or it was cancelled because the reminder was
		// unregistered or replaced meanwhile (perhaps by the call this
		// waited behind): it must not run after that change.
		c.RespondError(contextError(err))
		return
	}
	r, ok := g.grain.(ReminderReceiver)
	if !ok {
		c.RespondError(fmt.Errorf("cluster: grain kind %q does not implement ReminderReceiver; reminder %q cannot be delivered",
			g.hk.Name, m.name))
		return
	}
	g.state.begin(stamp{})
	done := false
	defer func() {
		if !done {
			g.state.rollback()
		}
	}()
	// The firing reached the grain: from here on, a change of the reminder
	// must not cancel the turn under the grain, as the firing's context is
	// cancelled when the reminder is unregistered or replaced, and the
	// turn itself may do that (a reminder that re-arms or ends itself). It
	// keeps the firing's deadline.
	turn := context.WithoutCancel(m.ctx)
	if at, ok := m.ctx.Deadline(); ok {
		var cancel context.CancelFunc
		turn, cancel = context.WithDeadline(turn, at)
		defer cancel()
	}
	err := r.OnReminder(g.node().grainContext(turn, g.act(), nil, stamp{}), m.name)
	done = true
	if err = g.endTurn(turn, err); err != nil {
		c.RespondError(fmt.Errorf("cluster: reminder %q of grain %s/%s: %w", m.name, g.hk.Name, g.identity, err))
		return
	}
	c.Respond(struct{}{})
}

// endTurn ends a turn that was no call (a reminder's, a timer's), whose
// code returned err: it commits what the turn changed as after a call, and
// returns err, or why the commit failed. A failure rolls the turn's changes
// back, and a commit that left the state uncertain retires the activation.
func (g *grainActor) endTurn(ctx context.Context, err error) error {
	st := g.state // the turn may have made it (touchState)
	if err == nil {
		err = st.failure()
	}
	if err == nil {
		err = st.sync()
	}
	if err == nil && g.hk.Flush == FlushAfterCall {
		err = g.flushAfter(ctx)
	}
	if err != nil {
		st.rollback()
		if st.failure() != nil {
			g.node().acts.retire(g.act())
		}
	}
	return err
}

// onDeactivate runs the deactivation of a grain that must go (Shutdown, a
// move, a failed commit): see deactivateHere.
func (g *grainActor) onDeactivate(c *runtime.Context) {
	if err := g.deactivateHere(); err != nil {
		c.RespondError(err)
		return
	}
	c.Respond(struct{}{})
}

// deactivateHere runs OnDeactivate, then commits what is buffered (in both
// flush modes), even if the hook failed, within DeactivateTimeout. An
// activation whose commit failed earlier commits nothing: its state is
// stale or uncertain. From here on the actor runs no call or message
// (deactivatedFlag).
//
// Before the hook, what acknowledged calls left buffered is committed
// once (commitBuffered): a hook that is slow, or waits for its context,
// would otherwise spend the whole DeactivateTimeout and leave the commit
// after it none, losing changes the callers were told about along with
// the hook's own. If that first try fails, the commit after the hook tries
// them again with the hook's changes. A passivation has committed them
// already (see passivate), and the try finds nothing to commit.
//
// A hook that calls runtime.Goexit ends the goroutine, and deactivateHere
// never returns: its deferred call, which tells the Goexit by a flag set
// once the hook has returned, rolls back the hook's changes and commits
// the rest all the same (see exitedOnDeactivate).
func (g *grainActor) deactivateHere() error {
	g.flags.Or(deactivatedFlag)
	ctx, cancel := context.WithTimeout(context.Background(), g.node().cfg.DeactivateTimeout)
	defer cancel()
	var commitErr, hookErr error
	if d, ok := g.grain.(Deactivator); ok {
		// A failure that committed nothing is the commit after the
		// hook's to meet. One that broke the state is not: that commit
		// then drops what is buffered without a word, so the error that
		// may have lost the callers' changes is reported here.
		if err := g.commitBuffered(ctx); err != nil && g.state.failure() != nil {
			commitErr = fmt.Errorf("cluster: commit the state of %s/%s before OnDeactivate: %w", g.hk.Name, g.identity, err)
		}
		returned := false
		defer func() {
			if !returned {
				g.exitedOnDeactivate(ctx, commitErr)
			}
		}()
		hookErr = g.runOnDeactivate(ctx, d)
		returned = true
	}
	return errors.Join(commitErr, hookErr, g.flushOnDeactivate(ctx))
}

// exitedOnDeactivate ends the deactivation of a grain whose OnDeactivate
// called runtime.Goexit (t.FailNow, or a library's), among the deferred
// calls of the goroutine that it ends, as deactivateHere does after a hook
// that panicked (see runOnDeactivate): it rolls back the hook's own
// changes and commits what calls left buffered, which a commit before the
// hook that failed (Shutdown's, a move's) left to it. Without it the
// commit after the hook never ran, and those acknowledged changes were
// lost. commitErr is the error of that first commit, if it broke the
// state.
//
// Nobody gets the deactivation's error: the runtime fails the actor's
// turn, as after a panic, answering the deactivation (or passivation) with
// a *runtime.PanicError, and carries on with the actor on a new goroutine,
// where its supervisor restarts it (it runs no call any more:
// deactivatedFlag). So the Goexit, and what the commit left, are logged.
func (g *grainActor) exitedOnDeactivate(ctx context.Context, commitErr error) {
	n := g.node()
	n.log.Error("cluster: grain called runtime.Goexit in OnDeactivate", "kind", g.hk.Name, "identity", g.identity)
	g.state.rollback() // the hook may have made the state: read it again
	if err := errors.Join(commitErr, g.flushOnDeactivate(ctx)); err != nil {
		n.log.Warn("cluster: grain deactivation failed", "kind", g.hk.Name, "identity", g.identity, "err", err)
	}
}

// passivate passivates the idle grain, on its actor, in one turn: it
// commits what is buffered (in FlushManual mode, the changes of calls,
// one-way messages and reminders already acknowledged; in either mode,
// those of OnActivate, which wait for the next commit: a commit after a
// call that committed nothing rolls back only that call's changes), then
// closes the activation to calls (see activations.closeIdle), then runs
// OnDeactivate and commits what the hook changed (deactivateHere). Nothing
// runs on the grain between the first commit and the hook: the turn holds
// the actor, and a call that comes meanwhile is counted in, which keeps
// the grain (it runs after the turn).
//
// If the first commit committed nothing (storage.ErrNotCommitted: the
// store refused it, or could not be reached) the grain stays, serving
// calls, with what it buffered: OnDeactivate has not run, so nothing
// forces it out, and the sweep asks again once it has been idle for
// another IdleTimeout (see activations.passivate). A commit whose outcome
// is unknown, or that lost to another activation, breaks the state
// instead, and the activation goes as after any such commit: without
// committing, its OnDeactivate run once.
//
// Once the first commit went through, only the hook's own changes can be
// lost: if the commit after it fails as deactivateHere says, the grain
// goes all the same.
func (g *grainActor) passivate(seen time.Duration) {
	a, n := g.act(), g.node()
	a.flags.And(^askedFlag) // sweeps may ask again
	switch {
	case a.calls.Load()&callsClosed != 0:
		return // another deactivation has it (Shutdown, a move), and runs its hook
	case g.unusable():
		return // a failed commit: retired, its hook runs behind this turn
	case a.flags.Load()&usedFlag != 0 || a.lastUsed.Load() != int64(seen):
		// Used since the sweep that asked looked (a later sweep may have
		// noted the use, and cleared the flag): the request waited behind
		// a long turn, and is out of date.
		return
	}
	// This try decides whether the store keeps the grain: not a request
	// that came during an earlier try and is out of date (above).
	a.flags.And(^keptFlag)
	if err := g.commitBuffered(n.life); err != nil {
		if g.state.failure() != nil {
			n.log.Warn("cluster: the commit before an idle grain's passivation failed, and left its state uncertain; the grain is deactivated without committing",
				"kind", g.hk.Name, "identity", g.identity, "err", err)
			n.acts.retire(a)
			return
		}
		// Idle from now: the next sweep asks again after IdleTimeout. If
		// Shutdown or a move took the grain meanwhile, or the node is
		// closing, there is nothing to tell: the grain goes, and commits
		// after its hook (or, closing, not at all).
		a.lastUsed.Store(int64(n.acts.clock()))
		a.flags.Or(keptFlag) // and not each trim before that
		if a.calls.Load()&callsClosed == 0 && n.life.Err() == nil {
			n.keptIdle(g.hk.Name, g.identity, err)
		}
		return
	}
	if !n.acts.closeIdle(a, seen) {
		return
	}
	if err := g.deactivateHere(); err != nil {
		// Nobody waits for a passivation, so the log is where this goes.
		n.log.Warn("cluster: grain deactivation failed", "kind", g.hk.Name, "identity", g.identity, "err", err)
	}
}

// commitBuffered commits what the grain has buffered, once, within
// CommitTimeout and ctx (before a passivation, the node's life; before a
// deactivation's OnDeactivate, its DeactivateTimeout). A state that an
// earlier commit broke commits nothing: it is stale or uncertain, and
// flushOnDeactivate drops it. A typed state message that does not encode
// is not the store's failure, and holding the grain would not mend it:
// that is left to the commit after OnDeactivate, which meets it again and
// logs it.
func (g *grainActor) commitBuffered(ctx context.Context) error {
	if g.state.failure() != nil || g.state.sync() != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, g.node().cfg.CommitTimeout)
	defer cancel()
	return g.state.flush(ctx)
}

// runOnDeactivate calls the grain's OnDeactivate and returns its error. A
// panic in the hook is its error too, with the hook's own changes rolled
// back (as a panicking call's are): the changes acknowledged calls left
// buffered are committed after it all the same, where letting the panic
// reach the actor's supervisor would drop them with the activation. A
// runtime.Goexit in the hook reaches the supervisor, as nothing can stop
// it, but is otherwise handled as a panic, by deactivateHere's deferred
// call (see exitedOnDeactivate).
func (g *grainActor) runOnDeactivate(ctx context.Context, d Deactivator) (err error) {
	g.state.begin(stamp{})
	defer func() {
		if p := recover(); p != nil {
			g.node().log.Error("cluster: grain panicked in OnDeactivate", "kind", g.hk.Name, "identity", g.identity,
				"panic", p, "stack", string(debug.Stack()))
			g.state.rollback() // the hook may have made the state: read it again
			err = newError(codes.Internal, ErrGrainPanic, "cluster: OnDeactivate of %s/%s panicked: %v", g.hk.Name, g.identity, p)
		}
	}()
	h := g.node().hookContext(ctx, g.act(), true)
	defer h.over.Store(true)
	if err := d.OnDeactivate(h); err != nil {
		return fmt.Errorf("cluster: OnDeactivate of %s/%s: %w", g.hk.Name, g.identity, err)
	}
	return nil
}

// How flushOnDeactivate waits between tries of a commit that committed
// nothing: the first wait, doubled after each try up to the last.
const (
	deactivateRetryFirst = 50 * time.Millisecond
	deactivateRetryMax   = time.Second
)

// flushOnDeactivate commits the activation's last changes.
//
// A commit that committed nothing (storage.ErrNotCommitted: no connection
// to the database, which is restarting, say) is tried again, with backoff,
// until ctx ends (DeactivateTimeout) or the node closes; only then are the
// changes lost, logged by deactivate (or passivate). Keeping the activation
// instead, to flush again at a later sweep, is not an option here:
// OnDeactivate has run, so the grain may serve no call any more, and its
// calls wait for it to go. A passivation commits before the hook instead,
// and keeps the grain if that fails (see passivate), so that only the
// hook's own changes meet this; Shutdown and a grain that moved must go:
// they try once before the hook (see deactivateHere), and whatever that
// left is tried here.
func (g *grainActor) flushOnDeactivate(ctx context.Context) error {
	st := g.state
	if st.failure() != nil {
		st.discard()
		return nil
	}
	err := st.sync()
	if err == nil {
		err = g.flushPatiently(ctx)
	}
	if err != nil {
		return fmt.Errorf("cluster: flush the state of %s/%s on deactivation: %w", g.hk.Name, g.identity, err)
	}
	return nil
}

// flushPatiently commits the activation's state, trying again while the
// store commits nothing (see flushOnDeactivate). A commit that failed and
// left the state unbroken committed nothing (see grainState.flush).
func (g *grainActor) flushPatiently(ctx context.Context) error {
	for wait := deactivateRetryFirst; ; wait = min(2*wait, deactivateRetryMax) {
		err := g.state.flush(ctx)
		if err == nil || g.state.failure() != nil || !g.node().pause(ctx, wait) {
			return err
		}
	}
}
