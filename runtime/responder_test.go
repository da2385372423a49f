package runtime

import (
	"context"
	"errors"
	goruntime "runtime"
	"strings"
	"testing"
	"weak"
)

// TestADroppedResponderAnswers: a Responder that its actor drops without
// answering fails its Request with ErrNoReply once the garbage collector
// finds it, so a caller without a deadline does not wait for good.
func TestADroppedResponderAnswers(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	r := spawnFunc(t, s, func(c *Context) {
		if c.Message() == "drop" {
			c.DetachReply() // and forget it
		}
	})
	got := make(chan error, 1)
	go func() {
		_, err := r.Request(context.Background(), "drop")
		got <- err
	}()
	var err error
	waitFor(t, testTimeout, func() bool {
		goruntime.GC()
		select {
		case err = <-got:
			return true
		default:
			return false
		}
	}, "the Request of a dropped Responder to fail")
	if !errors.Is(err, ErrNoReply) || !strings.Contains(err.Error(), r.String()) {
		t.Fatalf("Request = %v; want ErrNoReply, naming %s", err, r)
	}
}

// TestAnAnsweredResponderLeavesItsSlotAlone: once a Responder has
// answered, its caller puts the reply slot back in the pool for a later
// Request; when the Responder is collected, nothing may answer that slot.
// The slot is kept here, pending again as the pool would hand it out, and
// a second Responder dropped after the first was collected tells when the
// cleanups have run.
func TestAnAnsweredResponderLeavesItsSlotAlone(t *testing.T) {
	t.Parallel()
	s := newTestSystem(t, Config{})
	r := spawnFunc(t, s, func(*Context) {})
	detach := func(slot *replySlot) *Responder {
		c := &Context{ref: r, reply: slot}
		return c.DetachReply()
	}
	slot := s.getSlot()
	answered := detach(slot)
	if !answered.Respond("first") {
		t.Fatal("Respond did not deliver")
	}
	<-slot.ready // the caller takes the reply and recycles the slot (see putSlot)
	slot.val, slot.err = nil, nil
	slot.state.Store(slotPending)
	gone := weak.Make(answered)
	answered = nil
	waitFor(t, testTimeout, func() bool { goruntime.GC(); return gone.Value() == nil }, "the answered Responder to be collected")

	sentinel := s.getSlot()
	detach(sentinel) // dropped unanswered
	waitFor(t, testTimeout, func() bool { goruntime.GC(); return sentinel.arrived() }, "the dropped Responder to answer")
	if slot.arrived() {
		t.Fatalf("the recycled slot of an answered Responder got %v, %v", slot.val, slot.err)
	}
}
