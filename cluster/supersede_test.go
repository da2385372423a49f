package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/serf/serf"
)

// TestAnEarlierStartThatComesBackStops hangs a member's gossip (its
// transport goes on, as a paused process's sockets do), restarts the
// member under its name elsewhere, and then lets the old process come
// back: it calls a grain on a peer, or (as it dials nobody when its stale
// view places its callers' grains on itself) its gossip reaches a peer.
// Either way a peer tells it a later start replaced it, and it stops
// instead of serving on from a stale view. The cluster keeps the new
// start, with the grain the old one had.
func TestAnEarlierStartThatComesBackStops(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		comeBack func(t *testing.T, old, peer *Node, peersGrain string)
	}{
		{"it calls a peer", func(t *testing.T, old, peer *Node, peersGrain string) {
			// The old process's view still places the grain on the
			// peer. Its first call may go out on a stream the peer has
			// cut and fail; the one after dials, and is answered
			// superseded.
			var calls []error
			waitFor(t, waitTimeout, "the old process to stop", func() bool {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				_, err := old.Invoke(ctx, addCall(peersGrain, 1))
				calls = append(calls, err)
				return isDone(old.Done())
			})
			for i, err := range calls {
				if err == nil {
					t.Errorf("call %d of %d from the old process succeeded after its successor started", i+1, len(calls))
				}
			}
			// Its entry in a join's member list, after the peer's own,
			// is looked at too: the peer counts it told.
			self := peer.serf.LocalMember()
			entry := &serf.Member{Name: old.Name(), Status: serf.StatusAlive,
				Tags: map[string]string{tagGRPC: old.GRPCAddr(), tagIncarnation: old.incarnation}}
			if err := peer.claim.NotifyMerge([]*serf.Member{&self, entry}); err != nil {
				t.Fatal(err)
			}
			if peer.retiredIDs.tell(old.Name(), old.incarnation, time.Now()) {
				t.Error("the merge delegate skipped the old process's entry behind the peer's own")
			}
		}},
		{"its gossip reaches a peer", func(t *testing.T, old, peer *Node, _ string) {
			// The test stopped the old process's gossip for good; a
			// serf of its own under its name and tags stands in for it
			// as it comes back, and joins the peer: the join's
			// exchange hands the peer the entry a resumed process's
			// push-pull would, which the peer's memberlist refuses.
			tags, err := nodeTags(old.GRPCAddr(), old.incarnation, old.cfg.Kinds, false, false)
			if err != nil {
				t.Fatal(err)
			}
			cfg := old.cfg
			cfg.BindAddr = "127.0.0.1:0"
			sc, err := newSerfConfig(&cfg, tags, nil, newSerfLogger(cfg.Logger), nil)
			if err != nil {
				t.Fatal(err)
			}
			resumed, err := serf.Create(sc)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = resumed.Shutdown() })
			if _, err := resumed.Join([]string{peer.GossipAddr()}, true); err != nil {
				t.Fatal(err)
			}
			select {
			case <-old.Done():
			case <-time.After(waitTimeout):
				t.Fatal("the old process did not stop")
			}
			if peer.retiredIDs.tell(old.Name(), old.incarnation, time.Now()) {
				t.Error("the peer would tell the old process again at once")
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			nodes, _ := echoCluster(t, 3, 0, nil)
			old, peer := nodes[1], nodes[2]
			own, peers := identityOwnedBy(t, nodes, old), identityOwnedBy(t, nodes, peer)
			add(t, old, own, 3)
			if err := old.serf.Shutdown(); err != nil {
				t.Fatal(err)
			}

			cfg := old.cfg
			cfg.BindAddr, cfg.GRPCAddr = "127.0.0.1:0", "127.0.0.1:0"
			cfg.Seeds = []string{nodes[0].GossipAddr()}
			again := startNode(t, cfg)
			waitFor(t, waitTimeout, "the peers to see the new start", func() bool {
				for _, n := range []*Node{nodes[0], peer} {
					if m, ok := memberNamed(n, cfg.NodeName); !ok || m.Status != StatusAlive || m.GRPCAddr != again.GRPCAddr() ||
						!n.retiredIDs.has(cfg.NodeName, old.incarnation) {
						return false
					}
				}
				return true
			})

			tc.comeBack(t, old, peer, peers)
			if err := old.Err(); !errors.Is(err, ErrSuperseded) {
				t.Errorf("old.Err() = %v, want ErrSuperseded", err)
			}
			// Its liveness probe says so, once it stopped.
			waitFor(t, waitTimeout, "old's liveness probe to say why it stopped", func() bool {
				rec := httptest.NewRecorder()
				old.HealthHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/livez", nil))
				return rec.Code == http.StatusServiceUnavailable && rec.Body.String() == "stopped: "+old.Err().Error()+"\n"
			})
			if _, err := old.Invoke(context.Background(), addCall(own, 1)); !errors.Is(err, ErrNodeClosed) {
				t.Errorf("call to its own grain after it stopped: %v, want ErrNodeClosed", err)
			}

			// An answer about another incarnation (a process that had
			// this node's address before) changes nothing, nor does the
			// new start's own entry in the gossip.
			again.replaced(old.incarnation, peer.Name())
			entry := &serf.Member{Name: again.Name(), Status: serf.StatusAlive,
				Tags: map[string]string{tagGRPC: again.GRPCAddr(), tagIncarnation: again.incarnation}}
			if err := peer.claim.NotifyMerge([]*serf.Member{entry}); err != nil {
				t.Fatal(err)
			}
			if peer.retiredIDs.has(again.Name(), again.incarnation) {
				t.Error("the peer has the new start's incarnation retired")
			}
			if got := add(t, nodes[0], own, 1); got != 1 {
				t.Errorf("total = %d, want 1: the grain is activated afresh on the new start", got)
			}
			if got := where(t, peer, own); got != cfg.NodeName {
				t.Errorf("%s answered from %s, want the new %s", own, got, cfg.NodeName)
			}
			if got := add(t, again, peers, 1); got != 1 {
				t.Errorf("the new start's call to the peer's grain: total = %d, want 1 (the old process's calls did not run)", got)
			}
			if err := again.Err(); err != nil || isDone(again.Done()) {
				t.Fatalf("the new start stopped too: %v", err)
			}
		})
	}
}

