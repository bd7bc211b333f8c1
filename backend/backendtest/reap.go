package backendtest

import (
	"strings"
	"testing"
	"time"

	"github.com/jobrelay/engine/backend"
)

func testReap(t *testing.T, h Harness) {
	t.Run("RequeuesExpiredLease", func(t *testing.T) {
		f := newFixture(t, h)
		id := f.add()
		first := f.leaseID(f.t0, id) // expires at t0+30s
		if n := f.reap(f.at(29 * time.Second)); n != 0 {
			t.Fatalf("Reap before the lease expired: got %d reaped, want 0", n)
		}
		f.wantState(id, backend.StateActive)

		c := f.cursor()
		now := f.at(31 * time.Second)
		if n := f.reap(now); n != 1 {
			t.Fatalf("Reap after the lease expired: got %d reaped, want 1", n)
		}
		j := f.wantState(id, backend.StateQueued)
		if j.Stalls != 1 || j.Failures != 0 || j.Attempt != 1 {
			t.Errorf("reaped job: got stalls %d failures %d attempt %d, want 1 0 1", j.Stalls, j.Failures, j.Attempt)
		}
		wantNoLeaseFields(t, j)
		f.wantEvents(c, backend.Event{Kind: backend.EventStalled, JobID: id, State: backend.StateQueued, Attempt: 1, Time: now})
		if n := f.reap(f.at(time.Hour)); n != 0 {
			t.Errorf("second Reap: got %d reaped, want 0 (the job is queued)", n)
		}

		second := f.leaseID(now, id)
		wantLeased(t, second.Job, 2, "worker-1", now, now.Add(leaseTTL))
		if second.Job.LeaseToken == first.Job.LeaseToken {
			t.Errorf("lease after a stall: got the old token again, want a new one")
		}
	})

	t.Run("OldTokenLosesLease", func(t *testing.T) {
		f := newFixture(t, h)
		id := f.add()
		old := f.leaseID(f.t0, id)
		f.reap(f.at(time.Minute))
		wantLeaseLost(t, f, f.at(time.Minute), old.Ref(), "after the reap")

		fresh := f.leaseID(f.at(time.Minute), id)
		wantLeaseLost(t, f, f.at(time.Minute), old.Ref(), "once another worker leased the job")
		errs, err := f.b.Heartbeat(f.ctx, f.at(time.Minute), f.at(2*time.Minute), []backend.LeaseRef{fresh.Ref()})
		if err != nil || len(errs) != 1 || errs[0] != nil {
			t.Fatalf("Heartbeat of the new lease: got %v, %v, want [nil], nil", errs, err)
		}
		f.complete(f.at(time.Minute), fresh, `"second"`)
		wantResult(t, f.wantState(id, backend.StateCompleted), `"second"`)
	})

	t.Run("HeartbeatKeepsLease", func(t *testing.T) {
		f := newFixture(t, h)
		id := f.add()
		l := f.leaseID(f.t0, id) // expires at t0+30s
		errs, err := f.b.Heartbeat(f.ctx, f.at(20*time.Second), f.at(50*time.Second), []backend.LeaseRef{l.Ref()})
		if err != nil || len(errs) != 1 || errs[0] != nil {
			t.Fatalf("Heartbeat: got %v, %v, want [nil], nil", errs, err)
		}
		wantTime(t, "LeaseExpiresAt after the heartbeat", f.job(id).LeaseExpiresAt, f.at(50*time.Second))
		if n := f.reap(f.at(40 * time.Second)); n != 0 {
			t.Fatalf("Reap past the first expiry but before the renewed one: got %d reaped, want 0", n)
		}
		f.wantState(id, backend.StateActive)
		if n := f.reap(f.at(51 * time.Second)); n != 1 {
			t.Fatalf("Reap past the renewed expiry: got %d reaped, want 1", n)
		}
	})

	t.Run("ReapsOnlyExpired", func(t *testing.T) {
		f := newFixture(t, h)
		short := f.add()
		long := f.add()
		f.leaseID(f.t0, short)
		req := request(f.t0, 1)
		req.TTL = time.Hour
		if ls := f.lease(req); len(ls) != 1 || ls[0].Job.ID != long {
			t.Fatalf("Lease: got %v, want %s", leasedIDs(ls), long)
		}
		if n := f.reap(f.at(time.Minute)); n != 1 {
			t.Fatalf("Reap: got %d reaped, want 1", n)
		}
		f.wantState(short, backend.StateQueued)
		f.wantState(long, backend.StateActive)
	})

	t.Run("MaxStallsFailsJob", func(t *testing.T) {
		f := newFixture(t, h)
		id := f.add(maxStalls(2))
		f.leaseID(f.t0, id)
		f.reap(f.at(time.Minute))
		f.wantState(id, backend.StateQueued)

		f.leaseID(f.at(time.Minute), id)
		c := f.cursor()
		now := f.at(2 * time.Minute)
		if n := f.reap(now); n != 1 {
			t.Fatalf("second Reap: got %d reaped, want 1", n)
		}
		j := f.wantState(id, backend.StateFailed)
		if j.Stalls != 2 || j.Failures != 0 {
			t.Errorf("job failed by stalls: got stalls %d failures %d, want 2 0", j.Stalls, j.Failures)
		}
		if !strings.Contains(strings.ToLower(j.Error), "stall") {
			t.Errorf("job failed by stalls: got error %q, want one that mentions the stalls", j.Error)
		}
		wantTime(t, "FinishedAt", j.FinishedAt, now)
		wantTime(t, "ExpiresAt", j.ExpiresAt, now.Add(j.FailureTTL))
		wantNoLeaseFields(t, j)
		evs, _ := f.readEvents(c, 2)
		checkEvent(t, 0, evs[0], backend.Event{Kind: backend.EventStalled, JobID: id, State: evs[0].State, Attempt: 2})
		checkEvent(t, 1, evs[1], backend.Event{Kind: backend.EventFailed, JobID: id, State: backend.StateFailed, Attempt: 2, Error: j.Error})
		f.wantNoLease(f.at(time.Hour))
	})
}

// wantLeaseLost requires that every call made for ref fails with ErrLeaseLost.
func wantLeaseLost(t *testing.T, f *fixture, now time.Time, ref backend.LeaseRef, when string) {
	t.Helper()
	errs, err := f.b.Heartbeat(f.ctx, now, now.Add(time.Minute), []backend.LeaseRef{ref})
	if err != nil || len(errs) != 1 {
		t.Fatalf("Heartbeat %s: got %v, %v, want one error per lease", when, errs, err)
	}
	wantErrIs(t, "Heartbeat with a lost lease "+when, errs[0], backend.ErrLeaseLost)
	err = f.b.Progress(f.ctx, now, ref, 50, "half")
	wantErrIs(t, "Progress with a lost lease "+when, err, backend.ErrLeaseLost)
	for _, o := range []backend.Outcome{backend.OutcomeCompleted, backend.OutcomeRetry, backend.OutcomeFailed,
		backend.OutcomeCanceled, backend.OutcomeReleased} {
		errs := f.finish(now, backend.Ack{Lease: ref, Outcome: o, Result: []byte(`"late"`), Error: "late", RetryAt: now})
		wantErrIs(t, "Finish "+o.String()+" with a lost lease "+when, errs[0], backend.ErrLeaseLost)
	}
}
