// Package localcluster starts the examples' clusters: several nodes in one
// process, on loopback, with the fast gossip timings meant for one machine.
package localcluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/protograin/protograin/cluster"
)

// ConvergeTimeout bounds each wait for the members to agree on membership.
const ConvergeTimeout = 10 * time.Second

// Start starts n nodes named node-1 to node-n on loopback, each joining the
// first, and waits until every node sees all of them. configure sets what
// differs per node, such as its Kinds; it sees the node's name in
// cfg.NodeName. On error Start closes the nodes it started.
func Start(ctx context.Context, n int, log *slog.Logger, configure func(cfg *cluster.Config)) ([]*cluster.Node, error) {
	var nodes []*cluster.Node
	for i := range n {
		cfg := cluster.DefaultConfig()
		cfg.NodeName = fmt.Sprintf("node-%d", i+1)
		cfg.BindAddr = "127.0.0.1:0"
		cfg.GRPCAddr = "127.0.0.1:0"
		cfg.Gossip = cluster.GossipLocal
		cfg.Logger = log.With("node", cfg.NodeName)
		if i > 0 {
			cfg.Seeds = []string{nodes[0].GossipAddr()}
		}
		configure(&cfg)
		node, err := cluster.Start(ctx, cfg)
		if err != nil {
			CloseAll(nodes)
			return nil, fmt.Errorf("start %s: %w", cfg.NodeName, err)
		}
		nodes = append(nodes, node)
	}
	if err := WaitForMembers(ctx, nodes, n); err != nil {
		CloseAll(nodes)
		return nil, err
	}
	return nodes, nil
}

// WaitForMembers waits until every node sees exactly want alive members, or
// ConvergeTimeout passes.
func WaitForMembers(ctx context.Context, nodes []*cluster.Node, want int) error {
	ctx, cancel := context.WithTimeout(ctx, ConvergeTimeout)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !allSee(nodes, want) {
		select {
		case <-ctx.Done():
			return errors.New("localcluster: members did not converge: " + ctx.Err().Error())
		case <-tick.C:
		}
	}
	return nil
}

func allSee(nodes []*cluster.Node, want int) bool {
	for _, n := range nodes {
		alive := 0
		for _, m := range n.Members() {
			if m.Status == cluster.StatusAlive {
				alive++
			}
		}
		if alive != want {
			return false
		}
	}
	return true
}

// Split returns the node named name (nil if none is) and the others.
func Split(nodes []*cluster.Node, name string) (*cluster.Node, []*cluster.Node) {
	var found *cluster.Node
	var rest []*cluster.Node
	for _, n := range nodes {
		if n.Name() == name {
			found = n
		} else {
			rest = append(rest, n)
		}
	}
	return found, rest
}

// ShutdownAll shuts the nodes down gracefully, one after the other,
// within StopTimeout. ctx ending does not cut the shutdown short: an
// interrupt asks for a stop, which this is.
func ShutdownAll(ctx context.Context, nodes []*cluster.Node) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), StopTimeout)
	defer cancel()
	for _, n := range nodes {
		if err := n.Shutdown(ctx); err != nil {
			return fmt.Errorf("shut down %s: %w", n.Name(), err)
		}
	}
	return nil
}

// StopTimeout bounds Stop's graceful shutdown of the nodes.
const StopTimeout = 30 * time.Second

// Stop shuts down gracefully the nodes that still run, within StopTimeout,
// and closes those that do not finish in time. It is for the clean-up of an
// example that ends early (an error, an interrupt), and harmless after
// ShutdownAll.
func Stop(nodes []*cluster.Node) {
	if ShutdownAll(context.Background(), nodes) != nil {
		CloseAll(nodes)
	}
}

// CloseAll closes the nodes abruptly; it is for clean-up after an error, and
// harmless after ShutdownAll.
func CloseAll(nodes []*cluster.Node) {
	for _, n := range nodes {
		n.Close()
	}
}
