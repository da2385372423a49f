package grains

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestPairedAwk runs paired.awk, as run.sh does, on raw output with both
// shapes of benchmark name (the peer in the middle and at the end), a
// sample one peer has more of, a unit that is not a rate, and a benchmark
// of one peer only. Each ratio must pair the i-th samples of the two peers
// and take the median of the pairs.
func TestPairedAwk(t *testing.T) {
	raw := strings.Join([]string{
		"# a header line",
		"BenchmarkRemoteCalls/impl=protoactor/callers=64-2 \t 100 \t 5000 ns/op \t 100 calls/s \t 50 p50-µs",
		"BenchmarkRemoteCalls/impl=protograin/callers=64-2 \t 100 \t 1000 ns/op \t 300 calls/s \t 10 p50-µs",
		"BenchmarkRemoteCalls/impl=protoactor/callers=64-2 \t 100 \t 5000 ns/op \t 200 calls/s \t 50 p50-µs",
		"BenchmarkRemoteCalls/impl=protograin/callers=64-2 \t 100 \t 1000 ns/op \t 200 calls/s \t 10 p50-µs",
		"BenchmarkRemoteCalls/impl=protoactor/callers=64-2 \t 100 \t 5000 ns/op \t 100 calls/s \t 50 p50-µs",
		"BenchmarkRemoteCalls/impl=protograin/callers=64-2 \t 100 \t 1000 ns/op \t 500 calls/s \t 10 p50-µs",
		"BenchmarkRemoteCalls/impl=protograin/callers=64-2 \t 100 \t 1000 ns/op \t 900 calls/s \t 10 p50-µs",
		"BenchmarkIdleMemory/grains=1000/impl=protoactor-2 \t 1 \t 9 ns/op \t 2000 B/grain \t 4 grains/s",
		"BenchmarkIdleMemory/grains=1000/impl=protograin-2 \t 1 \t 9 ns/op \t 400 B/grain \t 6 grains/s",
		"BenchmarkIdleMemory/grains=1000/impl=protoactor-2 \t 1 \t 9 ns/op \t 2000 B/grain \t 4 grains/s",
		"BenchmarkIdleMemory/grains=1000/impl=protograin-2 \t 1 \t 9 ns/op \t 400 B/grain \t 12 grains/s",
		"BenchmarkLoopbackFloor/transport=tcp/callers=1-2 \t 100 \t 30000 ns/op \t 33000 calls/s",
		"PASS",
	}, "\n") + "\n"
	file := filepath.Join(t.TempDir(), "raw.txt")
	if err := os.WriteFile(file, []byte(raw), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("awk", "-f", "paired.awk", file).CombinedOutput()
	if err != nil {
		t.Fatalf("awk -f paired.awk: %v\n%s", err, out)
	}
	// RemoteCalls pairs 300/100, 200/200 and 500/100: 3x, 1x and 5x, the
	// fourth protograin sample has no partner. IdleMemory pairs 6/4 and
	// 12/4; B/grain is not a rate. The floor has one peer: no line.
	want := []string{
		"benchmark unit pairs median lowest highest",
		"IdleMemory/grains=1000-2 grains/s 2 2.25x 1.50x 3.00x",
		"RemoteCalls/callers=64-2 calls/s 3 3.00x 1.00x 5.00x",
	}
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		got = append(got, strings.Join(strings.Fields(line), " "))
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("paired.awk printed\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
