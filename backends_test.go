package engine

import (
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/jobrelay/engine/backend"
	"github.com/jobrelay/engine/backend/bolt"
	"github.com/jobrelay/engine/backend/memory"
	redisbackend "github.com/jobrelay/engine/backend/redis"
	"github.com/jobrelay/engine/internal/redistest"
)

// testBackend makes a fresh backend for one test; the test's cleanup closes
// it.
type testBackend struct {
	name string
	new  func(t *testing.T) backend.Backend
}

var redisPrefixes atomic.Int64

// testBackends lists every backend the engine tests run on.
func testBackends() []testBackend {
	return []testBackend{
		{name: "memory", new: func(t *testing.T) backend.Backend {
			b := memory.New(memory.Options{})
			t.Cleanup(func() { b.Close() })
			return b
		}},
		{name: "bolt", new: func(t *testing.T) backend.Backend {
			b, err := bolt.Open(filepath.Join(t.TempDir(), "jobs.db"), bolt.Options{})
			if err != nil {
				t.Fatalf("bolt.Open: %v", err)
			}
			t.Cleanup(func() { b.Close() })
			return b
		}},
		{name: "redis", new: func(t *testing.T) backend.Backend {
			srv := redistest.Start(t, redistest.Options{})
			prefix := fmt.Sprintf("engine-test-%d", redisPrefixes.Add(1))
			b, err := redisbackend.New(t.Context(), srv.Client(), redisbackend.Options{Prefix: prefix})
			if err != nil {
				t.Fatalf("redis.New: %v", err)
			}
			t.Cleanup(func() { b.Close() })
			return b
		}},
	}
}

// forEachBackend runs test once per backend as a parallel subtest.
func forEachBackend(t *testing.T, test func(t *testing.T, b backend.Backend)) {
	t.Helper()
	for _, tb := range testBackends() {
		t.Run(tb.name, func(t *testing.T) {
			t.Parallel()
			test(t, tb.new(t))
		})
	}
}
