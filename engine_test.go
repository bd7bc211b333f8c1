package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jobrelay/engine/backend"
)

var epoch = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

func newEngine(t *testing.T, b backend.Backend, opts ...Option) *Engine {
	t.Helper()
	e, err := New(append([]Option{WithBackend(b)}, opts...)...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// start runs e until the test ends.
func start(t *testing.T, e *Engine) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

func wait(t *testing.T, e *Engine, id string) *JobInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	info, err := e.Wait(ctx, id)
	if err != nil {
		t.Fatalf("Wait(%s): %v", id, err)
	}
	return info
}

func enqueue(t *testing.T, e *Engine, typ string, payload any, opts ...EnqueueOption) string {
	t.Helper()
	id, err := e.Enqueue(context.Background(), typ, payload, opts...)
	if err != nil {
		t.Fatalf("Enqueue(%s): %v", typ, err)
	}
	return id
}

func drain(t *testing.T, e *Engine) int {
	t.Helper()
	n, err := e.Drain(context.Background())
	if err != nil {
		t.Fatalf("Drain: %v", err)
	}
	return n
}

func status(t *testing.T, e *Engine, id string) *JobInfo {
	t.Helper()
	info, err := e.Status(context.Background(), id)
	if err != nil {
		t.Fatalf("Status(%s): %v", id, err)
	}
	return info
}

type addArgs struct{ A, B int }
type addResult struct{ Sum int }

func TestEngineRunsTypedHandlerAndKeepsResult(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend.Backend) {
		e := newEngine(t, b, WithConcurrency(4))
		Handle(e, "add", func(ctx context.Context, job *Job, in addArgs) (addResult, error) {
			return addResult{Sum: in.A + in.B}, nil
		})
		start(t, e)
		id := enqueue(t, e, "add", addArgs{A: 2, B: 3})
		got, err := Result[addResult](context.Background(), e, id)
		if err != nil {
			t.Fatalf("Result: %v", err)
		}
		if got.Sum != 5 {
			t.Fatalf("got sum %d, want 5", got.Sum)
		}
		info := status(t, e, id)
		if info.State != StateCompleted || info.Attempt != 1 || info.StartedAt.IsZero() || info.FinishedAt.IsZero() {
			t.Fatalf("got %+v, want completed after one attempt with times set", info)
		}
	})
}

func TestEngineRunsJobsByPriorityThenFIFO(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend.Backend) {
		e := newEngine(t, b)
		var order []string
		e.HandleFunc("note", func(ctx context.Context, job *Job) error {
			order = append(order, string(job.Payload))
			return nil
		})
		enqueue(t, e, "note", []byte("low-1"))
		enqueue(t, e, "note", []byte("high-1"), Priority(5))
		enqueue(t, e, "note", []byte("low-2"))
		enqueue(t, e, "note", []byte("high-2"), Priority(5))
		if n := drain(t, e); n != 4 {
			t.Fatalf("Drain ran %d jobs, want 4", n)
		}
		want := []string{"high-1", "high-2", "low-1", "low-2"}
		if !slices.Equal(order, want) {
			t.Fatalf("got order %v, want %v", order, want)
		}
	})
}

func TestEngineQueuesInStrictOrder(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend.Backend) {
		e := newEngine(t, b, WithQueues("urgent", "default"))
		var order []string
		e.HandleFunc("note", func(ctx context.Context, job *Job) error {
			order = append(order, job.Queue)
			return nil
		})
		enqueue(t, e, "note", nil)
		enqueue(t, e, "note", nil, Queue("urgent"))
		drain(t, e)
		if want := []string{"urgent", "default"}; !slices.Equal(order, want) {
			t.Fatalf("got order %v, want %v", order, want)
		}
	})
}

func TestEngineDelayAndAtWaitForTheClock(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend.Backend) {
		clk := NewFakeClock(epoch)
		e := newEngine(t, b, WithClock(clk))
		var ran atomic.Int32
		e.HandleFunc("later", func(ctx context.Context, job *Job) error { ran.Add(1); return nil })
		a := enqueue(t, e, "later", nil, Delay(time.Minute))
		bID := enqueue(t, e, "later", nil, At(epoch.Add(2*time.Minute)))
		if got := status(t, e, a).State; got != StateScheduled {
			t.Fatalf("got state %q, want scheduled", got)
		}
		if n := drain(t, e); n != 0 {
			t.Fatalf("Drain ran %d jobs before their time, want 0", n)
		}
		clk.Advance(time.Minute)
		if n := drain(t, e); n != 1 {
			t.Fatalf("Drain at +1m ran %d jobs, want 1", n)
		}
		if got := status(t, e, bID).State; got != StateScheduled {
			t.Fatalf("got state %q for the At job, want scheduled", got)
		}
		clk.Advance(time.Minute)
		if n := drain(t, e); n != 1 {
			t.Fatalf("Drain at +2m ran %d jobs, want 1", n)
		}
	})
}

