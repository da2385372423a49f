package cluster

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"maps"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"
)

// Tag names in a node's serf tags.
const (
	tagGRPC  = "pg-grpc"
	tagKinds = "pg-kinds"
	// tagIncarnation is the random ID of the node's start (see
	// Node.incarnation).
	tagIncarnation = "pg-inc"
	// tagFenced is in the tags of a node while its split-brain vote
	// fences it (Config.KeepMajority; see Node.advertiseFence), so that a
	// node that joins through it learns it.
	tagFenced = "pg-fenced"
	// tagReleases says that the node answers a member that asks whether
	// it released the grains the member took from it (see handoffs): the
	// member's activations of those grains wait for the answer. A node
	// older than the tag is neither asked nor waited for.
	tagReleases = "pg-rel"
	// tagLeaving is "1" in the tags of a node once its Shutdown began, set
	// before its gossip leave, and "0" before (see memberFromSerf). A node
	// older than the tag has none.
	tagLeaving = "pg-lv"
	// tagTLS is "1" in the tags of a node whose transport uses TLS
	// (Config.TLS) and "0" in those of one whose transport is in the
	// clear, so that a node that disagrees with the members fails its
	// start (see Node.checkTransportSecurity). A node older than the tag
	// has none.
	tagTLS = "pg-tls"
	// kindSeparator joins kind names in tagKinds; proto names contain none.
	kindSeparator = ","
)

// nodeTags returns the serf tags of a node, or ErrTagsTooLarge; with
// keepMajority, they leave room for tagFenced.
func nodeTags(grpcAddr, incarnation string, kinds []*Kind, keepMajority, tls bool) (map[string]string, error) {
	names := make([]string, len(kinds))
	for i, k := range kinds {
		names[i] = k.Name
	}
	tags := map[string]string{
		tagGRPC:        grpcAddr,
		tagKinds:       strings.Join(names, kindSeparator),
		tagIncarnation: incarnation,
		tagReleases:    "1",
		tagLeaving:     "0",
		tagTLS:         "0",
	}
	if tls {
		tags[tagTLS] = "1"
	}
	most := tags // leavingTags takes no more room
	if keepMajority {
		most = fencedTags(tags)
	}
	if n := encodedTagsSize(most); n > MaxTagsSize {
		return nil, fmt.Errorf("%w: the transport address, the incarnation and the names of %d kinds take %d bytes encoded, over serf's limit of %d; host fewer kinds on this node",
			ErrTagsTooLarge, len(kinds), n, MaxTagsSize)
	}
	return tags, nil
}

// fencedTags returns a copy of a node's tags with tagFenced.
func fencedTags(tags map[string]string) map[string]string {
	fenced := maps.Clone(tags)
	fenced[tagFenced] = "1"
	return fenced
}

// leavingTags returns a copy of a node's tags that says it is leaving
// (tagLeaving).
func leavingTags(tags map[string]string) map[string]string {
	leaving := maps.Clone(tags)
	leaving[tagLeaving] = "1"
	return leaving
}

// encodedTagsSize is an upper bound of the size serf encodes tags to: a
// magic byte and a msgpack map of raw strings.
func encodedTagsSize(tags map[string]string) int {
	n := 1 + msgpackHeaderSize(len(tags), 16)
	for k, v := range tags {
		n += msgpackHeaderSize(len(k), 32) + len(k) + msgpackHeaderSize(len(v), 32) + len(v)
	}
	return n
}

// msgpackHeaderSize is the size of a msgpack map or raw header for n
// entries or bytes; below fix it fits in the type byte.
func msgpackHeaderSize(n, fix int) int {
	switch {
	case n < fix:
		return 1
	case n < 1<<16:
		return 3
	default:
		return 5
	}
}

// memberFromSerf converts a serf member. Members without the transport tag
// are not protograin nodes and are skipped.
//
// A member is leaving when serf says so only if its tags say so too
// (tagLeaving), and whenever they do. Serf's status can lag behind the
// member's start: serf keeps, for a name it does not know yet, the newest
// leave or join it heard of (its intents), and gives the leave to the
// member it then learns of under that name; push-pull exchanges pass on a
// left member's leave, one Lamport tick past its last status. A node that
// joins as a member restarts under its name can so take the new start for
// the old one's leave and keep it leaving for good, since no later word of
// that start outranks the leave: it would place the member's grains on
// others while the member runs them, two activations of a grain at once.
// The tags are the member's own, carried by memberlist's alive messages,
// whose record memberlist keeps for the start that is alive: a start that
// has not begun to leave says "0". A leaver sets "1" before its gossip
// leave begins; a peer that hears of the leave first has it alive until
// the tag arrives, the safe side: its calls there are answered "not owner"
// and placed again. A node older than the tag is taken at serf's word.
func memberFromSerf(m serf.Member) (Member, bool) {
	addr, ok := m.Tags[tagGRPC]
	if !ok {
		return Member{}, false
	}
	var kinds []string
	if k := m.Tags[tagKinds]; k != "" {
		kinds = strings.Split(k, kindSeparator)
	}
	st, ok := memberStatus(m.Status)
	if !ok {
		return Member{}, false
	}
	leaving, tagged := m.Tags[tagLeaving]
	switch {
	case st == StatusLeaving && tagged && leaving != "1":
		st = StatusAlive
	case st == StatusAlive && leaving == "1":
		st = StatusLeaving
	}
	return Member{
		Name:        m.Name,
		GRPCAddr:    addr,
		GossipAddr:  gossipAddr(m.Addr, m.Port),
		Kinds:       kinds,
		Status:      st,
		incarnation: m.Tags[tagIncarnation], // "" from a node older than the tag
		releases:    m.Tags[tagReleases] != "",
		leavingTag:  leaving == "1",
	}, true
}

