package main

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestBank runs the example end to end twice on one bbolt store, as its doc
// suggests with -db, and checks the figures each run prints: the balances
// it starts from, the deduplicated retry, the refused withdrawal and the
// balances after the owner of alice shut down.
func TestBank(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bank.db")
	for run, want := range []struct{ alice, bob, ops int64 }{
		{alice: 90, bob: 85, ops: 3}, // a new store
		{alice: 180, bob: 170, ops: 6},
	} {
		t.Run(fmt.Sprintf("run %d", run+1), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			var out bytes.Buffer
			if err := runWithStore(ctx, &out, path); err != nil {
				t.Fatalf("run: %v\noutput:\n%s", err, out.String())
			}
			text := out.String()
			balance := func(name string, b, ops int64) string {
				return fmt.Sprintf("%-5s balance %4d after %d operations", name, b, ops)
			}

			start := text[:strings.Index(text, "deposits")]
			for _, line := range []string{balance("alice", want.alice-90, want.ops-3), balance("bob", want.bob-85, want.ops-3)} {
				if !strings.Contains(start, line) {
					t.Errorf("before the deposits, output lacks %q:\n%s", line, text)
				}
			}

			retried := text[strings.Index(text, "sent three times"):strings.Index(text, "withdraw ")]
			replies := regexp.MustCompile(`bob   balance +\d+ after \d+ operations`).FindAllString(retried, -1)
			if len(replies) != 3 {
				t.Fatalf("want 3 replies to the retried deposit, got %d:\n%s", len(replies), text)
			}
			for _, r := range replies {
				if r != balance("bob", want.bob, want.ops) {
					t.Errorf("retried deposit answered %q, want %q (applied once, in this run):\n%s", r, balance("bob", want.bob, want.ops), text)
				}
			}

			if overdraft := fmt.Sprintf("withdraw %d from alice", want.alice+1000); !strings.Contains(text, overdraft) ||
				!strings.Contains(text, "refused: FailedPrecondition") {
				t.Errorf("output lacks %q, refused with FailedPrecondition:\n%s", overdraft, text)
			}

			after := text[strings.Index(text, "loaded from the store"):]
			for _, line := range []string{
				balance("alice", want.alice, want.ops),
				balance("bob", want.bob, want.ops),
				fmt.Sprintf("total %d (%d before this run, deposited 175)", want.alice+want.bob, want.alice+want.bob-175),
				"all nodes shut down",
			} {
				if !strings.Contains(after, line) {
					t.Errorf("after the shutdown, output lacks %q:\n%s", line, text)
				}
			}
		})
	}
}
