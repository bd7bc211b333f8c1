package backendtest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jobrelay/engine/backend"
)

func testStress(t *testing.T, h Harness) {
	// Producers and dispatchers race on one backend; no lease expires, so
	// every job must be delivered exactly once and end completed.
	t.Run("ExactlyOnce", func(t *testing.T) {
		f := newFixture(t, h)
		total := 5000
		if testing.Short() {
			total = 500
		}
		const (
			producers   = 2
			dispatchers = 8
			batch       = 100
			leaseMax    = 32
		)
		ctx, cancel := context.WithTimeout(f.ctx, 90*time.Second)
		defer cancel()
		fail := func(format string, args ...any) {
			t.Errorf(format, args...)
			cancel()
		}

		var (
			mu       sync.Mutex
			seen     = make(map[string]int, total)
			finished atomic.Int64
			wg       sync.WaitGroup
		)
		for p := range producers {
			first, last := p*total/producers, (p+1)*total/producers
			wg.Go(func() {
				for start := first; start < last && ctx.Err() == nil; start += batch {
					jobs := make([]backend.NewJob, 0, batch)
					for i := start; i < min(start+batch, last); i++ {
						jobs = append(jobs, backend.NewJob{ID: fmt.Sprintf("job-%06d", i), Type: "stress", Queue: "default",
							Payload: []byte(`{}`), MaxRetries: 3, MaxStalls: 3, ResultTTL: time.Hour, FailureTTL: time.Hour})
					}
					res, err := f.b.Enqueue(ctx, f.t0, jobs)
					if err != nil {
						fail("Enqueue: got error %v, want nil", err)
						return
					}
					for _, r := range res {
						if r.Err != nil {
							fail("Enqueue %s: got error %v, want nil", r.ID, r.Err)
							return
						}
					}
				}
			})
		}
		for w := range dispatchers {
			wg.Go(func() {
				req := backend.LeaseRequest{Queues: []string{"default"}, Worker: fmt.Sprintf("worker-%d", w),
					Max: leaseMax, Now: f.t0, TTL: time.Hour, Block: 50 * time.Millisecond}
				for finished.Load() < int64(total) && ctx.Err() == nil {
					ls, err := f.b.Lease(ctx, req)
					if err != nil {
						if ctx.Err() == nil {
							fail("Lease: got error %v, want nil", err)
						}
						return
					}
					if len(ls) == 0 {
						continue
					}
					acks := make([]backend.Ack, len(ls))
					mu.Lock()
					for i, l := range ls {
						seen[l.Job.ID]++
						acks[i] = backend.Ack{Lease: l.Ref(), Outcome: backend.OutcomeCompleted, Result: []byte(`"ok"`)}
					}
					mu.Unlock()
					errs, err := f.b.Finish(ctx, f.t0, acks)
					if err != nil {
						fail("Finish: got error %v, want nil", err)
						return
					}
					for i, e := range errs {
						if e != nil {
							fail("Finish %s: got error %v, want nil", acks[i].Lease.JobID, e)
						}
					}
					finished.Add(int64(len(acks)))
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			return
		}

		if len(seen) != total {
			t.Errorf("jobs delivered: got %d distinct, want %d", len(seen), total)
		}
		for id, n := range seen {
			if n != 1 {
				t.Errorf("job %s: delivered %d times, want exactly once", id, n)
			}
		}
		s := f.stats()["default"]
		if s.Counts[backend.StateCompleted] != total || s.Processed != int64(total) {
			t.Errorf("Stats: got %d completed and %d processed, want %d of each (counts %v)",
				s.Counts[backend.StateCompleted], s.Processed, total, s.Counts)
		}
	})
}
