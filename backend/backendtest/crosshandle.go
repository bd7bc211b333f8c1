package backendtest

import (
	"testing"
	"time"

	"github.com/jobrelay/engine/backend"
)

// newPairFixtures returns fixtures on two handles of one store. They share
// the start time and hand out distinct job IDs.
func newPairFixtures(t *testing.T, h Harness) (*fixture, *fixture) {
	t.Helper()
	a, b := h.NewPair(t)
	if a == nil || b == nil {
		t.Fatal("Harness.NewPair returned a nil backend")
	}
	closeAtEnd(t, a)
	closeAtEnd(t, b)
	t0 := baseTime()
	fa := &fixture{t: t, b: a, ctx: t.Context(), t0: t0}
	fb := &fixture{t: t, b: b, ctx: t.Context(), t0: t0, n: 50000}
	return fa, fb
}

func testCrossHandle(t *testing.T, h Harness) {
	if h.NewPair == nil {
		t.Skip("the backend lives in one process: Harness.NewPair is nil")
	}

	t.Run("LeaseOnOther", func(t *testing.T) {
		a, b := newPairFixtures(t, h)
		id := a.add()
		l := b.leaseID(b.t0, id)
		b.complete(b.t0, l, `"from b"`)
		wantResult(t, a.wantState(id, backend.StateCompleted), `"from b"`)
	})

	t.Run("WakeAcross", func(t *testing.T) {
		a, b := newPairFixtures(t, h)
		req := request(b.t0, 1)
		req.Block = wakeBlock
		started, done := leaseAsync(b.ctx, b.b, req)
		<-started
		letItBlock()
		id := a.add()
		r := await(t, done, wakeBlock+5*time.Second, "Lease blocked on the other handle")
		if r.err != nil || len(r.leases) != 1 || r.leases[0].Job.ID != id {
			t.Fatalf("Lease blocked on the other handle: got %v and error %v, want job %s", leasedIDs(r.leases), r.err, id)
		}
		if r.took >= wakeBlock*2/3 {
			t.Errorf("Lease blocked on the other handle: returned after %v, want it woken well before its Block of %v", r.took, wakeBlock)
		}
	})

	t.Run("CancelsAcross", func(t *testing.T) {
		a, b := newPairFixtures(t, h)
		id := a.add()
		a.leaseID(a.t0, id)
		c := b.cancelCursor()
		a.cancelOK(a.at(time.Second), id, "from a", backend.StateActive)
		b.wantCancels(c, id)
	})

	t.Run("EventsAcross", func(t *testing.T) {
		a, b := newPairFixtures(t, h)
		c := a.cursor()
		id := b.add()
		l := b.leaseID(b.t0, id)
		b.complete(b.at(time.Second), l, `"done"`)
		a.wantEvents(c,
			backend.Event{Kind: backend.EventQueued, JobID: id, State: backend.StateQueued},
			backend.Event{Kind: backend.EventActive, JobID: id, State: backend.StateActive, Attempt: 1},
			backend.Event{Kind: backend.EventCompleted, JobID: id, State: backend.StateCompleted, Attempt: 1, Result: []byte(`"done"`)},
		)
	})

	t.Run("PauseAcross", func(t *testing.T) {
		a, b := newPairFixtures(t, h)
		id := a.add()
		if err := a.b.Pause(a.ctx, a.t0, "default"); err != nil {
			t.Fatalf("Pause: got error %v, want nil", err)
		}
		b.wantNoLease(b.t0)
		if err := a.b.Resume(a.ctx, a.t0, "default"); err != nil {
			t.Fatalf("Resume: got error %v, want nil", err)
		}
		b.leaseID(b.t0, id)
	})
}
