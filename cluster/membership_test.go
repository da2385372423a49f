package cluster

import (
	"log/slog"
	"net"
	"testing"

	"github.com/hashicorp/serf/serf"
)

// TestSerfLogLine: serf's and memberlist's lines reach slog without their
// level prefix, their warnings and errors at those levels and the rest,
// INFO included (the node logs member changes itself), at debug.
func TestSerfLogLine(t *testing.T) {
	for _, tc := range []struct {
		line  string
		level slog.Level
		msg   string
	}{
		{"[ERR] memberlist: Failed to send gossip\n", slog.LevelError, "memberlist: Failed to send gossip"},
		{"[WARN] memberlist: Refuting a suspect message", slog.LevelWarn, "memberlist: Refuting a suspect message"},
		{"[INFO] serf: EventMemberJoin: c 127.0.0.1", slog.LevelDebug, "serf: EventMemberJoin: c 127.0.0.1"},
		{"[DEBUG] memberlist: Stream connection", slog.LevelDebug, "memberlist: Stream connection"},
		{"a line without a level [WARN] inside", slog.LevelDebug, "a line without a level [WARN] inside"},
	} {
		level, msg := serfLogLine(tc.line)
		if level != tc.level || msg != tc.msg {
			t.Errorf("serfLogLine(%q) = %v, %q; want %v, %q", tc.line, level, msg, tc.level, tc.msg)
		}
	}
}

// TestALeaveIsTakenOnlyWithTheLeaversWord: serf's status of a member is
// leaving only if the member's own tags say so too (tagLeaving), and
// leaving whenever they do; a member older than the tag is taken at serf's
// word.
func TestALeaveIsTakenOnlyWithTheLeaversWord(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status serf.MemberStatus
		tag    string // "" for none
		want   MemberStatus
	}{
		{"a stale leave of a start that does not leave", serf.StatusLeaving, "0", StatusAlive},
		{"a leave the leaver's tags confirm", serf.StatusLeaving, "1", StatusLeaving},
		{"a leave of a node older than the tag", serf.StatusLeaving, "", StatusLeaving},
		{"a leaver whose gossip leave has yet to come", serf.StatusAlive, "1", StatusLeaving},
		{"an alive member", serf.StatusAlive, "0", StatusAlive},
		{"an alive node older than the tag", serf.StatusAlive, "", StatusAlive},
		{"a leaver that left", serf.StatusLeft, "1", StatusLeft},
		{"a member that failed", serf.StatusFailed, "0", StatusFailed},
	} {
		tags := map[string]string{tagGRPC: "127.0.0.1:1"}
		if tc.tag != "" {
			tags[tagLeaving] = tc.tag
		}
		m, ok := memberFromSerf(serf.Member{Name: "m", Addr: net.IPv4(127, 0, 0, 1), Port: 2, Tags: tags, Status: tc.status})
		if !ok || m.Status != tc.want {
			t.Errorf("%s: serf's %v with tag %q is %v (ok %t), want %v", tc.name, tc.status, tc.tag, m.Status, ok, tc.want)
		}
	}
}
