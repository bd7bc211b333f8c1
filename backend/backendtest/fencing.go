package backendtest

import (
	"testing"
	"time"

	"github.com/jobrelay/engine/backend"
)

func testFencing(t *testing.T, h Harness) {
	t.Run("WrongToken", func(t *testing.T) {
		f := newFixture(t, h)
		id := f.add()
		l := f.leaseID(f.t0, id)
		wantLeaseLost(t, f, f.at(time.Second), backend.LeaseRef{JobID: id, Token: l.Job.LeaseToken + "x"}, "with a wrong token")
		wantLeaseLost(t, f, f.at(time.Second), backend.LeaseRef{JobID: id}, "with an empty token")
		j := f.wantState(id, backend.StateActive)
		if j.LeaseToken != l.Job.LeaseToken || j.Progress != 0 {
			t.Errorf("after calls with wrong tokens: got token %q progress %d, want the job untouched", j.LeaseToken, j.Progress)
		}
		wantTime(t, "LeaseExpiresAt after calls with wrong tokens", j.LeaseExpiresAt, f.t0.Add(leaseTTL))
		f.complete(f.at(time.Second), l, `"ok"`)
	})

	t.Run("UnknownJob", func(t *testing.T) {
		f := newFixture(t, h)
		f.add()
		wantLeaseLost(t, f, f.t0, backend.LeaseRef{JobID: "no-such-job", Token: "token"}, "of an unknown job")
	})

	t.Run("FinishedJobToken", func(t *testing.T) {
		f := newFixture(t, h)
		id := f.add()
		l := f.leaseID(f.t0, id)
		f.complete(f.at(time.Second), l, `"first"`)
		wantLeaseLost(t, f, f.at(2*time.Second), l.Ref(), "of a completed job")
		j := f.wantState(id, backend.StateCompleted)
		wantResult(t, j, `"first"`)
	})

	t.Run("ErrorsPerLease", func(t *testing.T) {
		f := newFixture(t, h)
		a, b := f.add(), f.add()
		ls := f.lease(request(f.t0, 2))
		if len(ls) != 2 {
			t.Fatalf("Lease: got %d jobs, want 2", len(ls))
		}
		stale := backend.LeaseRef{JobID: b, Token: "stale"}
		errs, err := f.b.Heartbeat(f.ctx, f.t0, f.at(time.Minute), []backend.LeaseRef{ls[0].Ref(), stale, ls[1].Ref()})
		if err != nil || len(errs) != 3 {
			t.Fatalf("Heartbeat of 3 leases: got %v, %v, want 3 errors and nil", errs, err)
		}
		if errs[0] != nil || errs[2] != nil {
			t.Errorf("Heartbeat of valid leases: got %v and %v, want nil", errs[0], errs[2])
		}
		wantErrIs(t, "Heartbeat of a stale lease in a batch", errs[1], backend.ErrLeaseLost)

		errs = f.finish(f.at(time.Second),
			backend.Ack{Lease: stale, Outcome: backend.OutcomeFailed, Error: "late"},
			backend.Ack{Lease: ls[0].Ref(), Outcome: backend.OutcomeCompleted, Result: []byte(`"a"`)},
			backend.Ack{Lease: ls[1].Ref(), Outcome: backend.OutcomeCompleted, Result: []byte(`"b"`)},
		)
		wantErrIs(t, "Finish of a stale lease in a batch", errs[0], backend.ErrLeaseLost)
		if errs[1] != nil || errs[2] != nil {
			t.Errorf("Finish of valid leases: got %v and %v, want nil", errs[1], errs[2])
		}
		wantResult(t, f.wantState(a, backend.StateCompleted), `"a"`)
		wantResult(t, f.wantState(b, backend.StateCompleted), `"b"`)
	})
}