func TestEngineRetriesWithDefaultBackoff(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend.Backend) {
		clk := NewFakeClock(epoch)
		e := newEngine(t, b, WithClock(clk))
		var runs atomic.Int32
		e.HandleFunc("flaky", func(ctx context.Context, job *Job) error {
			runs.Add(1)
			return fmt.Errorf("attempt %d failed", job.Attempt)
		})
		id := enqueue(t, e, "flaky", nil)
		var delays []time.Duration
		for {
			drain(t, e)
			info := status(t, e, id)
			if info.State != StateRetrying {
				if info.State != StateFailed {
					t.Fatalf("got state %q, want failed after retries", info.State)
				}
				if info.Error != "attempt 4 failed" {
					t.Fatalf("got error %q, want the last attempt's", info.Error)
				}
				break
			}
			d := info.RunAt.Sub(clk.Now())
			delays = append(delays, d)
			clk.Advance(d)
		}
		if want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}; !slices.Equal(delays, want) {
			t.Fatalf("got retry delays %v, want %v", delays, want)
		}
		if runs.Load() != 4 {
			t.Fatalf("got %d runs, want 4 (one plus three retries)", runs.Load())
		}
	})
}

func TestEngineRetryControls(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend.Backend) {
		clk := NewFakeClock(epoch)
		e := newEngine(t, b, WithClock(clk))
		e.HandleFunc("fail", func(ctx context.Context, job *Job) error { return errors.New("boom") })
		e.HandleFunc("skip", func(ctx context.Context, job *Job) error { return SkipRetry(errors.New("bad input")) })
		e.HandleFunc("later", func(ctx context.Context, job *Job) error {
			return RetryAfter(time.Hour, errors.New("quota"))
		})
		noRetry := enqueue(t, e, "fail", nil, MaxRetries(0))
		skip := enqueue(t, e, "skip", nil)
		later := enqueue(t, e, "later", nil)
		drain(t, e)
		if got := status(t, e, noRetry); got.State != StateFailed || got.Attempt != 1 {
			t.Fatalf("MaxRetries(0): got %s after %d attempts, want failed after 1", got.State, got.Attempt)
		}
		if got := status(t, e, skip); got.State != StateFailed || !strings.Contains(got.Error, "bad input") {
			t.Fatalf("SkipRetry: got %s %q, want failed with the error", got.State, got.Error)
		}
		got := status(t, e, later)
		if got.State != StateRetrying || !got.RunAt.Equal(epoch.Add(time.Hour)) {
			t.Fatalf("RetryAfter: got %s due %v, want retrying due %v", got.State, got.RunAt, epoch.Add(time.Hour))
		}
	})
}

func TestRetryPolicyDelay(t *testing.T) {
	tests := []struct {
		name    string
		policy  RetryPolicy
		attempt int
		want    time.Duration
	}{
		{"default first", DefaultRetryPolicy(), 0, time.Second},
		{"default third", DefaultRetryPolicy(), 2, 4 * time.Second},
		{"capped", RetryPolicy{BackoffFactor: 2, InitialDelay: time.Second, MaxDelay: 3 * time.Second}, 5, 3 * time.Second},
		{"constant", RetryPolicy{InitialDelay: 5 * time.Second}, 4, 5 * time.Second},
	}
	for _, tt := range tests {
		if got := tt.policy.Delay(tt.attempt); got != tt.want {
			t.Errorf("%s: Delay(%d) = %v, want %v", tt.name, tt.attempt, got, tt.want)
		}
	}
	p := RetryPolicy{InitialDelay: time.Second, Jitter: 0.5}
	for range 100 {
		if d := p.Delay(0); d < 500*time.Millisecond || d > 1500*time.Millisecond {
			t.Fatalf("jittered delay %v outside [0.5s, 1.5s]", d)
		}
	}
	if DefaultRetryPolicy().ShouldRetry(3) || !DefaultRetryPolicy().ShouldRetry(2) {
		t.Fatal("default policy: want retries after failures 0, 1, 2 and none after 3")
	}
}

func TestEngineTimeoutFailsJobEvenIfHandlerIgnoresContext(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend.Backend) {
		e := newEngine(t, b, WithConcurrency(1))
		release := make(chan struct{})
		t.Cleanup(func() { close(release) })
		e.HandleFunc("stuck", func(ctx context.Context, job *Job) error {
			<-release // ignores ctx
			return nil
		})
		e.HandleFunc("quick", func(ctx context.Context, job *Job) error { return nil })
		start(t, e)
		id := enqueue(t, e, "stuck", nil, Timeout(50*time.Millisecond), MaxRetries(0))
		info := wait(t, e, id)
		if info.State != StateFailed || info.Error != "job exceeded its timeout of 50ms" {
			t.Fatalf("got %s %q, want failed with the timeout error", info.State, info.Error)
		}
		// The stuck handler's worker was replaced: another job still runs.
		if got := wait(t, e, enqueue(t, e, "quick", nil)); got.State != StateCompleted {
			t.Fatalf("got %s for a job after the stuck one, want completed", got.State)
		}
	})
}

