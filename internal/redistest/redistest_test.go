package redistest_test

import (
	"context"
	"sync"
	"testing"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/jobrelay/engine/internal/redistest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestKillAndRestartKeepsAcknowledgedWrites(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := redistest.Start(t, redistest.Options{AppendOnly: true})
	c := s.Client()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("set before kill: %v", err)
	}
	s.Kill()
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("got PING answered after Kill, want an error")
	}
	s.Restart()
	got, err := c.Get(ctx, "k").Result()
	if err != nil || got != "v" {
		t.Fatalf("got %q, %v after restart, want \"v\"", got, err)
	}
}

func TestServersGetTheirOwnPorts(t *testing.T) {
	t.Parallel()
	a := redistest.Start(t, redistest.Options{})
	b := redistest.Start(t, redistest.Options{})
	if a.Addr() == b.Addr() {
		t.Fatalf("got both servers on %s, want different ports", a.Addr())
	}
}

func TestClusterServesEverySlot(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cl := redistest.StartCluster(t)
	if n := len(cl.Addrs()); n != redistest.ClusterSize {
		t.Fatalf("got %d nodes, want %d", n, redistest.ClusterSize)
	}
	c := cl.Client()
	for _, k := range []string{"{a}", "{b}", "{c}", "{d}", "{e}"} {
		if err := c.Set(ctx, k, "v", 0).Err(); err != nil {
			t.Fatalf("set %s: %v", k, err)
		}
	}
	var mu sync.Mutex
	masters := 0
	err := c.ForEachMaster(ctx, func(ctx context.Context, m *goredis.Client) error {
		mu.Lock()
		masters++
		mu.Unlock()
		return m.Ping(ctx).Err()
	})
	if err != nil || masters != redistest.ClusterSize {
		t.Fatalf("got %d masters answering (err %v), want %d", masters, err, redistest.ClusterSize)
	}
}
