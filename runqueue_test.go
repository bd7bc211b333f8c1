package engine

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/jobrelay/engine/backend/memory"
)

// failAfter is how long a test waits for what should happen at once before
// it fails; it only bounds a failure, nothing waits for it to pass.
const failAfter = 20 * time.Second

// Runs pushed at once all start, each on its own parked worker, while the
// workers that took the first ones stay in their handlers: the wake-ups
// chain from one worker to the next.
func TestRunQueueWakesAWorkerForEveryRunWhileOthersHold(t *testing.T) {
	const workers = 4
	q := newRunQueue(workers)
	took := make(chan *run)
	hold := make(chan struct{})
	var done sync.WaitGroup
	for range workers {
		done.Go(func() {
			for {
				r, ok := q.take()
				if !ok {
					return
				}
				took <- r
				<-hold
				q.search()
			}
		})
	}
	waitParked(t, q, workers)
	runs := []*run{{}, {}, {}}
	q.push(runs)
	seen := map[*run]bool{}
	for range runs {
		select {
		case r := <-took:
			seen[r] = true
		case <-time.After(failAfter):
			t.Fatalf("%d of %d runs taken while the workers that took them hold; want every run on a worker of its own", len(seen), len(runs))
		}
	}
	for _, r := range runs {
		if !seen[r] {
			t.Errorf("run %p not taken", r)
		}
	}
	close(hold)
	q.close()
	done.Wait()
}

// waitParked returns once n workers are parked on q, so that what the test
// pushes next has to wake them.
func waitParked(t *testing.T, q *runQueue, n int) {
	t.Helper()
	deadline := time.Now().Add(failAfter)
	for {
		q.mu.Lock()
		parked := q.parked
		q.mu.Unlock()
		if parked == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %d workers parked, want %d", parked, n)
		}
		runtime.Gosched()
	}
}

// Closing the queue lets the workers take what is queued, then leave.
func TestRunQueueCloseHandsOutWhatIsQueued(t *testing.T) {
	q := newRunQueue(2)
	q.push([]*run{{}, {}, {}})
	q.close()
	taken := 0
	var mu sync.Mutex
	var done sync.WaitGroup
	for range 2 {
		done.Go(func() {
			for {
				if _, ok := q.take(); !ok {
					return
				}
				mu.Lock()
				taken++
				mu.Unlock()
				q.search()
			}
		})
	}
	done.Wait()
	if taken != 3 {
		t.Errorf("got %d runs taken after close, want 3", taken)
	}
}

// A pool runs at most its concurrency of handlers at once, and each
// started handler that blocks leaves the others free for the jobs behind
// it: with every worker but one held, short jobs still all run.
func TestEnginePoolHoldsItsConcurrencyAndNoJobWaitsBehindABlockedOne(t *testing.T) {
	const concurrency = 4
	b := memory.New(memory.Options{})
	t.Cleanup(func() { b.Close() })
	e := newEngine(t, b, WithConcurrency(concurrency))
	var gauge concurrencyGauge
	started := make(chan struct{}, 2*concurrency)
	release := make(chan struct{})
	e.HandleFunc("hold", func(ctx context.Context, job *Job) error {
		gauge.enter()
		defer gauge.leave()
		started <- struct{}{}
		<-release
		return nil
	})
	const short = 2000
	var shortDone sync.WaitGroup
	shortDone.Add(short)
	e.HandleFunc("short", func(ctx context.Context, job *Job) error {
		gauge.enter()
		defer gauge.leave()
		shortDone.Done()
		return nil
	})
	specs := make([]JobSpec, 2*concurrency)
	for i := range specs {
		specs[i] = JobSpec{Type: "hold"}
	}
	if _, err := e.EnqueueMany(context.Background(), specs); err != nil {
		t.Fatal(err)
	}
	start(t, e)
	var releaseOnce sync.Once
	releaseAll := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(releaseAll) // before start's cleanup, which waits for the handlers
	// The first concurrency held jobs start together.
	for i := range concurrency {
		select {
		case <-started:
		case <-time.After(failAfter):
			t.Fatalf("%d held jobs started, want %d at once", i, concurrency)
		}
	}
	if got := gauge.now.Load(); got != concurrency {
		t.Fatalf("got %d handlers running, want %d", got, concurrency)
	}
	// Let all but one of the held jobs end, one at a time: each frees a
	// worker for the next held job, until the last of them holds alone.
	for range 2*concurrency - 1 {
		release <- struct{}{}
	}
	for range concurrency {
		select {
		case <-started:
		case <-time.After(failAfter):
			t.Fatal("a held job did not start once a worker was free")
		}
	}
	shortSpecs := make([]JobSpec, short)
	for i := range shortSpecs {
		shortSpecs[i] = JobSpec{Type: "short"}
	}
	if _, err := e.EnqueueMany(context.Background(), shortSpecs); err != nil {
		t.Fatal(err)
	}
	finished := make(chan struct{})
	go func() { shortDone.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(failAfter):
		t.Fatal("short jobs did not all run while one held job blocked one worker")
	}
	releaseAll()
	if m := gauge.most.Load(); m > concurrency {
		t.Errorf("got %d handlers at once, want at most %d", m, concurrency)
	}
}