func TestEngineShortTimeoutAfterLongOnesEndsOnTime(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend.Backend) {
		// The long runs end at shutdown, after its short grace period.
		e := newEngine(t, b, WithConcurrency(3), WithShutdownTimeout(50*time.Millisecond))
		running := make(chan struct{}, 2)
		e.HandleFunc("long", func(ctx context.Context, job *Job) error {
			running <- struct{}{}
			<-ctx.Done()
			return ctx.Err()
		})
		e.HandleFunc("short", func(ctx context.Context, job *Job) error {
			<-ctx.Done()
			return ctx.Err()
		})
		start(t, e)
		// Two runs with an hour to go come first; then one whose deadline
		// is earlier than every one already watched.
		enqueue(t, e, "long", nil, Timeout(time.Hour))
		enqueue(t, e, "long", nil, Timeout(time.Hour))
		<-running
		<-running
		begin := time.Now()
		id := enqueue(t, e, "short", nil, Timeout(100*time.Millisecond), MaxRetries(0))
		info := wait(t, e, id)
		if info.State != StateFailed || info.Error != "job exceeded its timeout of 100ms" {
			t.Fatalf("got %s %q, want failed with the timeout error", info.State, info.Error)
		}
		if took := time.Since(begin); took > 10*time.Second {
			t.Fatalf("a 100ms timeout behind two of an hour ended after %v, want it near 100ms", took)
		}
	})
}

func TestEngineHandlerSeesDeadline(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend.Backend) {
		e := newEngine(t, b)
		var left time.Duration
		e.HandleFunc("deadline", func(ctx context.Context, job *Job) error {
			d, ok := ctx.Deadline()
			if !ok {
				return errors.New("no deadline")
			}
			left = time.Until(d)
			return nil
		}, Timeout(2*time.Hour))
		enqueue(t, e, "deadline", nil)
		drain(t, e)
		if left <= time.Hour || left > 2*time.Hour {
			t.Fatalf("got %v left to the deadline, want about 2h (the handler's Timeout)", left)
		}
	})
}

func TestEnginePanicIsAFailedAttempt(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend.Backend) {
		e := newEngine(t, b)
		e.HandleFunc("panics", func(ctx context.Context, job *Job) error { panic("kaboom") })
		e.HandleFunc("fine", func(ctx context.Context, job *Job) error { return nil })
		start(t, e)
		id := enqueue(t, e, "panics", nil, MaxRetries(0))
		info := wait(t, e, id)
		if info.State != StateFailed || !strings.Contains(info.Error, "kaboom") || !strings.Contains(info.Error, "goroutine") {
			t.Fatalf("got %s %q, want failed with panic value and stack", info.State, info.Error)
		}
		if got := wait(t, e, enqueue(t, e, "fine", nil)); got.State != StateCompleted {
			t.Fatalf("after a panic got %s, want the engine to run on", got.State)
		}
	})
}

func TestEngineProgressIsStoredAndHeard(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend.Backend) {
		heard := make(chan Event, 10)
		e := newEngine(t, b, WithListener(Listener{OnProgress: func(ev Event) { heard <- ev }}))
		e.HandleFunc("long", func(ctx context.Context, job *Job) error {
			return job.Progress(ctx, 50, "half way")
		})
		id := enqueue(t, e, "long", nil)
		drain(t, e)
		if info := status(t, e, id); info.Progress != 50 || info.ProgressMessage != "half way" {
			t.Fatalf("got progress %d %q, want 50 \"half way\"", info.Progress, info.ProgressMessage)
		}
		select {
		case ev := <-heard:
			if ev.JobID != id || ev.Progress != 50 || ev.Message != "half way" {
				t.Fatalf("got event %+v, want progress 50 of job %s", ev, id)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no progress event heard")
		}
	})
}

func TestEngineUniqueKey(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend.Backend) {
		clk := NewFakeClock(epoch)
		e := newEngine(t, b, WithClock(clk))
		e.HandleFunc("once", func(ctx context.Context, job *Job) error { return nil })
		first := enqueue(t, e, "once", nil, UniqueKey("meeting-1/summary"))
		dup, err := e.Enqueue(context.Background(), "once", nil, UniqueKey("meeting-1/summary"))
		if !errors.Is(err, ErrDuplicateJob) || dup != first {
			t.Fatalf("got (%q, %v), want (%q, ErrDuplicateJob)", dup, err, first)
		}
		drain(t, e)
		again := enqueue(t, e, "once", nil, UniqueKey("meeting-1/summary"))
		if again == first {
			t.Fatal("the key of a completed job was still held")
		}
		drain(t, e)
		held := enqueue(t, e, "once", nil, UniqueKey("tick"), UniqueFor(time.Hour))
		drain(t, e)
		if id, err := e.Enqueue(context.Background(), "once", nil, UniqueKey("tick"), UniqueFor(time.Hour)); !errors.Is(err, ErrDuplicateJob) || id != held {
			t.Fatalf("UniqueFor: got (%q, %v), want the held job %q with ErrDuplicateJob", id, err, held)
		}
		clk.Advance(time.Hour + time.Second)
		if _, err := e.Enqueue(context.Background(), "once", nil, UniqueKey("tick"), UniqueFor(time.Hour)); err != nil {
			t.Fatalf("after UniqueFor passed: %v", err)
		}
	})
}

