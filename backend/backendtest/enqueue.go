package backendtest

import (
	"bytes"
	"errors"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/jobrelay/engine/backend"
)

func testEnqueue(t *testing.T, h Harness) {
	t.Run("RoundTrip", func(t *testing.T) {
		f := newFixture(t, h)
		nj := backend.NewJob{
			ID:          f.newJob().ID,
			Type:        "summarization",
			Queue:       "ai",
			Payload:     []byte(`{"meeting":"m-1","lang":"de"}`),
			Meta:        map[string]string{"tenant": "acme", "traceparent": "00-abc-def-01"},
			Priority:    7,
			MaxRetries:  5,
			MaxStalls:   2,
			Timeout:     2 * time.Hour,
			ResultTTL:   24 * time.Hour,
			FailureTTL:  48 * time.Hour,
			UniqueKey:   "meeting-1/summary",
			UniqueUntil: f.at(3 * time.Hour),
		}
		res := f.enqueue(f.t0, nj)
		if res[0].Err != nil || res[0].ID != nj.ID || res[0].State != backend.StateQueued {
			t.Fatalf("Enqueue: got %+v, want ID %s, state queued, no error", res[0], nj.ID)
		}
		got := f.job(nj.ID)
		wantStored(t, got, nj)
		wantTime(t, "CreatedAt", got.CreatedAt, f.t0)
		if got.State != backend.StateQueued || got.Attempt != 0 || got.Failures != 0 || got.Stalls != 0 {
			t.Errorf("new job: got state %q attempt %d failures %d stalls %d, want queued 0 0 0",
				got.State, got.Attempt, got.Failures, got.Stalls)
		}
		if got.LeaseToken != "" || got.Worker != "" || !got.FinishedAt.IsZero() || !got.ExpiresAt.IsZero() {
			t.Errorf("new job: got token %q worker %q finished %v expires %v, want all empty",
				got.LeaseToken, got.Worker, got.FinishedAt, got.ExpiresAt)
		}

		// RunAt and DependsOn round-trip too.
		later := f.newJob(runAt(f.at(time.Minute)))
		child := f.newJob(dependsOn(nj.ID, later.ID))
		for _, r := range f.enqueue(f.at(time.Second), later, child) {
			if r.Err != nil {
				t.Fatalf("Enqueue %s: got error %v, want nil", r.ID, r.Err)
			}
		}
		wantStored(t, f.job(later.ID), later)
		wantStored(t, f.job(child.ID), child)
		wantTime(t, "CreatedAt of the second batch", f.job(child.ID).CreatedAt, f.at(time.Second))
	})

	t.Run("BatchResultsInOrder", func(t *testing.T) {
		f := newFixture(t, h)
		jobs := []backend.NewJob{
			f.newJob(),
			f.newJob(runAt(f.at(time.Hour))),
			f.newJob(inQueue("other"), withPriority(9)),
			f.newJob(),
		}
		parent := jobs[0].ID
		jobs = append(jobs, f.newJob(dependsOn(parent)))
		wantStates := []backend.State{backend.StateQueued, backend.StateScheduled, backend.StateQueued,
			backend.StateQueued, backend.StateDeferred}
		res := f.enqueue(f.t0, jobs...)
		for i, r := range res {
			if r.Err != nil || r.ID != jobs[i].ID || r.State != wantStates[i] {
				t.Errorf("result %d: got ID %q state %q err %v, want ID %q state %q no error",
					i, r.ID, r.State, r.Err, jobs[i].ID, wantStates[i])
			}
			f.wantState(jobs[i].ID, wantStates[i])
		}
	})

	t.Run("RunAtDecidesScheduled", func(t *testing.T) {
		f := newFixture(t, h)
		cases := []struct {
			name  string
			runAt time.Time
			want  backend.State
		}{
			{"future", f.at(time.Minute), backend.StateScheduled},
			{"now", f.t0, backend.StateQueued},
			{"past", f.at(-time.Minute), backend.StateQueued},
			{"zero", time.Time{}, backend.StateQueued},
		}
		for _, c := range cases {
			nj := f.newJob(runAt(c.runAt))
			if r := f.enqueue(f.t0, nj)[0]; r.State != c.want {
				t.Errorf("RunAt %s: got state %q, want %q", c.name, r.State, c.want)
			}
			f.wantState(nj.ID, c.want)
		}
		ls := f.lease(request(f.t0, 10))
		if len(ls) != 3 {
			t.Fatalf("Lease: got %d jobs, want the 3 that are due", len(ls))
		}
	})

	t.Run("RecordsQueued", func(t *testing.T) {
		f := newFixture(t, h)
		c := f.cursor()
		a := f.add(ofType("transcription"), inQueue("ai"))
		b := f.add(runAt(f.at(time.Minute)))
		d := f.add(dependsOn(a))
		f.wantEvents(c,
			backend.Event{Kind: backend.EventQueued, JobID: a, Type: "transcription", Queue: "ai", State: backend.StateQueued, Time: f.t0},
			backend.Event{Kind: backend.EventQueued, JobID: b, Type: "email", Queue: "default", State: backend.StateScheduled, Time: f.t0},
			backend.Event{Kind: backend.EventQueued, JobID: d, State: backend.StateDeferred},
		)
	})

	t.Run("UnknownID", func(t *testing.T) {
		f := newFixture(t, h)
		f.add()
		_, err := f.b.Job(f.ctx, "no-such-job")
		wantErrIs(t, "Job of an unknown id", err, backend.ErrJobNotFound)
		_, err = f.b.Cancel(f.ctx, f.t0, "no-such-job", "why")
		wantErrIs(t, "Cancel of an unknown id", err, backend.ErrJobNotFound)
		err = f.b.Requeue(f.ctx, f.t0, "no-such-job")
		wantErrIs(t, "Requeue of an unknown id", err, backend.ErrJobNotFound)
	})

	t.Run("InputIsCopied", func(t *testing.T) {
		f := newFixture(t, h)
		nj := f.newJob()
		nj.Meta = map[string]string{"k": "v"}
		want := bytes.Clone(nj.Payload)
		f.enqueue(f.t0, nj)
		nj.Payload[0] = 'X'
		nj.Meta["k"] = "changed"
		got := f.job(nj.ID)
		if !bytes.Equal(got.Payload, want) || got.Meta["k"] != "v" {
			t.Errorf("after the caller changed its buffers: got payload %q meta %v, want %q and k=v", got.Payload, got.Meta, want)
		}
	})

	t.Run("JobIsACopy", func(t *testing.T) {
		f := newFixture(t, h)
		nj := f.newJob()
		nj.Meta = map[string]string{"k": "v"}
		f.enqueue(f.t0, nj)
		j := f.job(nj.ID)
		j.Payload[0] = 'X'
		j.Meta["k"] = "changed"
		j.State = backend.StateFailed
		// A Lease's Job is read-only (it may share the stored payload); its
		// scalar fields are the caller's all the same.
		l := f.leaseOne(f.t0)
		l.Job.State = backend.StateFailed
		l.Job.Attempt = 99
		got := f.job(nj.ID)
		if !bytes.Equal(got.Payload, nj.Payload) || got.Meta["k"] != "v" || got.State != backend.StateActive || got.Attempt != 1 {
			t.Errorf("after the caller changed returned jobs: got payload %q meta %v state %q attempt %d, want %q, k=v, active, 1",
				got.Payload, got.Meta, got.State, got.Attempt, nj.Payload)
		}
	})
}

