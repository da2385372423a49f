package grains

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// TestPeersSmoke runs every scenario of the benchmarks on every peer at a
// tiny size, across two real processes, so that a broken peer fails go test
// instead of a benchmark run.
func TestPeersSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts host processes")
	}
	for _, p := range peers() {
		t.Run(p.name(), func(t *testing.T) {
			t.Run("local", func(t *testing.T) {
				n, err := p.local(t)
				if err != nil {
					t.Fatal(err)
				}
				checkCalls(t, n)
				if rn, ok := n.(remoteNode); ok {
					if err := rn.exchange(2); !errors.Is(err, errNotJoined) {
						t.Errorf("exchange on a local node: got %v, want %v", err, errNotJoined)
					}
				}
			})
			t.Run("remote", func(t *testing.T) {
				n, err := p.join(t, startHost(t, p.name()))
				if err != nil {
					t.Fatal(err)
				}
				checkCalls(t, n)
				for _, messages := range []int{1, 2, 3 * oneWayInFlight} {
					if err := n.exchange(messages); err != nil {
						t.Fatalf("exchange %d messages: %v", messages, err)
					}
				}
			})
		})
	}
}

// checkCalls warms a few counters on n and drives calls at them from
// several callers, as the benchmarks do, with a context that can never end
// and with one that has a deadline (BenchmarkLocalCallsDeadline).
func checkCalls(t *testing.T, n node) {
	t.Helper()
	deadline, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, ctx := range []context.Context{context.Background(), deadline} {
		clients, err := warm(ctx, n, "smoke", 10)
		if err != nil {
			t.Fatal(err)
		}
		run, err := driveCalls(50, 4, clients)
		if err != nil {
			t.Fatal(err)
		}
		if len(run.latencies) != 50 || run.elapsed <= 0 {
			t.Fatalf("driveCalls: %d latencies in %v, want 50 in a positive time", len(run.latencies), run.elapsed)
		}
	}
}

// TestFloorSmoke makes a few round trips to the echo servers of a floor
// host process.
func TestFloorSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a host process")
	}
	info := startHost(t, floorHost)
	for name, dial := range map[string]func(testing.TB, string) (func() error, error){
		info.TCPAddr:  tcpRoundTrip,
		info.GRPCAddr: grpcRoundTrip,
	} {
		roundTrip, err := dial(t, name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := driveCalls(20, 1, []func() error{roundTrip}); err != nil {
			t.Fatalf("round trips to %s: %v", name, err)
		}
	}
}

func TestFloorCodec(t *testing.T) {
	var c floorCodec
	if _, err := c.Marshal("text"); err == nil {
		t.Error("Marshal of a string succeeded, want an error")
	}
	var s string
	if err := c.Unmarshal([]byte("x"), &s); err == nil {
		t.Error("Unmarshal into a *string succeeded, want an error")
	}
	in := []byte("abc")
	b, err := c.Marshal(&in)
	var out []byte
	if err != nil || c.Unmarshal(b, &out) != nil || string(out) != "abc" {
		t.Errorf("round trip through the codec: %q, %v", out, err)
	}
}

func TestLaunchHostUnknownPeer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a host process")
	}
	_, err := launchHost(t, "no-such-peer")
	if !errors.Is(err, errHostExited) {
		t.Fatalf("launchHost with an unknown peer: got %v, want %v", err, errHostExited)
	}
}

func TestPeerByName(t *testing.T) {
	for _, p := range peers() {
		got, err := peerByName(p.name())
		if err != nil || got.name() != p.name() {
			t.Errorf("peerByName(%q) = %v, %v", p.name(), got, err)
		}
	}
	if _, err := peerByName("hollywood"); !errors.Is(err, errNoPeer) {
		t.Errorf("peerByName(hollywood): got %v, want %v", err, errNoPeer)
	}
}