func TestEngineDependencies(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend.Backend) {
		e := newEngine(t, b)
		var order []string
		e.HandleFunc("step", func(ctx context.Context, job *Job) error {
			order = append(order, string(job.Payload))
			if string(job.Payload) == "bad" {
				return errors.New("broken")
			}
			return nil
		})
		parent := enqueue(t, e, "step", []byte("parent"))
		child := enqueue(t, e, "step", []byte("child"), DependsOn(parent), Priority(10))
		if got := status(t, e, child).State; got != StateDeferred {
			t.Fatalf("got child state %q, want deferred", got)
		}
		drain(t, e)
		if want := []string{"parent", "child"}; !slices.Equal(order, want) {
			t.Fatalf("got order %v, want %v", order, want)
		}
		bad := enqueue(t, e, "step", []byte("bad"), MaxRetries(0))
		orphan := enqueue(t, e, "step", []byte("orphan"), DependsOn(bad))
		drain(t, e)
		info := status(t, e, orphan)
		if info.State != StateCanceled || !strings.Contains(info.Error, bad) {
			t.Fatalf("got orphan %s %q, want canceled naming parent %s", info.State, info.Error, bad)
		}
		if _, err := e.Enqueue(context.Background(), "step", nil, DependsOn("no-such-job")); !errors.Is(err, ErrUnknownDependency) {
			t.Fatalf("got %v, want ErrUnknownDependency", err)
		}
	})
}

func TestEngineCancel(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend.Backend) {
		e := newEngine(t, b)
		started := make(chan string, 1)
		e.HandleFunc("long", func(ctx context.Context, job *Job) error {
			started <- job.ID
			<-ctx.Done()
			return ctx.Err()
		})
		queued := enqueue(t, e, "long", nil, Delay(time.Hour))
		if err := e.Cancel(context.Background(), queued); err != nil {
			t.Fatalf("Cancel scheduled: %v", err)
		}
		if got := status(t, e, queued).State; got != StateCanceled {
			t.Fatalf("got %q, want canceled", got)
		}
		start(t, e)
		active := enqueue(t, e, "long", nil)
		<-started
		if err := e.Cancel(context.Background(), active); err != nil {
			t.Fatalf("Cancel active: %v", err)
		}
		info := wait(t, e, active)
		if info.State != StateCanceled || info.Failures != 0 {
			t.Fatalf("got %s with %d failures, want canceled and not retried", info.State, info.Failures)
		}
		if err := e.Cancel(context.Background(), "nope"); !errors.Is(err, ErrJobNotFound) {
			t.Fatalf("got %v, want ErrJobNotFound", err)
		}
	})
}

func TestEngineRequeueRunsFailedJobAgain(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend.Backend) {
		e := newEngine(t, b)
		var fail atomic.Bool
		fail.Store(true)
		e.HandleFunc("retryable", func(ctx context.Context, job *Job) error {
			if fail.Load() {
				return errors.New("down")
			}
			return nil
		})
		id := enqueue(t, e, "retryable", nil, MaxRetries(0))
		drain(t, e)
		if err := e.Requeue(context.Background(), id); err != nil {
			t.Fatalf("Requeue: %v", err)
		}
		fail.Store(false)
		drain(t, e)
		if info := status(t, e, id); info.State != StateCompleted || info.Error != "" {
			t.Fatalf("got %s %q, want completed with the error cleared", info.State, info.Error)
		}
		if err := e.Requeue(context.Background(), id); !errors.Is(err, ErrInvalidState) {
			t.Fatalf("Requeue of completed job: got %v, want ErrInvalidState", err)
		}
	})
}

