package backendtest

import (
	"testing"
	"time"

	"github.com/jobrelay/engine/backend"
)

func testCancel(t *testing.T, h Harness) {
	// A job that is not running is canceled at once and never runs.
	waiting := []struct {
		name  string
		setup func(f *fixture) string
	}{
		{"Queued", func(f *fixture) string { return f.add() }},
		{"Scheduled", func(f *fixture) string { return f.add(runAt(f.at(time.Minute))) }},
		{"Deferred", func(f *fixture) string { return f.add(dependsOn(f.add(inQueue("parents")))) }},
		{"Retrying", func(f *fixture) string {
			id := f.add()
			f.retry(f.t0, f.leaseID(f.t0, id), "boom", f.at(time.Minute))
			return id
		}},
	}
	for _, w := range waiting {
		t.Run(w.name, func(t *testing.T) {
			f := newFixture(t, h)
			id := w.setup(f)
			c := f.cursor()
			now := f.at(time.Second)
			f.cancelOK(now, id, "user asked", backend.StateCanceled)
			j := f.wantState(id, backend.StateCanceled)
			if j.Error != "user asked" {
				t.Errorf("canceled job: got error %q, want the reason %q", j.Error, "user asked")
			}
			wantTime(t, "FinishedAt", j.FinishedAt, now)
			wantTime(t, "ExpiresAt", j.ExpiresAt, now.Add(j.FailureTTL))
			f.wantEvents(c, backend.Event{Kind: backend.EventCanceled, JobID: id, State: backend.StateCanceled,
				Attempt: j.Attempt, Error: "user asked", Time: now})
			if moved, _ := f.promote(f.at(time.Hour)); moved != 0 {
				t.Errorf("Promote after the cancel: got %d moved, want 0", moved)
			}
			f.wantNoLease(f.at(time.Hour))
			f.wantState(id, backend.StateCanceled)
		})
	}

	t.Run("Active", func(t *testing.T) {
		f := newFixture(t, h)
		id := f.add()
		l := f.leaseID(f.t0, id)
		c := f.cursor()
		f.cancelOK(f.at(time.Second), id, "user asked", backend.StateActive)
		j := f.wantState(id, backend.StateActive)
		if !j.CancelRequested {
			t.Errorf("active job after Cancel: got CancelRequested false, want true")
		}
		f.wantEvents(c, backend.Event{Kind: backend.EventCancelRequested, JobID: id, State: backend.StateActive, Attempt: 1})
		f.cancelOK(f.at(time.Second), id, "again", backend.StateActive)

		errs, err := f.b.Heartbeat(f.ctx, f.at(2*time.Second), f.at(time.Minute), []backend.LeaseRef{l.Ref()})
		if err != nil || len(errs) != 1 {
			t.Fatalf("Heartbeat: got %v, %v, want one error per lease", errs, err)
		}
		wantErrIs(t, "Heartbeat of a job whose cancel was requested", errs[0], backend.ErrCancelRequested)
		wantTime(t, "LeaseExpiresAt after that heartbeat", f.job(id).LeaseExpiresAt, f.at(time.Minute))
		err = f.b.Progress(f.ctx, f.at(3*time.Second), l.Ref(), 70, "stopping")
		wantErrIs(t, "Progress of a job whose cancel was requested", err, backend.ErrCancelRequested)
		if j := f.job(id); j.Progress != 70 || j.ProgressMessage != "stopping" {
			t.Errorf("progress while cancel requested: got %d %q, want it stored: 70 %q", j.Progress, j.ProgressMessage, "stopping")
		}

		now := f.at(4 * time.Second)
		f.finishOK(now, backend.Ack{Lease: l.Ref(), Outcome: backend.OutcomeCanceled, Error: "context canceled"})
		j = f.wantState(id, backend.StateCanceled)
		if j.Error == "" {
			t.Errorf("canceled job: got empty error, want why it was canceled")
		}
		wantNoLeaseFields(t, j)
		wantTime(t, "ExpiresAt", j.ExpiresAt, now.Add(j.FailureTTL))
	})

	// A worker that hands back a job whose cancel was requested must not
	// make it run again.
	for _, o := range []backend.Outcome{backend.OutcomeRetry, backend.OutcomeReleased} {
		t.Run("ActiveThen"+title(o.String()), func(t *testing.T) {
			f := newFixture(t, h)
			id := f.add()
			l := f.leaseID(f.t0, id)
			f.cancelOK(f.t0, id, "user asked", backend.StateActive)
			f.finishOK(f.at(time.Second), backend.Ack{Lease: l.Ref(), Outcome: o, Error: "context canceled", RetryAt: f.at(time.Second)})
			f.wantState(id, backend.StateCanceled)
			f.promote(f.at(time.Hour))
			f.wantNoLease(f.at(time.Hour))
		})
	}

	t.Run("ActiveLeaseExpires", func(t *testing.T) {
		f := newFixture(t, h)
		id := f.add()
		f.leaseID(f.t0, id)
		f.cancelOK(f.t0, id, "user asked", backend.StateActive)
		if n := f.reap(f.at(time.Hour)); n != 1 {
			t.Fatalf("Reap: got %d reaped, want 1", n)
		}
		f.wantState(id, backend.StateCanceled)
		f.wantNoLease(f.at(time.Hour))
	})

	for _, end := range []backend.State{backend.StateCompleted, backend.StateFailed} {
		t.Run("Ended"+title(string(end)), func(t *testing.T) {
			f := newFixture(t, h)
			id := f.add()
			l := f.leaseID(f.t0, id)
			if end == backend.StateCompleted {
				f.complete(f.t0, l, `"ok"`)
			} else {
				f.fail(f.t0, l, "boom")
			}
			st, err := f.b.Cancel(f.ctx, f.at(time.Second), id, "too late")
			wantErrIs(t, "Cancel of a "+string(end)+" job", err, backend.ErrInvalidState)
			if st != end {
				t.Errorf("Cancel of a %s job: got state %q, want %q", end, st, end)
			}
			f.wantState(id, end)
		})
	}

	t.Run("CanceledTwice", func(t *testing.T) {
		f := newFixture(t, h)
		id := f.add()
		f.cancelOK(f.t0, id, "first", backend.StateCanceled)
		c := f.cursor()
		f.cancelOK(f.at(time.Second), id, "second", backend.StateCanceled)
		j := f.wantState(id, backend.StateCanceled)
		if j.Error != "first" {
			t.Errorf("job canceled twice: got error %q, want the first reason %q", j.Error, "first")
		}
		wantTime(t, "FinishedAt", j.FinishedAt, f.t0)
		f.wantNoEvents(c)
	})
}
