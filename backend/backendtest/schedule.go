package backendtest

import (
	"testing"
	"time"

	"github.com/jobrelay/engine/backend"
)

func testSchedule(t *testing.T, h Harness) {
	t.Run("NotLeasedBeforePromote", func(t *testing.T) {
		f := newFixture(t, h)
		due := f.at(time.Minute)
		id := f.add(runAt(due))
		early := due.Add(-time.Second)
		f.wantNoLease(early)
		if moved, _ := f.promote(early); moved != 0 {
			t.Errorf("Promote before RunAt: got %d moved, want 0", moved)
		}
		f.wantState(id, backend.StateScheduled)
		c := f.cursor()
		if moved, _ := f.promote(due); moved != 1 {
			t.Fatalf("Promote at RunAt: got %d moved, want 1", moved)
		}
		f.wantState(id, backend.StateQueued)
		f.wantEvents(c, backend.Event{Kind: backend.EventQueued, JobID: id, State: backend.StateQueued, Time: due})
		f.leaseID(due, id)
	})

	t.Run("PromoteReportsNext", func(t *testing.T) {
		f := newFixture(t, h)
		f.add(runAt(f.at(10 * time.Second)))
		f.add(runAt(f.at(20 * time.Second)))
		f.add(runAt(f.at(30 * time.Second)))
		r := f.add(inQueue("retries"))
		f.retry(f.t0, f.leaseID(f.t0, r, "retries"), "boom", f.at(15*time.Second))

		steps := []struct {
			at    time.Duration
			moved int
			next  time.Duration // 0: none left
		}{
			{5 * time.Second, 0, 10 * time.Second},
			{15 * time.Second, 2, 20 * time.Second},
			{30 * time.Second, 2, 0},
			{time.Hour, 0, 0},
		}
		for _, s := range steps {
			moved, next := f.promote(f.at(s.at))
			if moved != s.moved {
				t.Errorf("Promote at t0+%v: got %d moved, want %d", s.at, moved, s.moved)
			}
			if s.next == 0 && !next.IsZero() {
				t.Errorf("Promote at t0+%v: got next %v, want zero (nothing waits)", s.at, next)
			}
			if s.next != 0 && !next.Equal(f.at(s.next)) {
				t.Errorf("Promote at t0+%v: got next %s, want t0+%v", s.at, f.since(next), s.next)
			}
		}
		if got := len(f.lease(request(f.at(time.Hour), 10, "default", "retries"))); got != 4 {
			t.Errorf("Lease after promoting everything: got %d jobs, want 4", got)
		}
	})
}
