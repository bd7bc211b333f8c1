package engine

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jobrelay/engine/backend"
	redisbackend "github.com/jobrelay/engine/backend/redis"
	"github.com/jobrelay/engine/internal/redistest"
)

// concurrencyGauge counts handlers running at once and remembers the most.
type concurrencyGauge struct {
	now, most atomic.Int64
}

func (g *concurrencyGauge) enter() {
	n := g.now.Add(1)
	for {
		m := g.most.Load()
		if n <= m || g.most.CompareAndSwap(m, n) {
			return
		}
	}
}

func (g *concurrencyGauge) leave() { g.now.Add(-1) }

func TestEngineConcurrencyLimitWithoutHeadOfLineBlocking(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend.Backend) {
		e := newEngine(t, b, WithConcurrency(8), WithLimit(Limit{Key: "llm", Concurrency: 2}))
		var gauge concurrencyGauge
		release := make(chan struct{})
		e.HandleFunc("summarize", func(ctx context.Context, job *Job) error {
			gauge.enter()
			defer gauge.leave()
			<-release
			return nil
		}, LimitKey("llm"))
		e.HandleFunc("ping", func(ctx context.Context, job *Job) error { return nil })
		var limited []string
		for range 6 {
			limited = append(limited, enqueue(t, e, "summarize", nil))
		}
		var pings []string
		for range 5 {
			pings = append(pings, enqueue(t, e, "ping", nil))
		}
		start(t, e)
		// While the limited jobs hold their two slots and four wait, every
		// other job behind them in the queue completes.
		for _, id := range pings {
			if got := wait(t, e, id); got.State != StateCompleted {
				t.Fatalf("got ping %s, want completed while the limited type waits", got.State)
			}
		}
		close(release)
		for _, id := range limited {
			if got := wait(t, e, id); got.State != StateCompleted || got.Failures != 0 {
				t.Fatalf("got %s with %d failures, want completed without failures", got.State, got.Failures)
			}
		}
		if m := gauge.most.Load(); m > 2 {
			t.Fatalf("got %d limited handlers at once, want at most 2", m)
		}
	})
}

func TestEngineRateLimitedHoldsTheKey(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend.Backend) {
		clk := NewFakeClock(epoch)
		e := newEngine(t, b, WithClock(clk))
		var calls atomic.Int32
		e.HandleFunc("notion", func(ctx context.Context, job *Job) error {
			if calls.Add(1) == 1 {
				return RateLimited(time.Minute) // the API said 429
			}
			return nil
		}, LimitKey("notion"))
		e.HandleFunc("ping", func(ctx context.Context, job *Job) error { return nil })
		first := enqueue(t, e, "notion", nil)
		second := enqueue(t, e, "notion", nil)
		ping := enqueue(t, e, "ping", nil)
		if n := drain(t, e); n != 2 {
			t.Fatalf("Drain ran %d jobs, want 2 (the throttled one and the ping)", n)
		}
		info := status(t, e, first)
		if info.State != StateScheduled || info.Failures != 0 || !info.RunAt.Equal(epoch.Add(time.Minute)) {
			t.Fatalf("got %s with %d failures due %v, want scheduled without a failure, due in a minute", info.State, info.Failures, info.RunAt)
		}
		if got := status(t, e, second).State; got != StateQueued {
			t.Fatalf("got %s for the other job of the key, want it held queued", got)
		}
		if got := status(t, e, ping).State; got != StateCompleted {
			t.Fatalf("got %s for a job of no key, want completed", got)
		}
		clk.Advance(time.Minute)
		if n := drain(t, e); n != 2 {
			t.Fatalf("after the throttle Drain ran %d jobs, want 2", n)
		}
		if got := status(t, e, first); got.State != StateCompleted || got.Attempt != 1 {
			t.Fatalf("got %s after attempt %d, want completed as attempt 1 (a throttle uses no attempt)", got.State, got.Attempt)
		}
	})
}

