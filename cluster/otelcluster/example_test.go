package otelcluster_test

import (
	"context"
	"fmt"
	"log/slog"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
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
