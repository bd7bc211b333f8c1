package backendtest

import (
	"testing"
	"time"

	"github.com/jobrelay/engine/backend"
)

func testEvents(t *testing.T, h Harness) {
	t.Run("Lifecycle", func(t *testing.T) {
		f := newFixture(t, h)
		c := f.cursor()
		id := f.add(ofType("summarize"), inQueue("ai"))
		l := f.leaseID(f.at(1*time.Second), id, "ai")
		if err := f.b.Progress(f.ctx, f.at(2*time.Second), l.Ref(), 30, "reading"); err != nil {
			t.Fatalf("Progress: got error %v, want nil", err)
		}
		f.retry(f.at(3*time.Second), l, "timeout", f.at(10*time.Second))
		f.promote(f.at(10 * time.Second))
		l = f.leaseID(f.at(11*time.Second), id, "ai")
		f.complete(f.at(12*time.Second), l, `{"ok":true}`)

		ev := func(kind backend.EventKind, state backend.State, attempt int, at time.Duration) backend.Event {
			return backend.Event{Kind: kind, JobID: id, Type: "summarize", Queue: "ai", State: state, Attempt: attempt, Time: f.at(at)}
		}
		progress := ev(backend.EventProgress, backend.StateActive, 1, 2*time.Second)
		progress.Progress, progress.Message = 30, "reading"
		retrying := ev(backend.EventRetrying, backend.StateRetrying, 1, 3*time.Second)
		retrying.Error, retrying.RunAt = "timeout", f.at(10*time.Second)
		completed := ev(backend.EventCompleted, backend.StateCompleted, 2, 12*time.Second)
		completed.Result = []byte(`{"ok":true}`)
		c = f.wantEvents(c,
			ev(backend.EventQueued, backend.StateQueued, 0, 0),
			ev(backend.EventActive, backend.StateActive, 1, time.Second),
			progress,
			retrying,
			ev(backend.EventQueued, backend.StateQueued, 1, 10*time.Second),
			ev(backend.EventActive, backend.StateActive, 2, 11*time.Second),
			completed,
		)
		f.wantNoEvents(c)
	})

	t.Run("CursorStartsAfterNewest", func(t *testing.T) {
		f := newFixture(t, h)
		f.add()
		f.add()
		c := f.cursor()
		later := f.add()
		f.wantEvents(c, backend.Event{Kind: backend.EventQueued, JobID: later, State: backend.StateQueued})
	})

	t.Run("MaxAndCursorPaging", func(t *testing.T) {
		f := newFixture(t, h)
		c := f.cursor()
		var ids []string
		for range 5 {
			ids = append(ids, f.add())
		}
		got, c := pageThrough(t, f.ctx, "ReadEvents", f.b.ReadEvents, c, len(ids), 2)
		for i := range ids {
			if got[i] != ids[i] {
				t.Fatalf("events read two at a time: got jobs %v, want %v once each, in order", got, ids)
			}
		}
		f.wantNoEvents(c)
	})

	t.Run("BlocksUntilEvent", func(t *testing.T) {
		f := newFixture(t, h)
		c := f.cursor()
		done := readAsync(f.ctx, f.b.ReadEvents, c, 10*time.Second)
		id := f.add()
		r := await(t, done, 10*time.Second, "blocked ReadEvents")
		if r.err != nil || len(r.evs) == 0 {
			t.Fatalf("blocked ReadEvents: got %d events and error %v, want the new event", len(r.evs), r.err)
		}
		checkEvent(t, 0, r.evs[0], backend.Event{Kind: backend.EventQueued, JobID: id, State: backend.StateQueued})
	})

	t.Run("ContextEndsWait", func(t *testing.T) {
		f := newFixture(t, h)
		f.add()
		c := f.cursor()
		contextEndsRead(t, f.ctx, "ReadEvents", f.b.ReadEvents, c)
	})
}
