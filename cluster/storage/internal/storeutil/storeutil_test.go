package storeutil

import (
	"maps"
	"slices"
	"testing"

	"github.com/protograin/protograin/cluster/storage"
)

func TestCoalesce(t *testing.T) {
	value := []byte("v2")
	got := Coalesce([]storage.Change{
		{Key: "a", Value: []byte("v1")},
		{Key: "a", Value: value},
		{Key: "b", Value: []byte("x")},
		{Key: "b", Remove: true},
		{Key: "c", Remove: true},
		{Key: "c", Value: nil},
	})
	value[0] = 'X' // the result must not share the caller's memory
	if len(got.Set) != 2 || string(got.Set["a"]) != "v2" || got.Set["c"] == nil || len(got.Set["c"]) != 0 {
		t.Errorf("Set = %q, want a=v2 and c empty (non-nil)", got.Set)
	}
	if !slices.Equal(got.Remove, []string{"b"}) {
		t.Errorf("Remove = %q, want [b]", got.Remove)
	}
	if keys := slices.Sorted(maps.Keys(got.Set)); slices.Contains(keys, "b") {
		t.Errorf("b is both set and removed")
	}
}