// wantStored compares the fields a job keeps from its NewJob.
func wantStored(t *testing.T, got *backend.Job, nj backend.NewJob) {
	t.Helper()
	if got.ID != nj.ID || got.Type != nj.Type || got.Queue != nj.Queue {
		t.Errorf("job: got ID %q type %q queue %q, want %q %q %q", got.ID, got.Type, got.Queue, nj.ID, nj.Type, nj.Queue)
	}
	if !bytes.Equal(got.Payload, nj.Payload) {
		t.Errorf("job %s: got payload %q, want %q", nj.ID, got.Payload, nj.Payload)
	}
	if len(got.Meta) != len(nj.Meta) || !maps.Equal(got.Meta, nj.Meta) {
		t.Errorf("job %s: got meta %v, want %v", nj.ID, got.Meta, nj.Meta)
	}
	if got.Priority != nj.Priority || got.MaxRetries != nj.MaxRetries || got.MaxStalls != nj.MaxStalls {
		t.Errorf("job %s: got priority %d max retries %d max stalls %d, want %d %d %d", nj.ID,
			got.Priority, got.MaxRetries, got.MaxStalls, nj.Priority, nj.MaxRetries, nj.MaxStalls)
	}
	if got.Timeout != nj.Timeout || got.ResultTTL != nj.ResultTTL || got.FailureTTL != nj.FailureTTL {
		t.Errorf("job %s: got timeout %v result TTL %v failure TTL %v, want %v %v %v", nj.ID,
			got.Timeout, got.ResultTTL, got.FailureTTL, nj.Timeout, nj.ResultTTL, nj.FailureTTL)
	}
	if got.UniqueKey != nj.UniqueKey || !got.UniqueUntil.Equal(nj.UniqueUntil) {
		t.Errorf("job %s: got unique key %q until %v, want %q until %v", nj.ID, got.UniqueKey, got.UniqueUntil, nj.UniqueKey, nj.UniqueUntil)
	}
	if !nj.RunAt.IsZero() && !got.RunAt.Equal(nj.RunAt) {
		t.Errorf("job %s: got RunAt %v, want %v", nj.ID, got.RunAt, nj.RunAt)
	}
	if len(got.DependsOn) != len(nj.DependsOn) || !slices.Equal(got.DependsOn, nj.DependsOn) {
		t.Errorf("job %s: got DependsOn %v, want %v", nj.ID, got.DependsOn, nj.DependsOn)
	}
}

// isDuplicate requires that r refuses a job for a unique key held by holder.
func isDuplicate(t *testing.T, r backend.EnqueueResult, holder string, holderState backend.State) {
	t.Helper()
	if !errors.Is(r.Err, backend.ErrDuplicateJob) {
		t.Fatalf("Enqueue with a held unique key: got error %v, want ErrDuplicateJob", r.Err)
	}
	if r.ID != holder {
		t.Errorf("duplicate: got holder ID %q, want %q", r.ID, holder)
	}
	if holderState != "" && r.State != holderState {
		t.Errorf("duplicate: got holder state %q, want %q", r.State, holderState)
	}
}
