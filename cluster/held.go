package cluster

import (
	"cmp"
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/serf/serf"
)

// What a starting node settles for (see Node.settleForUnseen,
// Config.KeepMajority).
//
// Its view lacks the members its seeds have failed: memberlist takes in no
// member a peer has failed that it never saw alive. While the others hold
// such a member's grains (DownAfter from when they saw it fail), the
// member may be cut off and still serve them, so the starting node serves
// nothing until the holds end. It asks every alive member, with a serf
// query (queryHeld), which members it holds the grains of and for how much
// longer, and settles for the longest hold of a member it does not know.
// The answers name the members: a node that joins through members that
// started after the failure hears of the failed member from nobody's list
// (they never took it in either), and would otherwise serve its grains at
// once.
//
// It settles for as long as the holds run, not for DownAfter from its
// start, nor only when its lists name the member: memberlist passes a dead
// member on in its lists for GossipToTheDeadTime (30 s in the LAN
// profile), which may end after the holds (DownAfter from when the others
// saw the failure, 12.9 s for three members by default) or before them (a
// longer DownAfter). A node that settled for DownAfter whenever a list
// named a failed member served nothing for up to DownAfter after the holds
// had ended, with the grains it won waiting (the others place them on
// it); one that started once the lists had dropped the member did not
// settle at all while the holds ran.
//
// A member that does not answer in time (an older version, say), or cannot
// say (it is fenced, or its view has one of the members the lists named
// alive or leaving), leaves the node to settle for DownAfter if its lists
// named failed members, as before; and to settle for the holds the others
// reported otherwise.
//
// An answer must fit serf's response limit (1 KB by default): some twenty
// to forty holds, by the names' length, fewer than a large cluster that
// lost a zone holds. An answer with more names the longest holds and
// bounds the rest by the longest it leaves out (holdAnswer.rest); the
// starting node settles for that bound as well, with no name to end it
// early, and passes it on in its own answers while it settles.

// queryHeld is the name of the serf query a starting node sends; its
// payload is the names of the failed members its seeds' lists named,
// separated by newlines (see holdAnswer for the answer).
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
	// unlisted is when the node stops settling for the members that the
	// answers to its own start left out for want of room (see
	// majority.unlisted).
	unlisted time.Time
}

// holdAnswer is a member's answer to queryHeld.
type holdAnswer struct {
	// ok is false if the member cannot say what it holds of the members
	// asked about (see above).
	ok bool
	// holds are the members whose grains it holds, by name, with what is
	// left of each hold.
	holds map[string]time.Duration
	// rest, if positive, bounds what is left of the holds the answer does
	// not name: those encode left out for want of room, and those of the
	// members the node's own start was told of without their names.
	rest time.Duration
}

// heldAnswer returns the node's answer, at now, to a query about the
// named members (see above). A node that has not voted yet holds nothing:
// its view is yet to come.
func (n *Node) heldAnswer(names []string, now time.Time) holdAnswer {
	h := n.majority.holds.Load()
	if h == nil {
		return holdAnswer{ok: true}
	}
	if h.fenced {
		return holdAnswer{}
	}
	a := holdAnswer{ok: true, rest: max(0, h.unlisted.Sub(now))}
	for name, until := range h.until {
		if left := until.Sub(now); left > 0 {
			if a.holds == nil {
				a.holds = make(map[string]time.Duration)
			}
			a.holds[name] = left
		}
	}
	p := n.view.Load()
	for _, name := range names {
		if _, held := h.until[name]; held {
			continue
		}
		if st, ok := p.status(name); ok && (st == StatusAlive || st == StatusLeaving) {
			a.ok = false
		}
	}
	return a
}

// The bits of an encoded answer's first byte.
const (
	answerOK   = 1 << iota // holdAnswer.ok
	answerRest             // eight bytes of holdAnswer.rest follow
)

// holdEntryBytes is what a hold takes in an encoded answer besides its
// name's bytes: the name's length (a uvarint, up to 10 bytes) and the
// hold (8 bytes).
const holdEntryBytes = binary.MaxVarintLen64 + 8

// answerRoom is how many bytes an answer may take in a response of serf's
// limit from the node named name: the response's other fields take the
// rest (their msgpack encoding takes 59 bytes and the name; 96 leaves
// room).
func answerRoom(limit int, name string) int { return limit - 96 - len(name) }

