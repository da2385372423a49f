package grains

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// The floor: what a round trip between the two processes costs without any
// actor runtime, over a raw TCP connection and over a bare gRPC
// bidirectional stream (the transport both peers are built on). It bounds
// what a cross-node grain call can reach on this machine.

// floorHost is the name a host process runs the echo servers under.
const floorHost = "floor"

// floorMessageSize is the size of an echoed message: about what an encoded
// Add request or response is with its envelope.
const floorMessageSize = 32

// floorEchoMethod is the full method name of the gRPC echo stream.
const floorEchoMethod = "/bench.floor.Echo/Echo"

// floorCodec passes []byte messages through gRPC unchanged.
type floorCodec struct{}

func (floorCodec) Marshal(v any) ([]byte, error) {
	b, ok := v.(*[]byte)
	if !ok {
		return nil, fmt.Errorf("grains: floor codec cannot marshal %T", v)
	}
	return *b, nil
}

func (floorCodec) Unmarshal(data []byte, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("grains: floor codec cannot unmarshal into %T", v)
	}
	*b = data
	return nil
}

func (floorCodec) Name() string { return "grains-floor" }

// floorStreamDesc describes the echo stream for the client.
func floorStreamDesc() *grpc.StreamDesc {
	return &grpc.StreamDesc{StreamName: "Echo", ServerStreams: true, ClientStreams: true}
}

// startFloorHost starts a TCP echo server and a gRPC echo stream server on
// loopback and reports their addresses.
func startFloorHost() (hostInfo, func(), error) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return hostInfo{}, nil, fmt.Errorf("grains: floor tcp listener: %w", err)
	}
	go serveTCPEcho(tcp)
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = tcp.Close()
		return hostInfo{}, nil, fmt.Errorf("grains: floor grpc listener: %w", err)
	}
	srv := grpc.NewServer(grpc.ForceServerCodec(floorCodec{}), grpc.UnknownServiceHandler(echoStream))
	go func() { _ = srv.Serve(gl) }() // returns when stopped
	stop := func() {
		srv.Stop()
		_ = tcp.Close()
	}
	return hostInfo{Peer: floorHost, TCPAddr: tcp.Addr().String(), GRPCAddr: gl.Addr().String()}, stop, nil
}

// serveTCPEcho echoes fixed-size messages on every connection l accepts.
func serveTCPEcho(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return // the listener closed
		}
		go func() {
			defer c.Close()
			buf := make([]byte, floorMessageSize)
			for {
				if _, err := io.ReadFull(c, buf); err != nil {
					return
				}
				if _, err := c.Write(buf); err != nil {
					return
				}
			}
		}()
	}
}

// echoStream sends every message of a stream back.
func echoStream(_ any, stream grpc.ServerStream) error {
	for {
		var msg []byte
		if err := stream.RecvMsg(&msg); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if err := stream.SendMsg(&msg); err != nil {
			return err
		}
	}
}

// tcpRoundTrip dials the TCP echo server and returns a function that makes
// one round trip.
func tcpRoundTrip(tb testing.TB, addr string) (func() error, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("grains: dial floor tcp %s: %w", addr, err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	out := make([]byte, floorMessageSize)
	in := make([]byte, floorMessageSize)
	return func() error {
		if _, err := c.Write(out); err != nil {
			return err
		}
		_, err := io.ReadFull(c, in)
		return err
	}, nil
}

// grpcRoundTrip opens an echo stream to the gRPC server and returns a
// function that makes one round trip on it.
func grpcRoundTrip(tb testing.TB, addr string) (func() error, error) {
	cc, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(floorCodec{})))
	if err != nil {
		return nil, fmt.Errorf("grains: floor grpc client %s: %w", addr, err)
	}
	tb.Cleanup(func() { _ = cc.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	stream, err := cc.NewStream(ctx, floorStreamDesc(), floorEchoMethod)
	if err != nil {
		return nil, fmt.Errorf("grains: floor grpc stream %s: %w", addr, err)
	}
	out := make([]byte, floorMessageSize)
	return func() error {
		if err := stream.SendMsg(&out); err != nil {
			return err
		}
		var in []byte
		return stream.RecvMsg(&in)
	}, nil
}

// BenchmarkLoopbackFloor measures one caller's round trips to a host
// process over raw TCP and over a bare gRPC stream, with the latency
// quantiles of the call benchmarks: the floor under
// BenchmarkRemoteCalls/callers=1.
func BenchmarkLoopbackFloor(b *testing.B) {
	info := startHost(b, floorHost)
	for _, tc := range []struct {
		name string
		dial func(testing.TB, string) (func() error, error)
		addr string
	}{
		{"transport=tcp", tcpRoundTrip, info.TCPAddr},
		{"transport=grpc-stream", grpcRoundTrip, info.GRPCAddr},
	} {
		b.Run(tc.name, func(b *testing.B) {
			roundTrip, err := tc.dial(b, tc.addr)
			if err != nil {
				b.Fatal(err)
			}
			if err := roundTrip(); err != nil { // warm-up: connection and stream set up
				b.Fatal(err)
			}
			b.Run("callers=1", func(b *testing.B) {
				b.ReportAllocs()
				b.ResetTimer()
				run, err := driveCalls(b.N, 1, []func() error{roundTrip})
				b.StopTimer()
				if err != nil {
					b.Fatal(err)
				}
				reportCalls(b, run)
			})
		})
	}
}
