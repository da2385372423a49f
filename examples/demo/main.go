// Command demo runs a three-node Protograin cluster in one process on
// loopback, on the embedded defaults: no server to install, the grains'
// state in a bbolt file the nodes share. It calls Counter grains with
// several identities, prints the node each one lives on, shuts down the node
// that hosts the first of them, and shows those grains reactivating on the
// nodes that remain with their totals intact. After each round every node
// asks a Summary grain, a stateless worker, to add the totals up, and each
// time it runs on the node that asks.
//
//	go run ./examples/demo
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"

	"github.com/protograin/protograin/cluster"
	"github.com/protograin/protograin/cluster/storage/boltstore"
	"github.com/protograin/protograin/examples/counterpb"
	"github.com/protograin/protograin/examples/internal/countergrain"
	"github.com/protograin/protograin/examples/internal/localcluster"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Stdout); err != nil {
		if ctx.Err() != nil {
			// Ctrl-C: the nodes were shut down, which is all it asks for.
			fmt.Fprintln(os.Stderr, "demo: interrupted")
			os.Exit(130)
		}
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// run runs the demo, printing what happens to out.
func run(ctx context.Context, out io.Writer) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	// One store for the three nodes, as a cluster needs: a grain's state
	// follows it from node to node only through a store they share. A bbolt
	// file serves nodes in one process; a cluster of processes would share
	// PostgreSQL (see docs/state.md).
	dir, err := os.MkdirTemp("", "protograin-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	store, err := boltstore.Open(filepath.Join(dir, "grains.db"), boltstore.Config{})
	if err != nil {
		return err
	}
	defer store.Close()

	nodes, err := localcluster.Start(ctx, 3, log, func(cfg *cluster.Config) {
		cfg.Kinds = []*cluster.Kind{countergrain.NewKind(cfg.NodeName), countergrain.NewSummaryKind(cfg.NodeName)}
		cfg.Store = store
	})
	if err != nil {
		return err
	}
	defer localcluster.Stop(nodes) // after an error or an interrupt
	fmt.Fprintf(out, "started %d nodes on loopback, grain state in %s (a bbolt file they share, removed at the end)\n",
		len(nodes), store.Path())

	identities := []string{"alice", "bob", "carol", "dave", "erin", "frank"}
	fmt.Fprintln(out, "\neach round calls Add(1) and then Get on one Counter grain per identity;")
	fmt.Fprintln(out, "the first call activates a grain on the node that owns it, which Get reports")
	fmt.Fprintln(out, "\ncalling grains from", nodes[0].Name())
	before, totals, err := callAll(ctx, out, nodes[0], identities, nil)
	if err != nil {
		return err
	}
	if err := summarize(ctx, out, nodes, totals); err != nil {
		return err
	}

	// Shut down the node that hosts the first identity, gracefully: it
	// leaves the gossip, so the others place its grains elsewhere at once.
	owner, _ := nodes[0].Owner(counterpb.CounterKind, identities[0])
	victim, survivors := localcluster.Split(nodes, owner.Name)
	fmt.Fprintf(out, "\nshutting down %s, which hosts %s: its grains flush their state and passivate\n", victim.Name(), identities[0])
	if err := localcluster.ShutdownAll(ctx, []*cluster.Node{victim}); err != nil {
		return err
	}
	if err := localcluster.WaitForMembers(ctx, survivors, len(survivors)); err != nil {
		return err
	}

	fmt.Fprintln(out, "\ncalling grains again from", survivors[0].Name())
	_, totals, err = callAll(ctx, out, survivors[0], identities, before)
	if err != nil {
		return err
	}
	if err := summarize(ctx, out, survivors, totals); err != nil {
		return err
	}

	if err := localcluster.ShutdownAll(ctx, survivors); err != nil {
		return err
	}
	fmt.Fprintln(out, "\nall nodes shut down")
	return nil
}

// callAll adds 1 to every identity's counter, then prints its total and the
// node its activation reports. It returns where each grain lives and the
// totals; with the result of an earlier round in before, it marks the
// grains that moved, whose new activations loaded their totals from the
// store.
func callAll(ctx context.Context, out io.Writer, caller *cluster.Node, identities []string, before map[string]string) (map[string]string, []int64, error) {
	where := make(map[string]string, len(identities))
	var totals []int64
	for _, id := range identities {
		client := counterpb.NewCounterClient(caller, id)
		if _, err := client.Add(ctx, &counterpb.AddRequest{Delta: 1}); err != nil {
			return nil, nil, fmt.Errorf("add to %s: %w", id, err)
		}
		got, err := client.Get(ctx, &counterpb.GetRequest{})
		if err != nil {
			return nil, nil, fmt.Errorf("get %s: %w", id, err)
		}
		where[id] = got.GetNode()
		totals = append(totals, got.GetTotal())
		moved := ""
		if prev, ok := before[id]; ok && prev != got.GetNode() {
			moved = fmt.Sprintf("  (moved from %s: reactivated on %s with its total from the store)", prev, got.GetNode())
		}
		fmt.Fprintf(out, "  counter %-6s total %d  lives on %s%s\n", id, got.GetTotal(), got.GetNode(), moved)
	}
	return where, totals, nil
}

// summarize asks the Summary grain "round" from each of nodes to add totals
// up, and prints the sum and where each call ran. A stateless worker runs
// on the node that calls it, although one node owns the identity in
// placement: no network hop, and no state to keep in one place.
func summarize(ctx context.Context, out io.Writer, nodes []*cluster.Node, totals []int64) error {
	for _, n := range nodes {
		sum, err := counterpb.NewSummaryClient(n, "round").Summarize(ctx, &counterpb.SummarizeRequest{Totals: totals})
		if err != nil {
			return fmt.Errorf("summarize from %s: %w", n.Name(), err)
		}
		fmt.Fprintf(out, "  %s asks Summary \"round\" for the sum of the totals: %d, added up by a stateless worker on %s\n",
			n.Name(), sum.GetSum(), sum.GetNode())
	}
	return nil
}
