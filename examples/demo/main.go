// Command demo runs a three-node Protograin cluster in one process on
// loopback. It calls Counter grains with several identities, prints the node
// each one lives on, shuts down the node that hosts the first of them, and
// shows those grains reactivating on the nodes that remain.
//
//	go run ./examples/demo
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"time"

	"github.com/protograin/protograin/cluster"
	"github.com/protograin/protograin/examples/counterpb"
	"github.com/protograin/protograin/examples/internal/countergrain"
)

// convergeTimeout bounds each wait for the members to agree on membership.
const convergeTimeout = 10 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// run runs the demo, printing what happens to out.
func run(ctx context.Context, out io.Writer) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	nodes, err := startNodes(ctx, log, 3)
	defer func() {
		for _, n := range nodes {
			n.Close()
		}
	}()
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "started %d nodes\n", len(nodes))

	identities := []string{"alice", "bob", "carol", "dave", "erin", "frank"}
	fmt.Fprintln(out, "\ncalling grains from", nodes[0].Name())
	before, err := callAll(ctx, out, nodes[0], identities, nil)
	if err != nil {
		return err
	}

	// Shut down the node that hosts the first identity, gracefully: it
	// leaves the gossip, so the others place its grains elsewhere at once.
	owner, _ := nodes[0].Owner(counterpb.CounterKind, identities[0])
	victim, survivors := split(nodes, owner.Name)
	fmt.Fprintf(out, "\nshutting down %s\n", victim.Name())
	if err := victim.Shutdown(ctx); err != nil {
		return fmt.Errorf("shut down %s: %w", victim.Name(), err)
	}
	if err := waitForMembers(ctx, survivors, len(survivors)); err != nil {
		return err
	}

	fmt.Fprintln(out, "\ncalling grains again from", survivors[0].Name())
	if _, err := callAll(ctx, out, survivors[0], identities, before); err != nil {
		return err
	}

	for _, n := range survivors {
		if err := n.Shutdown(ctx); err != nil {
			return fmt.Errorf("shut down %s: %w", n.Name(), err)
		}
	}
	fmt.Fprintln(out, "\nall nodes shut down")
	return nil
}

// startNodes starts n nodes hosting the Counter kind, each joining the first,
// and waits until every node sees all of them.
func startNodes(ctx context.Context, log *slog.Logger, n int) ([]*cluster.Node, error) {
	var nodes []*cluster.Node
	for i := range n {
		cfg := cluster.DefaultConfig()
		cfg.NodeName = fmt.Sprintf("node-%d", i+1)
		cfg.BindAddr = "127.0.0.1:0"
		cfg.GRPCAddr = "127.0.0.1:0"
		cfg.Gossip = cluster.GossipLocal
		cfg.Logger = log.With("node", cfg.NodeName)
		cfg.Kinds = []*cluster.Kind{countergrain.NewKind(cfg.NodeName)}
		if i > 0 {
			cfg.Seeds = []string{nodes[0].GossipAddr()}
		}
		node, err := cluster.Start(ctx, cfg)
		if err != nil {
			return nodes, fmt.Errorf("start %s: %w", cfg.NodeName, err)
		}
		nodes = append(nodes, node)
	}
	return nodes, waitForMembers(ctx, nodes, n)
}

// callAll adds 1 to every identity's counter, then prints its total and the
// node its activation reports. It returns where each grain lives; with the
// result of an earlier round in before, it marks the grains that moved, whose
// in-memory totals start again from zero.
func callAll(ctx context.Context, out io.Writer, caller *cluster.Node, identities []string, before map[string]string) (map[string]string, error) {
	where := make(map[string]string, len(identities))
	for _, id := range identities {
		client := counterpb.NewCounterClient(caller, id)
		if _, err := client.Add(ctx, &counterpb.AddRequest{Delta: 1}); err != nil {
			return nil, fmt.Errorf("add to %s: %w", id, err)
		}
		got, err := client.Get(ctx, &counterpb.GetRequest{})
		if err != nil {
			return nil, fmt.Errorf("get %s: %w", id, err)
		}
		where[id] = got.GetNode()
		moved := ""
		if prev, ok := before[id]; ok && prev != got.GetNode() {
			moved = fmt.Sprintf("  (reactivated here; it lived on %s)", prev)
		}
		fmt.Fprintf(out, "  counter %-6s total %d  lives on %s%s\n", id, got.GetTotal(), got.GetNode(), moved)
	}
	return where, nil
}

// waitForMembers waits until every node sees exactly want alive members.
func waitForMembers(ctx context.Context, nodes []*cluster.Node, want int) error {
	ctx, cancel := context.WithTimeout(ctx, convergeTimeout)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !allSee(nodes, want) {
		select {
		case <-ctx.Done():
			return errors.New("members did not converge: " + ctx.Err().Error())
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

// split returns the node named name and the others.
func split(nodes []*cluster.Node, name string) (*cluster.Node, []*cluster.Node) {
	var victim *cluster.Node
	var rest []*cluster.Node
	for _, n := range nodes {
		if n.Name() == name {
			victim = n
		} else {
			rest = append(rest, n)
		}
	}
	return victim, rest
}
