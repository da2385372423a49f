package cluster

// Stats is a snapshot of what a node holds: its grains, the messages that
// wait for them or for their owners, and what it dropped, for a dashboard,
// an alert or a readiness probe (a node whose grains fall behind their
// senders shows it here before Config.MaxQueuedOneWay and MaxQueuedCalls
// turn messages away). Each figure is read on its own, not all at one
// instant.
type Stats struct {
	// Activations is how many grains are active on the node, those being
	// activated or deactivated included.
	Activations int
	// Calls is how many calls the node's grains have counted in, as
	// Config.MaxQueuedCalls counts them: running, waiting in a mailbox or
	// for an activation, and those whose callers gave up that the grain
	// has not reached yet.
	Calls int
	// QueuedOneWay is how many one-way messages wait for the node's
	// grains, in their mailboxes and, while they activate, in the lanes of
	// the streams they came on, as Config.MaxQueuedOneWay counts them: it
	// errs high, by up to 64 per grain (the grains count what they ran out
	// in groups), never low.
	QueuedOneWay int
	// Forwarding is how many one-way messages wait to be forwarded to
	// their grains' owners: messages that reached this node while its
	// peers' views of the members differed from its own.
	Forwarding int
	// DroppedOneWay counts the one-way messages from peers that the node
	// dropped since it started: for a full mailbox or forward queue, or
	// because it could not deliver them (each also counted in its log).
	DroppedOneWay uint64
	// Refused counts what the node's grains turned away with
	// ErrMailboxFull since it started: calls past Config.MaxQueuedCalls,
	// from this node or a peer, and one-way messages sent on this node
	// past Config.MaxQueuedOneWay (a peer's are dropped instead, and
	// counted in DroppedOneWay).
	Refused uint64
	// RefusedActivations counts the activations the node refused since it
	// started, past Config.ActivationLimit, each with what needed it.
	RefusedActivations uint64
	// HeapPassivations counts the grains the node asked to passivate
	// early since it started because the process's live heap was over
	// Config.MaxHeapBytes (a grain used meanwhile stays, and is counted
	// all the same).
	HeapPassivations uint64
	// Kinds breaks Activations, Calls and QueuedOneWay down by grain kind,
	// to tell which kind falls behind, and counts each kind's identities:
	// an entry for every kind the node hosts (Config.Kinds), zero while
	// none of its grains is active. The entries add up to the node's
	// figures.
	Kinds map[string]KindStats
}

// KindStats is the part of a node's Stats that the grains of one kind
// account for.
type KindStats struct {
	// Activations is how many grains of the kind are active on the node,
	// as Stats.Activations counts them.
	Activations int
	// Identities is how many identities of the kind have an activation on
	// the node: Activations, but for a kind of stateless workers
	// (Kind.StatelessWorkers), each of whose identities may have several,
	// so that Activations over Identities is the workers per identity.
	Identities int
	// Calls is how many calls the kind's grains have counted in, as
	// Stats.Calls counts them.
	Calls int
	// QueuedOneWay is how many one-way messages wait for the kind's
	// grains, as Stats.QueuedOneWay counts them.
	QueuedOneWay int
}

// Stats returns a snapshot of what n holds. It looks at every activation,
// under each shard's read lock in turn: call it every few seconds, not per
// call.
func (n *Node) Stats() Stats {
	s := Stats{
		DroppedOneWay:      n.dropped.Load(),
		Refused:            n.refused.Load(),
		RefusedActivations: n.refusedActivations.Load(),
		HeapPassivations:   n.heapPassivations.Load(),
		Kinds:              make(map[string]KindStats, len(n.kinds)),
	}
	for name := range n.kinds {
		s.Kinds[name] = KindStats{}
	}
	var workers map[actKey]struct{} // the identities of worker kinds seen
	n.acts.each(func(a *activation) {
		k := s.Kinds[a.hk.Name]
		k.Activations++
		if !a.hk.stateless() {
			k.Identities++
		} else if _, seen := workers[a.key()]; !seen {
			if workers == nil {
				workers = make(map[actKey]struct{})
			}
			workers[a.key()] = struct{}{}
			k.Identities++
		}
		k.Calls += int(a.calls.Load() &^ callsClosed)
		k.QueuedOneWay += int(max(0, a.oneWays.Load()))
		s.Kinds[a.hk.Name] = k
	})
	// The lanes themselves, not Node.laned, which counts nothing when
	// MaxQueuedOneWay bounds nothing.
	for _, c := range n.transport.openConns() {
		c.waiting(func(kind string, waiting int) {
			k := s.Kinds[kind]
			k.QueuedOneWay += waiting
			s.Kinds[kind] = k
		})
	}
	for _, k := range s.Kinds {
		s.Activations += k.Activations
		s.Calls += k.Calls
		s.QueuedOneWay += k.QueuedOneWay
	}
	s.Forwarding = n.forwards.len()
	return s
}

// len returns how many messages wait in the queues.
func (q *forwardQueues) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := 0
	for _, fq := range q.queues {
		n += len(fq.msgs)
	}
	return n
}