func TestEngineRefusesBadInput(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend.Backend) {
		e := newEngine(t, b, WithMaxPayloadSize(16))
		ctx := context.Background()
		tests := []struct {
			name    string
			typ     string
			payload any
			opts    []EnqueueOption
			want    error
		}{
			{"empty type", "", nil, nil, ErrEmptyType},
			{"unencodable payload", "t", make(chan int), nil, ErrInvalidPayload},
			{"oversized payload", "t", strings.Repeat("x", 32), nil, ErrPayloadTooLarge},
			{"negative delay", "t", nil, []EnqueueOption{Delay(-time.Second)}, ErrInvalidOption},
			{"negative retries", "t", nil, []EnqueueOption{MaxRetries(-1)}, ErrInvalidOption},
			{"zero timeout", "t", nil, []EnqueueOption{Timeout(0)}, ErrInvalidOption},
			{"empty queue", "t", nil, []EnqueueOption{Queue("")}, ErrInvalidOption},
			{"unknown dependency", "t", nil, []EnqueueOption{DependsOn("missing")}, ErrUnknownDependency},
		}
		for _, tt := range tests {
			if _, err := e.Enqueue(ctx, tt.typ, tt.payload, tt.opts...); !errors.Is(err, tt.want) {
				t.Errorf("%s: got %v, want %v", tt.name, err, tt.want)
			}
		}
		page, err := e.Jobs(ctx, JobFilter{})
		if err != nil || len(page.Jobs) != 0 {
			t.Fatalf("got %d jobs stored (err %v), want none", len(page.Jobs), err)
		}
		if _, err := e.Status(ctx, "missing"); !errors.Is(err, ErrJobNotFound) {
			t.Fatalf("Status: got %v, want ErrJobNotFound", err)
		}
		if _, err := New(WithConcurrency(0)); !errors.Is(err, ErrInvalidOption) {
			t.Fatalf("New: got %v, want ErrInvalidOption", err)
		}
	})
}

func TestEngineBadPayloadAndMissingHandler(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend.Backend) {
		clk := NewFakeClock(epoch)
		e := newEngine(t, b, WithClock(clk))
		Handle(e, "add", func(ctx context.Context, job *Job, in addArgs) (addResult, error) {
			return addResult{}, nil
		})
		bad := enqueue(t, e, "add", []byte(`{"A":"not a number"}`))
		orphan := enqueue(t, e, "unhandled", nil)
		drain(t, e)
		info := status(t, e, bad)
		if info.State != StateFailed || info.Attempt != 1 || !strings.Contains(info.Error, `"add"`) {
			t.Fatalf("bad payload: got %s after %d attempts %q, want failed at once naming the type", info.State, info.Attempt, info.Error)
		}
		info = status(t, e, orphan)
		if info.State != StateRetrying || !strings.Contains(info.Error, `"unhandled"`) {
			t.Fatalf("missing handler: got %s %q, want retrying with an error naming the type", info.State, info.Error)
		}
	})
}

func TestEngineShutdownHandsRunningJobsBack(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend.Backend) {
		e := newEngine(t, b, WithShutdownTimeout(20*time.Millisecond))
		started := make(chan struct{})
		e.HandleFunc("slow", func(ctx context.Context, job *Job) error {
			close(started)
			<-ctx.Done()
			return ctx.Err()
		})
		id := enqueue(t, e, "slow", nil)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- e.Run(ctx) }()
		<-started
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run: %v", err)
		}
		info := status(t, e, id)
		if info.State != StateQueued || info.Failures != 0 || info.Stalls != 0 {
			t.Fatalf("got %s with %d failures and %d stalls, want queued with neither", info.State, info.Failures, info.Stalls)
		}
	})
}

func TestEngineReapsDeadWorkersJob(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend.Backend) {
		stalled := make(chan Event, 1)
		e := newEngine(t, b, WithLease(100*time.Millisecond), WithListener(Listener{OnStalled: func(ev Event) { stalled <- ev }}))
		e.HandleFunc("work", func(ctx context.Context, job *Job) error { return nil })
		id := enqueue(t, e, "work", nil)
		// A worker in another process leases the job and dies.
		leases, err := b.Lease(context.Background(), backend.LeaseRequest{Queues: []string{DefaultQueue}, Worker: "dead", Max: 1, Now: time.Now(), TTL: 50 * time.Millisecond})
		if err != nil || len(leases) != 1 {
			t.Fatalf("lease as the dead worker: %v (%d leases)", err, len(leases))
		}
		start(t, e)
		info := wait(t, e, id)
		if info.State != StateCompleted || info.Stalls != 1 || info.Failures != 0 {
			t.Fatalf("got %s with %d stalls and %d failures, want completed after one stall and no failure", info.State, info.Stalls, info.Failures)
		}
		select {
		case ev := <-stalled:
			if ev.JobID != id {
				t.Fatalf("got stalled event for %s, want %s", ev.JobID, id)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no stalled event heard")
		}
		// The dead worker's late acknowledgement is refused.
		errs, err := b.Finish(context.Background(), time.Now(), []backend.Ack{{Lease: leases[0].Ref(), Outcome: backend.OutcomeFailed, Error: "late"}})
		if err != nil || !errors.Is(errs[0], ErrLeaseLost) {
			t.Fatalf("late ack: got %v / %v, want ErrLeaseLost", errs, err)
		}
	})
}

