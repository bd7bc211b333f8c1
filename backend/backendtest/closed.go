package backendtest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jobrelay/engine/backend"
)

func testClosed(t *testing.T, h Harness) {
	t.Run("EveryCallFails", func(t *testing.T) {
		f := newFixture(t, h)
		id := f.add()
		l := f.leaseID(f.t0, id)
		if err := f.b.Close(); err != nil {
			t.Fatalf("Close: got error %v, want nil", err)
		}
		ctx, now := f.ctx, f.at(time.Second)
		calls := []struct {
			name string
			call func() error
		}{
			{"Enqueue", func() error { _, err := f.b.Enqueue(ctx, now, []backend.NewJob{f.newJob()}); return err }},
			{"Lease", func() error { _, err := f.b.Lease(ctx, request(now, 1)); return err }},
			{"Heartbeat", func() error {
				_, err := f.b.Heartbeat(ctx, now, now, []backend.LeaseRef{l.Ref()})
				return err
			}},
			{"Finish", func() error {
				_, err := f.b.Finish(ctx, now, []backend.Ack{{Lease: l.Ref(), Outcome: backend.OutcomeCompleted}})
				return err
			}},
			{"Progress", func() error { return f.b.Progress(ctx, now, l.Ref(), 1, "") }},
			{"Promote", func() error { _, _, err := f.b.Promote(ctx, now); return err }},
			{"Reap", func() error { _, err := f.b.Reap(ctx, now); return err }},
			{"Sweep", func() error { _, err := f.b.Sweep(ctx, now, 10); return err }},
			{"Cancel", func() error { _, err := f.b.Cancel(ctx, now, id, ""); return err }},
			{"Requeue", func() error { return f.b.Requeue(ctx, now, id) }},
			{"Job", func() error { _, err := f.b.Job(ctx, id); return err }},
			{"List", func() error { _, err := f.b.List(ctx, backend.ListFilter{}); return err }},
			{"Stats", func() error { _, err := f.b.Stats(ctx); return err }},
			{"Pause", func() error { return f.b.Pause(ctx, now, "default") }},
			{"Resume", func() error { return f.b.Resume(ctx, now, "default") }},
			{"RegisterWorker", func() error {
				return f.b.RegisterWorker(ctx, now, backend.WorkerInfo{ID: "w"}, time.Minute)
			}},
			{"RemoveWorker", func() error { return f.b.RemoveWorker(ctx, "w") }},
			{"Workers", func() error { _, err := f.b.Workers(ctx, now); return err }},
			{"EventCursor", func() error { _, err := f.b.EventCursor(ctx); return err }},
			{"ReadEvents", func() error {
				ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				defer cancel()
				_, err := f.b.ReadEvents(ctx, "", 10)
				return err
			}},
		}
		for _, c := range calls {
			wantErrIs(t, c.name+" after Close", c.call(), backend.ErrClosed)
		}
	})

	t.Run("UnblocksLease", func(t *testing.T) {
		f := newFixture(t, h)
		req := request(f.t0, 1)
		req.Block = time.Minute
		started, done := leaseAsync(f.ctx, f.b, req)
		<-started
		letItBlock()
		if err := f.b.Close(); err != nil {
			t.Fatalf("Close: got error %v, want nil", err)
		}
		r := await(t, done, 10*time.Second, "Lease blocked at Close")
		if len(r.leases) != 0 {
			t.Errorf("Lease blocked at Close: got %d jobs, want none", len(r.leases))
		}
		if r.err != nil && !errors.Is(r.err, backend.ErrClosed) {
			t.Errorf("Lease blocked at Close: got error %v, want nil or ErrClosed", r.err)
		}
	})

	t.Run("UnblocksReadEvents", func(t *testing.T) {
		f := newFixture(t, h)
		readEndsAtClose(t, f, "ReadEvents", f.b.ReadEvents, f.cursor())
	})
}
