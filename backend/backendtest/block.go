package backendtest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jobrelay/engine/backend"
)

// wakeBlock is the Block of a Lease that a case expects to be woken: long
// enough that a backend that forgets to wake it fails clearly, short enough
// that the failing case ends soon.
const wakeBlock = 3 * time.Second

// leaseOutcome is what a Lease in a goroutine returned.
type leaseOutcome struct {
	leases []*backend.Lease
	err    error
	took   time.Duration
}

// leaseAsync runs a Lease in a goroutine. started is closed just before the
// call; done yields its outcome once.
func leaseAsync(ctx context.Context, b backend.Backend, req backend.LeaseRequest) (started <-chan struct{}, done <-chan leaseOutcome) {
	s := make(chan struct{})
	d := make(chan leaseOutcome, 1)
	go func() {
		close(s)
		begin := time.Now()
		ls, err := b.Lease(ctx, req)
		d <- leaseOutcome{ls, err, time.Since(begin)}
	}()
	return s, d
}

// letItBlock gives a Lease that has just been started the time to reach its
// wait. The cases pass whether or not it has (a job already there is
// leased at once); the pause only makes them exercise the wake-up, which
// no backend call can report.
func letItBlock() { time.Sleep(50 * time.Millisecond) }

// await returns the outcome of an async call, failing if it does not come
// within limit.
func await[T any](t *testing.T, done <-chan T, limit time.Duration, what string) T {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(limit):
		t.Fatalf("%s: still blocked after %v, want it to return", what, limit)
		panic("unreachable")
	}
}

func testBlock(t *testing.T, h Harness) {
	t.Run("TimesOut", func(t *testing.T) {
		f := newFixture(t, h)
		f.add(inQueue("elsewhere"))
		const block = 150 * time.Millisecond
		req := request(f.t0, 5)
		req.Block = block
		begin := time.Now()
		ls, err := f.b.Lease(f.ctx, req)
		took := time.Since(begin)
		if err != nil || len(ls) != 0 {
			t.Fatalf("Lease with nothing to do: got %d jobs and error %v, want none and nil", len(ls), err)
		}
		// A server's timeout may be coarse (Redis checks ten times a
		// second), hence the slack below the Block.
		if took < block/2 || took > block+3*time.Second {
			t.Errorf("Lease with Block %v and nothing to do: returned after %v, want about %v", block, took, block)
		}
	})

	// Each way a job becomes queued wakes a Lease blocked on its queue.
	wakes := []struct {
		name  string
		setup func(f *fixture) string // returns the job that the act makes queued
		act   func(f *fixture, id string)
	}{
		{"Enqueue",
			func(f *fixture) string { return "job-wake" },
			func(f *fixture, id string) { f.addAt(f.at(time.Hour), withID(id)) }},
		{"Promote",
			func(f *fixture) string { return f.add(runAt(f.at(time.Minute))) },
			func(f *fixture, id string) { f.promote(f.at(time.Minute)) }},
		{"Release",
			func(f *fixture) string { id := f.add(); f.leaseID(f.t0, id); return id },
			func(f *fixture, id string) {
				j := f.job(id)
				f.release(f.at(time.Hour), &backend.Lease{Job: j})
			}},
		{"Reap",
			func(f *fixture) string { id := f.add(); f.leaseID(f.t0, id); return id },
			func(f *fixture, id string) { f.reap(f.at(time.Hour)) }},
		{"Requeue",
			func(f *fixture) string { id := f.add(); f.fail(f.t0, f.leaseID(f.t0, id), "boom"); return id },
			func(f *fixture, id string) {
				if err := f.b.Requeue(f.ctx, f.at(time.Hour), id); err != nil {
					f.t.Fatalf("Requeue: got error %v, want nil", err)
				}
			}},
		{"DependencyResolved",
			func(f *fixture) string {
				parent := f.add(inQueue("parents"))
				f.leaseID(f.t0, parent, "parents")
				return f.add(dependsOn(parent))
			},
			func(f *fixture, id string) {
				parent := f.job(id).DependsOn[0]
				f.complete(f.at(time.Hour), &backend.Lease{Job: f.job(parent)}, `"done"`)
			}},
		{"Resume",
			func(f *fixture) string {
				if err := f.b.Pause(f.ctx, f.t0, "default"); err != nil {
					f.t.Fatalf("Pause: got error %v, want nil", err)
				}
				return f.add()
			},
			func(f *fixture, id string) {
				if err := f.b.Resume(f.ctx, f.at(time.Hour), "default"); err != nil {
					f.t.Fatalf("Resume: got error %v, want nil", err)
				}
			}},
	}
	for _, w := range wakes {
		t.Run("WokenBy"+w.name, func(t *testing.T) {
			f := newFixture(t, h)
			id := w.setup(f)
			req := request(f.at(2*time.Hour), 1)
			req.Block = wakeBlock
			started, done := leaseAsync(f.ctx, f.b, req)
			<-started
			letItBlock()
			w.act(f, id)
			r := await(t, done, wakeBlock+5*time.Second, "blocked Lease")
			if r.err != nil {
				t.Fatalf("blocked Lease: got error %v, want nil", r.err)
			}
			if len(r.leases) != 1 || r.leases[0].Job.ID != id {
				t.Fatalf("blocked Lease: got %v, want job %s", leasedIDs(r.leases), id)
			}
			if r.took >= wakeBlock*2/3 {
				t.Errorf("blocked Lease: returned after %v, want it woken at once, well before its Block of %v", r.took, wakeBlock)
			}
		})
	}

	t.Run("ContextCanceled", func(t *testing.T) {
		f := newFixture(t, h)
		ctx, cancel := context.WithTimeout(f.ctx, 100*time.Millisecond)
		defer cancel()
		req := request(f.t0, 1)
		req.Block = time.Minute
		_, done := leaseAsync(ctx, f.b, req)
		r := await(t, done, 10*time.Second, "Lease whose context ended")
		if len(r.leases) != 0 {
			t.Errorf("Lease whose context ended: got %d jobs, want none", len(r.leases))
		}
		if r.err != nil && !errors.Is(r.err, context.DeadlineExceeded) {
			t.Errorf("Lease whose context ended: got error %v, want nil or context.DeadlineExceeded", r.err)
		}
	})
}
