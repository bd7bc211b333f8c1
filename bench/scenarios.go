package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// rowSpec is one row of the table: what is measured and in which unit.
type rowSpec struct {
	label string
	unit  string // "jobs/s", "ms" or "B/job"
	// lowerBetter is set for latency and bytes; the ratio to asynq is then
	// asynq's value over jobrelay's, so that above 1 always means better.
	lowerBetter bool
}

// scenario is one measurement, run on every selected system that it
// applies to, -runs times (the median is reported).
type scenario struct {
	id   string
	rows []rowSpec
	// applies tells whether the scenario runs on s; the others read n/a.
	applies func(s system) bool
	// runs overrides -runs when positive.
	runs        int
	concurrency int
	measure     func(ctx context.Context, r *runner, t target) ([]float64, error)
}

func jobrelayOnly(s system) bool { return s.name != "asynq" }
func redisOnly(s system) bool    { return s.redis }

// scenarioIDs lists the scenarios -scenarios accepts, in table order.
var scenarioIDs = []string{"enqueue", "enqueue-batch", "process-c1", "process-c32",
	"e2e", "e2e-batch", "latency", "memory", "scale-small", "scale-big"}

func scenarios(cfg *config) []scenario {
	tput := func(label string) []rowSpec { return []rowSpec{{label: label, unit: "jobs/s"}} }
	all := []scenario{
		{
			id:          "enqueue",
			rows:        tput(fmt.Sprintf("enqueue: single, %d goroutines", cfg.producers)),
			concurrency: 32,
			measure: func(ctx context.Context, r *runner, t target) ([]float64, error) {
				n := r.jobs()
				d, err := r.timed(n, func() error { return produce(ctx, t, n, cfg.producers, 0) })
				return rate(n, d), err
			},
		},
		{
			id:          "enqueue-batch",
			rows:        tput(fmt.Sprintf("enqueue: batches of %d, %d goroutines", cfg.batch, cfg.producers)),
			applies:     jobrelayOnly,
			concurrency: 32,
			measure: func(ctx context.Context, r *runner, t target) ([]float64, error) {
				n := r.jobs()
				d, err := r.timed(n, func() error { return produce(ctx, t, n, cfg.producers, cfg.batch) })
				return rate(n, d), err
			},
		},
		process(cfg, 1),
		process(cfg, 32),
		{
			id:          "e2e",
			rows:        tput(fmt.Sprintf("end to end: c=32, single enqueues from %d goroutines", cfg.producers)),
			concurrency: 32,
			measure: func(ctx context.Context, r *runner, t target) ([]float64, error) {
				return endToEnd(ctx, r, t, r.jobs(), 0)
			},
		},
		{
			id:          "e2e-batch",
			rows:        tput(fmt.Sprintf("end to end: c=32, batches of %d from %d goroutines", cfg.batch, cfg.producers)),
			applies:     jobrelayOnly,
			concurrency: 32,
			measure: func(ctx context.Context, r *runner, t target) ([]float64, error) {
				return endToEnd(ctx, r, t, r.jobs(), cfg.batch)
			},
		},
		{
			id: "latency",
			rows: []rowSpec{
				{label: "latency idle, enqueue to start: p50", unit: "ms", lowerBetter: true},
				{label: "latency idle, enqueue to start: p90", unit: "ms", lowerBetter: true},
				{label: "latency idle, enqueue to start: p99", unit: "ms", lowerBetter: true},
				{label: "latency idle, enqueue to start: max", unit: "ms", lowerBetter: true},
			},
			concurrency: 32,
			measure:     latency,
		},
		{
			id:          "memory",
			rows:        []rowSpec{{label: "Redis memory per queued job", unit: "B/job", lowerBetter: true}},
			applies:     redisOnly,
			concurrency: 32,
			measure: func(ctx context.Context, r *runner, t target) ([]float64, error) {
				return memoryPerJob(ctx, r, t, cfg.memN)
			},
		},
		scale(cfg, "scale-small", cfg.scaleSmall, 0),
	}
	if cfg.scaleBig > 0 {
		all = append(all, scale(cfg, "scale-big", cfg.scaleBig, cfg.scaleBigRuns))
	}
	return all
}

