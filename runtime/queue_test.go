package runtime

import (
	"sync"
	"testing"
)

// TestQueueConcurrentProducers pushes from many goroutines while one
// consumer pops, and checks that every message arrives exactly once and in
// the order each producer pushed it.
func TestQueueConcurrentProducers(t *testing.T) {
	t.Parallel()
	const producers, perProducer = 8, 5000
	type item struct{ producer, seq int }
	var free envelopePool
	free.init()
	var spare spareList
	var head queueHead
	var tail queueTail
	initQueue(&head, &tail, &free)

	var wg sync.WaitGroup
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perProducer {
				head.push(free.get(item{p, i}, nil)) // recycled nodes, reused while others pop
			}
		}()
	}
	producersDone := make(chan struct{})
	go func() { wg.Wait(); close(producersDone) }()

	next := make([]int, producers) // next expected seq per producer
	total := 0
	finished := false
	for total < producers*perProducer {
		msg, _, ok := tail.pop(&spare)
		spare.flush(&free, total%2 == 0) // back to the producers
		if !ok {
			if finished {
				t.Fatalf("queue empty after all pushes returned; got %d of %d", total, producers*perProducer)
			}
			select {
			case <-producersDone:
				finished = true // every push has linked: the rest must be poppable
			default:
			}
			continue
		}
		it := msg.(item)
		if it.seq != next[it.producer] {
			t.Fatalf("producer %d: got seq %d, want %d", it.producer, it.seq, next[it.producer])
		}
		next[it.producer]++
		total++
	}
	if _, _, ok := tail.pop(&spare); ok {
		t.Fatal("queue not empty after all messages were popped")
	}
}

// TestQueueEmptyAndReuse checks the empty queue and that popped nodes do
// not keep their messages.
func TestQueueEmptyAndReuse(t *testing.T) {
	t.Parallel()
	var free envelopePool
	free.init()
	var spare spareList
	var head queueHead
	var tail queueTail
	initQueue(&head, &tail, &free)
	if _, _, ok := tail.pop(&spare); ok {
		t.Fatal("pop on empty queue succeeded")
	}
	for round := range 3 {
		for i := range 4 {
			head.push(&envelope{msg: round*10 + i})
		}
		for i := range 4 {
			msg, _, ok := tail.pop(&spare)
			if !ok || msg != round*10+i {
				t.Fatalf("round %d: pop = %v, %v; want %d", round, msg, ok, round*10+i)
			}
		}
		if _, _, ok := tail.pop(&spare); ok {
			t.Fatalf("round %d: queue not empty", round)
		}
		if tail.stub.msg != nil {
			t.Fatalf("round %d: stub still holds %v", round, tail.stub.msg)
		}
	}
}

// TestEnvelopePoolRuns puts runs of free nodes into the pool, as
// spareList.flush does, and takes them back as single nodes (get) and as
// runs (getRun): no node is handed out twice, and a node from get is
// unlinked. (sync.Pool may drop what it is given, under -race on purpose,
// so the test does not count on getting the same nodes back.)
func TestEnvelopePoolRuns(t *testing.T) {
	t.Parallel()
	var free envelopePool
	free.init()
	run := func(n int) *envelope {
		var l spareList
		for range n {
			l.push(new(envelope))
		}
		return l.head
	}
	out := map[*envelope]bool{}
	take := func(e *envelope) {
		if out[e] {
			t.Fatalf("node %p handed out twice", e)
		}
		out[e] = true
	}
	for round := range 20 {
		free.put(run(minRun-3+round%6), true) // singles, and runs from minRun on
		free.put(run(minRun+round), false)    // singles
		free.put(run(3), true)
		free.put(nil, true)
		for range minRun + 8 {
			e := free.get(round, nil)
			if e.next != nil || e.msg != round {
				t.Fatalf("get returned next=%p msg=%v; want an unlinked node holding %d", e.next, e.msg, round)
			}
			take(e)
		}
		for e := free.getRun(); e != nil; e = (*envelope)(e.next) {
			take(e)
		}
	}
}
