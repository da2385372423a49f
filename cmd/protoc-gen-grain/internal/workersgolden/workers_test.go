package workersgolden

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/protograin/protograin/cluster"
	"github.com/protograin/protograin/testdata/workers"
)

// quote is a Quote grain that waits, in each call, until every call of the
// test is in: only a kind with as many workers per identity answers them.
type quote struct {
	workers.UnimplementedQuoteGrain
	in *sync.WaitGroup
}

func (q quote) Price(ctx cluster.GrainContext, req *workers.PriceRequest) (*workers.PriceResponse, error) {
	q.in.Done()
	waited := make(chan struct{})
	go func() {
		q.in.Wait()
		close(waited)
	}()
	select {
	case <-waited:
		return &workers.PriceResponse{Quote: ctx.Identity() + " for " + req.GetClient()}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func TestTheGeneratedKindRunsStatelessWorkers(t *testing.T) {
	const calls = 4 // the golden's stateless_workers
	var in sync.WaitGroup
	in.Add(calls)
	kind := workers.NewQuoteKind(func(string) workers.QuoteGrain { return quote{in: &in} })
	if kind.StatelessWorkers != calls {
		t.Fatalf("NewQuoteKind: StatelessWorkers %d; want %d, from the service's option", kind.StatelessWorkers, calls)
	}
	cfg := cluster.DefaultConfig()
	cfg.BindAddr, cfg.GRPCAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Gossip = cluster.GossipLocal
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.Kinds = []*cluster.Kind{kind}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	node, err := cluster.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { _ = node.Close() })

	client := workers.NewQuoteClient(node, "EURUSD")
	answers := make(chan string, calls)
	for _, who := range []string{"ann", "bob", "cy", "di"} {
		go func() {
			resp, err := client.Price(ctx, &workers.PriceRequest{Client: who})
			if err != nil {
				answers <- "error: " + err.Error()
				return
			}
			answers <- resp.GetQuote()
		}()
	}
	var got []string
	for range calls {
		got = append(got, <-answers)
	}
	slices.Sort(got)
	want := []string{"EURUSD for ann", "EURUSD for bob", "EURUSD for cy", "EURUSD for di"}
	if !slices.Equal(got, want) {
		t.Errorf("four calls at once to one identity: %q; want %q, each on a worker of its own", got, want)
	}
}
