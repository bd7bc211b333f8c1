package backendtest

import (
	"testing"
	"time"

	"github.com/jobrelay/engine/backend"
)

func testUnique(t *testing.T, h Harness) {
	t.Run("DuplicateWhileLive", func(t *testing.T) {
		f := newFixture(t, h)
		holder := f.add(uniqueKey("meeting-1/summary"))
		dup := f.newJob(uniqueKey("meeting-1/summary"))
		isDuplicate(t, f.enqueue(f.t0, dup)[0], holder, backend.StateQueued)
		f.wantGone(dup.ID)

		f.leaseID(f.t0, holder)
		dup2 := f.newJob(uniqueKey("meeting-1/summary"), inQueue("other"))
		isDuplicate(t, f.enqueue(f.t0, dup2)[0], holder, backend.StateActive)
		f.wantGone(dup2.ID)

		// Scheduled and deferred jobs are live too.
		sched := f.add(uniqueKey("later"), runAt(f.at(time.Hour)))
		isDuplicate(t, f.enqueue(f.t0, f.newJob(uniqueKey("later")))[0], sched, backend.StateScheduled)
		deferred := f.add(uniqueKey("after"), dependsOn(holder))
		isDuplicate(t, f.enqueue(f.t0, f.newJob(uniqueKey("after")))[0], deferred, backend.StateDeferred)
	})

	// A key is free once its job has ended, however it ended.
	ends := []struct {
		name string
		end  func(f *fixture, id string)
	}{
		{"Completed", func(f *fixture, id string) { f.complete(f.t0, f.leaseID(f.t0, id), `"ok"`) }},
		{"Failed", func(f *fixture, id string) { f.fail(f.t0, f.leaseID(f.t0, id), "no") }},
		{"Canceled", func(f *fixture, id string) { f.cancelOK(f.t0, id, "not needed", backend.StateCanceled) }},
	}
	for _, e := range ends {
		t.Run("FreeAfter"+e.name, func(t *testing.T) {
			f := newFixture(t, h)
			first := f.add(uniqueKey("k"))
			e.end(f, first)
			second := f.addAt(f.at(time.Second), uniqueKey("k"))
			f.wantState(second, backend.StateQueued)
			isDuplicate(t, f.enqueue(f.at(time.Second), f.newJob(uniqueKey("k")))[0], second, backend.StateQueued)
		})
	}

	t.Run("UniqueUntilHoldsAfterEnd", func(t *testing.T) {
		f := newFixture(t, h)
		until := f.at(time.Hour)
		holder := f.add(uniqueKey("tick-12:00"), uniqueUntil(until))
		f.complete(f.at(time.Minute), f.leaseID(f.at(time.Minute), holder), `"ok"`)
		isDuplicate(t, f.enqueue(f.at(30*time.Minute), f.newJob(uniqueKey("tick-12:00")))[0], holder, backend.StateCompleted)
		isDuplicate(t, f.enqueue(until.Add(-time.Second), f.newJob(uniqueKey("tick-12:00")))[0], holder, "")
		next := f.addAt(until.Add(time.Second), uniqueKey("tick-12:00"))
		f.wantState(next, backend.StateQueued)
	})

	t.Run("DuplicateInsideBatch", func(t *testing.T) {
		f := newFixture(t, h)
		a := f.newJob(uniqueKey("k"))
		b := f.newJob(uniqueKey("k"))
		c := f.newJob(uniqueKey("other"))
		res := f.enqueue(f.t0, a, b, c)
		if res[0].Err != nil || res[2].Err != nil {
			t.Fatalf("batch: got errors %v and %v for distinct keys, want nil", res[0].Err, res[2].Err)
		}
		isDuplicate(t, res[1], a.ID, backend.StateQueued)
		f.wantGone(b.ID)
		f.wantState(c.ID, backend.StateQueued)
	})

	t.Run("SweepFreesKey", func(t *testing.T) {
		f := newFixture(t, h)
		first := f.add(uniqueKey("k"), resultTTL(time.Minute))
		f.complete(f.t0, f.leaseID(f.t0, first), `"ok"`)
		if n := f.sweep(f.at(time.Hour), 10); n != 1 {
			t.Fatalf("Sweep: got %d deleted, want 1", n)
		}
		second := f.addAt(f.at(time.Hour), uniqueKey("k"))
		isDuplicate(t, f.enqueue(f.at(time.Hour), f.newJob(uniqueKey("k")))[0], second, backend.StateQueued)
	})

	t.Run("SweepKeepsUniqueUntil", func(t *testing.T) {
		f := newFixture(t, h)
		until := f.at(2 * time.Hour)
		first := f.add(uniqueKey("k"), uniqueUntil(until), resultTTL(time.Minute))
		f.complete(f.t0, f.leaseID(f.t0, first), `"ok"`)
		if n := f.sweep(f.at(10*time.Minute), 10); n != 1 {
			t.Fatalf("Sweep after ResultTTL: got %d deleted, want 1", n)
		}
		f.wantGone(first)
		isDuplicate(t, f.enqueue(f.at(10*time.Minute), f.newJob(uniqueKey("k")))[0], first, "")
		f.sweep(f.at(time.Hour), 10)
		isDuplicate(t, f.enqueue(f.at(time.Hour), f.newJob(uniqueKey("k")))[0], first, "")
		f.sweep(until.Add(time.Second), 10)
		f.addAt(until.Add(time.Second), uniqueKey("k"))
	})
}
