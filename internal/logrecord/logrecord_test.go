package logrecord

import (
	"log/slog"
	"testing"
)

// TestRecorderKeepsEveryLevelInOrder logs through a Recorder at every level,
// with attributes and a group added: it keeps each record, in order, and
// Take empties it.
func TestRecorderKeepsEveryLevelInOrder(t *testing.T) {
	var r Recorder
	log := slog.New(&r).With("a", 1).WithGroup("g")
	levels := []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError}
	for _, l := range levels {
		log.Log(t.Context(), l, l.String(), "k", "v")
	}
	got := r.Records()
	if len(got) != len(levels) {
		t.Fatalf("kept %d records, want %d", len(got), len(levels))
	}
	for i, rec := range got {
		if rec.Level != levels[i] || rec.Message != levels[i].String() {
			t.Errorf("record %d: %v %q, want %v %q", i, rec.Level, rec.Message, levels[i], levels[i].String())
		}
	}
	if taken := r.Take(); len(taken) != len(levels) {
		t.Fatalf("Take returned %d records, want %d", len(taken), len(levels))
	}
	if left := r.Records(); len(left) != 0 {
		t.Fatalf("%d records left after Take", len(left))
	}
}