func TestEngineHooksFireInOrderAndSurvivePanics(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend.Backend) {
		var mu sync.Mutex
		kinds := map[string][]EventKind{}
		done := make(chan struct{})
		record := func(ev Event) {
			mu.Lock()
			defer mu.Unlock()
			kinds[ev.JobID] = append(kinds[ev.JobID], ev.Kind)
			if ev.Kind == EventCompleted && len(kinds) == 3 && countKind(kinds, EventCompleted) == 3 {
				close(done)
			}
		}
		e := newEngine(t, b, WithListener(Listener{
			OnQueued:    func(Event) { panic("listener bug") },
			OnEvent:     record,
			OnCompleted: func(Event) { time.Sleep(time.Millisecond) },
		}))
		e.HandleFunc("ok", func(ctx context.Context, job *Job) error { return nil })
		start(t, e)
		for range 3 {
			enqueue(t, e, "ok", nil)
		}
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("not every completion was heard")
		}
		mu.Lock()
		defer mu.Unlock()
		for id, ks := range kinds {
			if want := []EventKind{EventQueued, EventActive, EventCompleted}; !slices.Equal(ks, want) {
				t.Errorf("job %s: got events %v, want %v", id, ks, want)
			}
		}
	})
}

func countKind(m map[string][]EventKind, k EventKind) int {
	n := 0
	for _, ks := range m {
		if slices.Contains(ks, k) {
			n++
		}
	}
	return n
}

func TestEngineMiddlewareAndMeta(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend.Backend) {
		var calls []string
		mw := func(name string) Middleware {
			return func(next Handler) Handler {
				return HandlerFunc(func(ctx context.Context, job *Job) error {
					calls = append(calls, name)
					return next.Handle(ctx, job)
				})
			}
		}
		e := newEngine(t, b, WithMiddleware(mw("outer"), mw("inner")))
		var tenant string
		e.HandleFunc("t", func(ctx context.Context, job *Job) error {
			calls = append(calls, "handler")
			tenant = job.Meta["tenant"]
			return nil
		})
		id := enqueue(t, e, "t", nil, Meta("tenant", "acme"))
		drain(t, e)
		if want := []string{"outer", "inner", "handler"}; !slices.Equal(calls, want) {
			t.Fatalf("got calls %v, want %v", calls, want)
		}
		if tenant != "acme" || status(t, e, id).Meta["tenant"] != "acme" {
			t.Fatalf("got tenant %q, want acme in the handler and JobInfo", tenant)
		}
	})
}

func TestEngineStatsWorkersAndListing(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend.Backend) {
		e := newEngine(t, b, WithQueues("ai", "default"), WithWorkerName("worker-1"), WithConcurrency(3))
		e.HandleFunc("ok", func(ctx context.Context, job *Job) error { return nil })
		var ids []string
		for i := range 5 {
			ids = append(ids, enqueue(t, e, "ok", i, Queue("ai")))
		}
		enqueue(t, e, "other", nil)
		ctx := context.Background()
		var seen []string
		cursor := ""
		for {
			page, err := e.Jobs(ctx, JobFilter{Queue: "ai", Limit: 2, Cursor: cursor})
			if err != nil {
				t.Fatalf("Jobs: %v", err)
			}
			for _, j := range page.Jobs {
				seen = append(seen, j.ID)
			}
			if page.Next == "" {
				break
			}
			cursor = page.Next
		}
		if !slices.Equal(seen, ids) {
			t.Fatalf("paged listing got %v, want %v", seen, ids)
		}
		start(t, e)
		for _, id := range ids {
			wait(t, e, id)
		}
		stats, err := e.Stats(ctx)
		if err != nil {
			t.Fatalf("Stats: %v", err)
		}
		var ai *QueueStats
		for i := range stats {
			if stats[i].Queue == "ai" {
				ai = &stats[i]
			}
		}
		if ai == nil || ai.Completed != 5 || ai.Queued != 0 || ai.Workers != 1 || ai.Processed != 5 {
			t.Fatalf("got ai stats %+v, want 5 completed, 5 processed, 1 worker", ai)
		}
		raw, _ := json.Marshal(ai)
		for _, key := range []string{"queue_name", "job_count", "started_job_registry_count", "finished_job_registry_count", "failed_job_registry_count", "worker_count", "timestamp"} {
			if !strings.Contains(string(raw), `"`+key+`"`) {
				t.Errorf("stats JSON %s lacks key %q", raw, key)
			}
		}
		ws, err := e.Workers(ctx)
		if err != nil || len(ws) != 1 || ws[0].Name != "worker-1" || ws[0].Concurrency != 3 || !slices.Equal(ws[0].Queues, []string{"ai", "default"}) {
			t.Fatalf("got workers %+v (err %v), want worker-1 with its queues and concurrency", ws, err)
		}
	})
}

