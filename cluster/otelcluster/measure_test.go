package otelcluster_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/protograin/protograin/cluster"
	"github.com/protograin/protograin/cluster/otelcluster"
	"github.com/protograin/protograin/internal/testnode"
)

// The measuring test's kind, whose methods succeed, fail and panic.
const (
	measuredKind = "test.Measured"
	methodOk     = "/test.Measured/Ok"    // StringValue → StringValue
	methodFail   = "/test.Measured/Fail"  // fails with errLeaf
	methodPanic  = "/test.Measured/Panic" // panics
	methodNone   = "/test.Measured/None"  // not a method of the kind
)

func measuredKindOf() *cluster.Kind {
	method := func(name string, handle func() (proto.Message, error)) cluster.Method {
		return cluster.Method{Name: name, NewRequest: newStringValue,
			Handle: func(any, cluster.GrainContext, proto.Message) (proto.Message, error) { return handle() }}
	}
	return &cluster.Kind{
		Name: measuredKind,
		New:  func(string) any { return struct{}{} },
		Methods: []cluster.Method{
			method(methodOk, func() (proto.Message, error) { return wrapperspb.String("ok"), nil }),
			method(methodFail, func() (proto.Message, error) { return nil, errLeaf }),
			method(methodPanic, func() (proto.Message, error) { panic("the grain panicked") }),
		},
	}
}

// measured is a meter provider with its reader, for one node.
type measured struct {
	provider *sdkmetric.MeterProvider
	reader   *sdkmetric.ManualReader
}

func newMeasured(t *testing.T) measured {
	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = provider.Shutdown(context.Background()) })
	return measured{provider: provider, reader: reader}
}

// configure adds MeasureOutgoing and MeasureIncoming on m's provider to
// cfg.
func (m measured) configure(t *testing.T, cfg *cluster.Config) {
	t.Helper()
	out, err := otelcluster.MeasureOutgoing(m.provider)
	if err != nil {
		t.Fatalf("MeasureOutgoing: %v", err)
	}
	in, err := otelcluster.MeasureIncoming(m.provider)
	if err != nil {
		t.Fatalf("MeasureIncoming: %v", err)
	}
	cfg.OutgoingInterceptors = []cluster.OutgoingInterceptor{out}
	cfg.IncomingInterceptors = []cluster.IncomingInterceptor{in}
}

// counts returns the counts of the duration histograms m's reader
// collects, by histogram and by attribute set ("key=value ..." in the
// order of the keys), checking their unit, and that each count is its
// buckets' sum.
func (m measured) counts(t *testing.T) map[string]map[string]uint64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := m.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatalf("collect: %v", err)
	}
	got := make(map[string]map[string]uint64)
	for _, sm := range rm.ScopeMetrics {
		for _, inst := range sm.Metrics {
			hist, ok := inst.Data.(metricdata.Histogram[float64])
			if !ok {
				t.Fatalf("metric %s is a %T, want a float64 histogram", inst.Name, inst.Data)
			}
			if inst.Unit != "s" {
				t.Errorf("metric %s has the unit %q, want s", inst.Name, inst.Unit)
			}
			got[inst.Name] = make(map[string]uint64)
			for _, dp := range hist.DataPoints {
				var attrs []string
				for _, kv := range dp.Attributes.ToSlice() {
					attrs = append(attrs, string(kv.Key)+"="+kv.Value.Emit())
				}
				var inBuckets uint64
				for _, n := range dp.BucketCounts {
					inBuckets += n
				}
				if inBuckets != dp.Count || dp.Sum < 0 {
					t.Errorf("metric %s %v: count %d, %d in the buckets, sum %v", inst.Name, attrs, dp.Count, inBuckets, dp.Sum)
				}
				got[inst.Name][strings.Join(attrs, " ")] = dp.Count
			}
		}
	}
	return got
}

// attrs returns the attributes that the measurements of method (the short
// name, of measuredKind) should have, as counts names them.
func attrs(method string, oneWay bool, code codes.Code) string {
	s := "protograin.code=" + code.String()
	if oneWay {
		s += " protograin.oneway=true"
	}
	return s + " rpc.method=" + method + " rpc.service=" + measuredKind + " rpc.system=protograin"
}

