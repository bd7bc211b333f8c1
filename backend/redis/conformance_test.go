package redis_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/alicebob/miniredis/v2"
	goredis "github.com/redis/go-redis/v9"

	"github.com/jobrelay/engine/backend"
	"github.com/jobrelay/engine/backend/backendtest"
	"github.com/jobrelay/engine/backend/redis"
	"github.com/jobrelay/engine/internal/redistest"
)

// prefixes gives every backend of a shared server keys of its own.
var prefixes atomic.Int64

func nextPrefix() string { return fmt.Sprintf("t%d", prefixes.Add(1)) }

// open returns a backend on client that closes the client with it.
func open(t *testing.T, client goredis.UniversalClient, prefix string) *redis.Backend {
	t.Helper()
	b, err := redis.New(context.Background(), client, redis.Options{Prefix: prefix, CloseClient: true})
	if err != nil {
		t.Fatalf("redis.New: %v", err)
	}
	return b
}

// harness makes backends on fresh clients of one store; newClient makes a
// client of it.
func harness(newClient func() goredis.UniversalClient) backendtest.Harness {
	return backendtest.Harness{
		New: func(t *testing.T) backend.Backend { return open(t, newClient(), nextPrefix()) },
		NewPair: func(t *testing.T) (backend.Backend, backend.Backend) {
			p := nextPrefix()
			return open(t, newClient(), p), open(t, newClient(), p)
		},
	}
}

func TestConformanceMiniredis(t *testing.T) {
	m := miniredis.RunT(t)
	backendtest.Run(t, harness(func() goredis.UniversalClient {
		return goredis.NewClient(&goredis.Options{Addr: m.Addr()})
	}))
}

func TestConformanceRedis(t *testing.T) {
	s := redistest.Start(t, redistest.Options{})
	backendtest.Run(t, harness(func() goredis.UniversalClient { return goredis.NewClient(s.Options()) }))
}

func TestConformanceCluster(t *testing.T) {
	c := redistest.StartCluster(t)
	h := harness(func() goredis.UniversalClient { return goredis.NewClusterClient(c.Options()) })
	// On a Cluster the backend refuses limits rather than enforce them
	// slot by slot.
	h.LimitsUnsupported = redis.ErrLimitsNeedOneNode
	backendtest.Run(t, h)
}
