package state_test

import (
	"context"
	"errors"
	"testing"

	"github.com/protograin/protograin/cluster/state"
	"github.com/protograin/protograin/cluster/storage"
	"github.com/protograin/protograin/cluster/storage/memstore"
)

func wantMessage(t *testing.T, b *state.Buffer, want string, wantOK bool) {
	t.Helper()
	got, ok := b.Message()
	if ok != wantOK || string(got) != want {
		t.Fatalf("Message() = %q, %v; want %q, %v", got, ok, want, wantOK)
	}
}

func TestMessageCommitsWithState(t *testing.T) {
	eachStore(t, func(t *testing.T, s storage.Store) {
		b := load(t, s, state.Config{})
		wantMessage(t, b, "", false)
		if !b.SetMessage([]byte("v1")) {
			t.Fatal("SetMessage of a new message reported no change")
		}
		wantMessage(t, b, "v1", true) // reads see the buffered message
		mustSet(t, b, "k", "x")
		mustFlush(t, b)

		b = load(t, s, state.Config{})
		wantMessage(t, b, "v1", true)
		wantEntries(t, b, map[string]string{"k": "x"}) // the message is not a user entry
		if b.SetMessage([]byte("v1")) || b.Dirty() {
			t.Fatal("SetMessage of the same bytes made the buffer dirty")
		}
		b.SetMessage([]byte("v2"))
		b.Discard()
		wantMessage(t, b, "v1", true)
		if b.Dirty() {
			t.Fatal("Dirty after Discard")
		}
	})
}

func TestMessageBackToCommittedIsClean(t *testing.T) {
	s := memstore.New()
	defer s.Close()
	b := load(t, s, state.Config{})
	b.SetMessage([]byte("v1"))
	mustFlush(t, b)
	b.SetMessage([]byte("v2"))
	b.SetMessage([]byte("v1"))
	if b.Dirty() {
		t.Fatal("a message set back to the committed bytes leaves the buffer dirty")
	}
}

func TestMessageIsCopied(t *testing.T) {
	s := memstore.New()
	defer s.Close()
	b := load(t, s, state.Config{})
	v := []byte("abc")
	b.SetMessage(v)
	v[0] = 'X'
	got, _ := b.Message()
	got[1] = 'Y'
	wantMessage(t, b, "abc", true)
}

func TestMessageOfStaleActivationIsRejected(t *testing.T) {
	s := memstore.New()
	defer s.Close()
	a, b := load(t, s, state.Config{}), load(t, s, state.Config{})
	a.SetMessage([]byte("a"))
	mustFlush(t, a)
	b.SetMessage([]byte("b"))
	if err := b.Flush(context.Background()); !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("Flush of a stale buffer: %v, want ErrConflict", err)
	}
	wantMessage(t, load(t, s, state.Config{}), "a", true)
}

func TestCheckClientID(t *testing.T) {
	if err := state.CheckClientID("node-1"); err != nil {
		t.Fatalf("CheckClientID(node-1): %v", err)
	}
	for _, id := range []string{"", "a\x00b", "\xff"} {
		if err := state.CheckClientID(id); !errors.Is(err, storage.ErrInvalid) {
			t.Errorf("CheckClientID(%q) = %v, want ErrInvalid", id, err)
		}
	}
}

// TestRebaseMessage: another encoding of the committed message, made the
// committed bytes by RebaseMessage, is no change: setting it buffers
// nothing, so Flush leaves the store (its bytes and version) as it was;
// setting it back after a change is clean again; and a real change is
// committed as usual.
func TestRebaseMessage(t *testing.T) {
	eachStore(t, func(t *testing.T, s storage.Store) {
		ctx := context.Background()
		fresh := load(t, s, state.Config{})
		if fresh.RebaseMessage([]byte("canon")) {
			t.Fatal("RebaseMessage with no message committed replaced something")
		}
		fresh.SetMessage([]byte("stored"))
		mustFlush(t, fresh)
		_, version, err := s.Load(ctx, fresh.Key())
		if err != nil {
			t.Fatal(err)
		}

		b := load(t, s, state.Config{})
		if b.RebaseMessage([]byte("stored")) {
			t.Fatal("RebaseMessage with the committed bytes reported a replacement")
		}
		if !b.RebaseMessage([]byte("canon")) {
			t.Fatal("RebaseMessage did not replace the committed bytes")
		}
		wantMessage(t, b, "canon", true)
		if b.SetMessage([]byte("canon")) || b.Dirty() {
			t.Fatal("SetMessage of the rebased bytes buffered a change")
		}
		m := b.Mark()
		b.SetMessage([]byte("changed"))
		if b.RebaseMessage([]byte("other")) {
			t.Fatal("RebaseMessage with a message change buffered replaced the committed bytes")
		}
		b.SetMessage([]byte("canon"))
		if b.Dirty() || b.Changed(m) {
			t.Fatal("a message set back to the rebased bytes leaves a change buffered")
		}
		b.SetMessage([]byte("changed"))
		b.Rollback(m)
		wantMessage(t, b, "canon", true)
		mustFlush(t, b) // nothing buffered: no commit
		wantMessage(t, load(t, s, state.Config{}), "stored", true)
		if _, v, err := s.Load(ctx, b.Key()); err != nil || v != version {
			t.Fatalf("store at version %d (%v) after a flush of a rebased message alone, want %d", v, err, version)
		}

		b.SetMessage([]byte("changed"))
		mustFlush(t, b)
		wantMessage(t, load(t, s, state.Config{}), "changed", true)
	})
}
