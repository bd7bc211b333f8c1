package backendtest

import (
	"testing"
	"time"

	"github.com/jobrelay/engine/backend"
)

func testSweep(t *testing.T, h Harness) {
	// ExpiresAt is FinishedAt plus the TTL that fits how the job ended.
	ends := []struct {
		name  string
		state backend.State
		end   func(f *fixture, id string, now time.Time)
		ttl   func(j *backend.Job) time.Duration
	}{
		{"Completed", backend.StateCompleted,
			func(f *fixture, id string, now time.Time) { f.complete(now, f.leaseID(f.t0, id), `"r"`) },
			func(j *backend.Job) time.Duration { return j.ResultTTL }},
		{"Failed", backend.StateFailed,
			func(f *fixture, id string, now time.Time) { f.fail(now, f.leaseID(f.t0, id), "boom") },
			func(j *backend.Job) time.Duration { return j.FailureTTL }},
		{"Canceled", backend.StateCanceled,
			func(f *fixture, id string, now time.Time) { f.cancelOK(now, id, "no", backend.StateCanceled) },
			func(j *backend.Job) time.Duration { return j.FailureTTL }},
	}
	for _, e := range ends {
		t.Run("Expiry"+e.name, func(t *testing.T) {
			f := newFixture(t, h)
			id := f.add() // ResultTTL 1h, FailureTTL 2h
			finished := f.at(time.Minute)
			e.end(f, id, finished)
			j := f.wantState(id, e.state)
			ttl := e.ttl(j)
			wantTime(t, "FinishedAt", j.FinishedAt, finished)
			wantTime(t, "ExpiresAt", j.ExpiresAt, finished.Add(ttl))

			if n := f.sweep(finished.Add(ttl-time.Second), 10); n != 0 {
				t.Fatalf("Sweep before ExpiresAt: got %d deleted, want 0", n)
			}
			f.wantState(id, e.state)
			if n := f.sweep(finished.Add(ttl+time.Second), 10); n != 1 {
				t.Fatalf("Sweep after ExpiresAt: got %d deleted, want 1", n)
			}
			f.wantGone(id)
			page, err := f.b.List(f.ctx, backend.ListFilter{})
			if err != nil {
				t.Fatalf("List: got error %v, want nil", err)
			}
			if len(page.Jobs) != 0 {
				t.Errorf("List after the sweep: got %d jobs (first %s), want none", len(page.Jobs), page.Jobs[0].ID)
			}
			if got := f.stats()["default"].Counts[e.state]; got != 0 {
				t.Errorf("Stats after the sweep: got %d %s, want 0", got, e.state)
			}
			if n := f.sweep(finished.Add(100*ttl), 10); n != 0 {
				t.Errorf("second Sweep: got %d deleted, want 0", n)
			}
		})
	}

	t.Run("HonoursLimit", func(t *testing.T) {
		f := newFixture(t, h)
		for range 5 {
			f.run(f.t0)
		}
		for i, want := range []int{2, 2, 1, 0} {
			if got := f.sweep(f.at(2*time.Hour), 2); got != want {
				t.Errorf("Sweep %d with limit 2: got %d deleted, want %d", i+1, got, want)
			}
		}
	})

	t.Run("LeavesLiveJobs", func(t *testing.T) {
		f := newFixture(t, h)
		ids := []string{
			f.add(),
			f.add(runAt(f.at(time.Hour))),
			f.add(dependsOn(f.add(inQueue("parents")))),
		}
		active := f.add(inQueue("work"))
		retrying := f.add(inQueue("work"))
		ls := f.lease(request(f.t0, 2, "work"))
		f.retry(f.t0, ls[1], "boom", f.at(time.Hour))
		ids = append(ids, active, retrying)
		if n := f.sweep(f.at(1000*time.Hour), 100); n != 0 {
			t.Errorf("Sweep of live jobs: got %d deleted, want 0", n)
		}
		for _, id := range ids {
			f.job(id)
		}
	})
}
