package storage_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/protograin/protograin/cluster/storage"
)

func TestKeyString(t *testing.T) {
	k := storage.Key{Kind: "pkg.Counter", Identity: `a/"b"`}
	if got, want := k.String(), `"pkg.Counter"/"a/\"b\""`; got != want {
		t.Fatalf("String() = %s, want %s", got, want)
	}
}

func TestValidate(t *testing.T) {
	long := strings.Repeat("x", storage.MaxNameLen+1)
	due := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	key := storage.Key{Kind: "k", Identity: "i"}
	tests := []struct {
		name string
		err  error
		want string // part of the message; empty means valid
	}{
		{"key", key.Validate(), ""},
		{"empty identity", storage.Key{Kind: "k"}.Validate(), ""},
		{"longest kind", storage.Key{Kind: long[1:]}.Validate(), ""},
		{"empty kind", storage.Key{Identity: "i"}.Validate(), "empty grain kind"},
		{"long kind", storage.Key{Kind: long}.Validate(), "grain kind of 513 bytes"},
		{"NUL identity", storage.Key{Kind: "k", Identity: "\x00"}.Validate(), "grain identity \"\\x00\" contains a NUL byte"},
		{"bad UTF-8", storage.Key{Kind: "k", Identity: "\xff"}.Validate(), "not valid UTF-8"},
		{"change", storage.Change{Key: "a"}.Validate(), ""},
		{"empty entry key", storage.Change{Remove: true}.Validate(), "empty entry key"},
		{"reminder", storage.Reminder{Grain: key, Name: "r", Due: due}.Validate(), ""},
		{"reminder bad grain", storage.Reminder{Name: "r", Due: due}.Validate(), "empty grain kind"},
		{"reminder no name", storage.Reminder{Grain: key, Due: due}.Validate(), "empty reminder name"},
		{"reminder zero due", storage.Reminder{Grain: key, Name: "r"}.Validate(), "out of range"},
		{"reminder negative period", storage.Reminder{Grain: key, Name: "r", Due: due, Period: -1}.Validate(), "negative period"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.want == "" {
				if tt.err != nil {
					t.Fatalf("err = %v, want nil", tt.err)
				}
				return
			}
			if !errors.Is(tt.err, storage.ErrInvalid) || !strings.Contains(tt.err.Error(), tt.want) {
				t.Fatalf("err = %v, want ErrInvalid saying %q", tt.err, tt.want)
			}
		})
	}
}
