// Command bank runs a three-node cluster in one process whose Account grains
// keep their balances in the embedded store (bbolt). It shows durable typed
// state, a transfer from one grain to another, a retried call answered from
// its exactly-once record, and the balances surviving when the node that
// hosts an account shuts down.
//
//	go run ./examples/bank              # a store in a temporary directory
//	go run ./examples/bank -db bank.db  # keep the store: run it twice
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"

	"google.golang.org/grpc/status"

	"github.com/protograin/protograin/cluster"
	"github.com/protograin/protograin/cluster/storage"
	"github.com/protograin/protograin/cluster/storage/boltstore"
	"github.com/protograin/protograin/examples/bankpb"
	"github.com/protograin/protograin/examples/internal/localcluster"
)

func main() {
	db := flag.String("db", "", "path of the bbolt store file (default: a temporary one)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := runWithStore(ctx, os.Stdout, *db); err != nil {
		if ctx.Err() != nil {
			// Ctrl-C: the nodes were shut down, which is all it asks for.
			fmt.Fprintln(os.Stderr, "bank: interrupted")
			os.Exit(130)
		}
		fmt.Fprintln(os.Stderr, "bank:", err)
		os.Exit(1)
	}
}

// runWithStore opens the store at path, or in a temporary directory when
// path is empty, and runs the example on it.
func runWithStore(ctx context.Context, out io.Writer, path string) error {
	if path == "" {
		dir, err := os.MkdirTemp("", "protograin-bank-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		path = filepath.Join(dir, "bank.db")
	}
	store, err := boltstore.Open(path, boltstore.Config{})
	if err != nil {
		return err
	}
	defer store.Close()
	return run(ctx, out, store)
}

// run runs the example on three nodes sharing store, printing to out.
func run(ctx context.Context, out io.Writer, store storage.Store) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	nodes, err := localcluster.Start(ctx, 3, log, func(cfg *cluster.Config) {
		cfg.Kinds = []*cluster.Kind{newAccountKind(cfg.NodeName)}
		cfg.Store = store
	})
	if err != nil {
		return err
	}
	defer localcluster.Stop(nodes) // after an error or an interrupt
	front := nodes[0]
	alice := bankpb.NewAccountClient(front, "alice")
	bob := bankpb.NewAccountClient(front, "bob")

	// A kept store (-db) has the balances of earlier runs.
	fmt.Fprintln(out, "balances before this run")
	before, err := totalBalance(ctx, out, front)
	if err != nil {
		return err
	}

	fmt.Fprintln(out, "\ndeposits")
	for _, d := range []struct {
		client *bankpb.AccountClient
		name   string
		amount int64
	}{{alice, "alice", 100}, {bob, "bob", 50}, {alice, "alice", 20}} {
		resp, err := d.client.Deposit(ctx, &bankpb.DepositRequest{Amount: d.amount})
		if err != nil {
			return fmt.Errorf("deposit to %s: %w", d.name, err)
		}
		printBalance(out, d.name, resp)
	}

	fmt.Fprintln(out, "\ntransfer 30 from alice to bob")
	resp, err := alice.Transfer(ctx, &bankpb.TransferRequest{To: "bob", Amount: 30})
	if err != nil {
		return fmt.Errorf("transfer: %w", err)
	}
	printBalance(out, "alice", resp)
	overdraft := resp.GetBalance() + 1000
	received, err := bob.Balance(ctx, &bankpb.BalanceRequest{})
	if err != nil {
		return fmt.Errorf("balance of bob: %w", err)
	}
	printBalance(out, "bob", received)

	// A client that lost a reply retries with the same stamp. The grain
	// answers every retry from the record committed with the first call.
	// A client ID stands for one client for as long as the grains keep
	// their records, so each run takes a new one, as each start of a
	// process would: a stamp from an earlier run would get that run's
	// reply.
	client, err := newClientID()
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "\nthe same deposit of 5 to bob, sent three times with one stamp")
	for range 3 {
		resp, err := bob.Deposit(ctx, &bankpb.DepositRequest{Amount: 5}, cluster.WithCallID(client, 1))
		if err != nil {
			return fmt.Errorf("retried deposit: %w", err)
		}
		printBalance(out, "bob", resp)
	}

	fmt.Fprintf(out, "\nwithdraw %d from alice, 1000 more than she has\n", overdraft)
	_, err = alice.Withdraw(ctx, &bankpb.WithdrawRequest{Amount: overdraft})
	if status.Code(err) == 0 {
		return errors.New("a withdrawal over the balance succeeded")
	}
	fmt.Fprintf(out, "  refused: %s: %s\n", status.Code(err), status.Convert(err).Message())

	owner, _ := front.Owner(bankpb.AccountKind, "alice")
	victim, survivors := localcluster.Split(nodes, owner.Name)
	if victim == front {
		front = survivors[0]
	}
	fmt.Fprintf(out, "\nshutting down %s, which hosts alice\n", victim.Name())
	if err := localcluster.ShutdownAll(ctx, []*cluster.Node{victim}); err != nil {
		return err
	}
	if err := localcluster.WaitForMembers(ctx, survivors, len(survivors)); err != nil {
		return err
	}

	fmt.Fprintln(out, "\nbalances, loaded from the store by their new activations")
	total, err := totalBalance(ctx, out, front)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "  total %d (%d before this run, deposited 175)\n", total, before)

	if err := localcluster.ShutdownAll(ctx, survivors); err != nil {
		return err
	}
	fmt.Fprintln(out, "\nall nodes shut down")
	return nil
}

// totalBalance prints the balances of alice and bob, called through front,
// and returns their sum.
func totalBalance(ctx context.Context, out io.Writer, front *cluster.Node) (int64, error) {
	var total int64
	for _, name := range []string{"alice", "bob"} {
		resp, err := bankpb.NewAccountClient(front, name).Balance(ctx, &bankpb.BalanceRequest{})
		if err != nil {
			return 0, fmt.Errorf("balance of %s: %w", name, err)
		}
		printBalance(out, name, resp)
		total += resp.GetBalance()
	}
	return total, nil
}

// newClientID returns a client ID no earlier run used.
func newClientID() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("client ID: %w", err)
	}
	return "bank-example-" + hex.EncodeToString(b[:]), nil
}

func printBalance(out io.Writer, name string, r *bankpb.BalanceResponse) {
	fmt.Fprintf(out, "  %-5s balance %4d after %d operations, on %s\n", name, r.GetBalance(), r.GetOperations(), r.GetNode())
}
