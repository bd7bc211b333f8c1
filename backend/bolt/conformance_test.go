package bolt

import (
	"path/filepath"
	"testing"

	"github.com/jobrelay/engine/backend"
	"github.com/jobrelay/engine/backend/backendtest"
)

func TestConformance(t *testing.T) {
	backendtest.Run(t, backendtest.Harness{
		New: func(t *testing.T) backend.Backend {
			b, err := Open(filepath.Join(t.TempDir(), "jobs.db"), Options{NoSync: true})
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			return b
		},
	})
}

// TestConformanceSynced runs the suite once more with fsync on, the default
// that applications get.
func TestConformanceSynced(t *testing.T) {
	if testing.Short() {
		t.Skip("the suite with fsync on is slow")
	}
	backendtest.Run(t, backendtest.Harness{
		New: func(t *testing.T) backend.Backend {
			b, err := Open(filepath.Join(t.TempDir(), "jobs.db"), Options{})
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			return b
		},
	})
}
