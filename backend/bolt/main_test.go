package bolt

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/jobrelay/engine/backend"
)

func TestMain(m *testing.M) {
	if os.Getenv(crashChildEnv) != "" {
		os.Exit(crashChild())
	}
	goleak.VerifyTestMain(m)
}

// t0 is the fake clock's start: every test passes time explicitly, as the
// engine does.
var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// open opens a fresh database in a temporary folder and closes it when the
// test ends. Tests skip fsync unless they are about durability.
func open(t testing.TB) *Backend {
	t.Helper()
	return openAt(t, filepath.Join(t.TempDir(), "jobs.db"), Options{NoSync: true})
}

func openAt(t testing.TB, path string, opts Options) *Backend {
	t.Helper()
	b, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func newJob(id string) backend.NewJob {
	return backend.NewJob{ID: id, Type: "ping", Queue: "default", Payload: []byte(`{}`),
		MaxRetries: 3, MaxStalls: 3, ResultTTL: time.Hour, FailureTTL: time.Hour}
}

func enqueue(t testing.TB, b *Backend, now time.Time, jobs ...backend.NewJob) []backend.EnqueueResult {
	t.Helper()
	res, err := b.Enqueue(context.Background(), now, jobs)
	if err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	return res
}

func lease(t testing.TB, b *Backend, now time.Time, max int, queues ...string) []*backend.Lease {
	t.Helper()
	if len(queues) == 0 {
		queues = []string{"default"}
	}
	ls, err := b.Lease(context.Background(), backend.LeaseRequest{Queues: queues, Worker: "w1", Max: max, Now: now, TTL: 30 * time.Second})
	if err != nil {
		t.Fatalf("Lease: %v", err)
	}
	return ls
}

func finish(t testing.TB, b *Backend, now time.Time, acks ...backend.Ack) []error {
	t.Helper()
	errs, err := b.Finish(context.Background(), now, acks)
	if err != nil {
		t.Fatalf("Finish: %v", err)
	}
	return errs
}

func job(t testing.TB, b *Backend, id string) *backend.Job {
	t.Helper()
	j, err := b.Job(context.Background(), id)
	if err != nil {
		t.Fatalf("Job(%s): %v", id, err)
	}
	return j
}

func wantState(t testing.TB, b *Backend, id string, want backend.State) *backend.Job {
	t.Helper()
	j := job(t, b, id)
	if j.State != want {
		t.Fatalf("job %s: got state %q, want %q", id, j.State, want)
	}
	return j
}
