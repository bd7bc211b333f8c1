package memory_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jobrelay/engine/backend"
	"github.com/jobrelay/engine/backend/memory"
)

// Finish archives jobs, and Enqueue stores them, under a mutex of their own
// while Lease and Finish go on under the other; Job, List, Cancel, Requeue
// and Sweep, which find jobs by ID, overlap both on the very same jobs. Each
// job they find must be in one state that its history allows, never half
// stored or half archived, and each job must run as often as its outcomes
// say (run with -race).
func TestLookupsOverlapArchiving(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{EventLogSize: 64})
	defer b.Close()
	const batches, batch = 80, 40
	id := func(n int) string { return fmt.Sprintf("job-%06d", n) }
	// Jobs whose number is a multiple of 3 fail, and are kept an hour so
	// that Requeue finds them; the others complete and are kept for no
	// time, so that Sweep deletes them as they are archived.
	fails := func(n int) bool { return n%3 == 0 }

	enqueued := make(chan int, batches) // batches whose Enqueue returned
	go func() {
		defer close(enqueued)
		for i := range batches {
			jobs := make([]backend.NewJob, batch)
			for k := range jobs {
				n := i*batch + k
				jobs[k] = backend.NewJob{ID: id(n), Type: "t", Queue: "default", MaxStalls: 1,
					ResultTTL: 0, FailureTTL: time.Hour}
			}
			res, err := b.Enqueue(ctx, t0, jobs)
			if err != nil {
				t.Errorf("Enqueue: got error %v, want nil", err)
				return
			}
			for _, r := range res {
				if r.Err != nil || r.State != backend.StateQueued {
					t.Errorf("Enqueue %s: got state %q and error %v, want queued", r.ID, r.State, r.Err)
				}
			}
			enqueued <- i
		}
	}()

	stop := make(chan struct{})
	var runs sync.Map // job ID -> *int, written by the consumer alone
	consumed := make(chan error, 1)
	go func() {
		req := backend.LeaseRequest{Queues: []string{"default"}, Worker: "w", Max: 7, TTL: time.Hour, Now: t0}
		for {
			ls, err := b.Lease(ctx, req)
			if err != nil {
				consumed <- err
				return
			}
			if len(ls) == 0 {
				select {
				case <-stop:
					consumed <- nil
					return
				default:
					continue
				}
			}
			acks := make([]backend.Ack, len(ls))
			for i, l := range ls {
				var n int
				fmt.Sscanf(l.Job.ID, "job-%d", &n)
				c, _ := runs.LoadOrStore(l.Job.ID, new(int))
				*c.(*int)++
				acks[i] = backend.Ack{Lease: l.Ref(), Outcome: backend.OutcomeCompleted}
				if fails(n) {
					acks[i].Outcome, acks[i].Error = backend.OutcomeFailed, "boom"
				}
			}
			errs, err := b.Finish(ctx, t0, acks)
			if err != nil {
				consumed <- err
				return
			}
			for i, err := range errs {
				if err != nil {
					consumed <- fmt.Errorf("Finish %s: %w", acks[i].Lease.JobID, err)
					return
				}
			}
		}
	}()

	known := map[backend.State]bool{backend.StateQueued: true, backend.StateActive: true,
		backend.StateCompleted: true, backend.StateFailed: true, backend.StateCanceled: true}
	requeued := make(map[string]bool)
	canceled := make(map[string]bool)
	check := func(n int) {
		j, err := b.Job(ctx, id(n))
		switch {
		case errors.Is(err, backend.ErrJobNotFound):
			if fails(n) {
				t.Errorf("Job %s: got not found, want it kept for its FailureTTL", id(n))
			}
			return
		case err != nil:
			t.Errorf("Job %s: got error %v", id(n), err)
			return
		case !known[j.State]:
			t.Errorf("Job %s: got state %q, want one of %v", id(n), j.State, known)
			return
		case j.State == backend.StateActive && j.LeaseToken == "" || j.State.Terminal() && j.FinishedAt.IsZero():
			t.Errorf("Job %s: got state %s with token %q and FinishedAt %v: fields of two states", id(n), j.State, j.LeaseToken, j.FinishedAt)
		}
		switch {
		case j.State == backend.StateFailed && !requeued[j.ID]:
			requeued[j.ID] = true
			if err := b.Requeue(ctx, t0, j.ID); err != nil {
				t.Errorf("Requeue %s (failed): got error %v, want nil", j.ID, err)
			}
		case n%7 == 0 && !canceled[j.ID]:
			canceled[j.ID] = true
			st, err := b.Cancel(ctx, t0, j.ID, "test")
			if err != nil && !errors.Is(err, backend.ErrInvalidState) {
				t.Errorf("Cancel %s: got error %v", j.ID, err)
			}
			if st == "" {
				t.Errorf("Cancel %s: got no state", j.ID)
			}
		}
	}
	for i := range enqueued {
		// Look at the batch just stored, at the one being stored (whose
		// jobs may be found with no state if a lookup does not wait for
		// them), and at older ones being run and archived.
		for k := range batch {
			check(i*batch + k)
			if i > 0 {
				check((i-1)*batch + k)
			}
			if n := (i+1)*batch + k; n < batches*batch {
				if j, err := b.Job(ctx, id(n)); err == nil && !known[j.State] {
					t.Errorf("Job %s while its batch is stored: got state %q", j.ID, j.State)
				}
			}
		}
		page, err := b.List(ctx, backend.ListFilter{Limit: 1000})
		if err != nil {
			t.Fatalf("List: got error %v", err)
		}
		for _, j := range page.Jobs {
			if !known[j.State] {
				t.Errorf("List: got %s in state %q", j.ID, j.State)
			}
		}
		if _, err := b.Sweep(ctx, t0.Add(time.Second), 0); err != nil {
			t.Fatalf("Sweep: got error %v", err)
		}
	}
	for n := range batches * batch {
		check(n)
	}
	close(stop)
	if err := <-consumed; err != nil {
		t.Fatal(err)
	}

	// Stats counts the jobs that are stored, no more (Sweep deleted the
	// others while jobs were finishing).
	if _, err := b.Sweep(ctx, t0.Add(time.Second), 0); err != nil {
		t.Fatalf("Sweep: got error %v", err)
	}
	stored := 0
	for cursor := ""; ; {
		page, err := b.List(ctx, backend.ListFilter{Cursor: cursor, Limit: 1000})
		if err != nil {
			t.Fatalf("List: got error %v", err)
		}
		stored += len(page.Jobs)
		if cursor = page.Next; cursor == "" {
			break
		}
	}
	stats, err := b.Stats(ctx)
	if err != nil {
		t.Fatalf("Stats: got error %v", err)
	}
	counted := 0
	for _, q := range stats {
		for _, n := range q.Counts {
			counted += n
		}
	}
	if counted != stored {
		t.Errorf("Stats: got %d jobs counted, want the %d that List finds", counted, stored)
	}

	// Every job ran once, and once more for a requeued one, unless it was
	// canceled first; a failed job is still there, failed or canceled.
	for n := range batches * batch {
		var got int
		if c, ok := runs.Load(id(n)); ok {
			got = *c.(*int)
		}
		want := 1
		if requeued[id(n)] {
			want = 2
		}
		if got > want || got < want && !canceled[id(n)] {
			t.Errorf("%s ran %d times, want %d", id(n), got, want)
		}
		if fails(n) {
			j, err := b.Job(ctx, id(n))
			if err != nil || j.State != backend.StateFailed && j.State != backend.StateCanceled {
				t.Errorf("Job %s at the end: got %v and %v, want it failed or canceled", id(n), j, err)
			}
		}
	}
}
