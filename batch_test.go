package engine

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jobrelay/engine/backend"
	"github.com/jobrelay/engine/backend/memory"
)

// gathering is a memory backend that asks the engine to gather its calls
// (backend.Batcher) and records what each Lease and Finish call carried.
type gathering struct {
	backend.Backend
	window time.Duration

	mu       sync.Mutex
	leases   [][]string // the IDs of each Lease call that returned jobs
	finishes []int      // the acks of each Finish call
}

func newGathering(t *testing.T, window time.Duration) *gathering {
	b := memory.New(memory.Options{})
	t.Cleanup(func() { b.Close() })
	return &gathering{Backend: b, window: window}
}

func (g *gathering) BatchWindow() time.Duration { return g.window }

func (g *gathering) Lease(ctx context.Context, req backend.LeaseRequest) ([]*backend.Lease, error) {
	leases, err := g.Backend.Lease(ctx, req)
	if len(leases) > 0 {
		ids := make([]string, len(leases))
		for i, l := range leases {
			ids[i] = l.Job.ID
		}
		slices.Sort(ids)
		g.mu.Lock()
		g.leases = append(g.leases, ids)
		g.mu.Unlock()
	}
	return leases, err
}

func (g *gathering) Finish(ctx context.Context, now time.Time, acks []backend.Ack) ([]error, error) {
	g.mu.Lock()
	g.finishes = append(g.finishes, len(acks))
	g.mu.Unlock()
	return g.Backend.Finish(ctx, now, acks)
}

func (g *gathering) calls() ([][]string, []int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.leases), slices.Clone(g.finishes)
}

// Jobs that arrive just after a Lease call that came back with several jobs,
// but fewer than it asked for, wait for the window and then go in one call.
func TestEngineBatchWindowGathersLeasesWhileBusy(t *testing.T) {
	g := newGathering(t, time.Second) // long enough that no stall of a loaded machine ends it early
	e := newEngine(t, g, WithConcurrency(6))
	var running sync.WaitGroup
	running.Add(2)
	release := make(chan struct{})
	e.HandleFunc("long", func(ctx context.Context, job *Job) error {
		running.Done()
		<-release
		return nil
	})
	e.HandleFunc("noop", func(ctx context.Context, job *Job) error { return nil })
	long, err := e.EnqueueMany(context.Background(), []JobSpec{{Type: "long"}, {Type: "long"}})
	if err != nil {
		t.Fatal(err)
	}
	start(t, e) // the first Lease finds both at once: 2 of the 6 asked
	running.Wait()
	var ids []string
	for range 3 {
		ids = append(ids, enqueue(t, e, "noop", nil))
	}
	for _, id := range ids {
		if info := wait(t, e, id); info.State != StateCompleted {
			t.Fatalf("job %s: %s", id, info.State)
		}
	}
	close(release)
	for _, r := range long {
		wait(t, e, r.ID)
	}
	leases, _ := g.calls()
	slices.Sort(ids)
	if !slices.ContainsFunc(leases, func(got []string) bool { return slices.Equal(got, ids) }) {
		t.Fatalf("Lease calls returned %v; want the three jobs enqueued while the first two ran in one call", leases)
	}
}

// The acks of jobs that run together go in one Finish call.
func TestEngineBatchWindowGathersAcks(t *testing.T) {
	g := newGathering(t, time.Second)
	e := newEngine(t, g, WithConcurrency(8))
	e.HandleFunc("noop", func(ctx context.Context, job *Job) error { return nil })
	specs := make([]JobSpec, 8)
	for i := range specs {
		specs[i] = JobSpec{Type: "noop"}
	}
	res, err := e.EnqueueMany(context.Background(), specs)
	if err != nil {
		t.Fatal(err)
	}
	start(t, e)
	for _, r := range res {
		wait(t, e, r.ID)
	}
	leases, finishes := g.calls()
	if len(leases) != 1 || len(finishes) != 1 || finishes[0] != 8 {
		t.Fatalf("Lease calls %v, Finish calls of %v acks; want one of each for the 8 jobs", leases, finishes)
	}
}

// A lone job never waits for the window: it starts and is acknowledged at
// once, and so is the next, as for a client that waits for each job before
// it enqueues the next.
func TestEngineBatchWindowIdleEngineDoesNotWait(t *testing.T) {
	const window = time.Second
	g := newGathering(t, window)
	e := newEngine(t, g, WithConcurrency(4))
	e.HandleFunc("noop", func(ctx context.Context, job *Job) error { return nil })
	start(t, e)
	for i := range 3 {
		t0 := time.Now()
		wait(t, e, enqueue(t, e, "noop", nil))
		// Waiting for the window would take it whole; a lone job's round
		// trip on the memory backend takes well under a millisecond.
		if d := time.Since(t0); d >= window/2 {
			t.Fatalf("lone job %d took %s with a batch window of %s", i, d, window)
		}
	}
	if _, finishes := g.calls(); len(finishes) != 3 {
		t.Fatalf("Finish calls of %v acks; want one per lone job", finishes)
	}
}

func TestWithBatchWindow(t *testing.T) {
	for _, d := range []time.Duration{-time.Millisecond, 2 * time.Second} {
		if _, err := New(WithBatchWindow(d)); !errors.Is(err, ErrInvalidOption) {
			t.Errorf("WithBatchWindow(%s): got %v, want ErrInvalidOption", d, err)
		}
	}
	g := newGathering(t, time.Millisecond)
	for _, c := range []struct {
		opts []Option
		want time.Duration
	}{
		{nil, time.Millisecond},                                         // the backend's
		{[]Option{WithBatchWindow(0)}, 0},                               // turned off
		{[]Option{WithBatchWindow(time.Microsecond)}, time.Microsecond}, // overridden
	} {
		if got := newEngine(t, g, c.opts...).cfg.batchWindow; got != c.want {
			t.Errorf("with %d options: window %s, want %s", len(c.opts), got, c.want)
		}
	}
	m := memory.New(memory.Options{})
	defer m.Close()
	if got := newEngine(t, m).cfg.batchWindow; got != 0 {
		t.Errorf("memory backend: window %s, want none", got)
	}
}

// A backlog of short jobs on a busy pool goes out in Lease and Finish calls
// of several jobs each, even without a batch window: the dispatcher and the
// acker let the workers about to finish go first, rather than calling once
// for each worker as it frees.
func TestEngineBusyPoolLeasesAndAcksSeveralJobsACall(t *testing.T) {
	g := newGathering(t, 0) // no batch window, as with the memory backend
	e := newEngine(t, g, WithConcurrency(16))
	const jobs = 4000
	var done sync.WaitGroup
	done.Add(jobs)
	e.HandleFunc("noop", func(ctx context.Context, job *Job) error { done.Done(); return nil })
	specs := make([]JobSpec, jobs)
	for i := range specs {
		specs[i] = JobSpec{Type: "noop"}
	}
	if _, err := e.EnqueueMany(context.Background(), specs); err != nil {
		t.Fatal(err)
	}
	start(t, e)
	done.Wait()
	// Every Lease call is done; the last acks may still be on their way.
	leases, finishes := g.calls()
	if perCall := float64(jobs) / float64(len(leases)); perCall < 2 {
		t.Errorf("%d jobs took %d Lease calls (%.1f a call); want several jobs a call", jobs, len(leases), perCall)
	}
	if perCall := float64(jobs) / float64(len(finishes)); perCall < 2 {
		t.Errorf("%d jobs took at least %d Finish calls (%.1f a call); want several acks a call", jobs, len(finishes), perCall)
	}
}
