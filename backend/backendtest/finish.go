package backendtest

import (
	"testing"
	"time"

	"github.com/jobrelay/engine/backend"
)

func testFinish(t *testing.T, h Harness) {
	t.Run("Completed", func(t *testing.T) {
		f := newFixture(t, h)
		id := f.add(resultTTL(24 * time.Hour))
		l := f.leaseID(f.t0, id)
		c := f.cursor()
		now := f.at(10 * time.Second)
		f.complete(now, l, `{"summary":"short"}`)
		j := f.wantState(id, backend.StateCompleted)
		wantResult(t, j, `{"summary":"short"}`)
		wantTime(t, "FinishedAt", j.FinishedAt, now)
		wantTime(t, "ExpiresAt", j.ExpiresAt, now.Add(24*time.Hour))
		wantNoLeaseFields(t, j)
		if j.Attempt != 1 || j.Failures != 0 {
			t.Errorf("completed job: got attempt %d failures %d, want 1 0", j.Attempt, j.Failures)
		}
		f.wantEvents(c, backend.Event{Kind: backend.EventCompleted, JobID: id, State: backend.StateCompleted,
			Attempt: 1, Result: []byte(`{"summary":"short"}`), Time: now})
	})

	t.Run("Retry", func(t *testing.T) {
		f := newFixture(t, h)
		id := f.add()
		l := f.leaseID(f.t0, id)
		c := f.cursor()
		retryAt := f.at(time.Minute)
		f.retry(f.at(time.Second), l, "rate limited", retryAt)
		j := f.wantState(id, backend.StateRetrying)
		if j.Failures != 1 || j.Error != "rate limited" || j.Attempt != 1 {
			t.Errorf("retrying job: got failures %d error %q attempt %d, want 1 %q 1", j.Failures, j.Error, j.Attempt, "rate limited")
		}
		wantTime(t, "RunAt", j.RunAt, retryAt)
		wantNoLeaseFields(t, j)
		f.wantEvents(c, backend.Event{Kind: backend.EventRetrying, JobID: id, State: backend.StateRetrying,
			Attempt: 1, Error: "rate limited", RunAt: retryAt})

		f.wantNoLease(retryAt.Add(-time.Second))
		if moved, _ := f.promote(retryAt.Add(-time.Second)); moved != 0 {
			t.Errorf("Promote before RetryAt: got %d moved, want 0", moved)
		}
		if moved, _ := f.promote(retryAt); moved != 1 {
			t.Fatalf("Promote at RetryAt: got %d moved, want 1", moved)
		}
		f.wantState(id, backend.StateQueued)
		l = f.leaseID(retryAt, id)
		if l.Job.Attempt != 2 || l.Job.Failures != 1 {
			t.Errorf("second lease: got attempt %d failures %d, want 2 1", l.Job.Attempt, l.Job.Failures)
		}
	})

	t.Run("Failed", func(t *testing.T) {
		f := newFixture(t, h)
		id := f.add()
		l := f.leaseID(f.t0, id)
		c := f.cursor()
		now := f.at(time.Second)
		f.fail(now, l, "bad payload")
		j := f.wantState(id, backend.StateFailed)
		if j.Failures != 1 || j.Error != "bad payload" {
			t.Errorf("failed job: got failures %d error %q, want 1 %q", j.Failures, j.Error, "bad payload")
		}
		wantTime(t, "FinishedAt", j.FinishedAt, now)
		wantTime(t, "ExpiresAt", j.ExpiresAt, now.Add(j.FailureTTL))
		wantNoLeaseFields(t, j)
		f.wantEvents(c, backend.Event{Kind: backend.EventFailed, JobID: id, State: backend.StateFailed, Attempt: 1, Error: "bad payload"})
		f.wantNoLease(f.at(time.Hour))
	})

	t.Run("Canceled", func(t *testing.T) {
		f := newFixture(t, h)
		id := f.add()
		l := f.leaseID(f.t0, id)
		c := f.cursor()
		now := f.at(time.Second)
		f.finishOK(now, backend.Ack{Lease: l.Ref(), Outcome: backend.OutcomeCanceled, Error: "stopped"})
		j := f.wantState(id, backend.StateCanceled)
		if j.Error != "stopped" || j.Failures != 0 {
			t.Errorf("canceled job: got error %q failures %d, want %q 0", j.Error, j.Failures, "stopped")
		}
		wantTime(t, "ExpiresAt", j.ExpiresAt, now.Add(j.FailureTTL))
		f.wantEvents(c, backend.Event{Kind: backend.EventCanceled, JobID: id, State: backend.StateCanceled, Attempt: 1, Error: "stopped"})
	})

	t.Run("Released", func(t *testing.T) {
		f := newFixture(t, h)
		id := f.add()
		l := f.leaseID(f.t0, id)
		c := f.cursor()
		f.release(f.at(time.Second), l)
		j := f.wantState(id, backend.StateQueued)
		if j.Attempt != 0 || j.Failures != 0 || j.Stalls != 0 || j.Error != "" {
			t.Errorf("released job: got attempt %d failures %d stalls %d error %q, want 0 0 0 and none",
				j.Attempt, j.Failures, j.Stalls, j.Error)
		}
		wantNoLeaseFields(t, j)
		f.wantEvents(c, backend.Event{Kind: backend.EventQueued, JobID: id, State: backend.StateQueued, Attempt: 0})
		l = f.leaseID(f.at(time.Second), id)
		if l.Job.Attempt != 1 {
			t.Errorf("lease after a release: got attempt %d, want 1", l.Job.Attempt)
		}
	})

	t.Run("Totals", func(t *testing.T) {
		f := newFixture(t, h)
		for range 3 {
			f.add()
		}
		ls := f.lease(request(f.t0, 3))
		f.complete(f.t0, ls[0], `1`)
		f.retry(f.t0, ls[1], "again", f.at(time.Second))
		f.fail(f.t0, ls[2], "no")
		s := f.stats()["default"]
		if s.Processed != 1 || s.Failed != 2 {
			t.Errorf("stats after one completion, one retry and one failure: got processed %d failed %d, want 1 2", s.Processed, s.Failed)
		}
	})
}
