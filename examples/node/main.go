// Command node runs one Protograin node per process, so that a cluster can be
// spread over terminals or machines. Every node hosts the Counter grain
// unless -host=false; with -call it also adds to a set of counters once per
// -every and prints where each one lives, until interrupted.
//
// Three terminals on one machine, with the command built first, so that
// kill -9 reaches the node rather than go run:
//
//	go build -o bin/node ./examples/node
//	bin/node -name a -bind 127.0.0.1:7001 -grpc 127.0.0.1:8001
//	bin/node -name b -bind 127.0.0.1:7002 -grpc 127.0.0.1:8002 -join 127.0.0.1:7001
//	bin/node -name c -bind 127.0.0.1:7003 -grpc 127.0.0.1:8003 -join 127.0.0.1:7001 -call alice,bob,carol
//
// Node c prints where each counter lives. Stop a node that hosts one (with
// these names, b hosts carol) with Ctrl-C (a graceful leave) or kill -9 (a
// failure) and watch its counters move to the remaining nodes.
//
// To keep the cluster's traffic to itself, give every node the same gossip
// key (-gossip-key-file) and a certificate for mutual TLS between nodes
// (-tls-cert, -tls-key, -tls-ca). To change the key while the cluster runs,
// write the new one to the file and send one node SIGHUP (kill -HUP): it
// reads the file and gives every member the key (cluster.Node.ChangeGossipKey);
// nodes started later read it from their files. The TLS files are read
// again when they change, with no signal (cluster.MutualTLS).
//
// -health :8080 serves the probes of a container orchestrator: /livez and
// /readyz (cluster.Node.HealthHandler).
//
// Each process keeps grain state in a memory store of its own unless
// -postgres names a database they all share, or -redis a Redis server:
// then a counter that moves to another process keeps its total.
package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/protograin/protograin/cluster"
	"github.com/protograin/protograin/cluster/storage/pgstore"
	"github.com/protograin/protograin/cluster/storage/redisstore"
	"github.com/protograin/protograin/examples/counterpb"
	"github.com/protograin/protograin/examples/internal/countergrain"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "node:", err)
		os.Exit(1)
	}
}