// TestRetiredIncarnations feeds views to the record of replaced starts: a
// start replaced by another is retired, one a view has again (the old
// process took the name back) is not, members without an incarnation (older
// nodes) and starts no view replaced are never retired, and the record
// keeps the latest maxRetired.
func TestRetiredIncarnations(t *testing.T) {
	view := func(members ...Member) *placement { return newPlacement(members) }
	at := func(name, incarnation string) Member {
		return Member{Name: name, GRPCAddr: "127.0.0.1:1", Status: StatusAlive, incarnation: incarnation}
	}
	var r retiredIncarnations
	steps := []struct {
		view           *placement
		retired, alive []string // "name/incarnation"
	}{
		{view(at("a", "a1"), at("b", "b1"), at("c", "")), nil, []string{"a/a1", "b/b1"}},
		{view(at("a", "a2"), at("b", "b1"), at("c", "")), []string{"a/a1"}, []string{"a/a2", "b/b1"}},
		// b is forgotten, then back under another start: no view had
		// one replace the other.
		{view(at("a", "a2"), at("c", "")), []string{"a/a1"}, []string{"a/a2", "b/b1"}},
		{view(at("a", "a2"), at("b", "b2"), at("c", "c1")), []string{"a/a1"}, []string{"b/b1", "b/b2", "c/c1"}},
		// The first start of a takes the name back after the second died.
		{view(at("a", "a1"), at("b", "b2"), at("c", "c1")), []string{"a/a2"}, []string{"a/a1"}},
	}
	prev := newPlacement(nil)
	for i, s := range steps {
		r.update(prev, s.view)
		prev = s.view
		for _, want := range []struct {
			ids     []string
			retired bool
		}{{s.retired, true}, {s.alive, false}} {
			for _, id := range want.ids {
				name, inc, _ := strings.Cut(id, "/")
				if got := r.has(name, inc); got != want.retired {
					t.Errorf("step %d: has(%s) = %v, want %v", i, id, got, want.retired)
				}
			}
		}
	}
	for i := range maxRetired + 1 {
		next := view(at("a", fmt.Sprint("x", i)))
		r.update(prev, next)
		prev = next
	}
	if r.has("a", "a1") || !r.has("a", "x0") || !r.has("a", fmt.Sprint("x", maxRetired-1)) {
		t.Errorf("after %d more replacements: a1 kept %v, x0 %v, x%d %v; want the latest %d only",
			maxRetired+1, r.has("a", "a1"), r.has("a", "x0"), maxRetired-1, r.has("a", fmt.Sprint("x", maxRetired-1)), maxRetired)
	}
}

