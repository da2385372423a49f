package cluster

import (
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
)

// MemberStatus is a member's state as gossip reports it.
type MemberStatus int

const (
	// StatusAlive members take part in placement.
	StatusAlive MemberStatus = iota
	// StatusLeaving members are leaving gracefully; they own nothing.
	StatusLeaving
	// StatusLeft members have left gracefully.
	StatusLeft
	// StatusFailed members stopped answering the failure detector.
	StatusFailed
)

// String returns the status as serf names it.
func (s MemberStatus) String() string {
	switch s {
	case StatusAlive:
		return "alive"
	case StatusLeaving:
		return "leaving"
	case StatusLeft:
		return "left"
	case StatusFailed:
		return "failed"
	default:
		return "unknown"
	}
}

// Member is one node of the cluster as this node sees it.
type Member struct {
	// Name is the node's unique name.
	Name string
	// GRPCAddr is the address of the node's transport.
	GRPCAddr string
	// GossipAddr is the address of the node's gossip.
	GossipAddr string
	// Kinds lists the grain kinds the node hosts.
	Kinds []string
	// Status is the node's gossip status.
	Status MemberStatus
	// incarnation tells the node's starts apart (see Node.incarnation).
	incarnation string
	// releases says that the node answers asks for the release of the
	// grains taken from it (tagReleases, see handoffs).
	releases bool
	// saidLeaving, for a member the gossip has failed, says that it said
	// on a stream still open, or in its tags, that it is leaving (see
	// Node.viewOf): a graceful leaver, which the gossip may report failed.
	saidLeaving bool
	// leavingTag says that the member's tags say it is leaving
	// (tagLeaving, see memberFromSerf).
	leavingTag bool
}

// candidate is an alive member hosting a kind, with its name hashed once.
type candidate struct {
	member *Member
	seed   uint64
}

// placement is an immutable view of the alive members, indexed by kind. A
// new one is built on every membership change and swapped in atomically, so
// lookups take no lock and allocate nothing.
type placement struct {
	members []Member               // every known member, sorted by name
	byName  map[string]*Member     // alive members
	byKind  map[string][]candidate // alive members hosting each kind, and those a vote holds (see judged)
	shared  map[string][]candidate // the candidates ownWorkers replaced in byKind, by kind
	// fenced is whether this node's split-brain vote took it out of the
	// cluster (see majority): then it owns nothing. settling, whether the
	// vote did so although the node has a majority, while it settles.
	fenced, settling bool
}

