package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/protograin/protograin/cluster/storage/pgstore/pgtest"
	"github.com/protograin/protograin/cluster/storage/redisstore/redistest"
	"github.com/protograin/protograin/internal/tlstest"
)

// processEnv makes the test binary run the example's main instead of the
// tests, so that each node of TestThreeProcesses is a real OS process running
// the code users run, built once with the test's flags (-race included).
const processEnv = "PROTOGRAIN_EXAMPLES_NODE_PROCESS"

func TestMain(m *testing.M) {
	if os.Getenv(processEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestThreeProcesses follows the README's three-terminal walk-through: nodes
// a and b host the counter, c joins and calls ten counters; then a is
// interrupted, leaves gracefully, and c's calls keep succeeding on b and c.
// With a shared PostgreSQL or Redis store the counters that moved keep
// their totals.
func TestThreeProcesses(t *testing.T) {
	t.Run("memory", func(t *testing.T) {
		threeProcesses(t, false)
	})
	t.Run("postgres", func(t *testing.T) {
		dsn := pgtest.DSN(t)
		threeProcesses(t, true, "-postgres", dsn, "-schema", pgtest.Schema(t, dsn))
	})
	t.Run("redis", func(t *testing.T) {
		threeProcesses(t, true, "-redis", redistest.Start(t, false).URL())
	})
	t.Run("secured", func(t *testing.T) {
		threeProcesses(t, false, newSecurityFlags(t).args()...)
	})
}

// securityFlags are the files of a secured cluster: a gossip key and a
// certificate for mutual TLS, which all the nodes share.
type securityFlags struct {
	ca                 *tlstest.CA
	cert, key, keyFile string
}

// testServerName is the name the nodes' certificate carries.
const testServerName = "nodes.counter.test"

func newSecurityFlags(t *testing.T) securityFlags {
	t.Helper()
	f := securityFlags{ca: tlstest.NewCA(t, "counter"), keyFile: filepath.Join(t.TempDir(), "gossip.key")}
	f.cert, f.key = f.ca.Issue(t, "node", testServerName)
	if err := os.WriteFile(f.keyFile, []byte(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// args returns the flags that give a node the files.
func (f securityFlags) args() []string {
	return []string{"-gossip-key-file", f.keyFile, "-tls-cert", f.cert, "-tls-key", f.key, "-tls-ca", f.ca.CertFile(), "-tls-server-name", testServerName}
}

// TestSecurityFlagsSecureTheNode: with the security flags, the node's
// transport is a TLS listener that presents its certificate, and a node
// without the gossip key does not join it.
func TestSecurityFlagsSecureTheNode(t *testing.T) {
	f := newSecurityFlags(t)
	a := startNode(t, append([]string{"-name", "a"}, f.args()...)...)
	m := a.waitFor(t, `^a: gossip on (\S+), gRPC on (\S+)$`)

	conn, err := tls.Dial("tcp", m[2], f.ca.ClientConfig(t, testServerName))
	if err != nil {
		t.Fatalf("a TLS dial of a's transport: %v", err)
	}
	_ = conn.Close()

	cmd := exec.Command(os.Args[0], "-name", "b", "-bind", "127.0.0.1:0", "-grpc", "127.0.0.1:0", "-cluster", t.Name(), "-join", m[1])
	cmd.Env = append(os.Environ(), processEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Config.GossipKeys") {
		t.Errorf("a node without the gossip key joined a: %v, output:\n%s\nwant it refused for the key", err, out)
	}
}

// TestSIGHUPChangesTheGossipKey: after a new key is written to the key
// file, a SIGHUP to one node gives every member the key: a node started
// with the new key joins through another member, and one with the old key
// no longer does. A file that holds no key, or the key in use, changes
// nothing, and the node runs on.
func TestSIGHUPChangesTheGossipKey(t *testing.T) {
	dir := t.TempDir()
	keyFile, oldFile := filepath.Join(dir, "gossip.key"), filepath.Join(dir, "old.key")
	writeKey := func(file string, b byte) {
		t.Helper()
		if err := os.WriteFile(file, []byte(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{b}, 32))+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeKey(keyFile, 1)
	writeKey(oldFile, 1)
	a := startNode(t, "-name", "a", "-gossip-key-file", keyFile)
	aGossip := a.waitFor(t, `^a: gossip on (\S+), gRPC`)[1]
	b := startNode(t, "-name", "b", "-gossip-key-file", keyFile, "-join", aGossip)
	bGossip := b.waitFor(t, `^b: gossip on (\S+), gRPC`)[1]

	a.hangup(t)
	a.waitFor(t, `^a: the gossip key stays: .* holds the key in use$`)
	if err := os.WriteFile(keyFile, []byte("not a key!"), 0o600); err != nil {
		t.Fatal(err)
	}
	a.hangup(t)
	a.waitFor(t, `^a: the gossip key stays: -gossip-key-file .*: not base64`)

	writeKey(keyFile, 2)
	a.hangup(t)
	a.waitFor(t, `^a: every member's gossip key is now the one in `)
	c := startNode(t, "-name", "c", "-gossip-key-file", keyFile, "-join", bGossip)
	c.waitFor(t, `^c: gossip on `)
	cmd := exec.Command(os.Args[0], "-name", "d", "-bind", "127.0.0.1:0", "-grpc", "127.0.0.1:0", "-cluster", t.Name(), "-gossip-key-file", oldFile, "-join", bGossip)
	cmd.Env = append(os.Environ(), processEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Config.GossipKeys") {
		t.Errorf("a node with the old key joined b: %v, output:\n%s\nwant it refused for the key", err, out)
	}
}

// TestBadSecurityFlagsAreRefused: a gossip key file that is missing, not
// base64 or not of a key's size, and TLS flags without the others, are
// told before the node starts.
func TestBadSecurityFlagsAreRefused(t *testing.T) {
	dir := t.TempDir()
	notBase64, short := filepath.Join(dir, "not-base64"), filepath.Join(dir, "short")
	if err := os.WriteFile(notBase64, []byte("not a key!"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(short, []byte(base64.StdEncoding.EncodeToString([]byte("too short"))), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-gossip-key-file", filepath.Join(dir, "missing")}, "-gossip-key-file: open " + filepath.Join(dir, "missing")},
		{[]string{"-gossip-key-file", notBase64}, "not base64"},
		{[]string{"-gossip-key-file", short}, "Config.GossipKeys[0] is 9 bytes"},
		{[]string{"-tls-cert", "node.pem"}, "-tls-cert, -tls-key and -tls-ca go together"},
	} {
		cmd := exec.Command(os.Args[0], append([]string{"-bind", "127.0.0.1:0", "-grpc", "127.0.0.1:0"}, tc.args...)...)
		cmd.Env = append(os.Environ(), processEnv+"=1")
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(out), tc.want) ||
			strings.Contains(string(out), "gossip on") {
			t.Errorf("%v: %v, output:\n%s\nwant exit status 1 with %q, before the node starts", tc.args, err, out, tc.want)
		}
	}
}

// TestTheHealthFlagServesTheProbes: with -health, the node serves /livez
// and /readyz on that address while it runs; an address it cannot listen
// on ends the process before the node starts.
func TestTheHealthFlagServesTheProbes(t *testing.T) {
	a := startNode(t, "-name", "a", "-health", "127.0.0.1:0")
	base := a.waitFor(t, `^a: probes on (http://\S+)/livez and /readyz$`)[1]
	for _, path := range []string{"/livez", "/readyz"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		body, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || string(body) != "ok\n" {
			t.Errorf("GET %s: %d %q (%v); want 200 \"ok\"", path, resp.StatusCode, body, err)
		}
	}
	a.interrupt(t)
	if err := a.wait(t); err != nil {
		t.Fatalf("a after the interrupt: %v\n%s", err, a.output())
	}

	cmd := exec.Command(os.Args[0], "-bind", "127.0.0.1:0", "-grpc", "127.0.0.1:0", "-health", "127.0.0.1:notaport")
	cmd.Env = append(os.Environ(), processEnv+"=1")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(out), "node: -health: listen tcp") ||
		strings.Contains(string(out), "gossip on") {
		t.Errorf("-health 127.0.0.1:notaport: %v, output:\n%s\nwant exit status 1 naming -health, before the node starts", err, out)
	}
}

// threeProcesses runs the walk-through with storeArgs given to every node.
// With durable, the counters that lived on a must answer from b or c with
// more than the totals they had.
func threeProcesses(t *testing.T, durable bool, storeArgs ...string) {
	a := startNode(t, append([]string{"-name", "a"}, storeArgs...)...)
	seed := a.waitFor(t, `^a: gossip on (\S+), gRPC on \S+$`)[1]
	b := startNode(t, append([]string{"-name", "b", "-join", seed}, storeArgs...)...)
	b.waitFor(t, `^b: gossip on`)
	identities := []string{"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy"}
	c := startNode(t, append([]string{"-name", "c", "-join", seed, "-call", strings.Join(identities, ","), "-every", "50ms"}, storeArgs...)...)

	// One round of calls after all three nodes host the counter: placement
	// is a function of the node names and identities, so which counters
	// live on a is the same in every run.
	for _, id := range identities {
		c.waitFor(t, counterLine(id, "abc"))
	}
	onA := make(map[string]int) // identity → its total as last seen on a
	for _, id := range identities {
		if m := c.waitFor(t, counterLine(id, "abc")); m[2] == "a" {
			onA[id], _ = strconv.Atoi(m[1])
		}
	}
	if len(onA) == 0 {
		t.Fatalf("no counter of %v lives on a, so a's leaving tests nothing; call other identities:\n%s", identities, c.output())
	}
	t.Logf("counters on a: %v", onA)

	a.interrupt(t)
	a.waitFor(t, `^a: leaving the cluster$`)
	if err := a.wait(t); err != nil {
		t.Fatalf("node a did not exit cleanly after an interrupt: %v\n%s", err, a.output())
	}
	// c prints its lines in order, so a line placing a counter that lived
	// on a on b or c shows it reactivated there.
	for id, before := range onA {
		m := c.waitFor(t, counterLine(id, "bc"))
		if total, _ := strconv.Atoi(m[1]); durable && total <= before {
			t.Errorf("%s moved from a to %s with total %d, want more than its %d on a: the state did not follow it", id, m[2], total, before)
		}
	}

	for _, n := range []*nodeProcess{b, c} {
		n.interrupt(t)
		if err := n.wait(t); err != nil {
			t.Errorf("node %s did not exit cleanly after an interrupt: %v\n%s", n.name, err, n.output())
		}
	}
}

// counterLine matches a line of c's calls for identity answered by one of
// nodes, capturing the total and the node.
func counterLine(identity, nodes string) string {
	return `^\s+` + identity + `\s+total (\d+)\s+on ([` + nodes + `])$`
}

// nodeProcess is one node of the example in its own process, with its
// standard output collected line by line.
type nodeProcess struct {
	name  string
	cmd   *exec.Cmd
	done  chan error // receives the result of cmd.Wait once
	lines chan string

	reaped bool // done has been received from; used by the test goroutine only

	mu  sync.Mutex
	out []string // every line read so far, for failure messages
}

// startNode starts the example with args on loopback ports the system picks.
// The process is killed when the test ends, if it is still running.
func startNode(t *testing.T, args ...string) *nodeProcess {
	t.Helper()
	args = append([]string{"-bind", "127.0.0.1:0", "-grpc", "127.0.0.1:0", "-cluster", t.Name()}, args...)
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), processEnv+"=1")
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start node: %v", err)
	}
	n := &nodeProcess{name: args[len(args)-1], cmd: cmd, done: make(chan error, 1), lines: make(chan string, 64)}
	for i, arg := range args {
		if arg == "-name" {
			n.name = args[i+1]
		}
	}
	go n.read(bufio.NewScanner(stdout))
	t.Cleanup(func() {
		if !n.reaped {
			_ = cmd.Process.Kill()
			for range n.lines {
			}
			<-n.done
		}
	})
	return n
}

// read collects the process's output lines until it closes its output, then
// reaps the process.
func (n *nodeProcess) read(sc *bufio.Scanner) {
	for sc.Scan() {
		line := sc.Text()
		n.mu.Lock()
		n.out = append(n.out, line)
		n.mu.Unlock()
		// Blocks while the test is not reading: the node then blocks on
		// its output, which only slows it down, and no line is lost.
		n.lines <- line
	}
	close(n.lines)
	n.done <- n.cmd.Wait()
}

// waitFor reads lines until one matches pattern, and returns its submatches.
// It fails the test after a deadline or when the process ends first.
func (n *nodeProcess) waitFor(t *testing.T, pattern string) []string {
	t.Helper()
	re := regexp.MustCompile(pattern)
	deadline := time.After(30 * time.Second)
	for {
		select {
		case line, ok := <-n.lines:
			if !ok {
				t.Fatalf("node %s ended before printing a line matching %q:\n%s", n.name, pattern, n.output())
			}
			if m := re.FindStringSubmatch(line); m != nil {
				return m
			}
		case <-deadline:
			t.Fatalf("node %s printed no line matching %q in 30s:\n%s", n.name, pattern, n.output())
		}
	}
}

// interrupt sends the process the signal Ctrl-C sends.
func (n *nodeProcess) interrupt(t *testing.T) {
	t.Helper()
	if err := n.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatalf("interrupt node %s: %v", n.name, err)
	}
}

// hangup sends the process SIGHUP.
func (n *nodeProcess) hangup(t *testing.T) {
	t.Helper()
	if err := n.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatalf("send node %s SIGHUP: %v", n.name, err)
	}
}

// wait waits for the process to exit and returns its exit error.
func (n *nodeProcess) wait(t *testing.T) error {
	t.Helper()
	for range n.lines { // drain, so the reader reaches Wait
	}
	select {
	case err := <-n.done:
		n.reaped = true
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("node %s did not exit within 30s:\n%s", n.name, n.output())
		return nil
	}
}

// output returns everything the process printed so far.
func (n *nodeProcess) output() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return strings.Join(n.out, "\n")
}

