package cluster

import (
	"log/slog"
	"testing"
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
