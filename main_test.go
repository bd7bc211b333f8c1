package engine

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// The multi-process tests re-execute this binary as a worker process.
	if os.Getenv(workerProcessEnv) != "" {
		os.Exit(runWorkerProcess())
	}
	goleak.VerifyTestMain(m)
}