func TestHostLine(t *testing.T) {
	want := hostInfo{Peer: "protoactor", MemberID: "m1", Address: "127.0.0.1:4000"}
	line, err := formatHostLine(want)
	if err != nil {
		t.Fatal(err)
	}
	got, ok, err := parseHostLine(line)
	if err != nil || !ok || got != want {
		t.Fatalf("parseHostLine(%q) = %+v, %v, %v; want %+v", line, got, ok, err, want)
	}
	for _, tc := range []struct {
		line    string
		ok      bool
		wantErr string
	}{
		{line: "PASS", ok: false},
		{line: "", ok: false},
		{line: hostLinePrefix + "{not json", ok: true, wantErr: "grains: host line"},
		{line: hostLinePrefix + `{"address":"127.0.0.1:1"}`, ok: true, wantErr: "names no peer"},
	} {
		_, ok, err := parseHostLine(tc.line)
		if ok != tc.ok || (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("parseHostLine(%q) = ok %v, err %v; want ok %v, error containing %q", tc.line, ok, err, tc.ok, tc.wantErr)
		}
	}
}

func TestReadHostInfo(t *testing.T) {
	line, err := formatHostLine(hostInfo{Peer: "protograin", GossipAddr: "127.0.0.1:7946"})
	if err != nil {
		t.Fatal(err)
	}
	info, err := readHostInfo(strings.NewReader("=== RUN TestHostProcess\n"+line+"\nPASS\n"), time.Minute)
	if err != nil || info.GossipAddr != "127.0.0.1:7946" {
		t.Errorf("readHostInfo = %+v, %v", info, err)
	}
	if _, err := readHostInfo(strings.NewReader("--- FAIL: TestHostProcess\n"), time.Minute); !errors.Is(err, errHostExited) {
		t.Errorf("readHostInfo of output without a host line: got %v, want %v", err, errHostExited)
	}
	// A host that says nothing and does not exit: the timeout reports it.
	r, w := io.Pipe()
	defer w.Close()
	if _, err := readHostInfo(r, time.Millisecond); err == nil || !strings.Contains(err.Error(), "did not report") {
		t.Errorf("readHostInfo of a silent host: got %v, want a timeout error", err)
	}
}

func TestQuantiles(t *testing.T) {
	ms := func(ns ...int) []time.Duration {
		out := make([]time.Duration, len(ns))
		for i, n := range ns {
			out[i] = time.Duration(n) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = 100 - i // reversed: quantiles sorts
	}
	for _, tc := range []struct {
		name    string
		samples []time.Duration
		qs      []float64
		want    []time.Duration
	}{
		{"empty", nil, []float64{0.5, 0.99}, ms(0, 0)},
		{"one", ms(7), []float64{0.5, 0.999}, ms(7, 7)},
		{"hundred", ms(hundred...), []float64{0.5, 0.99, 0.999, 1}, ms(50, 99, 100, 100)},
		{"tiny q", ms(3, 1, 2), []float64{0.0001}, ms(1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := quantiles(tc.samples, tc.qs...)
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("quantile %v = %v, want %v", tc.qs[i], got[i], tc.want[i])
				}
			}
		})
	}
}

func TestParseCounts(t *testing.T) {
	got, err := parseCounts("100000, 1000000")
	if err != nil || len(got) != 2 || got[0] != 100000 || got[1] != 1000000 {
		t.Errorf("parseCounts = %v, %v", got, err)
	}
	for _, bad := range []string{"", "0", "-5", "10,x", "1e6"} {
		if _, err := parseCounts(bad); err == nil {
			t.Errorf("parseCounts(%q) succeeded, want an error", bad)
		}
	}
}

func TestShareAndPerGrain(t *testing.T) {
	total := 0
	for g := range 7 {
		total += share(100, 7, g)
	}
	if total != 100 {
		t.Errorf("shares of 100 over 7 callers add up to %d", total)
	}
	if got := perGrain(1000, 3000, 10); got != 200 {
		t.Errorf("perGrain(1000, 3000, 10) = %v, want 200", got)
	}
	if got := perGrain(3000, 1000, 10); got != 0 {
		t.Errorf("perGrain of a shrinking heap = %v, want 0", got)
	}
	if got := perSecond(10, 0); got != 0 {
		t.Errorf("perSecond over no time = %v, want 0", got)
	}
}
