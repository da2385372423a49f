// Package countergrain implements the Counter grain the examples run: a
// running total per identity, kept in memory by its activation.
package countergrain

import (
	"github.com/protograin/protograin/cluster"
	"github.com/protograin/protograin/examples/counterpb"
)

// Counter is one activation of the Counter grain. The cluster delivers one
// call at a time to an activation, so its fields need no locking.
type Counter struct {
	counterpb.UnimplementedCounterGrain

	node  string
	total int64
}

// NewKind returns the Counter kind for a node named node. Each activation
// remembers the node name so that Get can report where it lives.
func NewKind(node string) *cluster.Kind {
	return counterpb.NewCounterKind(func(string) counterpb.CounterGrain {
		return &Counter{node: node}
	})
}

// Add adds the request's delta to the total.
func (c *Counter) Add(_ cluster.GrainContext, req *counterpb.AddRequest) (*counterpb.AddResponse, error) {
	c.total += req.GetDelta()
	return &counterpb.AddResponse{Total: c.total}, nil
}

// Get returns the total and the name of the node hosting this activation.
func (c *Counter) Get(cluster.GrainContext, *counterpb.GetRequest) (*counterpb.GetResponse, error) {
	return &counterpb.GetResponse{Total: c.total, Node: c.node}, nil
}