func process(cfg *config, c int) scenario {
	return scenario{
		id:          fmt.Sprintf("process-c%d", c),
		rows:        []rowSpec{{label: fmt.Sprintf("process: prefilled queue, c=%d", c), unit: "jobs/s"}},
		concurrency: c,
		measure: func(ctx context.Context, r *runner, t target) ([]float64, error) {
			n := r.jobs()
			if err := prefill(ctx, t, n, cfg.batch); err != nil {
				return nil, err
			}
			hook, done := countTo(n)
			d, err := r.timed(n, func() error {
				if err := t.start(hook); err != nil {
					return err
				}
				return wait(ctx, done)
			})
			return rate(n, d), err
		},
	}
}

// scale measures end to end at c=32 (single enqueues, as in the e2e row)
// with queued jobs already waiting in the same queue. Its first row is the
// end-to-end throughput: jobs completed per second over the window in which
// the producers enqueue -n jobs and -n handlers run, the backlog's jobs
// included. With a big backlog the workers never wait for the producers, so
// the second row gives the producers' side alone: jobs enqueued per second
// while the backlog drains beside them.
func scale(cfg *config, id string, queued, runs int) scenario {
	return scenario{
		id: id,
		rows: []rowSpec{
			{label: fmt.Sprintf("scale: end to end with %s already queued (completions/s)", count(queued)), unit: "jobs/s"},
			{label: fmt.Sprintf("scale: enqueues/s meanwhile, %s already queued", count(queued)), unit: "jobs/s"},
		},
		runs:        runs,
		concurrency: 32,
		measure: func(ctx context.Context, r *runner, t target) ([]float64, error) {
			t0 := time.Now()
			if err := prefill(ctx, t, queued, 1000); err != nil {
				return nil, err
			}
			r.logf("prefilled %s jobs in %s", count(queued), time.Since(t0).Round(time.Millisecond))
			n := r.jobs()
			hook, done, ran := counter(n)
			if err := t.start(hook); err != nil {
				return nil, err
			}
			var enqueued time.Duration
			d, err := r.timed(n, func() error {
				begin := time.Now()
				if err := produce(ctx, t, n, r.cfg.producers, 0); err != nil {
					return err
				}
				enqueued = time.Since(begin)
				return wait(ctx, done)
			})
			if err != nil {
				return nil, err
			}
			completed := ran()
			r.logf("%d jobs completed in the window of %d enqueues (%.1f×)", completed, n, float64(completed)/float64(n))
			return []float64{float64(completed) / d.Seconds(), float64(n) / enqueued.Seconds()}, nil
		},
	}
}

// endToEnd starts the workers and enqueues n jobs from the producers at
// the same time, and times both to the n-th completion.
func endToEnd(ctx context.Context, r *runner, t target, n, batch int) ([]float64, error) {
	hook, done := countTo(n)
	if err := t.start(hook); err != nil {
		return nil, err
	}
	d, err := r.timed(n, func() error {
		if err := produce(ctx, t, n, r.cfg.producers, batch); err != nil {
			return err
		}
		return wait(ctx, done)
	})
	return rate(n, d), err
}

