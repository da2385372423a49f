package cluster

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestHealthHandler: both probes say ok while a node runs and serves;
// readiness fails while the node shuts down, and liveness too once it
// stopped, each saying why; readiness fails while a node is fenced, and
// comes back once it sees a majority again.
func TestHealthHandler(t *testing.T) {
	t.Parallel()
	nodes, hooks := echoCluster(t, 3, 0, func(cfg *Config) { cfg.KeepMajority, cfg.DownAfter = true, time.Minute })
	a, b, c := nodes[0], nodes[1], nodes[2]
	probes := map[*Node]string{}
	for _, n := range nodes {
		srv := httptest.NewServer(n.HealthHandler())
		t.Cleanup(srv.Close)
		probes[n] = srv.URL
	}
	answer := func(n *Node, method, path string) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, probes[n]+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(body)
	}
	says := func(n *Node, path string, code int, prefix string) bool {
		t.Helper()
		got, body := answer(n, http.MethodGet, path)
		return got == code && strings.HasPrefix(body, prefix)
	}
	want := func(n *Node, path string, code int, prefix string) {
		t.Helper()
		if got, body := answer(n, http.MethodGet, path); got != code || !strings.HasPrefix(body, prefix) {
			t.Errorf("GET %s of %s: %d %q; want %d and an answer that begins %q", path, n.Name(), got, body, code, prefix)
		}
	}

	for _, n := range nodes {
		want(n, "/livez", http.StatusOK, "ok\n")
		want(n, "/readyz", http.StatusOK, "ok\n")
	}
	want(a, "/metrics", http.StatusNotFound, "")
	if got, _ := answer(a, http.MethodHead, "/readyz"); got != http.StatusOK {
		t.Errorf("HEAD /readyz: %d; want 200", got)
	}
	if got, _ := answer(a, http.MethodPost, "/readyz"); got != http.StatusMethodNotAllowed {
		t.Errorf("POST /readyz: %d; want 405", got)
	}

	// c shuts down while a call holds one of its grains.
	go func() {
		_, _ = c.Invoke(context.Background(), stringCall(methodHold, identityOwnedBy(t, nodes, c), ""))
	}()
	receive(t, hooks[c.Name()].entered, "the call to enter c's grain")
	shutdown := make(chan error, 1)
	go func() { shutdown <- c.Shutdown(context.Background()) }()
	waitFor(t, waitTimeout, "c's readiness to say it shuts down", func() bool {
		return says(c, "/readyz", http.StatusServiceUnavailable, "shutting down")
	})
	want(c, "/livez", http.StatusOK, "ok\n")
	hooks[c.Name()].releaseHeld()
	if err := receive(t, shutdown, "c's Shutdown"); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	want(c, "/livez", http.StatusServiceUnavailable, "stopped: shut down or closed")
	want(c, "/readyz", http.StatusServiceUnavailable, "stopped: shut down or closed")

	// One of the two members left loses sight of the other: not a majority
	// for the one whose name sorts last (the first keeps a tie, see
	// Config.KeepMajority).
	waitConverged(t, []*Node{a, b}, 2)
	first, last := a, b
	if last.Name() < first.Name() {
		first, last = last, first
	}
	setLast := holdViews(t, last)
	setLast(withStatuses(StatusFailed, first.Name()))
	want(last, "/readyz", http.StatusServiceUnavailable, "fenced: ")
	want(last, "/livez", http.StatusOK, "ok\n")
	setLast(withStatuses(StatusAlive, first.Name()))
	want(last, "/readyz", http.StatusOK, "ok\n")
}
