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
	var started sync32
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
	// Wait for the actors' goroutines to end: idle actors hold none.
	waitFor(t, testTimeout, func() bool { return goruntime.NumGoroutine() <= goroutines+10 }, "goroutines to exit")
	after := heapInUse()
	perActor := float64(after-before)/n - float64(unsafe.Sizeof(refs[0])) // minus the test's own slice
	t.Logf("idle actor: %.0f bytes of heap each over %d actors (Ref struct %d bytes); %d goroutines",
		perActor, n, unsafe.Sizeof(Ref{}), goruntime.NumGoroutine())
	if perActor > 2048 {
		t.Fatalf("idle actor costs %.0f bytes, want under 2 KB", perActor)
	}
	goruntime.KeepAlive(refs)
}

func heapInUse() uint64 {
	goruntime.GC()
	goruntime.GC()
	var m goruntime.MemStats
	goruntime.ReadMemStats(&m)
	return m.HeapAlloc
}

// sync32 counts Started messages.
type sync32 struct{ n atomic.Int64 }

func (s *sync32) onStarted(c *Context) {
	if _, ok := c.Message().(*Started); ok {
		s.n.Add(1)
	}
}

func (s *sync32) load() int64 { return s.n.Load() }