func memberStatus(s serf.MemberStatus) (MemberStatus, bool) {
	switch s {
	case serf.StatusAlive:
		return StatusAlive, true
	case serf.StatusLeaving:
		return StatusLeaving, true
	case serf.StatusLeft:
		return StatusLeft, true
	case serf.StatusFailed:
		return StatusFailed, true
	default:
		return 0, false
	}
}

// newSerfConfig builds serf's configuration for the node; merge sees the
// member lists of joins and the alive messages (see nameClaim).
func newSerfConfig(cfg *Config, tags map[string]string, events chan serf.Event, logger *log.Logger, merge serf.MergeDelegate) (*serf.Config, error) {
	host, port, err := splitHostPort(cfg.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("cluster: bind address: %w", err)
	}
	sc := serf.DefaultConfig()
	sc.Init()
	sc.NodeName = cfg.NodeName
	sc.Tags = tags
	sc.EventCh = events
	sc.Logger = logger
	sc.LogOutput = nil
	sc.BroadcastTimeout, sc.LeavePropagateDelay = cfg.leaveTimings(sc.BroadcastTimeout, sc.LeavePropagateDelay)
	sc.Merge = merge
	if cfg.Gossip == GossipLocal {
		sc.ReconnectInterval = localReconnectInterval
		sc.QueryTimeoutMult = localQueryTimeoutMult
	}
	// Serf settles a name that two addresses claim by a vote, and the node
	// that loses it shuts its gossip down, under a node that goes on
	// running: a node restarted under its old name lost it whenever it
	// came back before its old incarnation was declared failed. Without
	// the vote each side only logs the conflict, the one the cluster knows
	// keeps the name, and a restarted node claims it once the old
	// incarnation is dead (see nameClaim).
	sc.EnableNameConflictResolution = false
	if cfg.queryResponseLimit > 0 {
		sc.QueryResponseSizeLimit = cfg.queryResponseLimit
	}

	mc := cfg.memberlistConfig()
	mc.Name = cfg.NodeName
	mc.Label = cfg.ClusterName
	if len(cfg.GossipKeys) > 0 {
		// The first key encrypts; memberlist reads with any of them.
		ring, err := memberlist.NewKeyring(cfg.GossipKeys, cfg.GossipKeys[0])
		if err != nil {
			return nil, fmt.Errorf("cluster: gossip keys: %w", err)
		}
		mc.Keyring = ring
	}
	mc.BindAddr, mc.BindPort = host, port
	mc.AdvertisePort = port
	mc.Logger = logger
	// A dead member's name goes to a new address at once: the failure
	// detector's suspicion was the wait. Memberlist's default (0) keeps it
	// until the dead member is forgotten (GossipToTheDeadTime, 30 s in the
	// LAN profile), for which a restarted node would wait.
	mc.DeadNodeReclaimTime = time.Nanosecond
	if cfg.AdvertiseAddr != "" {
		ah, ap, err := splitHostPort(cfg.AdvertiseAddr)
		if err != nil {
			return nil, fmt.Errorf("cluster: advertise address: %w", err)
		}
		mc.AdvertiseAddr, mc.AdvertisePort = ah, ap
	}
	if cfg.gossipTransport != nil {
		nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{host}, BindPort: port, Logger: logger})
		if err != nil {
			return nil, fmt.Errorf("cluster: gossip transport: %w", err)
		}
		if port == 0 {
			mc.BindPort = nt.GetAutoBindPort()
			if cfg.AdvertiseAddr == "" {
				mc.AdvertisePort = mc.BindPort
			}
		}
		mc.Transport = cfg.gossipTransport(nt)
	}
	sc.MemberlistConfig = mc
	return sc, nil
}

// gossipAddr is the "host:port" of a member's gossip, as serf and
// memberlist give it.
func gossipAddr(ip net.IP, port uint16) string {
	return net.JoinHostPort(ip.String(), strconv.Itoa(int(port)))
}

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port in %q", addr)
	}
	return host, port, nil
}

// serfLogWriter forwards serf's and memberlist's log lines to slog, their
// warnings and errors at those levels, the rest at debug: the node logs
// the member changes that serf's lines at INFO report (see
// Node.logChanges), once and in its own words. The "[LEVEL] "
// prefix goes, as slog prints the level.
type serfLogWriter struct{ log *slog.Logger }

func newSerfLogger(l *slog.Logger) *log.Logger {
	return log.New(serfLogWriter{l.With("component", "gossip")}, "", 0)
}

func (w serfLogWriter) Write(p []byte) (int, error) {
	level, msg := serfLogLine(string(p))
	w.log.Log(context.Background(), level, msg)
	return len(p), nil
}

// serfLogLine returns the slog level and message of one of serf's or
// memberlist's log lines.
func serfLogLine(line string) (slog.Level, string) {
	line = strings.TrimSpace(line)
	for _, l := range []struct {
		prefix string
		level  slog.Level
	}{
		{"[ERR] ", slog.LevelError},
		{"[WARN] ", slog.LevelWarn},
		{"[INFO] ", slog.LevelDebug},
		{"[DEBUG] ", slog.LevelDebug},
	} {
		if msg, ok := strings.CutPrefix(line, l.prefix); ok {
			return l.level, msg
		}
	}
	return slog.LevelDebug, line
}

var _ io.Writer = serfLogWriter{}
