// Package redistest starts Redis servers for tests: each test gets a server
// of its own, a redis-server process on a Unix socket, stopped when the
// test ends. Without a redis-server binary the tests that need one skip,
// saying how to install it, unless ServerEnv names one (as CI does), which
// makes its absence a failure.
//
// It is for tests only and must not import the cluster or runtime packages.
package redistest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/protograin/protograin/cluster/storage/redisstore"
)

// ServerEnv is the environment variable that holds the path of the
// redis-server binary. When it is empty, the tests look for redis-server
// on PATH, and skip if there is none.
const ServerEnv = "PROTOGRAIN_REDIS_SERVER"

// startTimeout bounds a server's start.
const startTimeout = 10 * time.Second

// Server is a redis-server process of one test.
type Server struct {
	t    testing.TB
	bin  string
	dir  string   // the socket's and the append-only file's directory
	args []string // the arguments besides those every server gets
	cmd  *exec.Cmd
	done chan struct{} // closed once cmd was waited for
}

// Start starts a server for t, listening on a Unix socket only, which t
// stops when it ends. With durable, the server keeps an append-only file
// synced on every write, so that a server restarted by Restart finds what
// was committed before it was killed; without, it keeps nothing on disk.
func Start(t testing.TB, durable bool) *Server {
	t.Helper()
	if durable {
		return start(t, "--port", "0", "--appendonly", "yes", "--appendfsync", "always")
	}
	return start(t, "--port", "0", "--appendonly", "no")
}

// start starts a server for t with args besides those every server gets.
func start(t testing.TB, args ...string) *Server {
	t.Helper()
	bin := os.Getenv(ServerEnv)
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("redis-server"); err != nil {
			t.Skipf("no redis-server on PATH: install it (Debian: apt-get install redis-server) or set %s to its path", ServerEnv)
		}
	}
	// A short directory of its own: a Unix socket's path is limited to
	// about a hundred bytes, which t.TempDir's can pass.
	dir, err := os.MkdirTemp("", "redistest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := &Server{t: t, bin: bin, dir: dir, args: args}
	s.run()
	t.Cleanup(s.Kill)
	return s
}

// URL returns the server's URL, for redisstore.Config.URL.
func (s *Server) URL() string { return "unix://" + s.socket() }

func (s *Server) socket() string { return filepath.Join(s.dir, "redis.sock") }

// run runs the server and waits until it says it accepts connections.
func (s *Server) run() {
	s.t.Helper()
	args := append([]string{"--unixsocket", s.socket(), "--unixsocketperm", "700",
		"--dir", s.dir, "--save", "", "--daemonize", "no", "--loglevel", "notice"}, s.args...)
	cmd := exec.Command(s.bin, args...)
	dieWithTest(cmd)
	out, err := cmd.StdoutPipe()
	if err != nil {
		s.t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("redistest: start %s: %v", s.bin, err)
	}
	s.cmd, s.done = cmd, make(chan struct{})
	ready := make(chan error, 1)
	go func() {
		ready <- waitReady(out)
		io.Copy(io.Discard, out) // the pipe must not fill up
		cmd.Wait()
		close(s.done)
	}()
	select {
	case err := <-ready:
		if err != nil {
			s.Kill()
			s.t.Fatalf("redistest: %s: %v", s.bin, err)
		}
	case <-time.After(startTimeout):
		s.Kill()
		s.t.Fatalf("redistest: %s did not accept connections within %v", s.bin, startTimeout)
	}
}

// waitReady reads the server's log until it says it accepts connections,
// and returns an error with the log if it ends before.
func waitReady(out io.Reader) error {
	var log strings.Builder
	lines := bufio.NewScanner(out)
	for lines.Scan() {
		log.WriteString(lines.Text() + "\n")
		// "Ready to accept connections tcp", or, with no TCP port in
		// Redis 7.0, "The server is now ready to accept connections at".
		if strings.Contains(strings.ToLower(lines.Text()), "ready to accept connections") {
			return nil
		}
	}
	return fmt.Errorf("exited before it accepted connections:\n%s", log.String())
}

// Kill kills the server with SIGKILL, as a crash would, and waits for it
// to exit. It is idempotent.
func (s *Server) Kill() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

// Restart kills the server and starts it again on the same socket and
// directory, with the same arguments.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	os.Remove(s.socket()) // a killed server leaves its socket behind
	s.run()
}

// Open opens a store on a server of t's own (see Start), not durable, and
// closes it when t ends.
func Open(t testing.TB) *redisstore.Store {
	t.Helper()
	return OpenOn(t, Start(t, false))
}

// OpenOn opens a store on s, and closes it when t ends.
func OpenOn(t testing.TB, s *Server) *redisstore.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	store, err := redisstore.Open(ctx, redisstore.Config{URL: s.URL()})
	if err != nil {
		t.Fatalf("redistest: open: %v", err)
	}
	t.Cleanup(func() { store.Close() })
	return store
}

// Cluster is a Redis Cluster of servers of one test, each with a share of
// the hash slots and no replicas.
type Cluster struct {
	// Addrs are the servers' addresses, for redis.ClusterOptions.Addrs.
	Addrs []string
}

// StartCluster starts a Redis Cluster of size servers for t, which stops
// them when it ends; it needs Redis 7.0 or newer (CLUSTER ADDSLOTSRANGE,
// and MEET with a bus port). Redis Cluster needs TCP: each server listens on
// loopback ports that were free a moment before it started (a server
// whose port another process took meanwhile fails the test, saying so).
func StartCluster(t testing.TB, size int) *Cluster {
	t.Helper()
	c := &Cluster{}
	var buses []string // each server's cluster bus port
	for range size {
		port, bus := freePort(t), freePort(t)
		start(t, "--port", port, "--cluster-enabled", "yes", "--cluster-port", bus,
			"--cluster-config-file", "nodes.conf", "--bind", "127.0.0.1", "--appendonly", "no")
		c.Addrs = append(c.Addrs, net.JoinHostPort("127.0.0.1", port))
		buses = append(buses, bus)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	const slots = 16384
	clients := make([]*redis.Client, size)
	for i, addr := range c.Addrs {
		clients[i] = redis.NewClient(&redis.Options{Addr: addr})
		defer clients[i].Close()
		first, last := i*slots/size, (i+1)*slots/size-1
		if err := clients[i].Do(ctx, "CLUSTER", "ADDSLOTSRANGE", first, last).Err(); err != nil {
			t.Fatalf("redistest: assign slots %d-%d to %s: %v", first, last, addr, err)
		}
		if i > 0 {
			// The bus port too: it is not the default, port + 10000.
			host, port, _ := net.SplitHostPort(c.Addrs[0])
			if err := clients[i].Do(ctx, "CLUSTER", "MEET", host, port, buses[0]).Err(); err != nil {
				t.Fatalf("redistest: %s meets %s: %v", addr, c.Addrs[0], err)
			}
		}
	}
	for i, client := range clients {
		for {
			info, err := client.ClusterInfo(ctx).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") &&
				strings.Contains(info, fmt.Sprintf("cluster_known_nodes:%d", size)) {
				break
			}
			select {
			case <-ctx.Done():
				nodes, _ := client.ClusterNodes(context.Background()).Result()
				t.Fatalf("redistest: the cluster's server %s was not ready within %v: %v\n%s\n%s", c.Addrs[i], startTimeout, err, info, nodes)
			case <-time.After(10 * time.Millisecond): // polling CLUSTER INFO: the servers tell no one
			}
		}
	}
	return c
}

// freePort returns a loopback TCP port that was free when it looked.
func freePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}
