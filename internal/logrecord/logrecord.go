// Package logrecord keeps what is logged through a slog.Handler, for tests
// that check what code under test logs.
package logrecord

import (
	"context"
	"log/slog"
	"sync"
)

// Recorder is a slog.Handler that keeps every record it is given, at every
// level; attributes and groups added to the handler are not kept. The zero
// Recorder is ready to use, and it is safe for concurrent use.
type Recorder struct {
	mu      sync.Mutex
	records []slog.Record
}

var _ slog.Handler = (*Recorder)(nil)

// Enabled implements slog.Handler: every level is kept.
func (r *Recorder) Enabled(context.Context, slog.Level) bool { return true }

// WithAttrs implements slog.Handler; the attributes are not kept.
func (r *Recorder) WithAttrs([]slog.Attr) slog.Handler { return r }

// WithGroup implements slog.Handler; the group is not kept.
func (r *Recorder) WithGroup(string) slog.Handler { return r }

// Handle implements slog.Handler: it keeps a clone of rec.
func (r *Recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records = append(r.records, rec.Clone())
	return nil
}

// Records returns the records kept so far, in the order they came.
func (r *Recorder) Records() []slog.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]slog.Record(nil), r.records...)
}

// Take returns the records kept so far and forgets them.
func (r *Recorder) Take() []slog.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	rs := r.records
	r.records = nil
	return rs
}
