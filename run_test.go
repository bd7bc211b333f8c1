package engine

import (
	"context"
	"errors"
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

// A handler may keep its Job and context after it returned, say in a
// goroutine of its own. They stay the ones of its own run while the pool
// runs other jobs: the Job reads as it did, the context stays ended, and
// Progress and SetResult reach no other job; Progress reports the lease
// lost, as it does for any job that no longer runs here.
func TestRunJobKeptAfterItsHandlerReturned(t *testing.T) {
	b := memory.New(memory.Options{})
	t.Cleanup(func() { b.Close() })
	e := newEngine(t, b, WithConcurrency(4))
	type kept struct {
		ctx context.Context
		job *Job
	}
	handedOver := make(chan kept, 1)
	e.HandleFunc("keep", func(ctx context.Context, job *Job) error {
		handedOver <- kept{ctx, job}
		return nil
	})
	release := make(chan struct{})
	e.HandleFunc("other", func(ctx context.Context, job *Job) error {
		<-release
		return nil
	})
	start(t, e)
	keptID := enqueue(t, e, "keep", []byte("kept payload"))
	k := <-handedOver
	wait(t, e, keptID)

	// More runs than a chunk holds, so that the kept run's neighbours and
	// new chunks are in use while the kept Job is read and used.
	others := make([]string, 2*runChunk)
	for i := range others {
		others[i] = enqueue(t, e, "other", nil)
	}
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for range 1000 {
			if k.job.ID != keptID || string(k.job.Payload) != `kept payload` || k.job.Type != "keep" {
				t.Errorf("kept job reads %s %s %q, want %s keep %q", k.job.ID, k.job.Type, k.job.Payload, keptID, "kept payload")
				return
			}
		}
	}()
	if err := k.job.Progress(context.Background(), 50, "late"); !errors.Is(err, ErrLeaseLost) {
		t.Errorf("got Progress error %v on the kept job, want ErrLeaseLost", err)
	}
	k.job.SetResult([]byte(`"late"`))
	select {
	case <-k.ctx.Done():
	default:
		t.Error("the kept context is not done")
	}
	if err := k.ctx.Err(); !errors.Is(err, context.Canceled) {
		t.Errorf("got kept context error %v, want context.Canceled", err)
	}
	<-readerDone
	close(release)

	for _, id := range others {
		if info := wait(t, e, id); info.State != StateCompleted || info.Progress != 0 || info.Result != nil {
			t.Errorf("job %s: got %s, progress %d, result %s; want completed with neither progress nor result", id, info.State, info.Progress, info.Result)
		}
	}
	if info := status(t, e, keptID); info.State != StateCompleted || info.Progress != 0 || info.Result != nil {
		t.Errorf("kept job: got %s, progress %d, result %s; want completed as its handler left it", info.State, info.Progress, info.Result)
	}
}