// TestANonPositivePeriodIsRefused: -every 0 or below is a usage error, told
// before the node starts (a ticker would panic on it once the node had
// joined, leaving the cluster without a graceful leave).
func TestANonPositivePeriodIsRefused(t *testing.T) {
	for _, every := range []string{"0", "-1s"} {
		cmd := exec.Command(os.Args[0], "-bind", "127.0.0.1:0", "-grpc", "127.0.0.1:0", "-call", "alice", "-every", every)
		cmd.Env = append(os.Environ(), processEnv+"=1")
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(out), "node: -every is") ||
			strings.Contains(string(out), "gossip on") {
			t.Errorf("-every %s: %v, output:\n%s\nwant exit status 1 with the flag named, before the node starts", every, err, out)
		}
	}
}

// TestTwoStoresAreRefused: -postgres and -redis together are a usage error,
// told before the node starts.
func TestTwoStoresAreRefused(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-bind", "127.0.0.1:0", "-grpc", "127.0.0.1:0",
		"-postgres", "postgres://nowhere/db", "-redis", "redis://nowhere:6379/0")
	cmd.Env = append(os.Environ(), processEnv+"=1")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(out), "-postgres and -redis name two stores") ||
		strings.Contains(string(out), "gossip on") {
		t.Errorf("-postgres with -redis: %v, output:\n%s\nwant exit status 1 saying so, before the node starts", err, out)
	}
}
