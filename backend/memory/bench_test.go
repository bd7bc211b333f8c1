package memory_test

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jobrelay/engine/backend"
	"github.com/jobrelay/engine/backend/memory"
)

// benchBatch is the batch size of the benchmarks, about what the engine's
// dispatcher takes at full load.
const benchBatch = 100

var benchLogSize = memory.DefaultEventLogSize

// benchJobs makes count jobs with IDs in creation order, as the engine does.
// The IDs share one string, so that making them costs the benchmark little.
func benchJobs(from, count int) []backend.NewJob {
	jobs := make([]backend.NewJob, count)
	const width = 14 // "j" and 13 digits
	buf := make([]byte, 0, count*width)
	for i := range jobs {
		buf = append(buf, 'j')
		buf = strconv.AppendInt(buf, int64(1_000_000_000_000+from+i), 10)
	}
	ids := string(buf)
	for i := range jobs {
		jobs[i] = backend.NewJob{ID: ids[i*width : (i+1)*width], Type: "bench", Queue: "default",
			Payload: []byte(`{"meeting":"m-1"}`), MaxRetries: 3, MaxStalls: 3, ResultTTL: time.Second, FailureTTL: time.Second}
	}
	return jobs
}

func perJob(b *testing.B) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchBatch), "ns/job")
}

