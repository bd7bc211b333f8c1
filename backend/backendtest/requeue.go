package backendtest

import (
	"testing"
	"time"

	"github.com/jobrelay/engine/backend"
)

func testRequeue(t *testing.T, h Harness) {
	ended := []struct {
		name string
		end  func(f *fixture) string
	}{
		{"Failed", func(f *fixture) string {
			id := f.add()
			f.leaseID(f.t0, id)
			f.reap(f.at(time.Minute)) // a stall, to be reset
			l := f.leaseID(f.at(time.Minute), id)
			if err := f.b.Progress(f.ctx, f.at(time.Minute), l.Ref(), 40, "halfway"); err != nil {
				f.t.Fatalf("Progress: got error %v, want nil", err)
			}
			f.fail(f.at(time.Minute), l, "boom")
			return id
		}},
		{"Canceled", func(f *fixture) string {
			id := f.add()
			f.cancelOK(f.t0, id, "oops", backend.StateCanceled)
			return id
		}},
		{"CanceledByParent", func(f *fixture) string {
			parent := f.add(inQueue("parents"))
			id := f.add(dependsOn(parent))
			f.fail(f.t0, f.leaseID(f.t0, parent, "parents"), "boom")
			return id
		}},
	}
	for _, e := range ended {
		t.Run(e.name, func(t *testing.T) {
			f := newFixture(t, h)
			id := e.end(f)
			c := f.cursor()
			now := f.at(time.Hour)
			if err := f.b.Requeue(f.ctx, now, id); err != nil {
				t.Fatalf("Requeue: got error %v, want nil", err)
			}
			j := f.wantState(id, backend.StateQueued)
			if j.Attempt != 0 || j.Failures != 0 || j.Stalls != 0 || j.Error != "" || j.Progress != 0 ||
				j.ProgressMessage != "" || len(j.Result) != 0 {
				t.Errorf("requeued job: got attempt %d failures %d stalls %d error %q progress %d %q result %q, want all reset",
					j.Attempt, j.Failures, j.Stalls, j.Error, j.Progress, j.ProgressMessage, j.Result)
			}
			if !j.FinishedAt.IsZero() || !j.ExpiresAt.IsZero() {
				t.Errorf("requeued job: got FinishedAt %v ExpiresAt %v, want zero", j.FinishedAt, j.ExpiresAt)
			}
			wantNoLeaseFields(t, j)
			f.wantEvents(c, backend.Event{Kind: backend.EventQueued, JobID: id, State: backend.StateQueued, Time: now})
			f.sweep(f.at(1000*time.Hour), 100)
			f.wantState(id, backend.StateQueued) // a requeued job is live: Sweep leaves it
			l := f.leaseID(now, id)
			if l.Job.Attempt != 1 {
				t.Errorf("lease after Requeue: got attempt %d, want 1", l.Job.Attempt)
			}
			f.complete(now, l, `"ok"`)
			f.wantState(id, backend.StateCompleted)
		})
	}

	others := []struct {
		state backend.State
		setup func(f *fixture) string
	}{
		{backend.StateQueued, func(f *fixture) string { return f.add() }},
		{backend.StateScheduled, func(f *fixture) string { return f.add(runAt(f.at(time.Hour))) }},
		{backend.StateDeferred, func(f *fixture) string { return f.add(dependsOn(f.add(inQueue("parents")))) }},
		{backend.StateActive, func(f *fixture) string { id := f.add(); f.leaseID(f.t0, id); return id }},
		{backend.StateRetrying, func(f *fixture) string {
			id := f.add()
			f.retry(f.t0, f.leaseID(f.t0, id), "boom", f.at(time.Hour))
			return id
		}},
		{backend.StateCompleted, func(f *fixture) string { return f.run(f.t0) }},
	}
	for _, o := range others {
		t.Run("Refuses"+title(string(o.state)), func(t *testing.T) {
			f := newFixture(t, h)
			id := o.setup(f)
			err := f.b.Requeue(f.ctx, f.at(time.Second), id)
			wantErrIs(t, "Requeue of a "+string(o.state)+" job", err, backend.ErrInvalidState)
			f.wantState(id, o.state)
		})
	}

	t.Run("RetakesFreeUniqueKey", func(t *testing.T) {
		f := newFixture(t, h)
		id := f.add(uniqueKey("k"))
		f.fail(f.t0, f.leaseID(f.t0, id), "boom")
		if err := f.b.Requeue(f.ctx, f.at(time.Second), id); err != nil {
			t.Fatalf("Requeue: got error %v, want nil", err)
		}
		isDuplicate(t, f.enqueue(f.at(time.Second), f.newJob(uniqueKey("k")))[0], id, backend.StateQueued)
	})

	t.Run("UniqueKeyTakenMeanwhile", func(t *testing.T) {
		f := newFixture(t, h)
		id := f.add(uniqueKey("k"))
		f.fail(f.t0, f.leaseID(f.t0, id), "boom")
		other := f.addAt(f.at(time.Second), uniqueKey("k"))
		if err := f.b.Requeue(f.ctx, f.at(2*time.Second), id); err != nil {
			t.Fatalf("Requeue while another job holds the key: got error %v, want nil (it runs without the key)", err)
		}
		f.wantState(id, backend.StateQueued)
		isDuplicate(t, f.enqueue(f.at(2*time.Second), f.newJob(uniqueKey("k")))[0], other, backend.StateQueued)
	})
}
