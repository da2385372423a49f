package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestDemo runs the demo end to end: three nodes, calls, a node shut down and
// its grains reactivated on the others with their state.
func TestDemo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, &out); err != nil {
		t.Fatalf("run: %v\noutput:\n%s", err, out.String())
	}
	text := out.String()
	victim := regexp.MustCompile(`shutting down (node-\d)`).FindStringSubmatch(text)
	if victim == nil {
		t.Fatalf("no node was shut down:\n%s", text)
	}
	after := text[strings.Index(text, "calling grains again"):]
	if strings.Contains(after, "lives on "+victim[1]) {
		t.Errorf("a grain still lives on %s after it shut down:\n%s", victim[1], text)
	}
	if !strings.Contains(after, "counter alice  total 2  lives on") || !strings.Contains(after, "(moved from "+victim[1]+": reactivated on ") {
		t.Errorf("alice was not reactivated elsewhere with its total of 1 plus the new call's 1:\n%s", text)
	}
	// Every node asks the one Summary identity, and each call runs on the
	// node that asks: three nodes in the first round, two in the second,
	// which no one owner of the identity could all be.
	sums := regexp.MustCompile(`(node-\d) asks Summary "round" for the sum of the totals: (\d+), added up by a stateless worker on (node-\d)`).FindAllStringSubmatch(text, -1)
	if len(sums) != 5 {
		t.Fatalf("got %d sums; want one from each of the three nodes, then from each of the two left:\n%s", len(sums), text)
	}
	for i, sum := range sums {
		want := "6"
		if i >= 3 {
			want = "12"
		}
		if sum[2] != want || sum[3] != sum[1] {
			t.Errorf("sum %d asked by %s: %s on %s; want %s on %s, the node that asks:\n%s", i+1, sum[1], sum[2], sum[3], want, sum[1], text)
		}
	}
	for _, want := range []string{"started 3 nodes", "all nodes shut down"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
}