// TestCloseWaitsForATell checks that a node's Close waits for the
// goroutine that tells a replaced start so: here it dials an address that
// accepts and never answers, and is still dialing when the node closes.
// What the goroutine logs as it gives up must be logged before Close
// returns, not after (with a test's logger, after the test). The logger
// holds that record until Close has returned, for a second at most, so
// that a Close that does not wait for the tell returns first in every run,
// rather than only when the tell happens to end late.
func TestCloseWaitsForATell(t *testing.T) {
	t.Parallel()
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = silent.Close() })
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := silent.Accept()
		if err == nil {
			accepted <- c
		}
	}()

	logs := &logLines{debug: true}
	closed := make(chan struct{})
	cfg := testConfig(t)
	cfg.Logger = slog.New(&holdingHandler{
		Handler: logs.handler(cfg.Logger.Handler()), match: "dial a replaced start of a member", until: closed, most: time.Second,
	})
	cfg.DialTimeout = time.Hour // the tell is cut by Close, not by its timeout
	n := startNode(t, cfg)
	at := func(incarnation string) *placement {
		return newPlacement([]Member{{Name: "ghost", GRPCAddr: "127.0.0.1:1", Status: StatusAlive, incarnation: incarnation}})
	}
	n.retiredIDs.update(at("old"), at("new"))
	n.tellIfSuperseded(&serf.Member{Name: "ghost", Tags: map[string]string{tagIncarnation: "old", tagGRPC: silent.Addr().String()}})
	select {
	case c := <-accepted:
		t.Cleanup(func() { _ = c.Close() })
	case <-time.After(waitTimeout):
		t.Fatal("the tell did not dial")
	}
	err = n.Close()
	logged := logs.count("dial a replaced start of a member", "peer=ghost")
	close(closed)
	if err != nil {
		t.Fatal(err)
	}
	if logged != 1 {
		t.Fatal("Close returned before the tell's dial ended")
	}
}

// holdingHandler holds each record whose message contains match until
// until is closed, or for most at the longest, then hands it on.
type holdingHandler struct {
	slog.Handler
	match string
	until <-chan struct{}
	most  time.Duration
}

func (h *holdingHandler) Handle(ctx context.Context, r slog.Record) error {
	if strings.Contains(r.Message, h.match) {
		select {
		case <-h.until:
		case <-time.After(h.most):
		}
	}
	return h.Handler.Handle(ctx, r)
}

func (h *holdingHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &holdingHandler{Handler: h.Handler.WithAttrs(attrs), match: h.match, until: h.until, most: h.most}
}

func (h *holdingHandler) WithGroup(name string) slog.Handler {
	return &holdingHandler{Handler: h.Handler.WithGroup(name), match: h.match, until: h.until, most: h.most}
}
