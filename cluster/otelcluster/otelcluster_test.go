package otelcluster_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/protograin/protograin/cluster"
	"github.com/protograin/protograin/cluster/otelcluster"
	"github.com/protograin/protograin/internal/testnode"
)

const (
	holderKind = "test.Holder"
	idleKind   = "test.Idle" // hosted beside holderKind, never called
	methodHold = "/test.Holder/Hold"
	// waitTimeout bounds every wait for a condition.
	waitTimeout = 20 * time.Second
)

// gate holds every turn of the holder grains until it is opened.
type gate struct {
	once sync.Once
	open chan struct{}
}

func (g *gate) release() { g.once.Do(func() { close(g.open) }) }

// holderKindOf returns a kind named name whose Hold method, as a call or a
// one-way message, waits for g to open.
func holderKindOf(g *gate, name string) *cluster.Kind {
	return &cluster.Kind{
		Name: name,
		New:  func(string) any { return struct{}{} },
		Methods: []cluster.Method{{
			Name:       "/" + name + "/Hold",
			NewRequest: func() proto.Message { return new(emptypb.Empty) },
			Handle: func(_ any, ctx cluster.GrainContext, _ proto.Message) (proto.Message, error) {
				select {
				case <-g.open:
				case <-ctx.Done():
					return nil, ctx.Err()
				}
				return new(emptypb.Empty), nil
			},
		}},
	}
}

// waitFor waits until cond holds, failing the test after waitTimeout.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", waitTimeout, what)
		}
		<-tick.C
	}
}

// collected returns the protograin metrics reader collected, by name: the
// value of the one data point each, and the data itself.
func collected(t *testing.T, reader sdkmetric.Reader) map[string]metricdata.Sum[int64] {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatalf("collect: %v", err)
	}
	got := make(map[string]metricdata.Sum[int64])
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != otelcluster.ScopeName && len(sm.Metrics) > 0 {
			t.Fatalf("metrics under the scope %q, want %q", sm.Scope.Name, otelcluster.ScopeName)
		}
		for _, m := range sm.Metrics {
			sum, ok := m.Data.(metricdata.Sum[int64])
			if !ok {
				t.Fatalf("metric %s is a %T, want an int64 sum", m.Name, m.Data)
			}
			if len(sum.DataPoints) > 0 {
				got[m.Name] = sum
			}
		}
	}
	return got
}

// TestRegisterReportsTheNodesStats holds a grain in a call while a peer
// sends it more one-way messages than Config.MaxQueuedOneWay lets wait,
// and its node one more, and calls a second grain past
// Config.ActivationLimit, so that every figure but Forwarding is above
// zero, and checks that a collection reports what Node.Stats says, under
// the package's scope and the node's name, the grains' figures per kind,
// until the registration is undone.
func TestRegisterReportsTheNodesStats(t *testing.T) {
	const bound, sent = 10, 15
	g := &gate{open: make(chan struct{})}
	t.Cleanup(g.release) // a test that fails early leaves no turn held
	owner := testnode.StartConfigured(t, "owner", func(cfg *cluster.Config) {
		cfg.Kinds = []*cluster.Kind{holderKindOf(g, holderKind), holderKindOf(g, idleKind)}
		cfg.MaxQueuedOneWay = bound
		cfg.ActivationLimit = 1
	})
	sender := testnode.StartConfigured(t, "sender", func(cfg *cluster.Config) { cfg.Seeds = []string{owner.GossipAddr()} })
	waitFor(t, "the sender to see the owner", func() bool { return len(sender.Members()) == 2 })

	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = provider.Shutdown(context.Background()) })
	reg, err := otelcluster.Register(owner, provider)
	if err != nil {
		t.Fatalf("Register: %v", err)
	}

	hold := cluster.Call{Kind: holderKind, Identity: "held", Method: methodHold, Request: new(emptypb.Empty),
		NewResponse: func() proto.Message { return new(emptypb.Empty) }}
	called := make(chan error, 1)
	go func() {
		_, err := owner.Invoke(context.Background(), hold)
		called <- err
	}()
	waitFor(t, "the call to be counted in", func() bool { return owner.Stats().Calls == 1 })
	for range sent {
		if err := sender.Send(context.Background(), hold); err != nil {
			t.Fatalf("Send: %v", err)
		}
	}
	waitFor(t, "the messages past the bound to be dropped", func() bool { return owner.Stats().DroppedOneWay == sent-bound })
	if err := owner.Send(context.Background(), hold); !errors.Is(err, cluster.ErrMailboxFull) {
		t.Fatalf("Send on the owner past the bound: %v, want ErrMailboxFull", err)
	}
	another := hold
	another.Identity = "another"
	if err := owner.Send(context.Background(), another); !errors.Is(err, cluster.ErrTooManyActivations) {
		t.Fatalf("Send to a second grain past Config.ActivationLimit: %v, want ErrTooManyActivations", err)
	}

	st := owner.Stats()
	if st.Activations != 1 || st.QueuedOneWay != bound || st.Refused != 1 || st.RefusedActivations != 1 {
		t.Fatalf("Stats of the owner: %+v, want 1 activation, %d messages queued, 1 refused and 1 activation refused", st, bound)
	}
	got := collected(t, reader)
	// The grains' figures come per kind, the idle kind's at zero; the
	// node's other figures once, under the node alone.
	perKind := map[string]int64{
		otelcluster.MetricActivations:  int64(st.Activations),
		otelcluster.MetricIdentities:   int64(st.Kinds[holderKind].Identities),
		otelcluster.MetricCalls:        int64(st.Calls),
		otelcluster.MetricOneWayQueued: int64(st.QueuedOneWay),
	}
	perNode := map[string]int64{
		otelcluster.MetricOneWayForwarding: int64(st.Forwarding),
		otelcluster.MetricOneWayDropped:    int64(st.DroppedOneWay),
		otelcluster.MetricRefused:          int64(st.Refused),

		otelcluster.MetricActivationsRefused: int64(st.RefusedActivations),
		otelcluster.MetricHeapPassivations:   int64(st.HeapPassivations),
	}
	monotonic := map[string]bool{otelcluster.MetricOneWayDropped: true, otelcluster.MetricRefused: true,
		otelcluster.MetricActivationsRefused: true, otelcluster.MetricHeapPassivations: true}
	for name, sum := range got {
		if sum.IsMonotonic != monotonic[name] {
			t.Errorf("%s: monotonic %v, want %v", name, sum.IsMonotonic, monotonic[name])
		}
		points := map[string]int64{} // by kind, "" for the node's own
		for _, dp := range sum.DataPoints {
			if v, _ := dp.Attributes.Value(attribute.Key(otelcluster.AttributeNode)); v.AsString() != "owner" {
				t.Errorf("%s: %s = %q, want the node's name", name, otelcluster.AttributeNode, v.AsString())
			}
			kind, _ := dp.Attributes.Value(attribute.Key(otelcluster.AttributeKind))
			points[kind.AsString()] = dp.Value
		}
		var want map[string]int64
		if v, ok := perKind[name]; ok {
			want = map[string]int64{holderKind: v, idleKind: 0}
		} else if v, ok := perNode[name]; ok {
			want = map[string]int64{"": v}
		}
		if !maps.Equal(points, want) {
			t.Errorf("%s: %v by kind, want %v as in %+v", name, points, want, st)
		}
	}
	if len(got) != len(perKind)+len(perNode) {
		t.Errorf("collected %d metrics, want %d", len(got), len(perKind)+len(perNode))
	}

	g.release()
	if err := <-called; err != nil {
		t.Fatalf("the held call: %v", err)
	}
	if err := reg.Unregister(); err != nil {
		t.Fatalf("Unregister: %v", err)
	}
	if got := collected(t, reader); len(got) != 0 {
		t.Fatalf("after Unregister, collected %v, want nothing", got)
	}
}