// latency enqueues one job at a time into an idle system and measures from
// the call of enqueue to the start of the handler. It stops after
// -latency-n jobs or -latency-budget, whichever comes first (asynq polls its
// queues once a second when they are empty, so it gets fewer samples).
func latency(ctx context.Context, r *runner, t target) ([]float64, error) {
	started := make(chan time.Time, 1)
	if err := t.start(func() {
		select {
		case started <- time.Now():
		default:
		}
	}); err != nil {
		return nil, err
	}
	// One job first, so that the workers are waiting for work when the
	// measured ones come.
	if _, err := oneLatency(ctx, t, started); err != nil {
		return nil, err
	}
	var lat []time.Duration
	_, err := r.timed(0, func() error {
		deadline := time.Now().Add(r.cfg.latencyBudget)
		for len(lat) < r.cfg.latencyN && (len(lat) < minLatencySamples || time.Now().Before(deadline)) {
			// Let the system settle back to idle (its ack written, its
			// workers waiting again) before the next job.
			time.Sleep(r.cfg.latencyGap)
			d, err := oneLatency(ctx, t, started)
			if err != nil {
				return err
			}
			lat = append(lat, d)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	r.logf("%d latency samples", len(lat))
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	return []float64{ms(percentile(lat, 0.50)), ms(percentile(lat, 0.90)), ms(percentile(lat, 0.99)), ms(lat[len(lat)-1])}, nil
}

// minLatencySamples is how many jobs the latency scenario measures even past
// its time budget.
const minLatencySamples = 5

func oneLatency(ctx context.Context, t target, started <-chan time.Time) (time.Duration, error) {
	t0 := time.Now()
	if err := t.enqueue(ctx); err != nil {
		return 0, err
	}
	select {
	case s := <-started:
		return s.Sub(t0), nil
	case <-ctx.Done():
		return 0, fmt.Errorf("waiting for a job to start: %w", context.Cause(ctx))
	}
}

// percentile is the nearest-rank percentile of sorted samples.
func percentile(sorted []time.Duration, p float64) time.Duration {
	i := int(p*float64(len(sorted)) + 0.999999)
	return sorted[min(max(i-1, 0), len(sorted)-1)]
}

// memoryPerJob enqueues n jobs into the empty database (nothing runs them)
// and divides the growth of Redis's used_memory by n. One job goes first, so
// that what a system creates once (its scripts in Redis's cache, its queue's
// registry entries) is not counted.
func memoryPerJob(ctx context.Context, r *runner, t target, n int) ([]float64, error) {
	if err := t.enqueue(ctx); err != nil {
		return nil, err
	}
	before, err := r.env.admin.usedMemory(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := r.timed(n, func() error { return prefill(ctx, t, n, 1000) }); err != nil {
		return nil, err
	}
	after, err := r.env.admin.usedMemory(ctx)
	if err != nil {
		return nil, err
	}
	return []float64{float64(after-before) / float64(n)}, nil
}

// produce enqueues n jobs from the given number of goroutines, one job per
// call when batch is 0 and in calls of batch jobs otherwise.
func produce(ctx context.Context, t target, n, producers, batch int) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	step := int64(max(batch, 1))
	var wg sync.WaitGroup
	for range producers {
		wg.Go(func() {
			for ctx.Err() == nil {
				end := next.Add(step)
				start := end - step
				if start >= int64(n) {
					return
				}
				var err error
				if batch == 0 {
					err = t.enqueue(ctx)
				} else {
					err = t.enqueueBatch(ctx, int(min(end, int64(n))-start))
				}
				if err != nil {
					cancel(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return fmt.Errorf("enqueue: %w", err)
	}
	return nil
}

// prefill enqueues n jobs as fast as the system allows: in batches where it
// has them, else one at a time from 32 goroutines.
func prefill(ctx context.Context, t target, n, batch int) error {
	err := produce(ctx, t, n, 4, batch)
	if errors.Is(err, errNoBatch) {
		err = produce(ctx, t, n, 32, 0)
	}
	return err
}

// countTo returns a hook that counts calls and a channel closed at the n-th.
func countTo(n int) (func(), <-chan struct{}) {
	hook, done, _ := counter(n)
	return hook, done
}

// counter is countTo that also reads the count.
func counter(n int) (func(), <-chan struct{}, func() int64) {
	var c atomic.Int64
	done := make(chan struct{})
	return func() {
			if c.Add(1) == int64(n) {
				close(done)
			}
		}, done, func() int64 {
			return c.Load()
		}
}

func wait(ctx context.Context, done <-chan struct{}) error {
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for the last job: %w", context.Cause(ctx))
	}
}

func rate(n int, d time.Duration) []float64 {
	return []float64{float64(n) / d.Seconds()}
}

// count writes 1000 as 1K and 1000000 as 1M.
func count(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dK", n/1000)
	}
	return fmt.Sprint(n)
}