// drain completes and sweeps every job, so that a benchmark's store stays
// the size of its working set.
func drain(b *testing.B, m *memory.Backend, now time.Time) {
	ctx := context.Background()
	req := backend.LeaseRequest{Queues: []string{"default"}, Worker: "w", Max: 1000, Now: now, TTL: time.Minute}
	for {
		ls, err := m.Lease(ctx, req)
		if err != nil {
			b.Fatal(err)
		}
		if len(ls) == 0 {
			break
		}
		acks := make([]backend.Ack, len(ls))
		for i, l := range ls {
			acks[i] = backend.Ack{Lease: l.Ref(), Outcome: backend.OutcomeCompleted}
		}
		if _, err := m.Finish(ctx, now, acks); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := m.Sweep(ctx, now.Add(time.Hour), 0); err != nil {
		b.Fatal(err)
	}
}

// window is how many batches a benchmark runs between two drains: the store
// holds up to 10,000 jobs, as a busy queue would.
const window = 100

// BenchmarkEnqueueBatch measures Enqueue of one batch of 100 jobs.
func BenchmarkEnqueueBatch(b *testing.B) {
	ctx := context.Background()
	m := memory.New(memory.Options{})
	defer m.Close()
	now := time.Unix(1_900_000_000, 0)
	batches := make([][]backend.NewJob, window)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%window == 0 {
			b.StopTimer()
			now = now.Add(2 * time.Hour)
			drain(b, m, now)
			for k := range batches {
				batches[k] = benchJobs((i+k)*benchBatch, benchBatch)
			}
			b.StartTimer()
		}
		if _, err := m.Enqueue(ctx, now, batches[i%window]); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	perJob(b)
}

// BenchmarkLeaseFinishBatch measures Lease of 100 jobs and Finish of them
// (completed), the dispatcher's and workers' share of the hot path.
func BenchmarkLeaseFinishBatch(b *testing.B) {
	ctx := context.Background()
	m := memory.New(memory.Options{})
	defer m.Close()
	now := time.Unix(1_900_000_000, 0)
	req := backend.LeaseRequest{Queues: []string{"default"}, Worker: "w", Max: benchBatch, TTL: time.Minute}
	acks := make([]backend.Ack, benchBatch)
	result := []byte(`{"ok":true}`)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%window == 0 {
			b.StopTimer()
			now = now.Add(2 * time.Hour)
			drain(b, m, now)
			for k := range window {
				if _, err := m.Enqueue(ctx, now, benchJobs((i+k)*benchBatch, benchBatch)); err != nil {
					b.Fatal(err)
				}
			}
			req.Now = now
			b.StartTimer()
		}
		ls, err := m.Lease(ctx, req)
		if err != nil || len(ls) != benchBatch {
			b.Fatalf("Lease: got %d jobs and %v", len(ls), err)
		}
		for k, l := range ls {
			acks[k] = backend.Ack{Lease: l.Ref(), Outcome: backend.OutcomeCompleted, Result: result}
		}
		if _, err := m.Finish(ctx, now, acks); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	perJob(b)
}

// BenchmarkLeaseFinishOne measures Lease of one job and Finish of it, as a
// busy engine's dispatcher calls them: it asks for the one worker that just
// freed. Its ns/job is what each job pays for that in the backend.
func BenchmarkLeaseFinishOne(b *testing.B) {
	ctx := context.Background()
	m := memory.New(memory.Options{})
	defer m.Close()
	now := time.Unix(1_900_000_000, 0)
	req := backend.LeaseRequest{Queues: []string{"default"}, Worker: "w", Max: 1, TTL: time.Minute}
	acks := make([]backend.Ack, 1)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%(window*benchBatch) == 0 {
			b.StopTimer()
			now = now.Add(2 * time.Hour)
			drain(b, m, now)
			for k := range window {
				if _, err := m.Enqueue(ctx, now, benchJobs(i+k*benchBatch, benchBatch)); err != nil {
					b.Fatal(err)
				}
			}
			req.Now = now
			b.StartTimer()
		}
		ls, err := m.Lease(ctx, req)
		if err != nil || len(ls) != 1 {
			b.Fatalf("Lease: got %d jobs and %v", len(ls), err)
		}
		acks[0] = backend.Ack{Lease: ls[0].Ref(), Outcome: backend.OutcomeCompleted}
		if _, err := m.Finish(ctx, now, acks); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/job")
}

// BenchmarkCycle measures a job's whole life in the backend, by batches of
// 100: Enqueue, Lease, Finish, and the Sweep that deletes it. Its ns/job is
// the backend's share of the engine's per-job budget.
func BenchmarkCycle(b *testing.B) {
	ctx := context.Background()
	m := memory.New(memory.Options{EventLogSize: benchLogSize})
	defer m.Close()
	now := time.Unix(1_900_000_000, 0)
	req := backend.LeaseRequest{Queues: []string{"default"}, Worker: "w", Max: benchBatch, TTL: time.Minute}
	acks := make([]backend.Ack, benchBatch)
	result := []byte(`{"ok":true}`)
	batchSet := make([][]backend.NewJob, window)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%window == 0 {
			b.StopTimer()
			for k := range batchSet {
				batchSet[k] = benchJobs((i+k)*benchBatch, benchBatch)
			}
			b.StartTimer()
		}
		now = now.Add(time.Millisecond)
		if _, err := m.Enqueue(ctx, now, batchSet[i%window]); err != nil {
			b.Fatal(err)
		}
		req.Now = now
		ls, err := m.Lease(ctx, req)
		if err != nil || len(ls) != benchBatch {
			b.Fatalf("Lease: got %d jobs and %v", len(ls), err)
		}
		for k, l := range ls {
			acks[k] = backend.Ack{Lease: l.Ref(), Outcome: backend.OutcomeCompleted, Result: result}
		}
		if _, err := m.Finish(ctx, now, acks); err != nil {
			b.Fatal(err)
		}
		if _, err := m.Sweep(ctx, now, 2*benchBatch); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	perJob(b)
}

// BenchmarkCycleParallel runs BenchmarkCycle's loop on every P at once, to
// show what the one mutex costs under contention.
func BenchmarkCycleParallel(b *testing.B) {
	ctx := context.Background()
	m := memory.New(memory.Options{})
	defer m.Close()
	base := time.Unix(1_900_000_000, 0)
	var worker atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		w := int(worker.Add(1))
		req := backend.LeaseRequest{Queues: []string{"default"}, Worker: "w", Max: benchBatch, Now: base, TTL: time.Minute}
		acks := make([]backend.Ack, 0, benchBatch)
		result := []byte(`{"ok":true}`)
		n := 0
		for pb.Next() {
			jobs := benchJobs(w*100_000_000_000+n*benchBatch, benchBatch)
			n++
			if _, err := m.Enqueue(ctx, base, jobs); err != nil {
				b.Fatal(err)
			}
			ls, err := m.Lease(ctx, req)
			if err != nil {
				b.Fatal(err)
			}
			acks = acks[:0]
			for _, l := range ls {
				acks = append(acks, backend.Ack{Lease: l.Ref(), Outcome: backend.OutcomeCompleted, Result: result})
			}
			if _, err := m.Finish(ctx, base, acks); err != nil {
				b.Fatal(err)
			}
			if _, err := m.Sweep(ctx, base.Add(2*time.Second), 2*benchBatch); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.StopTimer()
	perJob(b)
}

// BenchmarkCycleBesideLimited runs BenchmarkCycle's loop with every other
// job under a limit of 5 at once, so that most of them wait parked beside
// the unlimited ones: its ns/job is what the limit costs the jobs it holds
// back and those it lets pass.
func BenchmarkCycleBesideLimited(b *testing.B) {
	ctx := context.Background()
	base := time.Unix(1_900_000_000, 0)
	var m *memory.Backend
	req := backend.LeaseRequest{Queues: []string{"default"}, Worker: "w", Max: benchBatch, TTL: time.Minute}
	acks := make([]backend.Ack, 0, benchBatch)
	result := []byte(`{"ok":true}`)
	batchSet := make([][]backend.NewJob, window)
	now := base
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%window == 0 {
			// A fresh store per window: the held-back jobs pile up.
			b.StopTimer()
			if m != nil {
				m.Close()
			}
			m = memory.New(memory.Options{EventLogSize: benchLogSize})
			if err := m.SetLimit(ctx, now, backend.Limit{Key: "llm", Concurrency: 5}); err != nil {
				b.Fatal(err)
			}
			for k := range batchSet {
				batchSet[k] = benchJobs((i+k)*benchBatch, benchBatch)
				for n := range batchSet[k] {
					if n%2 == 0 {
						batchSet[k][n].LimitKey = "llm"
					}
				}
			}
			b.StartTimer()
		}
		now = now.Add(time.Millisecond)
		if _, err := m.Enqueue(ctx, now, batchSet[i%window]); err != nil {
			b.Fatal(err)
		}
		req.Now = now
		ls, err := m.Lease(ctx, req)
		if err != nil || len(ls) < benchBatch/2 {
			b.Fatalf("Lease: got %d jobs and %v", len(ls), err)
		}
		acks = acks[:0]
		for _, l := range ls {
			acks = append(acks, backend.Ack{Lease: l.Ref(), Outcome: backend.OutcomeCompleted, Result: result})
		}
		if _, err := m.Finish(ctx, now, acks); err != nil {
			b.Fatal(err)
		}
		if _, err := m.Sweep(ctx, now, 2*benchBatch); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	m.Close()
	perJob(b)
}

// BenchmarkPipeline measures the backend under the engine's shape of load:
// the benchmark's goroutine enqueues b.N jobs by batches of 512 while one
// consumer goroutine leases up to Max of them at a time (blocking when none
// is queued) and finishes them as completed, as a dispatcher and its acker
// would with a no-op handler. Its jobs/s is the most an engine can get from
// this backend, since the engine adds its own costs to every job. With
// "sweeping", a third goroutine deletes the finished jobs every millisecond,
// by Sweeps of 1,000 as the engine's sweeper calls it, as a store that keeps
// a day of jobs deletes as many as it finishes.
func BenchmarkPipeline(b *testing.B) {
	for _, n := range []int{16, 64} {
		b.Run("max="+strconv.Itoa(n), func(b *testing.B) { pipeline(b, n, false) })
	}
	b.Run("max=64,sweeping", func(b *testing.B) { pipeline(b, 64, true) })
}

func pipeline(b *testing.B, leaseMax int, sweeping bool) {
	const batch = 512
	ctx := context.Background()
	m := memory.New(memory.Options{})
	defer m.Close()
	var batches [][]backend.NewJob
	for n := 0; n < b.N; n += batch {
		batches = append(batches, benchJobs(n, min(batch, b.N-n)))
	}
	done := make(chan error, 1)
	stop, swept := make(chan struct{}), make(chan error, 1)
	b.ReportAllocs()
	b.ResetTimer()
	if sweeping {
		go func() {
			tick := time.NewTicker(time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					swept <- nil
					return
				case <-tick.C:
				}
				for {
					// The jobs are kept for a second (see benchJobs).
					n, err := m.Sweep(ctx, time.Now().Add(2*time.Second), 1000)
					if err != nil {
						swept <- err
						return
					}
					if n < 1000 {
						break
					}
				}
			}
		}()
	}
	go func() {
		req := backend.LeaseRequest{Queues: []string{"default"}, Worker: "w", Max: leaseMax, Block: time.Second, TTL: time.Minute}
		acks := make([]backend.Ack, 0, leaseMax)
		for finished := 0; finished < b.N; {
			req.Now = time.Now()
			ls, err := m.Lease(ctx, req)
			if err != nil {
				done <- err
				return
			}
			if len(ls) == 0 {
				done <- fmt.Errorf("Lease: got no job after %d of %d", finished, b.N)
				return
			}
			acks = acks[:0]
			for _, l := range ls {
				acks = append(acks, backend.Ack{Lease: l.Ref(), Outcome: backend.OutcomeCompleted})
			}
			if _, err := m.Finish(ctx, time.Now(), acks); err != nil {
				done <- err
				return
			}
			finished += len(ls)
			req.Reuse = ls // the consumer keeps nothing of a lease, as the engine's runs copy theirs
		}
		done <- nil
	}()
	for _, jobs := range batches {
		if _, err := m.Enqueue(ctx, time.Now(), jobs); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if sweeping {
		close(stop)
		if err := <-swept; err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
}
