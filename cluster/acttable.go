package cluster

import (
	"math/bits"
	"sync/atomic"
)

// actTable is one shard's activations by key: an open-addressed hash table
// whose slots calls read without a lock, while the shard's writers, under
// its mutex, insert and remove.
//
// The trick: every call finds its grain here. Under a read lock, each
// lookup wrote the lock's reader count, a word that every core's lookups
// share: the lock was 5.3% of the CPU of bench/grains LocalCalls with 64
// callers, and a build whose lookups skipped it made 12% more calls per
// second there. Reading atomic slots writes nothing shared: only the grain's
// own call count, in the activation (see activation.enter).
//
// A slot holds nil (never used), an activation, or the table's tombstone
// (an activation removed: lookups probe past it). Readers follow one table;
// a writer that needs room builds a bigger one without tombstones and
// publishes it, so a reader on the old table may miss an activation made
// since, or find one that is gone: get then takes the slow path under the
// shard's lock, and a gone activation is closed to calls (see enter) before
// it leaves. The table reuses the hash that picked the shard, and a slot is
// 9 bytes: its pointer and its tag (below). A Go map keyed by (kind,
// identity) took 32 bytes a slot, plus the map's slack: in bench/grains
// IdleMemory an idle grain is 33 bytes smaller with this table at 100,000
// grains, and 67 at 1,000,000.
//
// Each slot has a tag, a byte of its activation's hash, packed eight to a
// word beside the slots: a probe reads an activation's key only where the
// tag matches. Without tags, every occupied slot a probe passed cost a read
// of its activation, a cache miss in a big table; a lookup for a key that
// is not there (every fresh identity, looked up by the stream's reader, by
// the call and again under the shard's lock) passes several: the reader's
// findIn was 8.5% of the host of bench/grains Activation at 500,000
// activations, and 4.4% with the tags (docs/benchmarks-grains.md, 7 Dec
// 08:33, has the command).
type actTable struct {
	slots []atomic.Pointer[activation] // a power of two long
	tags  []atomic.Uint64              // slot i's tag is byte i%8 of word i/8; written by writers only
	shift uint                         // 64 minus log2(len(slots)): see home
	used  int                          // slots holding an activation or the tombstone; writers only
	live  int                          // slots holding an activation; writers only
	tomb  activation                   // marks a removed entry; never a grain
}

// minActTableSlots is the size of an empty table.
const minActTableSlots = 8

// newActTable returns a table with room for live activations at most half
// full, and at least minActTableSlots slots.
func newActTable(live int) *actTable {
	n := max(minActTableSlots, 1<<bits.Len(uint(2*live)))
	return &actTable{
		slots: make([]atomic.Pointer[activation], n),
		tags:  make([]atomic.Uint64, n/8),
		shift: uint(64 - bits.TrailingZeros(uint(n))),
	}
}

// tagOf returns the tag of a key that hashes to h: its top byte, which
// neither the shard (the low bits) nor home (a product of all of them)
// picks on its own.
func tagOf(h uint64) uint8 { return uint8(h >> 56) }

// tag returns slot i's tag.
func (t *actTable) tag(i uint64) uint8 { return uint8(t.tags[i/8].Load() >> (8 * (i % 8))) }

// put stores a, whose key hashes to h, in slot i: its tag first, so that
// a reader that loads a from the slot reads its tag too (see findIn).
// The shard's mutex is held, or t is not published yet.
func (t *actTable) put(i, h uint64, a *activation) {
	w := &t.tags[i/8]
	shift := 8 * (i % 8)
	w.Store(w.Load()&^(0xff<<shift) | uint64(tagOf(h))<<shift)
	t.slots[i].Store(a)
}

// home returns the first slot to probe for hash h. The shard was picked by
// h's low bits (see activations.shardOf); Fibonacci hashing takes the slot
// from all of them.
func (t *actTable) home(h uint64) uint64 {
	return (h * fibonacci) >> t.shift
}

// find returns the activation of (hk, identity), whose key hashes to h, or
// nil. It takes no lock. A table is never full, so a probe ends at nil.
func (t *actTable) find(h uint64, hk *hostedKind, identity string) *activation {
	return findIn(t, h, hk, identity)
}

// findIn is find for an identity as a string or as bytes: the stream's
// reader looks one up as the bytes of a frame (see Node.heldIdentity).
// Comparing string(identity) does not allocate.
//
// The slot is loaded before its tag: the tag was stored before the
// activation, so a reader that sees the activation sees its tag, or that
// of an activation that took the slot since, which makes the lookup miss
// one that is gone anyway. The tombstone's slot keeps the tag of the
// activation it replaced, and its kind is nil, so it never matches.
func findIn[S ~string | ~[]byte](t *actTable, h uint64, hk *hostedKind, identity S) *activation {
	mask := uint64(len(t.slots) - 1)
	tag := tagOf(h)
	for i := t.home(h); ; i = (i + 1) & mask {
		a := t.slots[i].Load()
		if a == nil {
			return nil
		}
		if t.tag(i) == tag && a.hk == hk && a.identity == string(identity) {
			return a // never the tombstone, which has no kind
		}
	}
}

// insert adds a, whose key hashes to h and is not in the table, and
// returns the table to use from now on: t, or a bigger one when t had no
// room. The shard's mutex is held.
func (t *actTable) insert(h uint64, a *activation) *actTable {
	if 4*(t.used+1) > 3*len(t.slots) {
		t = t.rebuild(t.live + 1)
	}
	mask := uint64(len(t.slots) - 1)
	for i := t.home(h); ; i = (i + 1) & mask {
		switch t.slots[i].Load() {
		case nil:
			t.used++
		case &t.tomb:
		default:
			continue
		}
		t.live++
		t.put(i, h, a)
		return t
	}
}

// remove takes a, whose key hashes to h, out of the table, and returns the
// table to use from now on: t, or a smaller one when t is mostly empty.
// It reports false when a was not in t. The shard's mutex is held.
func (t *actTable) remove(h uint64, a *activation) (*actTable, bool) {
	mask := uint64(len(t.slots) - 1)
	for i := t.home(h); ; i = (i + 1) & mask {
		switch t.slots[i].Load() {
		case nil:
			return t, false
		case a:
			t.slots[i].Store(&t.tomb)
			t.live--
			if len(t.slots) > minActTableSlots && 8*t.live < len(t.slots) {
				// An eighth full after a wave of passivations: give the
				// memory back, and the tombstones with it.
				t = t.rebuild(t.live)
			}
			return t, true
		}
	}
}

// rebuild returns a new table, sized for live activations, holding t's.
// The shard's mutex is held.
func (t *actTable) rebuild(live int) *actTable {
	nt := newActTable(live)
	mask := uint64(len(nt.slots) - 1)
	t.each(func(a *activation) {
		h := a.hk.keyHash(a.identity)
		i := nt.home(h)
		for nt.slots[i].Load() != nil {
			i = (i + 1) & mask
		}
		nt.put(i, h, a)
		nt.used++
		nt.live++
	})
	return nt
}

// each calls fn for every activation in t.
func (t *actTable) each(fn func(a *activation)) {
	for i := range t.slots {
		if a := t.slots[i].Load(); a != nil && a != &t.tomb {
			fn(a)
		}
	}
}
