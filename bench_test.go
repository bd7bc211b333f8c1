package engine

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jobrelay/engine/backend"
	"github.com/jobrelay/engine/backend/memory"
)

// benchPayload is a 100-byte JSON payload, as in the side-by-side runs.
var benchPayload = []byte(`{"meeting_id":"m-000001","s3_key":"s3://bucket/meetings/000001/audio.wav","lang":"en","x":"abcdefg"}`)

func BenchmarkEnqueue(b *testing.B) {
	e, _ := New(WithMemory())
	defer e.Close()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Enqueue(ctx, "noop", benchPayload); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEnqueueMany(b *testing.B) {
	e, _ := New(WithMemory())
	defer e.Close()
	ctx := context.Background()
	specs := make([]JobSpec, 1000)
	for i := range specs {
		specs[i] = JobSpec{Type: "noop", Payload: benchPayload}
	}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		if _, err := e.EnqueueMany(ctx, specs); err != nil {
			b.Fatal(err)
		}
		n += len(specs)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "jobs/s")
}

// endToEnd enqueues b.N jobs in batches while an engine with the given
// concurrency runs them with a no-op handler, and reports jobs/s to the
// last completion.
func endToEnd(b *testing.B, newBackend func() backend.Backend, concurrency int) {
	be := newBackend()
	defer be.Close()
	e, err := New(WithBackend(be), WithConcurrency(concurrency))
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	_, all, stop := runCounting(e, b.N, nil)
	defer stop()
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	const batch = 512
	specs := make([]JobSpec, batch)
	for i := range specs {
		specs[i] = JobSpec{Type: "noop", Payload: benchPayload}
	}
	for left := b.N; left > 0; left -= batch {
		if _, err := e.EnqueueMany(ctx, specs[:min(batch, left)]); err != nil {
			b.Fatal(err)
		}
	}
	<-all
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
}

// runCounting registers a no-op handler of type "noop" that closes all
// once it ran n times, and runs e until stop is called; done counts the
// jobs run so far. ran, if not nil, is called after each job with that
// count.
func runCounting(e *Engine, n int, ran func(done int64)) (done *atomic.Int64, all <-chan struct{}, stop func()) {
	done = new(atomic.Int64)
	allDone := make(chan struct{})
	e.HandleFunc("noop", func(ctx context.Context, job *Job) error {
		d := done.Add(1)
		if d == int64(n) {
			close(allDone)
		}
		if ran != nil {
			ran(d)
		}
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error)
	go func() { runDone <- e.Run(ctx) }()
	return done, allDone, func() { cancel(); <-runDone }
}

func newMemory() backend.Backend { return memory.New(memory.Options{}) }

func BenchmarkEndToEndMemory(b *testing.B) {
	for _, c := range []int{1, 16} {
		b.Run("concurrency="+itoa(c), func(b *testing.B) { endToEnd(b, newMemory, c) })
	}
}

// BenchmarkSteadyMemory is BenchmarkEndToEndMemory at concurrency 16 with a
// producer that keeps at most steadyAhead jobs waiting, as a service whose
// workers keep up does: the cost of a job without that of a backlog of
// millions, which the end-to-end benchmark's producer, far faster than the
// workers, builds up.
func BenchmarkSteadyMemory(b *testing.B) {
	const steadyAhead = 4096
	be := newMemory()
	defer be.Close()
	e, err := New(WithBackend(be), WithConcurrency(16))
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	room := make(chan struct{}, 1) // a signal every 512 completions
	done, allDone, stop := runCounting(e, b.N, func(d int64) {
		if d%512 == 0 {
			select {
			case room <- struct{}{}:
			default:
			}
		}
	})
	defer stop()
	ctx := context.Background()
	const batch = 512
	specs := make([]JobSpec, batch)
	for i := range specs {
		specs[i] = JobSpec{Type: "noop", Payload: benchPayload}
	}
	b.ReportAllocs()
	b.ResetTimer()
	sent := int64(0)
	for left := b.N; left > 0; left -= batch {
		// More than steadyAhead waiting means more than 512 do, so the
		// next multiple of 512 completions signals room.
		for sent-done.Load() > steadyAhead {
			<-room
		}
		k := min(batch, left)
		if _, err := e.EnqueueMany(ctx, specs[:k]); err != nil {
			b.Fatal(err)
		}
		sent += int64(k)
	}
	<-allDone
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
}

// latency measures, on an idle engine, the time from Enqueue returning to
// the handler starting, one job at a time, and reports p50, p99 and max.
func latency(b *testing.B, newBackend func() backend.Backend) {
	be := newBackend()
	defer be.Close()
	e, err := New(WithBackend(be), WithConcurrency(4))
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	started := make(chan time.Time, 1)
	e.HandleFunc("ping", func(ctx context.Context, job *Job) error {
		started <- time.Now()
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error)
	go func() { runDone <- e.Run(ctx) }()
	// Let the dispatcher reach its blocking Lease before measuring.
	if _, err := e.Enqueue(ctx, "ping", nil); err != nil {
		b.Fatal(err)
	}
	<-started
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		if _, err := e.Enqueue(ctx, "ping", nil); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, (<-started).Sub(t0))
	}
	b.StopTimer()
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) }
	b.ReportMetric(pct(0.5), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds()), "max-µs")
	cancel()
	<-runDone
}

func BenchmarkLatencyMemory(b *testing.B) { latency(b, newMemory) }

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var buf [20]byte
	i := len(buf)
	for n > 0 {
		i--
		buf[i] = byte('0' + n%10)
		n /= 10
	}
	return string(buf[i:])
}

// BenchmarkLimitCost measures what a limit costs the jobs it does not
// limit: end-to-end throughput of unlimited no-op jobs alone, and with as
// many jobs of a limited type (concurrency 4) in the same queue beside them.
func BenchmarkLimitCost(b *testing.B) {
	for _, withLimited := range []bool{false, true} {
		name := "unlimited-alone"
		if withLimited {
			name = "beside-limited"
		}
		b.Run(name, func(b *testing.B) {
			e, err := New(WithMemory(), WithConcurrency(16), WithLimit(Limit{Key: "llm", Concurrency: 4}))
			if err != nil {
				b.Skip(err)
			}
			defer e.Close()
			e.HandleFunc("llm", func(ctx context.Context, job *Job) error { return nil }, LimitKey("llm"))
			_, all, stop := runCounting(e, b.N, nil)
			defer stop()
			ctx := context.Background()
			b.ResetTimer()
			const batch = 512
			for left := b.N; left > 0; left -= batch {
				specs := make([]JobSpec, 0, 2*batch)
				for range min(batch, left) {
					specs = append(specs, JobSpec{Type: "noop", Payload: benchPayload})
					if withLimited {
						specs = append(specs, JobSpec{Type: "llm", Payload: benchPayload})
					}
				}
				if _, err := e.EnqueueMany(ctx, specs); err != nil {
					b.Fatal(err)
				}
			}
			<-all
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "unlimited-jobs/s")
		})
	}
}
