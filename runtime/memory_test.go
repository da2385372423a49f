package runtime

import (
	goruntime "runtime"
	"sync/atomic"
	"testing"
	"unsafe"
)

// TestIdleActorMemory spawns many idle actors and reports the heap they
// hold. An idle actor holds no goroutine, so the cost is its Ref, its queue
// stubs, its Done channel and its Actor value.
func TestIdleActorMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates 100k actors")
	}
	s := NewSystem(Config{Logger: testLogger(t)})
	t.Cleanup(s.Close)
	const n = 100_000
	var started actorCounter
	props := Props{New: func() Actor { return ActorFunc(started.onStarted) }}

	goroutines := goruntime.NumGoroutine()
	before := heapInUse()
	refs := make([]*Ref, 0, n)
	for range n {
		r, err := s.Spawn(props)
		if err != nil {
			t.Fatal(err)
		}
		refs = append(refs, r)
	}
	waitFor(t, testTimeout, func() bool { return started.load() == n }, "all actors started")
	// Wait for the actors' goroutines to end: idle actors hold none. The
	// System keeps up to workers.lot.Max() idle workers, whatever the actor count.
	idleGoroutines := goroutines + 10 + s.workers.lot.Max()
	waitFor(t, testTimeout, func() bool { return goruntime.NumGoroutine() <= idleGoroutines }, "goroutines to exit")
	after := heapInUse()
	perActor := float64(after-before)/n - float64(unsafe.Sizeof(refs[0])) // minus the test's own slice
	t.Logf("idle actor: %.0f bytes of heap each over %d actors (Ref struct %d bytes); %d goroutines",
		perActor, n, unsafe.Sizeof(Ref{}), goruntime.NumGoroutine())
	if perActor > 2048 {
		t.Fatalf("idle actor costs %.0f bytes, want under 2 KB", perActor)
	}

	// An actor that has handled messages keeps its last envelope as the
	// queue's stub.
	for _, r := range refs {
		if err := r.Send(1); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, testTimeout, func() bool { return started.handled.Load() == n }, "all messages handled")
	waitFor(t, testTimeout, func() bool { return goruntime.NumGoroutine() <= idleGoroutines }, "goroutines to exit")
	used := float64(heapInUse()-before)/n - float64(unsafe.Sizeof(refs[0]))
	t.Logf("idle actor that has handled a message: %.0f bytes of heap each", used)
	if used > 2048 {
		t.Fatalf("idle actor costs %.0f bytes after a message, want under 2 KB", used)
	}
	goruntime.KeepAlive(refs)
}

// TestRefSize keeps Ref at three cache lines on 64-bit platforms (it is
// smaller on 32-bit ones): it is most of what an idle actor costs, and its
// layout (see TestRefLayout) relies on a size class whose objects start on
// a line. unsafe.Sizeof(Ref{}) was 320 before the fields few actors use
// moved to refExt, and the queue stubs out of the Ref; any new field should
// go there unless every actor needs it.
func TestRefSize(t *testing.T) {
	if got := unsafe.Sizeof(Ref{}); got > 192 {
		t.Fatalf("unsafe.Sizeof(Ref{}) = %d; want at most 192 (move rarely used fields to refExt)", got)
	}
}

// TestRefLayout checks the cache lines of a Ref (see Ref): no line holds
// both a field that producers write on every send and one that the
// goroutine running the actor reads or writes on every message, nor a
// field that goroutine writes on every message and one producers use on
// every send, wherever the Ref lies in its lines.
func TestRefLayout(t *testing.T) {
	const line = 64
	size := unsafe.Sizeof(Ref{})
	if size != 192 {
		t.Skipf("unsafe.Sizeof(Ref{}) = %d: the layout is laid out for the 192-byte Ref of 64-bit platforms", size)
	}
	var r Ref
	type field struct {
		name      string
		off, size uintptr
	}
	f := func(name string, off, size uintptr) field { return field{name, off, size} }
	heads := []field{
		f("sysHead", unsafe.Offsetof(r.sysHead), unsafe.Sizeof(r.sysHead)),
		f("userHead", unsafe.Offsetof(r.userHead), unsafe.Sizeof(r.userHead)),
	}
	shared := []field{ // read on both sides on every message
		f("sys", unsafe.Offsetof(r.sys), unsafe.Sizeof(r.sys)),
		f("ext", unsafe.Offsetof(r.ext), unsafe.Sizeof(r.ext)),
		f("status", unsafe.Offsetof(r.status), unsafe.Sizeof(r.status)),
		f("stopReq", unsafe.Offsetof(r.stopReq), unsafe.Sizeof(r.stopReq)),
	}
	actorReads := []field{f("actor", unsafe.Offsetof(r.actor), unsafe.Sizeof(r.actor))}
	actorWrites := []field{
		f("sysTail", unsafe.Offsetof(r.sysTail), unsafe.Sizeof(r.sysTail)),
		f("userTail", unsafe.Offsetof(r.userTail), unsafe.Sizeof(r.userTail)),
		f("ctx", unsafe.Offsetof(r.ctx), unsafe.Sizeof(r.ctx)),
	}
	// Objects of a size class follow each other from the start of a span
	// (page-aligned), so the k-th lies k*size bytes into it.
	seen := map[uintptr]bool{}
	for k := range uintptr(line) {
		at := k * size % line
		if seen[at] {
			continue
		}
		seen[at] = true
		lines := func(fields ...[]field) map[uintptr]string {
			m := map[uintptr]string{}
			for _, group := range fields {
				for _, f := range group {
					for b := f.off; b < f.off+f.size; b++ {
						m[(at+b)/line] = f.name
					}
				}
			}
			return m
		}
		apart := func(what string, a, b map[uintptr]string) {
			t.Helper()
			for l, name := range a {
				if other, ok := b[l]; ok {
					t.Errorf("a Ref %d bytes into a line has %s on the line of %s: %s", at, name, other, what)
				}
			}
		}
		apart("producers write the first on every send, the actor's goroutine uses the second on every message",
			lines(heads), lines(shared, actorReads, actorWrites))
		apart("the actor's goroutine writes the first on every message, producers use the second on every send",
			lines(actorWrites), lines(heads, shared))
	}
}

func heapInUse() uint64 {
	goruntime.GC()
	goruntime.GC()
	var m goruntime.MemStats
	goruntime.ReadMemStats(&m)
	return m.HeapAlloc
}

// actorCounter counts Started messages and handled ints.
type actorCounter struct{ n, handled atomic.Int64 }

func (s *actorCounter) onStarted(c *Context) {
	switch c.Message().(type) {
	case *Started:
		s.n.Add(1)
	case int:
		s.handled.Add(1)
	}
}

func (s *actorCounter) load() int64 { return s.n.Load() }
