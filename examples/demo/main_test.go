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
	// Each round's Summary runs on the node that called it.
	callers := regexp.MustCompile(`calling grains (?:again )?from (node-\d)`).FindAllStringSubmatch(text, -1)
	sums := regexp.MustCompile(`sum of the totals (\d+), added up by a stateless worker on (node-\d)`).FindAllStringSubmatch(text, -1)
	if len(callers) != 2 || len(sums) != 2 {
		t.Fatalf("want two rounds, each with its sum:\n%s", text)
	}
	for i, want := range []string{"6", "12"} {
		if sums[i][1] != want || sums[i][2] != callers[i][1] {
			t.Errorf("round %d: sum %s on %s; want %s on %s, the calling node:\n%s", i+1, sums[i][1], sums[i][2], want, callers[i][1], text)
		}
	}
	for _, want := range []string{"started 3 nodes", "all nodes shut down"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
}
