package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// redisServer is a redis-server this program started for its own use, on a
// free loopback port, with its files in a temporary folder.
type redisServer struct {
	Addr string
	cmd  *exec.Cmd
	dir  string
	done chan error
}

// startRedis starts the redis-server binary at bin without persistence and
// waits until it answers PING.
func startRedis(ctx context.Context, bin string) (*redisServer, error) {
	if bin == "" {
		bin = "redis-server"
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	dir, err := os.MkdirTemp("", "jobrelay-bench-redis-")
	if err != nil {
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	s := &redisServer{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir, done: make(chan error, 1)}
	s.cmd = exec.Command(path,
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir,
		"--daemonize", "no", "--loglevel", "warning",
		"--logfile", filepath.Join(dir, "redis.log"))
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := s.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	rdb := goredis.NewClient(&goredis.Options{Addr: s.Addr})
	defer rdb.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := rdb.Ping(ctx).Err()
		if err == nil {
			return s, nil
		}
		select {
		case werr := <-s.done:
			os.RemoveAll(dir)
			return nil, fmt.Errorf("start redis-server: exited before answering: %v", werr)
		default:
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			s.Stop()
			return nil, fmt.Errorf("start redis-server on %s: no answer: %w", s.Addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop ends the server (SIGTERM, then SIGKILL after 5 s) and removes its
// folder.
func (s *redisServer) Stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	os.RemoveAll(s.dir)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// redisAdmin is the benchmark's own connection to the shared redis-server:
// it flushes the database between runs and reads INFO.
type redisAdmin struct {
	rdb *goredis.Client
}

func newRedisAdmin(ctx context.Context, addr string, db int) (*redisAdmin, error) {
	rdb := goredis.NewClient(&goredis.Options{Addr: addr, DB: db, PoolSize: 2})
	if err := rdb.Ping(ctx).Err(); err != nil {
		rdb.Close()
		return nil, fmt.Errorf("redis at %s: %w", addr, err)
	}
	return &redisAdmin{rdb: rdb}, nil
}

func (a *redisAdmin) Close() error { return a.rdb.Close() }

func (a *redisAdmin) flush(ctx context.Context) error {
	if err := a.rdb.FlushDB(ctx).Err(); err != nil {
		return fmt.Errorf("redis FLUSHDB: %w", err)
	}
	return nil
}

// info reads one INFO section as name → value.
func (a *redisAdmin) info(ctx context.Context, section string) (map[string]string, error) {
	s, err := a.rdb.Info(ctx, section).Result()
	if err != nil {
		return nil, fmt.Errorf("redis INFO %s: %w", section, err)
	}
	out := make(map[string]string)
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if ok {
			out[k] = v
		}
	}
	return out, nil
}

// usedMemory is INFO memory's used_memory: what the allocator holds for the
// dataset and the server's own structures.
func (a *redisAdmin) usedMemory(ctx context.Context) (int64, error) {
	m, err := a.info(ctx, "memory")
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(m["used_memory"], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("redis used_memory %q: %w", m["used_memory"], err)
	}
	return n, nil
}

// version is the server's redis_version.
func (a *redisAdmin) version(ctx context.Context) string {
	m, err := a.info(ctx, "server")
	if err != nil {
		return "unknown"
	}
	return m["redis_version"]
}

// serverLoad is what redis-server spent: CPU seconds and calls per command.
type serverLoad struct {
	cpu   float64
	calls map[string]int64
	usec  map[string]int64
}

func (a *redisAdmin) load(ctx context.Context) (serverLoad, error) {
	var l serverLoad
	cpu, err := a.info(ctx, "cpu")
	if err != nil {
		return l, err
	}
	for _, k := range []string{"used_cpu_sys", "used_cpu_user"} {
		v, _ := strconv.ParseFloat(cpu[k], 64)
		l.cpu += v
	}
	cs, err := a.info(ctx, "commandstats")
	if err != nil {
		return l, err
	}
	l.calls, l.usec = make(map[string]int64), make(map[string]int64)
	for k, v := range cs {
		name, ok := strings.CutPrefix(k, "cmdstat_")
		if !ok {
			continue
		}
		for _, f := range strings.Split(v, ",") {
			fk, fv, _ := strings.Cut(f, "=")
			n, _ := strconv.ParseInt(fv, 10, 64)
			switch fk {
			case "calls":
				l.calls[name] = n
			case "usec":
				l.usec[name] = n
			}
		}
	}
	return l, nil
}

// since is what the server spent between before and l.
func (l serverLoad) since(before serverLoad) serverLoad {
	d := serverLoad{cpu: l.cpu - before.cpu, calls: make(map[string]int64), usec: make(map[string]int64)}
	for k, v := range l.calls {
		if n := v - before.calls[k]; n > 0 {
			d.calls[k] = n
			d.usec[k] = l.usec[k] - before.usec[k]
		}
	}
	return d
}
