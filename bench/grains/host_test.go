package grains

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// hostEnv names the environment variable that turns this test binary into a
// host process: its value is the name of the peer to host.
const hostEnv = "GRAINS_BENCH_HOST"

// hostLinePrefix starts the line on which a host process reports its
// addresses; everything else on its stdout (the test framework's output) is
// ignored.
const hostLinePrefix = "grains-host "

// hostStartTimeout bounds the wait for a host process to report its
// addresses; protoactor-go alone spends a second in StartMember.
const hostStartTimeout = 60 * time.Second

// hostStopTimeout bounds the wait for a host process to stop after its stdin
// is closed; then it is killed.
const hostStopTimeout = 10 * time.Second

// hostProfileEnv names an optional environment variable: a directory where
// host processes write CPU, memory and mutex profiles
// (<peer>-host.{cpu,mem,mutex}.pprof), for profiling the grain side of the
// cross-node benchmarks.
const hostProfileEnv = "GRAINS_BENCH_HOST_PROFILES"

// errHostExited is returned when a host process ends before it reports its
// addresses.
var errHostExited = errors.New("grains: host process exited before reporting its addresses")

// hostInfo is what a host process reports: how to reach it.
type hostInfo struct {
	// Peer is the name of the peer the host runs.
	Peer string `json:"peer"`
	// GossipAddr is a protograin host's serf address, to join as a seed.
	GossipAddr string `json:"gossip_addr,omitempty"`
	// MemberID and Address are a protoactor-go host's cluster member ID and
	// remote address (host:port).
	MemberID string `json:"member_id,omitempty"`
	Address  string `json:"address,omitempty"`
	// TCPAddr and GRPCAddr are the echo servers of the floor host.
	TCPAddr  string `json:"tcp_addr,omitempty"`
	GRPCAddr string `json:"grpc_addr,omitempty"`
}

// formatHostLine renders info as the line a host process prints.
func formatHostLine(info hostInfo) (string, error) {
	b, err := json.Marshal(info)
	if err != nil {
		return "", fmt.Errorf("grains: encode host line: %w", err)
	}
	return hostLinePrefix + string(b), nil
}

// parseHostLine reads a line formatHostLine wrote. ok is false for any other
// line, which the caller skips.
func parseHostLine(line string) (info hostInfo, ok bool, err error) {
	rest, found := strings.CutPrefix(line, hostLinePrefix)
	if !found {
		return hostInfo{}, false, nil
	}
	if err := json.Unmarshal([]byte(rest), &info); err != nil {
		return hostInfo{}, true, fmt.Errorf("grains: host line %q: %w", line, err)
	}
	if info.Peer == "" {
		return hostInfo{}, true, fmt.Errorf("grains: host line %q names no peer", line)
	}
	return info, true, nil
}

// TestHostProcess is not a test: it is the second process of the cross-node
// benchmarks. startHost runs this binary again with only this test selected
// and hostEnv set; the process hosts the counter kind of that peer, prints
// its addresses on stdout, and serves until its stdin is closed (the parent
// ended) or it is killed. Without hostEnv it skips.
func TestHostProcess(t *testing.T) {
	name := os.Getenv(hostEnv)
	if name == "" {
		t.Skip("runs only as the host process of the cross-node benchmarks")
	}
	info, stop, err := startHosted(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	line, err := formatHostLine(info)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println(line)
	// Serve until the parent goes away: its end of our stdin closes then.
	_, _ = io.Copy(io.Discard, os.Stdin)
}

// startHosted starts what a host process named name serves: the echo
// servers of the floor, or a peer's node.
func startHosted(ctx context.Context, name string) (hostInfo, func(), error) {
	if name == floorHost {
		return startFloorHost()
	}
	p, err := peerByName(name)
	if err != nil {
		return hostInfo{}, nil, err
	}
	return p.host(ctx)
}

// startHost starts this test binary as a host process for the peer named
// name, waits until it reports its addresses, and kills it when tb ends.
func startHost(tb testing.TB, name string) hostInfo {
	tb.Helper()
	info, err := launchHost(tb, name)
	if err != nil {
		tb.Fatal(err)
	}
	return info
}

// launchHost is startHost returning its error; tests use it to check how a
// failed host is reported.
func launchHost(tb testing.TB, name string) (hostInfo, error) {
	args := []string{"-test.run=^TestHostProcess$", "-test.count=1"}
	if dir := os.Getenv(hostProfileEnv); dir != "" {
		args = append(args,
			"-test.cpuprofile="+filepath.Join(dir, name+"-host.cpu.pprof"),
			"-test.memprofile="+filepath.Join(dir, name+"-host.mem.pprof"),
			"-test.mutexprofile="+filepath.Join(dir, name+"-host.mutex.pprof"))
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), hostEnv+"="+name)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return hostInfo{}, fmt.Errorf("grains: host stdin: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return hostInfo{}, fmt.Errorf("grains: host stdout: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return hostInfo{}, fmt.Errorf("grains: start host process: %w", err)
	}
	exited := make(chan struct{})
	tb.Cleanup(func() {
		// Closing stdin asks the host to stop, so that it writes its
		// profiles; a host that does not stop in time is killed.
		_ = stdin.Close()
		timer := time.NewTimer(hostStopTimeout)
		defer timer.Stop()
		select {
		case <-exited:
		case <-timer.C:
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	go func() {
		_ = cmd.Wait() // its status says nothing the benchmark needs
		close(exited)
	}()
	return readHostInfo(stdout, hostStartTimeout)
}

// readHostInfo scans a host's stdout for its host line, then keeps draining
// the output so the host never blocks on a full pipe.
func readHostInfo(stdout io.Reader, timeout time.Duration) (hostInfo, error) {
	type result struct {
		info hostInfo
		err  error
	}
	found := make(chan result, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		reported := false
		for sc.Scan() {
			if reported {
				continue
			}
			info, ok, err := parseHostLine(sc.Text())
			if ok || err != nil {
				reported = true
				found <- result{info, err}
			}
		}
		if !reported {
			found <- result{err: errHostExited}
		}
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case r := <-found:
		return r.info, r.err
	case <-timer.C:
		return hostInfo{}, fmt.Errorf("grains: host process did not report its addresses within %v", timeout)
	}
}
