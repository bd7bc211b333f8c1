package backendtest

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jobrelay/engine/backend"
)

func testDependencies(t *testing.T, h Harness) {
	t.Run("DeferredUntilAllParentsComplete", func(t *testing.T) {
		f := newFixture(t, h)
		p1 := f.add(inQueue("parents"))
		p2 := f.add(inQueue("parents"))
		child := f.add(dependsOn(p1, p2))
		f.wantState(child, backend.StateDeferred)
		f.wantNoLease(f.t0)

		f.complete(f.t0, f.leaseID(f.t0, p1, "parents"), `"one"`)
		f.wantState(child, backend.StateDeferred)
		f.wantNoLease(f.t0)

		l2 := f.leaseID(f.t0, p2, "parents")
		c := f.cursor()
		now := f.at(time.Second)
		f.complete(now, l2, `"two"`)
		f.wantState(child, backend.StateQueued)
		evs, _ := f.readEvents(c, 2)
		checkEvent(t, 0, evs[0], backend.Event{Kind: backend.EventCompleted, JobID: p2, State: backend.StateCompleted, Attempt: 1})
		checkEvent(t, 1, evs[1], backend.Event{Kind: backend.EventQueued, JobID: child, State: backend.StateQueued, Time: now})
		f.leaseID(now, child)
	})

	t.Run("ResolvedIntoScheduled", func(t *testing.T) {
		f := newFixture(t, h)
		parent := f.add(inQueue("parents"))
		child := f.add(dependsOn(parent), runAt(f.at(time.Hour)))
		f.wantState(child, backend.StateDeferred)
		f.complete(f.t0, f.leaseID(f.t0, parent, "parents"), `"ok"`)
		f.wantState(child, backend.StateScheduled)
		f.promote(f.at(time.Hour))
		f.leaseID(f.at(time.Hour), child)
	})

	// A parent that fails or is canceled cancels its children, and theirs.
	ends := []struct {
		name string
		end  func(f *fixture, id string)
	}{
		{"Failed", func(f *fixture, id string) { f.fail(f.t0, f.leaseID(f.t0, id, "parents"), "boom") }},
		{"CanceledQueued", func(f *fixture, id string) { f.cancelOK(f.t0, id, "not needed", backend.StateCanceled) }},
		{"CanceledActive", func(f *fixture, id string) {
			l := f.leaseID(f.t0, id, "parents")
			f.cancelOK(f.t0, id, "not needed", backend.StateActive)
			f.finishOK(f.t0, backend.Ack{Lease: l.Ref(), Outcome: backend.OutcomeCanceled, Error: "stopped"})
		}},
		{"StalledOut", func(f *fixture, id string) {
			f.leaseID(f.t0, id, "parents")
			f.reap(f.at(time.Hour))
		}},
	}
	for _, e := range ends {
		t.Run("ParentEnds"+e.name, func(t *testing.T) {
			f := newFixture(t, h)
			parent := f.add(inQueue("parents"), maxStalls(1))
			other := f.add(inQueue("parents"))
			child := f.add(dependsOn(parent, other))
			grandchild := f.add(dependsOn(child))
			e.end(f, parent)
			j := f.wantState(child, backend.StateCanceled)
			if !strings.Contains(j.Error, parent) {
				t.Errorf("child of an ended parent: got error %q, want it to name the parent %s", j.Error, parent)
			}
			g := f.wantState(grandchild, backend.StateCanceled)
			if !strings.Contains(g.Error, child) {
				t.Errorf("grandchild: got error %q, want it to name its parent %s", g.Error, child)
			}
			f.wantState(other, backend.StateQueued)
			f.wantNoLease(f.at(2*time.Hour), "default")
		})
	}

	t.Run("ParentsCompletedAtEnqueue", func(t *testing.T) {
		f := newFixture(t, h)
		p := f.run(f.t0)
		child := f.newJob(dependsOn(p))
		if r := f.enqueue(f.t0, child)[0]; r.Err != nil || r.State != backend.StateQueued {
			t.Fatalf("Enqueue after the parent completed: got state %q error %v, want queued", r.State, r.Err)
		}
		f.leaseID(f.t0, child.ID)
	})

	t.Run("ParentEndedAtEnqueue", func(t *testing.T) {
		f := newFixture(t, h)
		failed := f.add()
		f.fail(f.t0, f.leaseID(f.t0, failed), "boom")
		done := f.run(f.t0)
		c := f.cursor()
		child := f.newJob(dependsOn(done, failed))
		r := f.enqueue(f.t0, child)[0]
		if r.Err != nil || r.State != backend.StateCanceled {
			t.Fatalf("Enqueue after a parent failed: got state %q error %v, want canceled and nil", r.State, r.Err)
		}
		j := f.wantState(child.ID, backend.StateCanceled)
		if !strings.Contains(j.Error, failed) {
			t.Errorf("child of a failed parent: got error %q, want it to name %s", j.Error, failed)
		}
		f.wantEvents(c, backend.Event{Kind: backend.EventCanceled, JobID: child.ID, State: backend.StateCanceled})
	})

	t.Run("UnknownParent", func(t *testing.T) {
		f := newFixture(t, h)
		p := f.add()
		ok1 := f.newJob()
		orphan := f.newJob(dependsOn(p, "no-such-job"), uniqueKey("orphan"))
		ok2 := f.newJob()
		res := f.enqueue(f.t0, ok1, orphan, ok2)
		if !errors.Is(res[1].Err, backend.ErrDependencyNotFound) {
			t.Fatalf("Enqueue with an unknown parent: got error %v, want ErrDependencyNotFound", res[1].Err)
		}
		f.wantGone(orphan.ID)
		if res[0].Err != nil || res[2].Err != nil {
			t.Errorf("the rest of the batch: got errors %v and %v, want nil", res[0].Err, res[2].Err)
		}
		f.wantState(ok1.ID, backend.StateQueued)
		f.wantState(ok2.ID, backend.StateQueued)
		f.addAt(f.t0, uniqueKey("orphan")) // the refused job took no key
		page, err := f.b.List(f.ctx, backend.ListFilter{})
		if err != nil {
			t.Fatalf("List: got error %v, want nil", err)
		}
		for _, j := range page.Jobs {
			if j.ID == orphan.ID {
				t.Errorf("List: got the refused job %s, want it not stored", orphan.ID)
			}
		}
	})

	t.Run("ParentInSameBatch", func(t *testing.T) {
		f := newFixture(t, h)
		p := f.newJob(inQueue("parents"))
		child := f.newJob(dependsOn(p.ID))
		res := f.enqueue(f.t0, p, child)
		if res[1].Err != nil || res[1].State != backend.StateDeferred {
			t.Fatalf("child after its parent in one batch: got state %q error %v, want deferred", res[1].State, res[1].Err)
		}
		f.complete(f.t0, f.leaseID(f.t0, p.ID, "parents"), `"ok"`)
		f.leaseID(f.t0, child.ID)
	})
}
