package backendtest

import (
	"testing"
	"time"

	"github.com/jobrelay/engine/backend"
)

func testPause(t *testing.T, h Harness) {
	t.Run("PausedQueueNotLeased", func(t *testing.T) {
		f := newFixture(t, h)
		a := f.add(inQueue("a"))
		b := f.add(inQueue("b"))
		c := f.cursor()
		if err := f.b.Pause(f.ctx, f.at(time.Second), "a"); err != nil {
			t.Fatalf("Pause: got error %v, want nil", err)
		}
		c = f.wantEvents(c, backend.Event{Kind: backend.EventPaused, Queue: "a", Time: f.at(time.Second)})
		if !f.stats()["a"].Paused {
			t.Errorf("Stats after Pause: got a not paused, want paused")
		}

		got := leasedIDs(f.lease(request(f.at(time.Second), 10, "a", "b")))
		if len(got) != 1 || got[0] != b {
			t.Fatalf("Lease with a paused: got %v, want only %s of b", got, b)
		}
		a2 := f.addAt(f.at(2*time.Second), inQueue("a"))
		f.wantState(a2, backend.StateQueued)
		c = f.wantEvents(c,
			backend.Event{Kind: backend.EventActive, JobID: b, State: backend.StateActive, Attempt: 1},
			backend.Event{Kind: backend.EventQueued, JobID: a2, State: backend.StateQueued})
		f.wantNoLease(f.at(2*time.Second), "a")

		if err := f.b.Resume(f.ctx, f.at(3*time.Second), "a"); err != nil {
			t.Fatalf("Resume: got error %v, want nil", err)
		}
		f.wantEvents(c, backend.Event{Kind: backend.EventResumed, Queue: "a", Time: f.at(3 * time.Second)})
		if f.stats()["a"].Paused {
			t.Errorf("Stats after Resume: got a paused, want not")
		}
		got = leasedIDs(f.lease(request(f.at(3*time.Second), 10, "a")))
		if len(got) != 2 || got[0] != a || got[1] != a2 {
			t.Errorf("Lease after Resume: got %v, want [%s %s]", got, a, a2)
		}
	})

	t.Run("Idempotent", func(t *testing.T) {
		f := newFixture(t, h)
		for i := range 2 {
			if err := f.b.Pause(f.ctx, f.t0, "a"); err != nil {
				t.Fatalf("Pause %d: got error %v, want nil", i+1, err)
			}
		}
		for i := range 2 {
			if err := f.b.Resume(f.ctx, f.t0, "a"); err != nil {
				t.Fatalf("Resume %d: got error %v, want nil", i+1, err)
			}
		}
		if err := f.b.Resume(f.ctx, f.t0, "never-paused"); err != nil {
			t.Fatalf("Resume of a queue never paused: got error %v, want nil", err)
		}
		f.leaseID(f.t0, f.add(inQueue("a")), "a")
	})
}
