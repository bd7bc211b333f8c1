package redistest

import (
	"context"
	"fmt"
	"net"
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

// ClusterSize is the number of master nodes StartCluster starts.
const ClusterSize = 3

// Cluster is a Redis Cluster of ClusterSize masters (no replicas) on
// loopback ports, owned by a test.
type Cluster struct {
	t     testing.TB
	nodes []*clusterNode

	mu      sync.Mutex
	clients []*goredis.ClusterClient
}

type clusterNode struct {
	dir    string
	port   int
	cmd    *exec.Cmd
	exited chan struct{}
}

// StartCluster starts ClusterSize redis-server nodes with cluster mode on,
// joins them with redis-cli --cluster create, waits until every node reports
// the cluster ok, and stops them when the test ends.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	bin := need(t, "redis-cli")
	c := &Cluster{t: t}
	t.Cleanup(c.stop)
	root := t.TempDir()
	for i := range ClusterSize {
		n := &clusterNode{dir: filepath.Join(root, "node"+strconv.Itoa(i))}
		if err := c.startNode(bin, n); err != nil {
			t.Fatalf("redistest: start cluster node %d: %v", i, err)
		}
		c.nodes = append(c.nodes, n)
	}

	args := []string{"--cluster", "create"}
	args = append(args, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}
	if err := c.waitOK(); err != nil {
		t.Fatalf("redistest: %v", err)
	}
	return c
}

// startNode starts one node on a free port, with its cluster bus on a second
// free port (cluster-port), so that no port is fixed or derived.
func (c *Cluster) startNode(bin string, n *clusterNode) error {
	if err := mkdir(n.dir); err != nil {
		return err
	}
	var err error
	for range 5 {
		var bus int
		if n.port, err = freePort(); err != nil {
			return err
		}
		if bus, err = freePort(); err != nil {
			return err
		}
		if bus == n.port {
			continue
		}
		args := []string{"--port", strconv.Itoa(n.port), "--cluster-port", strconv.Itoa(bus),
			"--bind", "127.0.0.1", "--protected-mode", "no", "--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000",
			"--save", "", "--appendonly", "no", "--dir", n.dir, "--logfile", "redis.log"}
		n.cmd, n.exited, err = startProcess(bin, n.dir, args)
		if err != nil {
			return err
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(n.port))
		if err = waitReady(addr, n.exited); err == nil {
			return nil
		}
		_ = n.cmd.Process.Signal(syscall.SIGKILL)
		<-n.exited
		n.cmd = nil
		err = fmt.Errorf("%w (log: %s)", err, tail(filepath.Join(n.dir, "redis.log")))
	}
	return err
}

// waitOK waits until every node says cluster_state:ok and knows all nodes,
// so that the first command of a test is not bounced around.
func (c *Cluster) waitOK() error {
	deadline := time.Now().Add(StartTimeout)
	for _, addr := range c.Addrs() {
		cl := goredis.NewClient(&goredis.Options{Addr: addr, MaxRetries: -1, PoolSize: 1})
		var info string
		var err error
		for time.Now().Before(deadline) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			info, err = cl.ClusterInfo(ctx).Result()
			cancel()
			if err == nil && strings.Contains(info, "cluster_state:ok") &&
				strings.Contains(info, "cluster_known_nodes:"+strconv.Itoa(ClusterSize)) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		_ = cl.Close()
		if err != nil || !strings.Contains(info, "cluster_state:ok") {
			return fmt.Errorf("cluster node %s not ok after %v: %v %s", addr, StartTimeout, err, info)
		}
	}
	return nil
}

// Addrs returns the host:port of every node.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = net.JoinHostPort("127.0.0.1", strconv.Itoa(n.port))
	}
	return out
}

// Options returns cluster client options for the nodes.
func (c *Cluster) Options() *goredis.ClusterOptions {
	return &goredis.ClusterOptions{Addrs: c.Addrs()}
}

// Client returns a new cluster client, closed when the test ends.
func (c *Cluster) Client() *goredis.ClusterClient {
	cl := goredis.NewClusterClient(c.Options())
	c.mu.Lock()
	c.clients = append(c.clients, cl)
	c.mu.Unlock()
	return cl
}

func (c *Cluster) stop() {
	c.mu.Lock()
	clients := c.clients
	c.clients = nil
	c.mu.Unlock()
	for _, cl := range clients {
		_ = cl.Close()
	}
	for _, n := range c.nodes {
		if n.cmd != nil {
			_ = n.cmd.Process.Signal(syscall.SIGKILL)
			<-n.exited
		}
	}
}
