package redisstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/protograin/protograin/cluster/storage"
	"github.com/protograin/protograin/cluster/storage/redisstore"
	"github.com/protograin/protograin/cluster/storage/redisstore/redistest"
	"github.com/protograin/protograin/cluster/storage/storagetest"
)

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store { return redistest.Open(t) })
}

// TestConformanceOnARedisCluster: the store passes the conformance suite
// on a Redis Cluster of three servers, through a cluster client, as each of
// its scripts touches one key; the suite's keys land on every server.
func TestConformanceOnARedisCluster(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	t.Cleanup(func() { // once the suite's parallel subtests are over
		for _, addr := range c.Addrs {
			client := redis.NewClient(&redis.Options{Addr: addr})
			if n, err := client.DBSize(context.Background()).Result(); err != nil || n == 0 {
				t.Errorf("keys on %s: %d, %v; want some on every server", addr, n, err)
			}
			client.Close()
		}
	})
	var stores atomic.Int64
	storagetest.Run(t, func(t *testing.T) storage.Store {
		client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs})
		t.Cleanup(func() { client.Close() })
		s, err := redisstore.Open(t.Context(), redisstore.Config{Client: client, Prefix: fmt.Sprintf("store%d", stores.Add(1))})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

var grain = storage.Key{Kind: "test.Counter", Identity: "a"}

// clientOn returns a client of the test's own to server, closed when t
// ends, with hooks if any.
func clientOn(t *testing.T, server *redistest.Server, hooks ...redis.Hook) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(server.URL())
	if err != nil {
		t.Fatal(err)
	}
	client := redis.NewClient(opts)
	for _, h := range hooks {
		client.AddHook(h)
	}
	t.Cleanup(func() { client.Close() })
	return client
}

