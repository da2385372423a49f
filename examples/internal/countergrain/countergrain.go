// Package countergrain implements the grains the examples run: Counter, a
// running total per identity kept as the grain's durable state, and
// Summary, a stateless worker that adds totals up where it is called.
package countergrain

import (
	"github.com/protograin/protograin/cluster"
	"github.com/protograin/protograin/examples/counterpb"
)

// Counter is one activation of the Counter grain. Its total lives in its
// state (counterpb.CounterState), which the cluster loads on activation and
// commits after each Add; the activation itself only knows its node.
type Counter struct {
	counterpb.UnimplementedCounterGrain

	node string
}

// NewKind returns the Counter kind for a node named node. Each activation
// remembers the node name so that Get can report where it lives.
func NewKind(node string) *cluster.Kind {
	return counterpb.NewCounterKind(func(string) counterpb.CounterGrain {
		return &Counter{node: node}
	})
}

// Add adds the request's delta to the total.
func (c *Counter) Add(ctx cluster.GrainContext, req *counterpb.AddRequest) (*counterpb.AddResponse, error) {
	st := counterpb.CounterStateOf(ctx)
	st.Total += req.GetDelta()
	return &counterpb.AddResponse{Total: st.Total}, nil
}

// Get returns the total and the name of the node hosting this activation.
func (c *Counter) Get(ctx cluster.GrainContext, _ *counterpb.GetRequest) (*counterpb.GetResponse, error) {
	return &counterpb.GetResponse{Total: counterpb.CounterStateOf(ctx).GetTotal(), Node: c.node}, nil
}

// Summary is one worker of the Summary grain: it keeps nothing but its
// node's name, so any number of them may run at once.
type Summary struct {
	counterpb.UnimplementedSummaryGrain

	node string
}

// NewSummaryKind returns the Summary kind for a node named node. The kind's
// stateless_workers option makes every node that hosts it run its own calls
// to it (see cluster.Kind.StatelessWorkers).
func NewSummaryKind(node string) *cluster.Kind {
	return counterpb.NewSummaryKind(func(string) counterpb.SummaryGrain {
		return &Summary{node: node}
	})
}

// Summarize adds up the request's totals.
func (s *Summary) Summarize(_ cluster.GrainContext, req *counterpb.SummarizeRequest) (*counterpb.SummarizeResponse, error) {
	var sum int64
	for _, total := range req.GetTotals() {
		sum += total
	}
	return &counterpb.SummarizeResponse{Sum: sum, Node: s.node}, nil
}
