package main

import (
	"bytes"
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestBank runs the example end to end on a bbolt store and checks the
// figures it prints: the deduplicated retry, the refused withdrawal and the
// balances after the owner of alice shut down.
func TestBank(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := runWithStore(ctx, &out, filepath.Join(t.TempDir(), "bank.db")); err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	text := out.String()

	retries := regexp.MustCompile(`bob   balance +(\d+) after (\d+) operations`).FindAllStringSubmatch(
		text[strings.Index(text, "sent three times"):strings.Index(text, "withdraw 1000")], -1)
	if len(retries) != 3 {
		t.Fatalf("want 3 replies to the retried deposit, got %d:\n%s", len(retries), text)
	}
	for _, r := range retries {
		if r[1] != "85" || r[2] != "3" {
			t.Errorf("retried deposit answered balance %s after %s operations, want 85 after 3 (applied once):\n%s", r[1], r[2], text)
		}
	}
	if !strings.Contains(text, "refused: FailedPrecondition") {
		t.Errorf("the withdrawal over the balance was not refused:\n%s", text)
	}
	after := text[strings.Index(text, "loaded from the store"):]
	for _, want := range []string{
		"alice balance   90 after 3 operations",
		"bob   balance   85 after 3 operations",
		"total 175 (deposited 175)",
		"all nodes shut down",
	} {
		if !strings.Contains(after, want) {
			t.Errorf("after the shutdown, output lacks %q:\n%s", want, text)
		}
	}
}