// TestMeasuringCountsEachCallOnce: with MeasureOutgoing and MeasureIncoming
// on two nodes, a call on the grain's node, a call and a one-way message
// from the other, a call whose method fails, one whose method panics and
// one to a method the kind does not have are each measured once by the
// sending node, under their method and code, and (but the last) once by
// the grain's node.
func TestMeasuringCountsEachCallOnce(t *testing.T) {
	backMetrics, frontMetrics := newMeasured(t), newMeasured(t)
	back := testnode.StartConfigured(t, "back", func(cfg *cluster.Config) {
		cfg.Kinds = []*cluster.Kind{measuredKindOf()}
		backMetrics.configure(t, cfg)
	})
	front := testnode.StartConfigured(t, "front", func(cfg *cluster.Config) {
		cfg.Seeds = []string{back.GossipAddr()}
		frontMetrics.configure(t, cfg)
	})
	waitFor(t, "the nodes to see each other", func() bool { return len(front.Members()) == 2 && len(back.Members()) == 2 })

	call := func(method string) cluster.Call {
		return cluster.Call{Kind: measuredKind, Identity: "m", Method: method, Request: wrapperspb.String("x"), NewResponse: newStringValue}
	}
	ctx := context.Background()
	if _, err := back.Invoke(ctx, call(methodOk)); err != nil {
		t.Fatalf("Ok on the grain's node: %v", err)
	}
	if _, err := front.Invoke(ctx, call(methodOk)); err != nil {
		t.Fatalf("Ok from the other node: %v", err)
	}
	if err := front.Send(ctx, call(methodOk)); err != nil {
		t.Fatalf("Send Ok: %v", err)
	}
	if _, err := front.Invoke(ctx, call(methodFail)); !strings.Contains(status.Convert(err).Message(), errLeaf.Error()) {
		t.Fatalf("Fail: %v, want the method's error", err)
	}
	panicking := call(methodPanic)
	panicking.Identity = "p" // restarted after its panic, apart from the others
	if _, err := front.Invoke(ctx, panicking); !errors.Is(err, cluster.ErrGrainPanic) {
		t.Fatalf("Panic: %v, want ErrGrainPanic", err)
	}
	if _, err := front.Invoke(ctx, call(methodNone)); status.Code(err) != codes.Unimplemented {
		t.Fatalf("a method the kind does not have: %v, want Unimplemented", err)
	}
	// The one-way message is handled after Send returns; the calls were
	// measured on the grain's node before they returned.
	oneWay := attrs("Ok", true, codes.OK)
	waitFor(t, "the one-way message to be measured", func() bool {
		return backMetrics.counts(t)[otelcluster.MetricServerCallDuration][oneWay] == 1
	})

	for _, tc := range []struct {
		node string
		got  map[string]map[string]uint64
		want map[string]map[string]uint64
	}{
		{"back", backMetrics.counts(t), map[string]map[string]uint64{
			otelcluster.MetricClientCallDuration: {attrs("Ok", false, codes.OK): 1},
			otelcluster.MetricServerCallDuration: {
				attrs("Ok", false, codes.OK):          2,
				oneWay:                                1,
				attrs("Fail", false, codes.Unknown):   1,
				attrs("Panic", false, codes.Internal): 1,
			},
		}},
		{"front", frontMetrics.counts(t), map[string]map[string]uint64{
			otelcluster.MetricClientCallDuration: {
				attrs("Ok", false, codes.OK):              1,
				oneWay:                                    1,
				attrs("Fail", false, codes.Unknown):       1,
				attrs("Panic", false, codes.Internal):     1,
				attrs("None", false, codes.Unimplemented): 1,
			},
		}},
	} {
		for name, want := range tc.want {
			if !maps.Equal(tc.got[name], want) {
				t.Errorf("%s %s:\n%s\nwant:\n%s", tc.node, name, format(tc.got[name]), format(want))
			}
		}
		if len(tc.got) != len(tc.want) {
			t.Errorf("%s recorded %d histograms, want %d", tc.node, len(tc.got), len(tc.want))
		}
	}
}

// format lists counts one attribute set a line.
func format(counts map[string]uint64) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(counts)) {
		fmt.Fprintf(&b, "  %s: %d\n", k, counts[k])
	}
	return b.String()
}

// TestMeasuringReportsWhatTheMeterRefuses: an interceptor whose histogram
// the meter refuses is not made, and the meter's error says why.
func TestMeasuringReportsWhatTheMeterRefuses(t *testing.T) {
	for _, tc := range []struct {
		name    string
		measure func(metric.MeterProvider) (made bool, err error)
	}{
		{otelcluster.MetricClientCallDuration, func(p metric.MeterProvider) (bool, error) {
			ic, err := otelcluster.MeasureOutgoing(p)
			return ic != nil, err
		}},
		{otelcluster.MetricServerCallDuration, func(p metric.MeterProvider) (bool, error) {
			ic, err := otelcluster.MeasureIncoming(p)
			return ic != nil, err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			made, err := tc.measure(refusingProvider{meter: refusingMeter{instrument: tc.name}})
			want := "otelcluster: create the histogram " + tc.name + ": test meter: refused: " + tc.name
			if err == nil || err.Error() != want || !errors.Is(err, errMeter) {
				t.Fatalf("error %v, want %q wrapping the meter's error", err, want)
			}
			if made {
				t.Fatal("an interceptor returned beside the error")
			}
		})
	}
}

