package backendtest

import (
	"bytes"
	"testing"
	"time"

	"github.com/jobrelay/engine/backend"
)

func testLease(t *testing.T, h Harness) {
	t.Run("Fields", func(t *testing.T) {
		f := newFixture(t, h)
		nj := f.newJob(inQueue("ai"), ofType("transcription"))
		nj.Meta = map[string]string{"tenant": "acme"}
		f.enqueue(f.t0, nj)
		c := f.cursor()
		now := f.at(5 * time.Second)
		ls := f.lease(backend.LeaseRequest{Queues: []string{"ai"}, Worker: "worker-7", Max: 1, Now: now, TTL: 40 * time.Second})
		if len(ls) != 1 {
			t.Fatalf("Lease: got %d jobs, want 1", len(ls))
		}
		l := ls[0]
		wantStored(t, l.Job, nj)
		wantLeased(t, l.Job, 1, "worker-7", now, now.Add(40*time.Second))
		if ref := l.Ref(); ref.JobID != nj.ID || ref.Token != l.Job.LeaseToken {
			t.Errorf("Ref: got %+v, want job %s with the lease's token", ref, nj.ID)
		}
		stored := f.job(nj.ID)
		wantLeased(t, stored, 1, "worker-7", now, now.Add(40*time.Second))
		if stored.LeaseToken != l.Job.LeaseToken {
			t.Errorf("stored token: got %q, want the lease's %q", stored.LeaseToken, l.Job.LeaseToken)
		}
		f.wantEvents(c, backend.Event{Kind: backend.EventActive, JobID: nj.ID, Type: "transcription", Queue: "ai",
			State: backend.StateActive, Attempt: 1, Time: now})
	})

	// An engine hands the leases it is done with back through Reuse; a
	// backend that fills them must leave nothing of their old job behind
	// and must not share them with what it stores.
	t.Run("ReusesLeasesGivenBack", func(t *testing.T) {
		f := newFixture(t, h)
		a := f.newJob(ofType("transcription"))
		a.Meta = map[string]string{"tenant": "acme"}
		f.enqueue(f.t0, a)
		old := f.leaseID(f.t0, a.ID)
		f.complete(f.t0, old, `"done"`)
		b, c := f.newJob(ofType("summary")), f.newJob(inQueue("other"))
		f.enqueue(f.t0, b, c)
		now := f.at(time.Second)
		ls := f.lease(backend.LeaseRequest{Queues: []string{"default", "other"}, Worker: "w2", Max: 3, Now: now,
			TTL: time.Minute, Reuse: []*backend.Lease{old, nil, {}}})
		if len(ls) != 2 {
			t.Fatalf("Lease: got %d jobs, want 2", len(ls))
		}
		for i, nj := range []backend.NewJob{b, c} {
			wantStored(t, ls[i].Job, nj)
			wantLeased(t, ls[i].Job, 1, "w2", now, now.Add(time.Minute))
			if ls[i].Job.Result != nil || ls[i].Job.Error != "" {
				t.Errorf("lease of %s: got result %q error %q, want none", nj.ID, ls[i].Job.Result, ls[i].Job.Error)
			}
		}
		if ls[0].Job == ls[1].Job {
			t.Errorf("two leases of one batch share one Job")
		}
		stored := f.job(a.ID)
		if stored.State != backend.StateCompleted || stored.Meta["tenant"] != "acme" || string(stored.Result) != `"done"` {
			t.Errorf("stored %s after its lease was reused: got state %q meta %v result %q, want completed, its meta and result",
				a.ID, stored.State, stored.Meta, stored.Result)
		}
		f.complete(now, ls[0], "")
		f.complete(now, ls[1], "")
	})

	t.Run("TokenPerLease", func(t *testing.T) {
		f := newFixture(t, h)
		a := f.add()
		f.add()
		ls := f.lease(request(f.t0, 2))
		if len(ls) != 2 {
			t.Fatalf("Lease: got %d jobs, want 2", len(ls))
		}
		if ls[0].Job.LeaseToken == ls[1].Job.LeaseToken {
			t.Errorf("two leases of one batch: got the same token %q, want different ones", ls[0].Job.LeaseToken)
		}
		old := ls[0]
		if old.Job.ID != a {
			t.Fatalf("Lease: got %s first, want %s", old.Job.ID, a)
		}
		f.release(f.t0, old)
		again := f.leaseID(f.at(time.Second), a)
		if again.Job.LeaseToken == old.Job.LeaseToken {
			t.Errorf("second lease of %s: got the first lease's token %q again, want a new one", a, old.Job.LeaseToken)
		}
	})

	t.Run("AttemptCounts", func(t *testing.T) {
		f := newFixture(t, h)
		id := f.add()
		l := f.leaseID(f.t0, id)
		f.retry(f.t0, l, "boom", f.at(time.Second))
		f.promote(f.at(time.Second))
		l = f.leaseID(f.at(time.Second), id)
		if l.Job.Attempt != 2 {
			t.Errorf("second lease: got attempt %d, want 2", l.Job.Attempt)
		}
		if l.Job.Failures != 1 {
			t.Errorf("second lease: got failures %d, want 1", l.Job.Failures)
		}
	})

	t.Run("NothingReady", func(t *testing.T) {
		f := newFixture(t, h)
		f.wantNoLease(f.t0)
		f.add(runAt(f.at(time.Minute)))
		f.wantNoLease(f.t0)
	})
}

// wantLeased checks the lease fields of a job leased at now.
func wantLeased(t *testing.T, j *backend.Job, attempt int, worker string, now, expires time.Time) {
	t.Helper()
	if j.State != backend.StateActive {
		t.Errorf("leased job %s: got state %q, want active", j.ID, j.State)
	}
	if j.Attempt != attempt {
		t.Errorf("leased job %s: got attempt %d, want %d", j.ID, j.Attempt, attempt)
	}
	if j.LeaseToken == "" {
		t.Errorf("leased job %s: got empty token, want one", j.ID)
	}
	if j.Worker != worker {
		t.Errorf("leased job %s: got worker %q, want %q", j.ID, j.Worker, worker)
	}
	wantTime(t, "StartedAt of "+j.ID, j.StartedAt, now)
	wantTime(t, "LeaseExpiresAt of "+j.ID, j.LeaseExpiresAt, expires)
}

// wantNoLeaseFields checks that a job that is not active shows no lease.
func wantNoLeaseFields(t *testing.T, j *backend.Job) {
	t.Helper()
	if j.LeaseToken != "" || !j.LeaseExpiresAt.IsZero() || j.Worker != "" || j.CancelRequested {
		t.Errorf("job %s in state %s: got token %q expiry %v worker %q cancel requested %v, want no lease",
			j.ID, j.State, j.LeaseToken, j.LeaseExpiresAt, j.Worker, j.CancelRequested)
	}
}

func wantResult(t *testing.T, j *backend.Job, want string) {
	t.Helper()
	if !bytes.Equal(j.Result, []byte(want)) {
		t.Errorf("job %s: got result %q, want %q", j.ID, j.Result, want)
	}
}
