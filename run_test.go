package engine

import (
	"context"
	"testing"
	"time"

	"github.com/jobrelay/engine/backend/memory"
)

// Drain ends a job at its timeout, with a timer of its own since it runs
// without a pool, and leaves no timer or goroutine behind.
func TestDrainEndsJobAtItsTimeout(t *testing.T) {
	b := memory.New(memory.Options{})
	t.Cleanup(func() { b.Close() })
	e := newEngine(t, b)
	e.HandleFunc("slow", func(ctx context.Context, job *Job) error {
		<-ctx.Done()
		return ctx.Err()
	})
	id := enqueue(t, e, "slow", nil, Timeout(20*time.Millisecond), MaxRetries(0))
	if n, err := e.Drain(context.Background()); err != nil || n != 1 {
		t.Fatalf("Drain ran %d jobs (%v), want 1", n, err)
	}
	info, err := e.Status(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if info.State != StateFailed || info.Error != "job exceeded its timeout of 20ms" {
		t.Fatalf("got %s %q, want failed with the timeout error", info.State, info.Error)
	}
}