// TestMeasuringACallAllocatesNothing: once a method's attribute set is
// made, measuring its calls allocates nothing, in the interceptor or the
// SDK's histogram.
func TestMeasuringACallAllocatesNothing(t *testing.T) {
	m := newMeasured(t)
	measure, err := otelcluster.MeasureOutgoing(m.provider)
	if err != nil {
		t.Fatal(err)
	}
	resp := new(emptypb.Empty)
	invoke := func(context.Context, cluster.Call, ...cluster.CallOption) (proto.Message, error) { return resp, nil }
	call := cluster.Call{Kind: holderKind, Identity: "h", Method: methodHold, Request: resp}
	ctx := context.Background()
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := measure(ctx, call, false, invoke); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("measuring a call allocates %v times", allocs)
	}
}

// TestMeasuringManyMethods: the interceptor keeps the attribute sets of so
// many methods only (maxAttributeSets, 1024), and measures the calls of
// the methods past them all the same, each under its own name.
func TestMeasuringManyMethods(t *testing.T) {
	const methods = 1100
	m := newMeasured(t)
	measure, err := otelcluster.MeasureOutgoing(m.provider)
	if err != nil {
		t.Fatal(err)
	}
	invoke := func(context.Context, cluster.Call, ...cluster.CallOption) (proto.Message, error) {
		return nil, status.Error(codes.Unimplemented, "no such method")
	}
	want := make(map[string]uint64)
	for i := range methods {
		name := fmt.Sprint("M", i)
		call := cluster.Call{Kind: measuredKind, Identity: "m", Method: "/" + measuredKind + "/" + name, Request: new(emptypb.Empty)}
		for range 2 {
			if _, err := measure(context.Background(), call, false, invoke); status.Code(err) != codes.Unimplemented {
				t.Fatalf("the interceptor returned %v, not the invoker's error", err)
			}
		}
		want[attrs(name, false, codes.Unimplemented)] = 2
	}
	if got := m.counts(t)[otelcluster.MetricClientCallDuration]; !maps.Equal(got, want) {
		t.Fatalf("measured %d attribute sets, want %d, each counted twice", len(got), len(want))
	}
}

// BenchmarkMeasuredCall is a local call with no interceptors, with a pair
// that only passes the call on (what the interceptors' plumbing in the
// node costs), and with MeasureOutgoing and MeasureIncoming, for their
// allocations: go test -run '^$' -bench MeasuredCall -benchtime 2000x
// ./cluster/otelcluster
func BenchmarkMeasuredCall(b *testing.B) {
	passOut := func(ctx context.Context, call cluster.Call, _ bool, invoke cluster.Invoker, opts ...cluster.CallOption) (proto.Message, error) {
		return invoke(ctx, call, opts...)
	}
	passIn := func(ctx cluster.GrainContext, _ string, _ bool, req proto.Message, handle cluster.Handler) (proto.Message, error) {
		return handle(ctx, req)
	}
	for _, bc := range []struct {
		name         string
		interceptors func(b *testing.B) (cluster.OutgoingInterceptor, cluster.IncomingInterceptor)
	}{
		{"none", nil},
		{"passing", func(*testing.B) (cluster.OutgoingInterceptor, cluster.IncomingInterceptor) { return passOut, passIn }},
		{"measured", func(b *testing.B) (cluster.OutgoingInterceptor, cluster.IncomingInterceptor) {
			provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
			b.Cleanup(func() { _ = provider.Shutdown(context.Background()) })
			out, err := otelcluster.MeasureOutgoing(provider)
			if err != nil {
				b.Fatal(err)
			}
			in, err := otelcluster.MeasureIncoming(provider)
			if err != nil {
				b.Fatal(err)
			}
			return out, in
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			g := &gate{open: make(chan struct{})}
			g.release()
			node := testnode.StartConfigured(b, "node", func(cfg *cluster.Config) {
				cfg.Kinds = []*cluster.Kind{holderKindOf(g, holderKind)}
				if bc.interceptors != nil {
					out, in := bc.interceptors(b)
					cfg.OutgoingInterceptors = []cluster.OutgoingInterceptor{out}
					cfg.IncomingInterceptors = []cluster.IncomingInterceptor{in}
				}
			})
			call := cluster.Call{Kind: holderKind, Identity: "h", Method: methodHold, Request: new(emptypb.Empty),
				NewResponse: func() proto.Message { return new(emptypb.Empty) }}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := node.Invoke(ctx, call); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