// errMeter is what refusingMeter's refusals wrap.
var errMeter = errors.New("test meter: refused")

// refusingMeter is a meter that refuses one instrument, by name, or the
// callback's registration, as a meter of another SDK may (the SDK's own
// refuses only invalid names). Everything else is the no-op meter's.
type refusingMeter struct {
	noop.Meter
	instrument string // the instrument whose creation fails, or ""
	callback   bool   // whether RegisterCallback fails
}

func (m refusingMeter) Int64ObservableUpDownCounter(name string, opts ...metric.Int64ObservableUpDownCounterOption) (metric.Int64ObservableUpDownCounter, error) {
	g, _ := m.Meter.Int64ObservableUpDownCounter(name, opts...)
	return g, m.refuse(name)
}

func (m refusingMeter) Int64ObservableCounter(name string, opts ...metric.Int64ObservableCounterOption) (metric.Int64ObservableCounter, error) {
	c, _ := m.Meter.Int64ObservableCounter(name, opts...)
	return c, m.refuse(name)
}

func (m refusingMeter) Float64Histogram(name string, opts ...metric.Float64HistogramOption) (metric.Float64Histogram, error) {
	h, _ := m.Meter.Float64Histogram(name, opts...)
	return h, m.refuse(name)
}

func (m refusingMeter) RegisterCallback(f metric.Callback, instruments ...metric.Observable) (metric.Registration, error) {
	if m.callback {
		return nil, errMeter
	}
	return m.Meter.RegisterCallback(f, instruments...)
}

func (m refusingMeter) refuse(name string) error {
	if name == m.instrument {
		return fmt.Errorf("%w: %s", errMeter, name)
	}
	return nil
}

// refusingProvider hands out its refusingMeter.
type refusingProvider struct {
	noop.MeterProvider
	meter refusingMeter
}

func (p refusingProvider) Meter(string, ...metric.MeterOption) metric.Meter { return p.meter }

func TestRegisterReportsWhatTheMeterRefuses(t *testing.T) {
	node := testnode.Start(t, "node", holderKindOf(&gate{open: make(chan struct{})}, holderKind))
	for _, tc := range []struct {
		name  string
		meter refusingMeter
		want  string
	}{
		{"an up-down counter", refusingMeter{instrument: otelcluster.MetricCalls}, "otelcluster: create the instruments: test meter: refused: " + otelcluster.MetricCalls},
		{"a counter", refusingMeter{instrument: otelcluster.MetricRefused}, "otelcluster: create the instruments: test meter: refused: " + otelcluster.MetricRefused},
		{"the callback", refusingMeter{callback: true}, "otelcluster: register the stats callback: test meter: refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg, err := otelcluster.Register(node, refusingProvider{meter: tc.meter})
			if err == nil || err.Error() != tc.want || !errors.Is(err, errMeter) {
				t.Fatalf("Register: %v, want %q wrapping the meter's error", err, tc.want)
			}
			if reg != nil {
				t.Fatalf("Register returned a registration beside its error: %v", reg)
			}
		})
	}
}
