package bolt

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jobrelay/engine/backend"
)

// The benchmarks run with fsync on ("sync") and off ("nosync") and report
// jobs/s. Enqueue payloads are small JSON, as the engine sends them.

var syncModes = []struct {
	name   string
	noSync bool
}{{"sync", false}, {"nosync", true}}

func benchOpen(b *testing.B, noSync bool) *Backend {
	b.Helper()
	be := openAt(b, filepath.Join(b.TempDir(), "jobs.db"), Options{NoSync: noSync})
	b.Cleanup(func() { b.Log(CommitStats(be)) })
	return be
}

var benchSeq atomic.Uint64

func benchJob() backend.NewJob {
	nj := newJob(fmt.Sprintf("%016d", benchSeq.Add(1)))
	nj.Payload = []byte(`{"meeting_id":"m-123","language":"en"}`)
	return nj
}

// BenchmarkEnqueue measures single-job Enqueue calls from 32 goroutines
// (each waits for its own commit; group commit shares the fsyncs) and
// batches of 100 jobs per call from one goroutine.
func BenchmarkEnqueue(b *testing.B) {
	for _, m := range syncModes {
		b.Run("single/"+m.name, func(b *testing.B) {
			be := benchOpen(b, m.noSync)
			ctx := context.Background()
			b.SetParallelism(max(1, 32/runtime.GOMAXPROCS(0)))
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := be.Enqueue(ctx, t0, []backend.NewJob{benchJob()}); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "jobs/s")
		})
		b.Run("batch100/"+m.name, func(b *testing.B) {
			be := benchOpen(b, m.noSync)
			ctx := context.Background()
			batch := make([]backend.NewJob, 100)
			start := time.Now()
			for done := 0; done < b.N; done += len(batch) {
				n := min(len(batch), b.N-done)
				for i := range n {
					batch[i] = benchJob()
				}
				if _, err := be.Enqueue(ctx, t0, batch[:n]); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "jobs/s")
		})
	}
}

// fill enqueues n jobs in batches, outside the timer.
func fill(b *testing.B, be *Backend, n int) {
	b.Helper()
	ctx := context.Background()
	for done := 0; done < n; {
		batch := make([]backend.NewJob, min(1000, n-done))
		for i := range batch {
			batch[i] = benchJob()
		}
		if _, err := be.Enqueue(ctx, t0, batch); err != nil {
			b.Fatal(err)
		}
		done += len(batch)
	}
}

// work runs workers goroutines that each lease up to 32 jobs and finish
// them in one call, until total jobs are completed.
func work(b *testing.B, be *Backend, workers int, total int64, wait time.Duration) {
	ctx := context.Background()
	var done atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			acks := make([]backend.Ack, 0, 32)
			for done.Load() < total {
				ls, err := be.Lease(ctx, backend.LeaseRequest{Queues: []string{"default"}, Worker: fmt.Sprint("w", w),
					Max: 32, Now: t0, TTL: time.Minute, Block: wait})
				if err != nil {
					b.Error(err)
					return
				}
				acks = acks[:0]
				for _, l := range ls {
					acks = append(acks, backend.Ack{Lease: l.Ref(), Outcome: backend.OutcomeCompleted, Result: []byte(`{}`)})
				}
				if len(acks) == 0 {
					continue
				}
				if _, err := be.Finish(ctx, t0, acks); err != nil {
					b.Error(err)
					return
				}
				done.Add(int64(len(acks)))
			}
		}()
	}
	wg.Wait()
}

// BenchmarkLeaseFinish measures 32 workers leasing batches of up to 32
// jobs and finishing each batch in one call, on a backlog enqueued before
// the timer starts.
func BenchmarkLeaseFinish(b *testing.B) {
	for _, m := range syncModes {
		b.Run(m.name, func(b *testing.B) {
			be := benchOpen(b, m.noSync)
			fill(b, be, b.N)
			b.ResetTimer()
			start := time.Now()
			work(b, be, 32, int64(b.N), 0)
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "jobs/s")
		})
	}
}

// BenchmarkEndToEnd measures jobs from Enqueue to completed: producers
// enqueue batches of 100 while 32 workers lease and finish in batches, as
// the engine does with a no-op handler at concurrency 32.
func BenchmarkEndToEnd(b *testing.B) {
	for _, m := range syncModes {
		b.Run(m.name, func(b *testing.B) {
			be := benchOpen(b, m.noSync)
			ctx := context.Background()
			start := time.Now()
			var wg sync.WaitGroup
			const producers = 4
			for p := range producers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					share := b.N / producers
					if p == 0 {
						share += b.N % producers
					}
					for done := 0; done < share; {
						batch := make([]backend.NewJob, min(100, share-done))
						for i := range batch {
							batch[i] = benchJob()
						}
						if _, err := be.Enqueue(ctx, t0, batch); err != nil {
							b.Error(err)
							return
						}
						done += len(batch)
					}
				}()
			}
			work(b, be, 32, int64(b.N), 50*time.Millisecond)
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "jobs/s")
		})
	}
}

// BenchmarkEngineShape runs jobs the way the engine does: producers enqueue
// batches of 512; one dispatcher leases as many jobs as there are idle
// workers (Max = free slots, Block while idle); 32 workers run a no-op
// handler; one acker finishes whatever acks are waiting in one call.
func BenchmarkEngineShape(b *testing.B) {
	for _, m := range syncModes {
		b.Run(m.name, func(b *testing.B) {
			be := benchOpen(b, m.noSync)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var done atomic.Int64
			all := make(chan struct{})
			stop := runEngineShape(ctx, b, be, 32, int64(b.N), &done, all)
			b.ResetTimer()
			for left := b.N; left > 0; left -= 512 {
				batch := make([]backend.NewJob, min(512, left))
				for i := range batch {
					batch[i] = benchJob()
				}
				if _, err := be.Enqueue(ctx, time.Now(), batch); err != nil {
					b.Fatal(err)
				}
			}
			<-all
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
			cancel()
			stop()
		})
	}
}
