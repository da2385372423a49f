package cluster

import (
	"fmt"
	"net/http"
)

// HealthHandler returns an HTTP handler for the probes of the process that
// runs the node (Kubernetes' liveness and readiness probes, a load
// balancer's health check). It answers GET and HEAD, in plain text:
//
//   - /livez: 200 while the node runs; 503 once it stopped (Done is
//     closed), saying why (Err, or a Shutdown or Close). A node that
//     stopped by itself does not start again: restart the process.
//   - /readyz: 200 while the node serves grains; 503 while it is fenced
//     (Config.KeepMajority: on the minority side of a partition, see
//     Fenced), shutting down, or stopped, saying which. A fenced node
//     becomes ready again by itself once it sees a majority.
//
// Other paths get 404. Serve it on a port of its own (the node example's
// -health flag), or mount it under a prefix of your mux with
// http.StripPrefix.
func (n *Node) HealthHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) {
		healthAnswer(w, n.stopped())
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		healthAnswer(w, n.unready())
	})
	return mux
}

// stopped says why the node no longer runs, or "" while it does.
func (n *Node) stopped() string {
	select {
	case <-n.done:
	default:
		return ""
	}
	if err := n.Err(); err != nil {
		return fmt.Sprintf("stopped: %v", err)
	}
	return "stopped: shut down or closed"
}

// unready says why the node does not serve grains, or "" while it does.
func (n *Node) unready() string {
	if why := n.stopped(); why != "" {
		return why
	}
	n.mu.Lock()
	leaving := n.shuttingDown
	n.mu.Unlock()
	switch {
	case leaving:
		return "shutting down: its grains are moving to the other members"
	case n.Fenced():
		return "fenced: no majority of the cluster's members in sight (Config.KeepMajority)"
	}
	return ""
}

// healthAnswer writes a probe's answer: 200 "ok" when why is "", 503 why
// otherwise.
func healthAnswer(w http.ResponseWriter, why string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if why == "" {
		fmt.Fprintln(w, "ok")
		return
	}
	w.WriteHeader(http.StatusServiceUnavailable)
	fmt.Fprintln(w, why)
}
