package cluster

import (
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/serf/serf"
)

// How long a starting node settles for the members its gossip did not take
// in (see Node.settleForUnseen, Config.KeepMajority).
//
// It settles for as long as the members that saw them fail still hold
// their grains: once a member has downed a failed member, the design takes
// that one to have fenced itself (DownAfter is the time it gives a member
// cut off by a partition to see it). Serf keeps a failed member in its
// lists for its reconnect timeout, a day by default, long after anyone
// holds its grains: a node that settled for DownAfter then served nothing
// for DownAfter at every start for a day after any member crashed for
// good, and the grains it won waited with it (the others place them on it).
//
// So it asks, with a serf query (queryHeld), every alive member how much
// longer it holds the grains of those members, and settles for the longest
// answer. It settles for DownAfter, as before, if a member does not answer
// in time (an older version, say, or one that hears the query late) or
// cannot say: it is fenced, or its view has one of them alive or leaving.

// queryHeld is the name of the serf query a starting node sends; its
// payload is the names it asks about, separated by newlines (see
// heldAnswer for the answer).
const queryHeld = "pg-held"

// holdTimes is what a node's last split-brain vote held (see
// majority.vote), published for the queries of starting nodes, which are
// answered on serf's event goroutine and so must not wait for the view's
// lock (Node.refreshMu).
type holdTimes struct {
	// fenced: the node has no majority, and holds nobody's grains on a
	// clock (see vote).
	fenced bool
	// until is, by member name, when the node downs a failed member that
	// counts against its majority (the zero time once it has), or stops
	// settling for a member its own start did not take in (see
	// majority.unseen).
	until map[string]time.Time
}

// heldFor returns how much longer, from now, the node holds the grains of
// the named members, and false if it cannot say (see above). A member it
// does not hold is one its view has left, leaving after it said so (it
// does not count against the majority), or does not have: 0.
func (n *Node) heldFor(names []string, now time.Time) (time.Duration, bool) {
	h := n.majority.holds.Load()
	if h == nil || h.fenced {
		return 0, false
	}
	p := n.view.Load()
	var longest time.Duration
	for _, name := range names {
		if until, ok := h.until[name]; ok {
			longest = max(longest, until.Sub(now))
			continue
		}
		if st, ok := p.status(name); ok && (st == StatusAlive || st == StatusLeaving) {
			return 0, false
		}
	}
	return longest, true
}

// heldAnswer encodes an answer to queryHeld: the hold in nanoseconds, or
// -1 if the node cannot say.
func heldAnswer(held time.Duration, ok bool) []byte {
	if !ok {
		held = -1
	}
	return binary.BigEndian.AppendUint64(nil, uint64(held))
}

// parseHeldAnswer decodes an answer of heldAnswer; a malformed one cannot
// say.
func parseHeldAnswer(b []byte) (time.Duration, bool) {
	if len(b) != 8 {
		return 0, false
	}
	held := time.Duration(binary.BigEndian.Uint64(b))
	if held < 0 {
		return 0, false
	}
	return held, true
}

// answerHeld answers a starting node's queryHeld (see above).
func (n *Node) answerHeld(q *serf.Query) {
	if n.majority == nil || q.SourceNode() == n.name {
		return // it asks the others
	}
	held, ok := n.heldFor(strings.Split(string(q.Payload), "\n"), time.Now())
	if err := q.Respond(heldAnswer(held, ok)); err != nil {
		n.log.Debug("cluster: could not answer a starting node's question about the members it did not take in", "node", q.SourceNode(), "err", err)
	}
}

// errNoHoldAnswer says why a starting node settles for DownAfter (see
// askHeld).
var errNoHoldAnswer = errors.New("cluster: not every member said how long it holds them")

// askHeld asks the alive members of serf's list, but this node, how much
// longer they hold the grains of the named members (see above), and
// returns the longest answer, or errNoHoldAnswer if one of them cannot say
// or does not answer within serf's query timeout.
func (n *Node) askHeld(names []string) (time.Duration, error) {
	var asked []string
	for _, m := range n.serf.Members() {
		if m.Name != n.name && m.Status == serf.StatusAlive {
			asked = append(asked, m.Name)
		}
	}
	if len(asked) == 0 {
		return 0, errNoHoldAnswer
	}
	resp, err := n.serf.Query(queryHeld, []byte(strings.Join(names, "\n")), &serf.QueryParam{FilterNodes: asked})
	if err != nil {
		return 0, err
	}
	defer resp.Close()
	var longest time.Duration
	for r := range resp.ResponseCh() {
		i := slices.Index(asked, r.From)
		if i < 0 {
			continue // not asked, or answered twice
		}
		held, ok := parseHeldAnswer(r.Payload)
		if !ok {
			return 0, errNoHoldAnswer
		}
		longest = max(longest, held)
		if asked = slices.Delete(asked, i, i+1); len(asked) == 0 {
			return longest, nil
		}
	}
	return 0, errNoHoldAnswer // the query timed out
}
