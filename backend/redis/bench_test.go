package redis_test

import (
	"bytes"
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/jobrelay/engine/backend"
	"github.com/jobrelay/engine/backend/redis"
	"github.com/jobrelay/engine/internal/jobid"
	"github.com/jobrelay/engine/internal/redistest"
)

// The benchmarks run against a real redis-server on this machine, with
// 100-byte payloads and IDs as the engine makes them.

var payload100 = bytes.Repeat([]byte("x"), 100)

func benchJob(queue string) backend.NewJob {
	j := newJob(jobid.New(time.Now()), queue)
	j.Type = "summarization"
	j.Payload = payload100
	return j
}

func benchBackend(b *testing.B) (*redis.Backend, *goredis.Client) {
	b.Helper()
	s := redistest.Start(b, redistest.Options{})
	o := s.Options()
	o.PoolSize = 64
	client := goredis.NewClient(o)
	be, err := redis.New(context.Background(), client, redis.Options{CloseClient: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { be.Close() })
	return be, client
}

func enqueueN(b *testing.B, be *redis.Backend, n, batch int) {
	b.Helper()
	ctx := context.Background()
	for done := 0; done < n; {
		k := min(batch, n-done)
		jobs := make([]backend.NewJob, k)
		for i := range jobs {
			jobs[i] = benchJob("default")
		}
		if _, err := be.Enqueue(ctx, time.Now(), jobs); err != nil {
			b.Fatal(err)
		}
		done += k
	}
}

func BenchmarkEnqueue(b *testing.B) {
	for _, batch := range []int{1, 100} {
		b.Run("batch="+strconv.Itoa(batch), func(b *testing.B) {
			be, _ := benchBackend(b)
			b.ResetTimer()
			enqueueN(b, be, b.N, batch)
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
		})
	}
}

// BenchmarkLeaseFinish leases Max jobs and completes them in one Finish,
// as a dispatcher with Max idle workers would.
func BenchmarkLeaseFinish(b *testing.B) {
	for _, batch := range []int{1, 100} {
		b.Run("batch="+strconv.Itoa(batch), func(b *testing.B) {
			be, _ := benchBackend(b)
			enqueueN(b, be, b.N, 500)
			ctx := context.Background()
			b.ResetTimer()
			for done := 0; done < b.N; {
				now := time.Now()
				ls, err := be.Lease(ctx, backend.LeaseRequest{Queues: []string{"default"}, Max: batch, Now: now, TTL: time.Minute})
				if err != nil || len(ls) == 0 {
					b.Fatalf("Lease: got %d leases and error %v", len(ls), err)
				}
				acks := make([]backend.Ack, len(ls))
				for i, l := range ls {
					acks[i] = backend.Ack{Lease: l.Ref(), Outcome: backend.OutcomeCompleted, Result: []byte(`"ok"`)}
				}
				if _, err := be.Finish(ctx, now, acks); err != nil {
					b.Fatal(err)
				}
				done += len(ls)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
		})
	}
}

// BenchmarkWorkers runs c workers that each lease one job, heartbeat it and
// complete it, while the jobs were enqueued beforehand in batches: the
// backend's share of the engine's end-to-end throughput.
func BenchmarkWorkers(b *testing.B) {
	for _, c := range []int{1, 32} {
		b.Run("concurrency="+strconv.Itoa(c), func(b *testing.B) {
			be, _ := benchBackend(b)
			enqueueN(b, be, b.N, 500)
			ctx := context.Background()
			var left sync.WaitGroup
			var mu sync.Mutex
			remaining := b.N
			b.ResetTimer()
			for range c {
				left.Add(1)
				go func() {
					defer left.Done()
					for {
						mu.Lock()
						if remaining == 0 {
							mu.Unlock()
							return
						}
						remaining--
						mu.Unlock()
						now := time.Now()
						ls, err := be.Lease(ctx, backend.LeaseRequest{Queues: []string{"default"}, Max: 1, Now: now, TTL: time.Minute})
						if err != nil || len(ls) != 1 {
							b.Errorf("Lease: got %d leases and error %v", len(ls), err)
							return
						}
						if _, err := be.Finish(ctx, now, []backend.Ack{{Lease: ls[0].Ref(), Outcome: backend.OutcomeCompleted}}); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			left.Wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
		})
	}
}

// BenchmarkIdleLatency measures enqueue-to-lease time for a worker blocked
// in Lease on an idle queue.
func BenchmarkIdleLatency(b *testing.B) {
	be, _ := benchBackend(b)
	ctx := context.Background()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		got := make(chan time.Time, 1)
		ready := make(chan struct{})
		go func() {
			close(ready)
			ls, err := be.Lease(ctx, backend.LeaseRequest{Queues: []string{"idle"}, Max: 1, Now: time.Now(),
				TTL: time.Minute, Block: 5 * time.Second})
			if err != nil || len(ls) != 1 {
				b.Errorf("Lease: got %d leases and error %v", len(ls), err)
			}
			got <- time.Now()
		}()
		<-ready
		time.Sleep(2 * time.Millisecond) // let it reach BZPOPMIN
		start := time.Now()
		if _, err := be.Enqueue(ctx, start, []backend.NewJob{benchJob("idle")}); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, (<-got).Sub(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

// BenchmarkMemoryPerQueuedJob reports Redis memory (INFO used_memory) per
// queued job with a 100-byte payload.
func BenchmarkMemoryPerQueuedJob(b *testing.B) {
	be, client := benchBackend(b)
	enqueueN(b, be, 10, 10) // the queue's own keys exist before measuring
	n := max(b.N, 10000)
	before := usedMemory(b, client)
	b.ResetTimer()
	enqueueN(b, be, n, 500)
	b.StopTimer()
	after := usedMemory(b, client)
	b.ReportMetric(float64(after-before)/float64(n), "bytes/job")
}

func usedMemory(b *testing.B, c *goredis.Client) int64 {
	b.Helper()
	info, err := c.Info(context.Background(), "memory").Result()
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return n
		}
	}
	b.Fatal("INFO memory has no used_memory")
	return 0
}
