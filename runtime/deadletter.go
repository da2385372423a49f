package runtime

import (
	"slices"
	"sync"
)

// DeadLetter is a message that could not be delivered.
type DeadLetter struct {
	// To is the actor the message was sent to.
	To *Ref
	// Message is the undelivered message.
	Message any
	// Reason says why it was not delivered: ErrStopped or ErrMailboxFull.
	Reason error
}

// deadLetterSub is one subscriber. Publishers offer it a letter under a
// read lock of mu, and unsubscribe takes the write lock to mark it gone:
// so once unsubscribe returns, no publisher that loaded the subscribers
// before can still send to ch, and its owner may close it. Without that,
// a publisher sent to a closed channel and panicked, on an actor's
// goroutine if the letter came from its stop, which ended the process.
type deadLetterSub struct {
	mu   sync.RWMutex
	gone bool // guarded by mu
	ch   chan<- DeadLetter
}

// offer sends dl to the subscriber if it is still subscribed. It reports
// false when the channel was full and the letter dropped.
func (sub *deadLetterSub) offer(dl DeadLetter) bool {
	sub.mu.RLock()
	defer sub.mu.RUnlock()
	if sub.gone {
		return true
	}
	select {
	case sub.ch <- dl:
		return true
	default:
		return false
	}
}

// SubscribeDeadLetters registers ch to receive every dead letter from now
// on and returns a function that unregisters it: once that returns, no
// letter is sent to ch, which may then be closed. Publishing never blocks
// the sender: when ch is full the letter is dropped for this subscriber and
// counted by DroppedDeadLetters, so give ch a buffer and drain it.
func (s *System) SubscribeDeadLetters(ch chan<- DeadLetter) (unsubscribe func()) {
	sub := &deadLetterSub{ch: ch}
	s.dlMu.Lock()
	defer s.dlMu.Unlock()
	var subs []*deadLetterSub
	if p := s.dlSubs.Load(); p != nil {
		subs = slices.Clone(*p)
	}
	subs = append(subs, sub)
	s.dlSubs.Store(&subs)
	return func() { s.unsubscribe(sub) }
}

func (s *System) unsubscribe(sub *deadLetterSub) {
	s.dlMu.Lock()
	if p := s.dlSubs.Load(); p != nil {
		subs := slices.DeleteFunc(slices.Clone(*p), func(x *deadLetterSub) bool { return x == sub })
		s.dlSubs.Store(&subs)
	}
	s.dlMu.Unlock()
	// Publishers that loaded the list before may still offer it a letter:
	// wait for those offering one now, and turn the later ones away.
	sub.mu.Lock()
	sub.gone = true
	sub.mu.Unlock()
}

// DroppedDeadLetters returns how many dead letters were not delivered to a
// subscriber because its channel was full.
func (s *System) DroppedDeadLetters() uint64 { return s.dlDropped.Load() }

// deadLetter publishes msg, which could not be delivered to to.
func (s *System) deadLetter(to *Ref, msg any, reason error) {
	if s.logDL {
		s.logger.Debug("runtime: dead letter", "to", to.String(), "type", typeName(msg), "reason", reason)
	}
	p := s.dlSubs.Load()
	if p == nil {
		return
	}
	dl := DeadLetter{To: to, Message: msg, Reason: reason}
	for _, sub := range *p {
		if !sub.offer(dl) {
			s.dlDropped.Add(1)
		}
	}
}
