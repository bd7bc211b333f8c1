// Package redistest starts real Redis servers for tests: a single
// redis-server on a free loopback port in a temporary directory, or a
// three-node Redis Cluster. Servers stop when the test ends; a single server
// can be killed with SIGKILL and restarted on the same port and directory, so
// that a test can check what survives a crash.
//
// When redis-server is not installed the helpers skip the test, unless the
// environment sets JOBRELAY_REQUIRE_REDIS=1 (as CI does): then they fail it.
package redistest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// RequireEnv names the environment variable that turns a missing
// redis-server from a skipped test into a failed one.
const RequireEnv = "JOBRELAY_REQUIRE_REDIS"

// StartTimeout bounds how long a server (or a restart loading its append-only
// file, or a cluster agreeing on its slots) may take to accept commands.
const StartTimeout = 20 * time.Second

// Options configures a single server.
type Options struct {
	// AppendOnly turns on the append-only file with appendfsync always, so
	// that every write acknowledged before a SIGKILL is there after Restart.
	AppendOnly bool
	// Args are more redis-server options, as on its command line
	// ("--maxmemory", "10mb").
	Args []string
}

// Server is one redis-server process owned by a test.
type Server struct {
	t    testing.TB
	bin  string
	dir  string
	port int
	args []string

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	clients []*goredis.Client
}

// Binary returns the path of redis-server, or "" when it is not installed.
func Binary() string {
	p, err := exec.LookPath("redis-server")
	if err != nil {
		return ""
	}
	return p
}

// need returns the redis-server binary, or skips (or fails, under
// JOBRELAY_REQUIRE_REDIS=1) the test when it is missing.
func need(t testing.TB, tools ...string) string {
	t.Helper()
	bin := Binary()
	missing := ""
	if bin == "" {
		missing = "redis-server"
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil && missing == "" {
			missing = tool
		}
	}
	if missing != "" {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("%s is not installed, and %s=1 requires it", missing, RequireEnv)
		}
		t.Skipf("%s is not installed; set %s=1 to fail instead of skipping", missing, RequireEnv)
	}
	return bin
}

// Start starts a redis-server on a free loopback port in a new temporary
// directory and stops it when the test ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	bin := need(t)
	s := &Server{t: t, bin: bin, dir: t.TempDir()}
	s.args = []string{"--bind", "127.0.0.1", "--protected-mode", "no", "--save", "",
		"--dir", s.dir, "--logfile", "redis.log", "--daemonize", "no"}
	if opts.AppendOnly {
		s.args = append(s.args, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		s.args = append(s.args, "--appendonly", "no")
	}
	s.args = append(s.args, opts.Args...)
	t.Cleanup(s.stop)

	// A free port may be taken between choosing it and binding it; try
	// another a few times.
	var err error
	for range 5 {
		if s.port, err = freePort(); err != nil {
			break
		}
		if err = s.launch(); err == nil {
			return s
		}
	}
	t.Fatalf("redistest: start redis-server: %v", err)
	return nil
}

// Addr returns the server's host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Dir returns the server's working directory (its append-only file and log).
func (s *Server) Dir() string { return s.dir }

// Options returns client options for the server, for tests that build their
// own client.
func (s *Server) Options() *goredis.Options {
	return &goredis.Options{Addr: s.Addr(), DialTimeout: time.Second, MaxRetries: -1}
}

// Client returns a new client for the server, closed when the test ends.
func (s *Server) Client() *goredis.Client {
	c := goredis.NewClient(&goredis.Options{Addr: s.Addr()})
	s.mu.Lock()
	s.clients = append(s.clients, c)
	s.mu.Unlock()
	return c
}

// Kill sends SIGKILL to the server and waits until it is gone: what it had
// not written to disk is lost, as in a crash.
func (s *Server) Kill() {
	s.t.Helper()
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

// Restart starts the server again on the same port and directory, after Kill,
// and waits until it has loaded its data and accepts commands.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	var err error
	for range 20 {
		if err = s.launch(); err == nil {
			return
		}
		// The port may still be in TIME_WAIT for the listener; try again.
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("redistest: restart redis-server on port %d: %v", s.port, err)
}

func (s *Server) stop() {
	s.Kill()
	s.mu.Lock()
	clients := s.clients
	s.clients = nil
	s.mu.Unlock()
	for _, c := range clients {
		_ = c.Close()
	}
}

// launch starts the process on s.port and waits until it answers PING.
func (s *Server) launch() error {
	args := append([]string{"--port", strconv.Itoa(s.port)}, s.args...)
	cmd, exited, err := startProcess(s.bin, s.dir, args)
	if err != nil {
		return err
	}
	if err := waitReady(s.Addr(), exited); err != nil {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-exited
		return fmt.Errorf("%w (log: %s)", err, tail(filepath.Join(s.dir, "redis.log")))
	}
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	return nil
}

// startProcess runs redis-server; exited is closed once it has been waited
// for. The server dies with the test process (Pdeathsig), so that a test
// binary killed by a timeout leaves no server behind.
func startProcess(bin, dir string, args []string) (*exec.Cmd, chan struct{}, error) {
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	return cmd, exited, nil
}

// waitReady polls the server with PING until it answers (a restarted server
// answers LOADING while it reads its append-only file), the process exits, or
// StartTimeout passes.
func waitReady(addr string, exited <-chan struct{}) error {
	c := goredis.NewClient(&goredis.Options{Addr: addr, DialTimeout: 200 * time.Millisecond,
		MaxRetries: -1, PoolSize: 1})
	defer c.Close()
	deadline := time.Now().Add(StartTimeout)
	var err error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("redis-server exited during start")
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err = c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("redis-server on %s not ready after %v: %v", addr, StartTimeout, err)
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// tail returns the last lines of a log file, for error messages.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "no log"
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return strings.Join(lines, " | ")
}

func mkdir(dir string) error { return os.MkdirAll(dir, 0o755) }