func TestJobInfoJSON(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend.Backend) {
		e := newEngine(t, b)
		Handle(e, "add", func(ctx context.Context, job *Job, in addArgs) (addResult, error) {
			return addResult{Sum: in.A + in.B}, nil
		})
		id := enqueue(t, e, "add", addArgs{A: 1, B: 1})
		drain(t, e)
		raw, err := json.Marshal(status(t, e, id))
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("Unmarshal: %v", err)
		}
		for _, key := range []string{"job_id", "type", "queue", "status", "attempt", "max_retries", "progress", "result", "error", "created_at", "started_at", "finished_at"} {
			if _, ok := m[key]; !ok {
				t.Errorf("JobInfo JSON %s lacks key %q", raw, key)
			}
		}
		if res, ok := m["result"].(map[string]any); !ok || res["Sum"] != float64(2) {
			t.Fatalf("got result %v, want nested JSON {\"Sum\":2}", m["result"])
		}
		if _, err := time.Parse(time.RFC3339, m["created_at"].(string)); err != nil {
			t.Fatalf("created_at is not RFC 3339: %v", err)
		}
		var back JobInfo
		if err := json.Unmarshal(raw, &back); err != nil || back.ID != id || back.State != StateCompleted {
			t.Fatalf("round trip: got %+v, %v", back, err)
		}
	})
}

func TestEngineWaitAndListenAcrossEngines(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend.Backend) {
		completed := make(chan Event, 1)
		api := newEngine(t, b, WithListener(Listener{OnCompleted: func(ev Event) { completed <- ev }}))
		worker := newEngine(t, b)
		Handle(worker, "add", func(ctx context.Context, job *Job, in addArgs) (addResult, error) {
			return addResult{Sum: in.A + in.B}, nil
		})
		start(t, worker)
		id := enqueue(t, api, "add", addArgs{A: 20, B: 22})
		got, err := Result[addResult](context.Background(), api, id)
		if err != nil || got.Sum != 42 {
			t.Fatalf("got %+v, %v, want Sum 42", got, err)
		}
		select {
		case ev := <-completed:
			if ev.JobID != id || string(ev.Result) != `{"Sum":42}` {
				t.Fatalf("got event %+v, want completion of %s with its result", ev, id)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the API engine heard no completion")
		}
	})
}

func TestEngineLeaseLostStopsLateWorker(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend.Backend) {
		clk := NewFakeClock(epoch)
		e := newEngine(t, b, WithClock(clk), WithLease(time.Minute))
		var progressErr error
		e.HandleFunc("slow", func(ctx context.Context, job *Job) error {
			// The lease expires and another worker takes the job meanwhile.
			clk.Advance(2 * time.Minute)
			if _, err := b.Reap(ctx, clk.Now()); err != nil {
				return err
			}
			if _, err := b.Lease(ctx, backend.LeaseRequest{Queues: []string{DefaultQueue}, Worker: "other", Max: 1, Now: clk.Now(), TTL: time.Minute}); err != nil {
				return err
			}
			progressErr = job.Progress(ctx, 10, "still here")
			return nil
		})
		id := enqueue(t, e, "slow", nil)
		drain(t, e)
		if !errors.Is(progressErr, ErrLeaseLost) {
			t.Fatalf("got Progress error %v, want ErrLeaseLost", progressErr)
		}
		info := status(t, e, id)
		if info.State != StateActive || info.Worker != "other" {
			t.Fatalf("got %s held by %q, want active held by the other worker", info.State, info.Worker)
		}
	})
}

func TestEngineSweepsExpiredResults(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend.Backend) {
		clk := NewFakeClock(epoch)
		e := newEngine(t, b, WithClock(clk))
		e.HandleFunc("ok", func(ctx context.Context, job *Job) error { return nil })
		id := enqueue(t, e, "ok", nil, ResultTTL(time.Hour))
		drain(t, e)
		clk.Advance(59 * time.Minute)
		drain(t, e)
		status(t, e, id)
		clk.Advance(2 * time.Minute)
		drain(t, e)
		if _, err := e.Status(context.Background(), id); !errors.Is(err, ErrJobNotFound) {
			t.Fatalf("after the result TTL got %v, want ErrJobNotFound", err)
		}
	})
}

func TestEngineEnqueueMany(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend.Backend) {
		e := newEngine(t, b)
		res, err := e.EnqueueMany(context.Background(), []JobSpec{
			{Type: "a", Payload: 1},
			{Type: "b", Payload: 2, Options: []EnqueueOption{UniqueKey("k")}},
			{Type: "b", Payload: 3, Options: []EnqueueOption{UniqueKey("k")}},
		})
		if err != nil {
			t.Fatalf("EnqueueMany: %v", err)
		}
		if res[0].Err != nil || res[1].Err != nil || !errors.Is(res[2].Err, ErrDuplicateJob) || res[2].ID != res[1].ID {
			t.Fatalf("got %+v, want two stored and a duplicate of the second", res)
		}
		if _, err := e.EnqueueMany(context.Background(), []JobSpec{{Type: "ok"}, {Type: ""}}); !errors.Is(err, ErrEmptyType) {
			t.Fatalf("got %v, want ErrEmptyType for the batch", err)
		}
	})
}

