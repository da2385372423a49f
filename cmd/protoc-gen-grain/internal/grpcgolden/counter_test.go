package grpcgolden

import (
	"context"
	"net"
	"testing"

	"github.com/protograin/protograin/cluster"
	"github.com/protograin/protograin/internal/testnode"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// counterGrain is the grain of one counter.
type counterGrain struct {
	UnimplementedCounterGrain
	total int64
}

func (g *counterGrain) Add(_ cluster.GrainContext, req *AddRequest) (*AddResponse, error) {
	g.total += req.GetDelta()
	return &AddResponse{Total: g.total}, nil
}

// server serves Counter over gRPC by calling the grain "main" through the
// grain's generated client, whose name, CounterClient_, leaves
// CounterClient to gRPC.
type server struct {
	UnimplementedCounterServer
	grain *CounterClient_
}

func (s *server) Add(ctx context.Context, req *AddRequest) (*AddResponse, error) {
	return s.grain.Add(ctx, req)
}

var (
	_ CounterGrain  = (*counterGrain)(nil)
	_ CounterServer = (*server)(nil)
)

func TestGRPCServerCallsGrain(t *testing.T) {
	node := testnode.Start(t, "grpcgolden", NewCounterKind(func(string) CounterGrain { return &counterGrain{} }))
	ctx := t.Context()

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	RegisterCounterServer(srv, &server{grain: NewCounterClient_(node, "main")})
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })

	client := NewCounterClient(conn)
	for i, want := range []int64{2, 5} {
		resp, err := client.Add(ctx, &AddRequest{Delta: int64(2 + i)})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetTotal() != want {
			t.Errorf("total %d, want %d", resp.GetTotal(), want)
		}
	}
	if Counter_Add_FullMethodName != CounterAddMethod {
		t.Errorf("gRPC's full method name %q, the grain's %q: want the same", Counter_Add_FullMethodName, CounterAddMethod)
	}
}
