package otelcluster_test

import (
	"context"
	"fmt"
	"log/slog"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/protograin/protograin/cluster"
	"github.com/protograin/protograin/cluster/otelcluster"
)

func ExampleRegister() {
	g := &gate{open: make(chan struct{})}
	g.release() // turns run at once
	cfg := cluster.DefaultConfig()
	cfg.BindAddr, cfg.GRPCAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Gossip = cluster.GossipLocal
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.Kinds = []*cluster.Kind{holderKindOf(g, holderKind)}
	ctx := context.Background()
	node, err := cluster.Start(ctx, cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer node.Shutdown(ctx)

	// In a service, the reader is an exporter's (OTLP, Prometheus), which
	// collects on its own schedule.
	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer provider.Shutdown(ctx)
	reg, err := otelcluster.Register(node, provider)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer reg.Unregister()

	for _, id := range []string{"a", "b", "c"} {
		_, err := node.Invoke(ctx, cluster.Call{Kind: holderKind, Identity: id, Method: methodHold, Request: new(emptypb.Empty),
			NewResponse: func() proto.Message { return new(emptypb.Empty) }})
		if err != nil {
			fmt.Println(err)
			return
		}
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		fmt.Println(err)
		return
	}
	for _, m := range rm.ScopeMetrics[0].Metrics {
		if m.Name == otelcluster.MetricActivations {
			fmt.Println(m.Name, m.Data.(metricdata.Sum[int64]).DataPoints[0].Value)
		}
	}
	// Output:
	// protograin.grain.activations 3
}

func ExampleMeasureOutgoing() {
	g := &gate{open: make(chan struct{})}
	g.release() // turns run at once
	ctx := context.Background()
	// In a service, the providers are the ones the OpenTelemetry setup
	// returns, with their exporters.
	reader := sdkmetric.NewManualReader()
	meters := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer meters.Shutdown(ctx)
	tracers := sdktrace.NewTracerProvider()
	defer tracers.Shutdown(ctx)

	measureOut, err := otelcluster.MeasureOutgoing(meters)
	if err != nil {
		fmt.Println(err)
		return
	}
	measureIn, err := otelcluster.MeasureIncoming(meters)
	if err != nil {
		fmt.Println(err)
		return
	}
	cfg := cluster.DefaultConfig()
	cfg.BindAddr, cfg.GRPCAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Gossip = cluster.GossipLocal
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.Kinds = []*cluster.Kind{holderKindOf(g, holderKind)}
	// Tracing first, outermost: the measurements are made inside the
	// calls' spans.
	cfg.OutgoingInterceptors = []cluster.OutgoingInterceptor{otelcluster.TraceOutgoing(tracers, nil), measureOut}
	cfg.IncomingInterceptors = []cluster.IncomingInterceptor{otelcluster.TraceIncoming(tracers, nil), measureIn}
	node, err := cluster.Start(ctx, cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer node.Shutdown(ctx)
	reg, err := otelcluster.Register(node, meters)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer reg.Unregister()

	for _, id := range []string{"a", "b", "c"} {
		_, err := node.Invoke(ctx, cluster.Call{Kind: holderKind, Identity: id, Method: methodHold, Request: new(emptypb.Empty),
			NewResponse: func() proto.Message { return new(emptypb.Empty) }})
		if err != nil {
			fmt.Println(err)
			return
		}
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		fmt.Println(err)
		return
	}
	for _, m := range rm.ScopeMetrics[0].Metrics {
		if h, ok := m.Data.(metricdata.Histogram[float64]); ok {
			dp := h.DataPoints[0]
			method, _ := dp.Attributes.Value("rpc.method")
			code, _ := dp.Attributes.Value(otelcluster.AttributeCode)
			fmt.Println(m.Name, method.AsString(), code.AsString(), dp.Count)
		}
	}
	// Unordered output:
	// rpc.client.call.duration Hold OK 3
	// rpc.server.call.duration Hold OK 3
}