func TestEngineHeartbeatsKeepLongJobsLeased(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend.Backend) {
		e := newEngine(t, b, WithLease(600*time.Millisecond))
		e.HandleFunc("long", func(ctx context.Context, job *Job) error {
			// The work outlasts several leases; heartbeats must renew it.
			select {
			case <-time.After(2 * time.Second):
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
		start(t, e)
		info := wait(t, e, enqueue(t, e, "long", nil))
		if info.State != StateCompleted || info.Stalls != 0 || info.Attempt != 1 {
			t.Fatalf("got %s after %d attempts with %d stalls, want completed in one attempt without stalls", info.State, info.Attempt, info.Stalls)
		}
	})
}

func TestEngineBlockedListenerDoesNotBlockWorkers(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend.Backend) {
		unblock := make(chan struct{})
		e := newEngine(t, b, WithListener(Listener{OnActive: func(Event) { <-unblock }}))
		t.Cleanup(func() { close(unblock) })
		e.HandleFunc("ok", func(ctx context.Context, job *Job) error { return nil })
		start(t, e)
		for range 5 {
			if got := wait(t, e, enqueue(t, e, "ok", nil)); got.State != StateCompleted {
				t.Fatalf("got %s, want completed while a listener is stuck", got.State)
			}
		}
	})
}

func TestEngineCancelReachesJobRunningInAnotherEngine(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend.Backend) {
		api := newEngine(t, b)
		// A long lease: heartbeats (every third of it) come too late to be
		// what stops the job within the test's wait.
		worker := newEngine(t, b, WithLease(time.Minute))
		running := make(chan struct{})
		stopped := make(chan error, 1)
		worker.HandleFunc("long", func(ctx context.Context, job *Job) error {
			close(running)
			<-ctx.Done()
			stopped <- ctx.Err()
			return ctx.Err()
		})
		start(t, worker)
		id := enqueue(t, api, "long", nil)
		<-running
		if err := api.Cancel(context.Background(), id); err != nil {
			t.Fatalf("Cancel from the other engine: %v", err)
		}
		select {
		case err := <-stopped:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("handler's context ended with %v, want context.Canceled", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the cancel asked in another engine did not reach the running handler within 10s")
		}
		if info := wait(t, api, id); info.State != StateCanceled {
			t.Fatalf("job canceled while running elsewhere: got state %s, want canceled", info.State)
		}
	})
}

// countingBackend counts the calls that read the whole event log.
type countingBackend struct {
	backend.Backend
	readEvents atomic.Int64
}

func (c *countingBackend) ReadEvents(ctx context.Context, cursor string, max int) ([]backend.Event, error) {
	c.readEvents.Add(1)
	return c.Backend.ReadEvents(ctx, cursor, max)
}

func TestEngineReadsEventsOnlyForListenersAndWaits(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend.Backend) {
		cb := &countingBackend{Backend: b}
		e := newEngine(t, cb, WithConcurrency(4))
		e.hub.linger = 0 // stop the reader as soon as the last Wait returns
		var ran sync.WaitGroup
		ran.Add(20)
		e.HandleFunc("noop", func(ctx context.Context, job *Job) error { ran.Done(); return nil })
		start(t, e)
		for range 20 {
			enqueue(t, e, "noop", nil)
		}
		ran.Wait()
		if n := cb.readEvents.Load(); n != 0 {
			t.Fatalf("engine running jobs with no listener and no Wait: read the event log %d times, want 0", n)
		}
		// A Wait reads it while it waits, and stops when it returns.
		ran.Add(1)
		id := enqueue(t, e, "noop", nil)
		if info := wait(t, e, id); info.State != StateCompleted {
			t.Fatalf("Wait: got state %s, want completed", info.State)
		}
		e.hub.mu.Lock()
		started := e.hub.started
		e.hub.mu.Unlock()
		if started {
			t.Fatal("event reader still running after the last Wait returned")
		}
	})
}

func TestEngineWaitsInABurstShareOneEventReader(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend.Backend) {
		e := newEngine(t, b)
		e.HandleFunc("noop", func(ctx context.Context, job *Job) error { return nil })
		start(t, e)
		for range 20 {
			if info := wait(t, e, enqueue(t, e, "noop", nil)); info.State != StateCompleted {
				t.Fatalf("Wait: got state %s, want completed", info.State)
			}
		}
		e.hub.mu.Lock()
		started, gen := e.hub.started, e.hub.gen
		e.hub.mu.Unlock()
		if !started || gen != 1 {
			t.Fatalf("after 20 Waits in a row: reader running %v, started %d times; want one reader, still running within its linger", started, gen)
		}
	})
}
