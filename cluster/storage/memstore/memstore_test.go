package memstore_test

import (
	"testing"

	"github.com/protograin/protograin/cluster/storage"
	"github.com/protograin/protograin/cluster/storage/memstore"
	"github.com/protograin/protograin/cluster/storage/storagetest"
)

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store {
		s := memstore.New()
		t.Cleanup(func() { s.Close() })
		return s
	})
}