func run() error {
	cfg := cluster.DefaultConfig()
	flag.StringVar(&cfg.NodeName, "name", cfg.NodeName, "node name, unique among running nodes (a restarted node may take its old one back)")
	flag.StringVar(&cfg.BindAddr, "bind", "127.0.0.1:7001", "gossip address to listen on")
	flag.StringVar(&cfg.GRPCAddr, "grpc", "127.0.0.1:8001", "node-to-node gRPC address to listen on")
	join := flag.String("join", "", "comma-separated gossip addresses of members to join")
	flag.StringVar(&cfg.ClusterName, "cluster", "", "name of the cluster, the same on every node: members of other clusters are ignored")
	host := flag.Bool("host", true, "host the Counter grain on this node")
	call := flag.String("call", "", "comma-separated counter identities to call")
	every := flag.Duration("every", time.Second, "how often to call the counters")
	local := flag.Bool("local", true, "use the fast gossip timings meant for one machine")
	postgres := flag.String("postgres", "", "PostgreSQL DSN of a database every node shares for grain state (default: a memory store per process)")
	schema := flag.String("schema", "protograin", "PostgreSQL schema for grain state, with -postgres")
	redisURL := flag.String("redis", "", "URL of a Redis server every node shares for grain state, e.g. redis://127.0.0.1:6379/0 (instead of -postgres)")
	health := flag.String("health", "", "address to serve the HTTP probes /livez and /readyz on (cluster.Node.HealthHandler), e.g. :8080")
	flag.BoolVar(&cfg.KeepMajority, "keep-majority", false, "split-brain protection: serve grains only while this node sees a majority of the members (give it to every node)")
	var sec security
	flag.StringVar(&sec.gossipKeyFile, "gossip-key-file", "", "file holding the gossip key every node shares, in base64 (openssl rand -base64 32 > key): gossip encrypted")
	flag.StringVar(&sec.cert, "tls-cert", "", "PEM certificate of this node: mutual TLS between nodes, with -tls-key and -tls-ca")
	flag.StringVar(&sec.key, "tls-key", "", "PEM private key of -tls-cert")
	flag.StringVar(&sec.ca, "tls-ca", "", "PEM certificates of the CA that signs every node's certificate")
	flag.StringVar(&sec.serverName, "tls-server-name", "", "name every node's certificate carries (default: peers' certificates are checked for their IP)")
	flag.Parse()
	if *every <= 0 {
		return fmt.Errorf("-every is %v; want a positive duration", *every)
	}
	if err := sec.apply(&cfg); err != nil {
		return err
	}

	if *join != "" {
		cfg.Seeds = strings.Split(*join, ",")
	}
	if *host {
		cfg.Kinds = []*cluster.Kind{countergrain.NewKind(cfg.NodeName)}
	}
	if *local {
		cfg.Gossip = cluster.GossipLocal
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch {
	case *postgres != "" && *redisURL != "":
		return errors.New("-postgres and -redis name two stores; give one")
	case *postgres != "":
		store, err := pgstore.Open(ctx, pgstore.Config{DSN: *postgres, Schema: *schema})
		if err != nil {
			return err
		}
		defer store.Close()
		cfg.Store = store
	case *redisURL != "":
		store, err := redisstore.Open(ctx, redisstore.Config{URL: *redisURL})
		if err != nil {
			return err
		}
		defer store.Close()
		cfg.Store = store
	}
	// The probes' port is taken before the start, so that a port in use
	// fails the process before it joins the cluster.
	var probes net.Listener
	if *health != "" {
		var err error
		if probes, err = net.Listen("tcp", *health); err != nil {
			return fmt.Errorf("-health: %w", err)
		}
		defer probes.Close()
	}
	var hangup chan os.Signal
	if sec.gossipKeyFile != "" {
		// Before the start, so that a SIGHUP once the node says it runs
		// changes the key rather than ends the process.
		hangup = make(chan os.Signal, 1)
		signal.Notify(hangup, syscall.SIGHUP)
		defer signal.Stop(hangup)
	}
	node, err := cluster.Start(ctx, cfg)
	if err != nil {
		return err
	}
	defer node.Close()
	fmt.Printf("%s: gossip on %s, gRPC on %s\n", node.Name(), node.GossipAddr(), node.GRPCAddr())
	if probes != nil {
		// Served until the process ends, through the Shutdown below, so
		// that readiness says the node shuts down while it does.
		srv := &http.Server{Handler: node.HealthHandler(), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(probes) }()
		defer srv.Close()
		fmt.Printf("%s: probes on http://%s/livez and /readyz\n", node.Name(), probes.Addr())
	}
	// The node may stop by itself (a later start under its name replaced
	// it; see cluster.Node.Err): end with it.
	ctx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	go func() {
		select {
		case <-node.Done():
			cancelRun()
		case <-ctx.Done():
		}
	}()

	if hangup != nil {
		go changeKeyOnHangup(ctx, hangup, node, sec.gossipKeyFile, cfg.GossipKeys[0])
	}
	if *call != "" {
		callEvery(ctx, node, strings.Split(*call, ","), *every)
	} else {
		<-ctx.Done()
	}

	if err := node.Err(); err != nil {
		return err
	}
	fmt.Printf("%s: leaving the cluster\n", node.Name())
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return node.Shutdown(shutdownCtx)
}

// security is what the flags say of the gossip key and of TLS.
type security struct {
	gossipKeyFile             string
	cert, key, ca, serverName string
}

// apply sets cfg's gossip keys and TLS from the flags, if they name files.
func (s security) apply(cfg *cluster.Config) error {
	if s.gossipKeyFile != "" {
		key, err := readGossipKey(s.gossipKeyFile)
		if err != nil {
			return err
		}
		cfg.GossipKeys = [][]byte{key}
	}
	if s.cert == "" && s.key == "" && s.ca == "" {
		return nil
	}
	if s.cert == "" || s.key == "" || s.ca == "" {
		return errors.New("-tls-cert, -tls-key and -tls-ca go together")
	}
	tlsCfg, err := cluster.MutualTLS(s.cert, s.key, s.ca, s.serverName)
	if err != nil {
		return err
	}
	cfg.TLS = tlsCfg
	return nil
}

// readGossipKey reads a gossip key in base64 from file.
func readGossipKey(file string) ([]byte, error) {
	text, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("-gossip-key-file: %w", err)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(text)))
	if err != nil {
		return nil, fmt.Errorf("-gossip-key-file %s: not base64: %w", file, err)
	}
	return key, nil
}

// changeKeyOnHangup reads the gossip key file again at each signal on
// hangup until ctx ends, and gives every member the key it holds if that is
// not the key in use. What it did, or why not, goes to the output: the node
// runs on either way.
func changeKeyOnHangup(ctx context.Context, hangup <-chan os.Signal, node *cluster.Node, file string, inUse []byte) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hangup:
		}
		key, err := readGossipKey(file)
		switch {
		case err != nil:
			fmt.Printf("%s: the gossip key stays: %v\n", node.Name(), err)
		case bytes.Equal(key, inUse):
			fmt.Printf("%s: the gossip key stays: %s holds the key in use\n", node.Name(), file)
		default:
			if err := node.ChangeGossipKey(key); err != nil {
				fmt.Printf("%s: the gossip key change failed (send SIGHUP again to finish it): %v\n", node.Name(), err)
				continue
			}
			inUse = key
			fmt.Printf("%s: every member's gossip key is now the one in %s\n", node.Name(), file)
		}
	}
}

// callEvery adds 1 to each identity's counter once per period and prints its
// total and host, until ctx ends. A failed call is printed, not fatal: while
// a member fails, calls may fail until gossip notices.
func callEvery(ctx context.Context, node *cluster.Node, identities []string, period time.Duration) {
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		for _, id := range identities {
			if ctx.Err() != nil {
				return // interrupted within a round: the rest would only fail
			}
			callCtx, cancel := context.WithTimeout(ctx, period)
			resp, err := counterpb.NewCounterClient(node, id).Add(callCtx, &counterpb.AddRequest{Delta: 1})
			var got *counterpb.GetResponse
			if err == nil {
				got, err = counterpb.NewCounterClient(node, id).Get(callCtx, &counterpb.GetRequest{})
			}
			cancel()
			if err != nil {
				fmt.Printf("  %-8s error: %v\n", id, err)
				continue
			}
			fmt.Printf("  %-8s total %-4d on %s\n", id, resp.GetTotal(), got.GetNode())
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
