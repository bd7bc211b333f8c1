package engine

import (
	"testing"

	"github.com/jobrelay/engine/backend"
	"github.com/jobrelay/engine/backend/memory"
)

// testBackend makes a fresh backend for one test; the test's cleanup closes
// it.
type testBackend struct {
	name string
	new  func(t *testing.T) backend.Backend
}

// testBackends lists every backend the engine tests run on.
func testBackends() []testBackend {
	return []testBackend{
		{name: "memory", new: func(t *testing.T) backend.Backend {
			b := memory.New(memory.Options{})
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