// encode renders a in at most room bytes (nine at least, for the flags
// and the bound): a byte of flags (answerOK, answerRest), a.rest in
// nanoseconds (8 bytes) if it is positive, then each hold as the name's
// length (a uvarint), the name and the hold in nanoseconds (8 bytes),
// longest first. Holds that do not fit are left out, the longest of them
// bounding the rest.
func (a holdAnswer) encode(room int) []byte {
	type hold struct {
		name string
		left time.Duration
	}
	holds := make([]hold, 0, len(a.holds))
	size := 1 + 8
	for name, left := range a.holds {
		holds = append(holds, hold{name, left})
		size += len(name) + holdEntryBytes
	}
	slices.SortFunc(holds, func(x, y hold) int {
		if c := cmp.Compare(y.left, x.left); c != 0 {
			return c
		}
		return strings.Compare(x.name, y.name)
	})
	rest := a.rest
	if size > room {
		// Room for the rest's bound first, then the longest holds.
		size = 1 + 8
		for i, h := range holds {
			if size += len(h.name) + holdEntryBytes; size > room {
				rest = max(rest, h.left)
				holds = holds[:i]
				break
			}
		}
	}
	b := []byte{0}
	if a.ok {
		b[0] |= answerOK
	}
	if rest > 0 {
		b[0] |= answerRest
		b = binary.BigEndian.AppendUint64(b, uint64(rest))
	}
	for _, h := range holds {
		b = binary.AppendUvarint(b, uint64(len(h.name)))
		b = append(b, h.name...)
		b = binary.BigEndian.AppendUint64(b, uint64(h.left))
	}
	return b
}

// errMalformedHoldAnswer is how decodeHoldAnswer refuses an answer.
var errMalformedHoldAnswer = errors.New("cluster: malformed answer to a starting node's question about holds")

// decodeHoldAnswer parses an answer that encode rendered.
func decodeHoldAnswer(b []byte) (holdAnswer, error) {
	if len(b) == 0 || b[0]&^(answerOK|answerRest) != 0 {
		return holdAnswer{}, errMalformedHoldAnswer
	}
	a := holdAnswer{ok: b[0]&answerOK != 0}
	if b[0]&answerRest != 0 {
		if len(b) < 9 {
			return holdAnswer{}, errMalformedHoldAnswer
		}
		if a.rest = time.Duration(binary.BigEndian.Uint64(b[1:])); a.rest <= 0 {
			return holdAnswer{}, errMalformedHoldAnswer
		}
		b = b[8:]
	}
	for b = b[1:]; len(b) > 0; {
		size, n := binary.Uvarint(b)
		if n <= 0 || size > uint64(len(b)-n) || uint64(len(b)-n)-size < 8 {
			return holdAnswer{}, errMalformedHoldAnswer
		}
		name := string(b[n : n+int(size)])
		left := time.Duration(binary.BigEndian.Uint64(b[n+int(size):]))
		if left <= 0 || name == "" {
			return holdAnswer{}, errMalformedHoldAnswer
		}
		if a.holds == nil {
			a.holds = make(map[string]time.Duration)
		}
		a.holds[name] = left
		b = b[n+int(size)+8:]
	}
	return a, nil
}

// answerHeld answers a starting node's queryHeld (see above).
func (n *Node) answerHeld(q *serf.Query) {
	if n.majority == nil || q.SourceNode() == n.name {
		return // it asks the others
	}
	var names []string
	if len(q.Payload) > 0 {
		names = strings.Split(string(q.Payload), "\n")
	}
	if err := q.Respond(n.heldAnswer(names, time.Now()).encode(n.answerRoom)); err != nil {
		n.log.Debug("cluster: could not answer a starting node's question about holds", "node", q.SourceNode(), "err", err)
	}
}

// errNoHoldAnswer says why a starting node settles for DownAfter (see
// askHeld).
var errNoHoldAnswer = errors.New("cluster: not every member said what it holds")

// askHeld asks the alive members of serf's list, but this node, which
// members they hold the grains of, among them the named ones, and for how
// much longer (see above). It returns the longest hold of each member
// they named, and the longest bound of the holds they left unnamed (see
// holdAnswer.rest), with errNoHoldAnswer if one of them could not say, or
// did not answer within serf's query timeout, or answered malformed.
func (n *Node) askHeld(names []string) (holds map[string]time.Duration, rest time.Duration, err error) {
	var asked []string
	for _, m := range n.serf.Members() {
		if m.Name != n.name && m.Status == serf.StatusAlive {
			asked = append(asked, m.Name)
		}
	}
	if len(asked) == 0 {
		return nil, 0, nil // nobody to hold anything
	}
	// Every member hears the query and answers; those asked are counted.
	// A filter of their names would go in the query, whose size serf
	// bounds (1 KB): a cluster of some forty members could not ask.
	resp, err := n.serf.Query(queryHeld, []byte(strings.Join(names, "\n")), nil)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Close()
	holds = make(map[string]time.Duration)
	var failed error
	for r := range resp.ResponseCh() {
		i := slices.Index(asked, r.From)
		if i < 0 {
			continue // not asked, or answered twice
		}
		a, err := decodeHoldAnswer(r.Payload)
		if err == nil && !a.ok {
			err = errNoHoldAnswer
		}
		if err != nil {
			failed = err
		}
		for name, left := range a.holds {
			holds[name] = max(holds[name], left)
		}
		rest = max(rest, a.rest)
		if asked = slices.Delete(asked, i, i+1); len(asked) == 0 {
			return holds, rest, failed
		}
	}
	return holds, rest, errNoHoldAnswer // the query timed out
}
