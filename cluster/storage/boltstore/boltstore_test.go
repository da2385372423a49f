package boltstore_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/protograin/protograin/cluster/storage"
	"github.com/protograin/protograin/cluster/storage/boltstore"
	"github.com/protograin/protograin/cluster/storage/storagetest"
)

func open(t *testing.T, path string, cfg boltstore.Config) *boltstore.Store {
	t.Helper()
	s, err := boltstore.Open(path, cfg)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store {
		return open(t, filepath.Join(t.TempDir(), "grains.db"), boltstore.Config{})
	})
}

func TestStateSurvivesReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "grains.db")
	key := storage.Key{Kind: "test.Counter", Identity: "a"}

	s := open(t, path, boltstore.Config{})
	v, err := s.Commit(ctx, key, 0, []storage.Change{{Key: "count", Value: []byte("7")}})
	if err != nil {
		t.Fatal(err)
	}
	r := storage.Reminder{Grain: key, Name: "tick", Due: time.Unix(100, 5).UTC(), Period: time.Minute}
	if err := s.SaveReminder(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, path, boltstore.Config{})
	got, gotV, err := s.Load(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if gotV != v || string(got["count"]) != "7" {
		t.Fatalf("after reopen: entries %q at version %d, want count=7 at version %d", got, gotV, v)
	}
	rs, err := s.ListReminders(ctx, key.Kind)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || rs[0] != r {
		t.Fatalf("after reopen: reminders %+v, want [%+v]", rs, r)
	}
}

func TestSecondOpenIsLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "grains.db")
	open(t, path, boltstore.Config{})

	_, err := boltstore.Open(path, boltstore.Config{LockTimeout: -1})
	if !errors.Is(err, boltstore.ErrLocked) {
		t.Fatalf("second Open: err = %v, want ErrLocked", err)
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name the file", err)
	}
}

func TestLockReleasedByClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "grains.db")
	s := open(t, path, boltstore.Config{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	open(t, path, boltstore.Config{LockTimeout: -1})
}

func TestOpenRejectsForeignFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(path, []byte(strings.Repeat("not a database\n", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := boltstore.Open(path, boltstore.Config{})
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Open of a text file: err = %v, want an error naming the file", err)
	}
	b, err := os.ReadFile(path)
	if err != nil || !strings.HasPrefix(string(b), "not a database") {
		t.Fatalf("Open changed the file it refused (err %v)", err)
	}
}

func TestOpenMissingDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", "grains.db")
	_, err := boltstore.Open(path, boltstore.Config{})
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), path) {
		t.Fatalf("Open in a missing directory: err = %v, want ErrNotExist naming the file", err)
	}
}

// TestFileModeIsPrivate checks that a file created with the zero Config is
// not readable by group or others, whatever the umask.
func TestFileModeIsPrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "grains.db")
	open(t, path, boltstore.Config{})
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		t.Errorf("new file has mode %v, want no group or other access", perm)
	}
}

// TestSecondProcessIsLocked runs this test binary again as a helper process
// that holds the store open, and checks that this process cannot open it.
func TestSecondProcessIsLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "grains.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperHoldStore$")
	cmd.Env = append(os.Environ(), helperEnv+"="+path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close() // tells the helper to close the store and exit
		cmd.Wait()
	})
	if line, err := bufio.NewReader(stdout).ReadString('\n'); line != "ready\n" {
		t.Fatalf("helper process said %q (%v), want ready", line, err)
	}

	_, err = boltstore.Open(path, boltstore.Config{LockTimeout: -1})
	if !errors.Is(err, boltstore.ErrLocked) {
		t.Fatalf("Open while another process holds the file: err = %v, want ErrLocked", err)
	}
}

// helperEnv names the file TestHelperHoldStore holds open; without it the
// helper test does nothing.
const helperEnv = "PROTOGRAIN_BOLTSTORE_HELPER_PATH"

func TestHelperHoldStore(t *testing.T) {
	path := os.Getenv(helperEnv)
	if path == "" {
		t.Skip("helper process for TestSecondProcessIsLocked")
	}
	s, err := boltstore.Open(path, boltstore.Config{})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin) // until the parent closes stdin
	s.Close()
}