// newPlacement indexes members (which it keeps; do not modify them after).
func newPlacement(members []Member) *placement {
	slices.SortFunc(members, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	p := &placement{
		members: members,
		byName:  make(map[string]*Member, len(members)),
		byKind:  make(map[string][]candidate),
	}
	for i := range members {
		m := &members[i]
		if m.Status != StatusAlive {
			continue
		}
		p.byName[m.Name] = m
		seed := hashString(fnvOffset, m.Name)
		for _, k := range m.Kinds {
			p.byKind[k] = append(p.byKind[k], candidate{member: m, seed: seed})
		}
	}
	return p
}

// judged applies a split-brain vote's verdict to p, which is not yet in
// use, and returns it: a fenced node has no candidates for any grain, and
// the failed members the vote holds stay candidates for their grains
// until they are downed.
func (p *placement) judged(v verdict) *placement {
	if v.fenced {
		p.fenced, p.settling, p.byKind = true, v.settling, nil
		return p
	}
	for _, name := range v.held {
		m, _ := p.member(name)
		seed := hashString(fnvOffset, m.Name)
		for _, k := range m.Kinds {
			p.byKind[k] = append(p.byKind[k], candidate{member: m, seed: seed})
		}
	}
	return p
}

// ownWorkers makes self, while it is alive and not fenced in p, which is
// not yet in use, the one candidate for the grains of kinds, the kinds of
// stateless workers it hosts (see Kind.StatelessWorkers): it runs the calls
// it makes to them itself, and serves those its peers place on it by their
// own views, in which it is one candidate of several. It keeps the
// candidates it replaced for sharedOwner.
func (p *placement) ownWorkers(self string, kinds []string) {
	m, alive := p.byName[self]
	if !alive || p.fenced || len(kinds) == 0 {
		return
	}
	p.shared = make(map[string][]candidate, len(kinds))
	for _, k := range kinds {
		p.shared[k] = p.byKind[k]
		p.byKind[k] = []candidate{{member: m, seed: hashString(fnvOffset, self)}}
	}
}

// sharedOwner is owner as every member's view agrees on it: for the kinds
// of stateless workers, where owner is this node in its own view on every
// host, the owner that placement picks among the hosts, as a member that
// does not host the kind would. What must happen on one node only, as the
// firing of a reminder, goes by it.
func (p *placement) sharedOwner(kind, identity string) (*Member, bool) {
	if cands, ok := p.shared[kind]; ok {
		return pick(cands, kind, identity)
	}
	return p.owner(kind, identity)
}

// minority reports whether p is fenced for want of a majority, rather
// than while the node settles: what the node says in its tags, and why it
// refuses strangers (see advertiseFence and refuseStrangers). A settling
// node has a majority: a joiner that reaches it can count on it.
func (p *placement) minority() bool { return p.fenced && !p.settling }

// noOwner is the error of a call or message to a grain of kind that has
// no owner in p.
func (p *placement) noOwner(kind string) error {
	if p.settling {
		return newError(codes.Unavailable, ErrNoQuorum, "cluster: this node regained a majority of the cluster's members, or joined, while some are failed, and places no grain until they have had DownAfter to see it (Config.KeepMajority)")
	}
	if p.fenced {
		return newError(codes.Unavailable, ErrNoQuorum, "cluster: this node sees no majority of the cluster's members, and places no grain (Config.KeepMajority)")
	}
	return newError(codes.Unimplemented, ErrUnknownKind, "cluster: no alive member hosts grain kind %q", kind)
}

// member returns the named member, whatever its status, and false if the
// view does not know it.
func (p *placement) member(name string) (*Member, bool) {
	i, ok := slices.BinarySearchFunc(p.members, name, func(m Member, name string) int { return strings.Compare(m.Name, name) })
	if !ok {
		return nil, false
	}
	return &p.members[i], true
}

// status returns the status of the named member, and false if the view
// does not know it.
func (p *placement) status(name string) (MemberStatus, bool) {
	if m, ok := p.member(name); ok {
		return m.Status, true
	}
	return 0, false
}

// owner returns the alive member that owns (kind, identity): the candidate
// with the highest rendezvous score. Every node with the same member list
// computes the same owner, and adding or removing one member only moves the
// grains that member wins or held.
func (p *placement) owner(kind, identity string) (*Member, bool) {
	return pick(p.byKind[kind], kind, identity)
}

// pick returns the candidate of cands with the highest score for the
// grain, and false if there is none.
func pick(cands []candidate, kind, identity string) (*Member, bool) {
	switch len(cands) {
	case 0:
		return nil, false
	case 1:
		// The only candidate wins whatever the score: skip hashing the
		// identity, which both ends of every call and one-way message do.
		return cands[0].member, true
	}
	key := keyHash(kind, identity)
	best, bestScore := cands[0].member, score(cands[0].seed, key)
	for _, c := range cands[1:] {
		if s := score(c.seed, key); s > bestScore {
			best, bestScore = c.member, s
		}
	}
	return best, true
}

// ownerExcept is owner over the candidates other than the named members
// ("" names nobody): the grain's owner once they are gone from the view.
func (p *placement) ownerExcept(kind, identity string, except ...string) (*Member, bool) {
	var best *Member
	var bestScore uint64
	key := keyHash(kind, identity)
	for _, c := range p.byKind[kind] {
		if slices.Contains(except, c.member.Name) {
			continue
		}
		if s := score(c.seed, key); best == nil || s > bestScore {
			best, bestScore = c.member, s
		}
	}
	return best, best != nil
}

// FNV-1a, 64 bit. Fast and allocation-free; score mixes its output further.
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
	// keySeparator keeps ("ab", "c") and ("a", "bc") apart.
	keySeparator = 0xff
)

// keyHash hashes a grain's kind and identity, with a separator between
// them so that ("ab", "c") and ("a", "bc") differ.
func keyHash(kind, identity string) uint64 {
	return hashString(kindSeed(kind), identity)
}

// kindSeed is keyHash's state after the kind and the separator.
func kindSeed(kind string) uint64 {
	h := hashString(fnvOffset, kind)
	h ^= keySeparator
	h *= fnvPrime
	return h
}

func hashString[S ~string | ~[]byte](h uint64, s S) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

// score combines a member's seed with a key's hash through the splitmix64
// finalizer, so that every member gets an independent, uniform score per key.
func score(seed, key uint64) uint64 {
	z := seed ^ key
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}