// TestRedisLimitsHoldAcrossEngines runs three engines on one redis-server
// and counts, in the handlers, that a concurrency limit of 5 and a rate limit
// of 50 starts a second are never exceeded, while jobs of another type in
// the same queue all complete. A start is the attempt's StartedAt, the time
// its lease began: the handler's own clock reading would add the varying
// delay between a lease and its goroutine running.
func TestRedisLimitsHoldAcrossEngines(t *testing.T) {
	if testing.Short() {
		t.Skip("three engines and a rate window; skipped with -short")
	}
	srv := redistest.Start(t, redistest.Options{})
	limits := []Limit{{Key: "llm", Concurrency: 5}, {Key: "notion", Rate: 50, Period: time.Second}}
	var gauge concurrencyGauge
	var mu sync.Mutex
	var notionStarts []time.Time
	var engines []*Engine
	for i := range 3 {
		opts := []Option{WithRedisOptions(srv.Client(), redisbackend.Options{Prefix: "limits"}),
			WithConcurrency(8), WithWorkerName(fmt.Sprintf("engine-%d", i))}
		for _, l := range limits {
			opts = append(opts, WithLimit(l))
		}
		e, err := New(opts...)
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		t.Cleanup(func() { e.Close() })
		e.HandleFunc("summarize", func(ctx context.Context, job *Job) error {
			gauge.enter()
			defer gauge.leave()
			time.Sleep(20 * time.Millisecond) // the work: an LLM call
			return nil
		}, LimitKey("llm"))
		e.HandleFunc("notion_sync", func(ctx context.Context, job *Job) error {
			mu.Lock()
			notionStarts = append(notionStarts, job.StartedAt)
			mu.Unlock()
			return nil
		}, LimitKey("notion"))
		e.HandleFunc("ping", func(ctx context.Context, job *Job) error { return nil })
		engines = append(engines, e)
	}
	var specs []JobSpec
	for range 60 {
		specs = append(specs, JobSpec{Type: "summarize"})
	}
	for range 120 {
		specs = append(specs, JobSpec{Type: "notion_sync"})
	}
	for range 60 {
		specs = append(specs, JobSpec{Type: "ping"})
	}
	res, err := engines[0].EnqueueMany(context.Background(), specs)
	if err != nil {
		t.Fatalf("EnqueueMany: %v", err)
	}
	for _, e := range engines {
		start(t, e)
	}
	pingsDone := time.Time{}
	for i, r := range res {
		info := wait(t, engines[i%3], r.ID)
		if info.State != StateCompleted {
			t.Fatalf("job %s (%s) ended %s, want completed", r.ID, specs[i].Type, info.State)
		}
		if specs[i].Type == "ping" && info.FinishedAt.After(pingsDone) {
			pingsDone = info.FinishedAt
		}
	}
	if m := gauge.most.Load(); m > 5 || m < 2 {
		t.Fatalf("got at most %d summarize handlers at once across three engines, want between 2 and 5", m)
	}
	slices.SortFunc(notionStarts, func(a, b time.Time) int { return a.Compare(b) })
	for i := range notionStarts {
		j := i
		for j < len(notionStarts) && notionStarts[j].Sub(notionStarts[i]) < time.Second {
			j++
		}
		if j-i > 50 {
			t.Fatalf("got %d notion starts within one second from %v, want at most 50", j-i, notionStarts[i])
		}
	}
	// 120 starts at 50 a second take at least two seconds; the pings did not
	// wait for them.
	if span := notionStarts[len(notionStarts)-1].Sub(notionStarts[0]); span < 2*time.Second-100*time.Millisecond {
		t.Fatalf("120 notion starts took %v, want at least about 2s at 50/s", span)
	}
	if !pingsDone.Before(notionStarts[len(notionStarts)-1]) {
		t.Fatalf("pings finished at %v, after the last notion start %v: they waited behind the limited type", pingsDone, notionStarts[len(notionStarts)-1])
	}
}
