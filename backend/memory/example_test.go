package memory_test

import (
	"context"
	"fmt"
	"time"

	"github.com/jobrelay/engine/backend"
	"github.com/jobrelay/engine/backend/memory"
)

// A job's life in the backend: the engine enqueues it, a worker leases it and
// finishes it, and a listener reads the events of each step.
func Example() {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	defer b.Close()
	now := time.Date(2030, 1, 1, 9, 0, 0, 0, time.UTC)

	cursor, _ := b.EventCursor(ctx)
	res, _ := b.Enqueue(ctx, now, []backend.NewJob{{
		ID: "job-1", Type: "summarization", Queue: "ai", Payload: []byte(`{"meeting":"m-1"}`),
		MaxRetries: 3, MaxStalls: 3, ResultTTL: time.Hour, FailureTTL: 24 * time.Hour,
	}})
	fmt.Println("enqueued", res[0].ID, res[0].State)

	leases, _ := b.Lease(ctx, backend.LeaseRequest{Queues: []string{"ai"}, Worker: "worker-1", Max: 10, Now: now, TTL: 30 * time.Second})
	l := leases[0]
	fmt.Println("leased", l.Job.ID, "attempt", l.Job.Attempt)

	errs, _ := b.Finish(ctx, now.Add(time.Second), []backend.Ack{{Lease: l.Ref(), Outcome: backend.OutcomeCompleted, Result: []byte(`"short"`)}})
	fmt.Println("finished:", errs[0])

	events, _ := b.ReadEvents(ctx, cursor, 10)
	for _, e := range events {
		fmt.Println("event", e.Kind, e.JobID, e.State)
	}
	// Output:
	// enqueued job-1 queued
	// leased job-1 attempt 1
	// finished: <nil>
	// event queued job-1 queued
	// event active job-1 active
	// event completed job-1 completed
}