// open opens a store with cfg, closed when t ends.
func open(t *testing.T, cfg redisstore.Config) *redisstore.Store {
	t.Helper()
	s, err := redisstore.Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestOpenRefusesBadConfigs: a config that names no server, or two, a bad
// URL or prefix, and a server that does not answer are refused, saying so.
func TestOpenRefusesBadConfigs(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	t.Cleanup(func() { client.Close() })
	gone := "unix://" + t.TempDir() + "/none.sock"
	for _, tc := range []struct {
		name string
		cfg  redisstore.Config
		want string
	}{
		{"nothing", redisstore.Config{}, "neither URL nor Client"},
		{"both", redisstore.Config{URL: gone, Client: client}, "both URL and Client"},
		{"bad URL", redisstore.Config{URL: "http://example.com"}, "redisstore: redis: invalid URL scheme"},
		{"NUL in prefix", redisstore.Config{URL: gone, Prefix: "a\x00b"}, "prefix"},
		{"no server", redisstore.Config{URL: gone}, "redisstore: ping the server"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := redisstore.Open(t.Context(), tc.cfg)
			if err == nil {
				s.Close()
				t.Fatalf("Open(%+v) succeeded; want an error saying %q", tc.cfg, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open(%+v): %v; want it to say %q", tc.cfg, err, tc.want)
			}
		})
	}
}

// TestAKilledServerComesBackWithWhatItCommitted: with the append-only file
// synced on every write, a server killed as a crash would keeps every
// commit the store acknowledged. While it is down, a Commit and a
// CompleteReminder fail having changed nothing, and say so
// (storage.ErrNotCommitted); once it is back, the same store works again.
func TestAKilledServerComesBackWithWhatItCommitted(t *testing.T) {
	server := redistest.Start(t, true)
	s := redistest.OpenOn(t, server)
	ctx := t.Context()
	v, err := s.Commit(ctx, grain, 0, []storage.Change{{Key: "total", Value: []byte("1")}})
	if err != nil {
		t.Fatal(err)
	}
	tick := storage.Reminder{Grain: grain, Name: "tick", Due: time.Unix(100, 5).UTC(), Period: time.Second}
	if err := s.SaveReminder(ctx, tick); err != nil {
		t.Fatal(err)
	}

	server.Kill()
	if _, err := s.Commit(ctx, grain, v, []storage.Change{{Key: "total", Value: []byte("2")}}); !errors.Is(err, storage.ErrNotCommitted) {
		t.Errorf("Commit while the server is down: %v; want an error wrapping ErrNotCommitted", err)
	}
	if _, err := s.CompleteReminder(ctx, tick, nil); !errors.Is(err, storage.ErrNotCommitted) {
		t.Errorf("CompleteReminder while the server is down: %v; want an error wrapping ErrNotCommitted", err)
	}
	if _, _, err := s.Load(ctx, grain); err == nil {
		t.Errorf("Load while the server is down succeeded")
	}

	server.Restart()
	entries, version, err := s.Load(ctx, grain)
	if err != nil || version != v || string(entries["total"]) != "1" {
		t.Fatalf("Load after the restart: %q, version %d, %v; want total 1 at version %d", entries, version, err, v)
	}
	if rs, err := s.ListReminders(ctx, grain.Kind); err != nil || len(rs) != 1 || !rs[0].Due.Equal(tick.Due) || rs[0].Period != tick.Period {
		t.Fatalf("ListReminders after the restart: %v, %v; want [%v]", rs, err, tick)
	}
	if _, err := s.Commit(ctx, grain, v, []storage.Change{{Key: "total", Value: []byte("2")}}); err != nil {
		t.Fatalf("Commit after the restart: %v", err)
	}
}

// TestPrefixesAreSeparateStores: two stores on one server, with different
// prefixes, keep the same grain apart.
func TestPrefixesAreSeparateStores(t *testing.T) {
	server := redistest.Start(t, false)
	ctx := t.Context()
	stores := []*redisstore.Store{open(t, redisstore.Config{URL: server.URL()}), open(t, redisstore.Config{URL: server.URL(), Prefix: "other"})}
	if _, err := stores[0].Commit(ctx, grain, 0, []storage.Change{{Key: "k", Value: []byte("first")}}); err != nil {
		t.Fatal(err)
	}
	if entries, version, err := stores[1].Load(ctx, grain); err != nil || version != 0 || len(entries) != 0 {
		t.Fatalf("the other prefix's Load: %q, version %d, %v; want nothing", entries, version, err)
	}
	if _, err := stores[1].Commit(ctx, grain, 0, []storage.Change{{Key: "k", Value: []byte("second")}}); err != nil {
		t.Fatalf("the other prefix's first Commit: %v", err)
	}
	if entries, _, err := stores[0].Load(ctx, grain); err != nil || string(entries["k"]) != "first" {
		t.Fatalf("the default prefix's Load: %q, %v; want k=first", entries, err)
	}
}

// TestAClientOfTheCallers: with Config.Client, the store uses that client
// and leaves it open when it closes.
func TestAClientOfTheCallers(t *testing.T) {
	client := clientOn(t, redistest.Start(t, false))
	s := open(t, redisstore.Config{Client: client, Prefix: "mine"})
	if _, err := s.Commit(t.Context(), grain, 0, nil); err != nil {
		t.Fatal(err)
	}
	if n, err := client.Exists(t.Context(), "mine:s:"+grain.Kind+"\x00"+grain.Identity).Result(); err != nil || n != 1 {
		t.Fatalf("the grain's key through the caller's client: %d, %v; want it there", n, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := client.Ping(t.Context()).Err(); err != nil {
		t.Fatalf("the caller's client after the store closed: %v; want it open", err)
	}
}

// TestRecordsNotWrittenByTheStore: a grain's hash with a field the store
// does not write fails to load, naming it; a reminder record that does not
// decode is skipped by ListReminders, which logs it, and the others list.
func TestRecordsNotWrittenByTheStore(t *testing.T) {
	client := clientOn(t, redistest.Start(t, false))
	var log bytes.Buffer
	s := open(t, redisstore.Config{Client: client, Logger: slog.New(slog.NewTextHandler(&log, nil))})
	ctx := t.Context()

	key := redisstore.DefaultPrefix + ":s:" + grain.Kind + "\x00" + grain.Identity
	if err := client.HSet(ctx, key, "stray", "x").Err(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Load(ctx, grain); err == nil || !strings.Contains(err.Error(), `field "stray"`) {
		t.Errorf("Load of a hash with a stray field: %v; want an error naming the field", err)
	}
	if err := client.HDel(ctx, key, "stray").Err(); err != nil {
		t.Fatal(err)
	}
	if err := client.HSet(ctx, key, "v", "seven").Err(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Load(ctx, grain); err == nil || !strings.Contains(err.Error(), `"seven" is not a number`) {
		t.Errorf("Load of a hash whose version is not a number: %v; want an error saying so", err)
	}
	_, err := s.Commit(ctx, grain, 0, []storage.Change{{Key: "k", Value: []byte("v")}})
	if err == nil || errors.Is(err, storage.ErrConflict) || !strings.Contains(err.Error(), `"seven" is not a number`) {
		t.Errorf("Commit to a hash whose version is not a number: %v; want an error saying so, not a conflict", err)
	}
	if v, err := client.HGet(ctx, key, "v").Result(); err != nil || v != "seven" || client.HExists(ctx, key, "e:k").Val() {
		t.Errorf("the hash after that Commit: version %q, %v, entry k there: %v; want it unchanged", v, err, client.HExists(ctx, key, "e:k").Val())
	}

	good := storage.Reminder{Grain: grain, Name: "good", Due: time.Unix(7, 0).UTC()}
	if err := s.SaveReminder(ctx, good); err != nil {
		t.Fatal(err)
	}
	if err := client.HSet(ctx, redisstore.DefaultPrefix+":r:"+grain.Kind, "no separator", "short").Err(); err != nil {
		t.Fatal(err)
	}
	rs, err := s.ListReminders(ctx, grain.Kind)
	if err != nil || len(rs) != 1 || rs[0].Name != "good" {
		t.Fatalf("ListReminders beside a record that does not decode: %v, %v; want the good one alone", rs, err)
	}
	if !strings.Contains(log.String(), "does not decode") || !strings.Contains(log.String(), "no separator") {
		t.Errorf("the log says %q; want the skipped record named", log.String())
	}
}

// twice is a client hook that sends every script twice and answers with
// the second reply: a client that retried a command whose reply it lost.
type twice struct{}

func (twice) DialHook(next redis.DialHook) redis.DialHook { return next }

func (twice) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (twice) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if name := cmd.Name(); name == "eval" || name == "evalsha" {
			_ = next(ctx, cmd)
		}
		return next(ctx, cmd)
	}
}

// TestACommitThatTheClientRepeatsCommitsOnce: a Commit's script sent twice
// (Config.Client may retry) finds its own commit the second time and
// succeeds, rather than failing with a conflict against itself; a Commit
// of another activation with the same expected version still conflicts.
func TestACommitThatTheClientRepeatsCommitsOnce(t *testing.T) {
	s := open(t, redisstore.Config{Client: clientOn(t, redistest.Start(t, false), twice{})})
	ctx := t.Context()
	v, err := s.Commit(ctx, grain, 0, []storage.Change{{Key: "total", Value: []byte("1")}})
	if err != nil || v != 1 {
		t.Fatalf("a Commit sent twice: version %d, %v; want version 1", v, err)
	}
	if _, version, err := s.Load(ctx, grain); err != nil || version != 1 {
		t.Fatalf("Load: version %d, %v; want 1", version, err)
	}
	if _, err := s.Commit(ctx, grain, 0, []storage.Change{{Key: "total", Value: []byte("9")}}); !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("another Commit expecting version 0: %v; want ErrConflict", err)
	}
}

// TestACommitOfTenThousandChanges: a commit's changes go to the script in
// groups, as Lua's unpack takes at most about 8,000 values at once: ten
// thousand entries set in one commit, then half of them removed in
// another, land whole.
func TestACommitOfTenThousandChanges(t *testing.T) {
	s := redistest.Open(t)
	ctx := t.Context()
	const n = 10000
	sets := make([]storage.Change, n)
	var removes []storage.Change
	for i := range sets {
		key := fmt.Sprintf("entry-%05d", i)
		sets[i] = storage.Change{Key: key, Value: []byte(key)}
		if i%2 == 0 {
			removes = append(removes, storage.Change{Key: key, Remove: true})
		}
	}
	v, err := s.Commit(ctx, grain, 0, sets)
	if err != nil {
		t.Fatalf("Commit of %d entries: %v", n, err)
	}
	if entries, _, err := s.Load(ctx, grain); err != nil || len(entries) != n {
		t.Fatalf("Load: %d entries, %v; want %d", len(entries), err, n)
	}
	if _, err := s.Commit(ctx, grain, v, removes); err != nil {
		t.Fatalf("Commit of %d removals: %v", len(removes), err)
	}
	entries, _, err := s.Load(ctx, grain)
	if err != nil || len(entries) != n/2 || string(entries["entry-00001"]) != "entry-00001" || entries["entry-00000"] != nil {
		t.Fatalf("Load after the removals: %d entries, %v; want the %d odd ones", len(entries), err, n/2)
	}
}

// TestListingAKindOfManyReminders: a kind's reminders, more than a page of
// the listing's scan, list whole and in order, once each.
func TestListingAKindOfManyReminders(t *testing.T) {
	s := redistest.Open(t)
	ctx := t.Context()
	const n = 5000
	due := time.Date(2026, 12, 8, 0, 0, 0, 0, time.UTC)
	for i := range n {
		r := storage.Reminder{
			Grain:  storage.Key{Kind: grain.Kind, Identity: fmt.Sprintf("grain-%05d", i/2)},
			Name:   fmt.Sprint("tick-", i%2),
			Due:    due.Add(time.Duration(i) * time.Second),
			Period: time.Minute,
		}
		if err := s.SaveReminder(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	other := storage.Reminder{Grain: storage.Key{Kind: "test.Other", Identity: "x"}, Name: "tick", Due: due}
	if err := s.SaveReminder(ctx, other); err != nil {
		t.Fatal(err)
	}
	rs, err := s.ListReminders(ctx, grain.Kind)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != n {
		t.Fatalf("ListReminders listed %d reminders; want %d", len(rs), n)
	}
	for i, r := range rs {
		identity, name := fmt.Sprintf("grain-%05d", i/2), fmt.Sprint("tick-", i%2)
		if r.Grain.Identity != identity || r.Name != name || !r.Due.Equal(due.Add(time.Duration(i)*time.Second)) || r.Period != time.Minute {
			t.Fatalf("reminder %d listed as %+v; want %s's %s due at +%ds every minute", i, r, identity, name, i)
		}
	}
}
