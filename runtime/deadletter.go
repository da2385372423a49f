package runtime

import "slices"

// DeadLetter is a message that could not be delivered.
type DeadLetter struct {
	// To is the actor the message was sent to.
	To *Ref
	// Message is the undelivered message.
	Message any
	// Reason says why it was not delivered: ErrStopped or ErrMailboxFull.
	Reason error
}

type deadLetterSub struct{ ch chan<- DeadLetter }

// SubscribeDeadLetters registers ch to receive every dead letter from now
// on and returns a function that unregisters it. Publishing never blocks
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
	defer s.dlMu.Unlock()
	p := s.dlSubs.Load()
	if p == nil {
		return
	}
	subs := slices.DeleteFunc(slices.Clone(*p), func(x *deadLetterSub) bool { return x == sub })
	s.dlSubs.Store(&subs)
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
		select {
		case sub.ch <- dl:
		default:
			s.dlDropped.Add(1)
		}
	}
}
