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

// TestRefSize keeps Ref within the 160-byte size class (on 64-bit
// platforms; it is smaller on 32-bit ones): it is most of what an idle
// actor costs. unsafe.Sizeof(Ref{}) was 320 before
// the fields few actors use moved to refExt, and the queue stubs out of the
// Ref; any new field should go there unless every actor needs it.
func TestRefSize(t *testing.T) {
	if got := unsafe.Sizeof(Ref{}); got > 160 {
		t.Fatalf("unsafe.Sizeof(Ref{}) = %d; want at most 160 (move rarely used fields to refExt)", got)
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
