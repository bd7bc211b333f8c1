package backendtest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jobrelay/engine/backend"
)

// cancelCursor returns the cursor of the newest cancel request.
func (f *fixture) cancelCursor() string {
	f.t.Helper()
	c, err := f.b.CancelCursor(f.ctx)
	if err != nil {
		f.t.Fatalf("CancelCursor: got error %v, want nil", err)
	}
	return c
}

// wantCancels reads len(ids) cancel requests after cursor, requires them to
// be EventCancelRequested of those jobs in that order, and returns the
// cursor after them.
func (f *fixture) wantCancels(cursor string, ids ...string) string {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(f.ctx, 5*time.Second)
	defer cancel()
	var got []backend.Event
	for len(got) < len(ids) {
		evs, err := f.b.ReadCancels(ctx, cursor, len(ids)-len(got))
		if err != nil {
			f.t.Fatalf("ReadCancels after %d of %d requests: got error %v, want nil (so far: %s)", len(got), len(ids), err, kinds(got))
		}
		if len(evs) > len(ids)-len(got) {
			f.t.Fatalf("ReadCancels with max %d: got %d events, want at most that", len(ids)-len(got), len(evs))
		}
		for _, e := range evs {
			got = append(got, e)
			cursor = e.ID
		}
	}
	for i, id := range ids {
		checkEvent(f.t, i, got[i], backend.Event{Kind: backend.EventCancelRequested, JobID: id, State: backend.StateActive, Attempt: 1})
	}
	return cursor
}

// wantNoCancels requires that no cancel request follows cursor within a
// short wait.
func (f *fixture) wantNoCancels(cursor string) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(f.ctx, 50*time.Millisecond)
	defer cancel()
	evs, err := f.b.ReadCancels(ctx, cursor, 10)
	if len(evs) > 0 {
		f.t.Fatalf("ReadCancels: got %d more (%s), want none", len(evs), kinds(evs))
	}
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		f.t.Fatalf("ReadCancels with nothing new: got error %v, want nil or context.DeadlineExceeded", err)
	}
}

// testCancels checks the log of cancel requests that running engines read
// instead of the whole event log.
func testCancels(t *testing.T, h Harness) {
	t.Run("OnlyCancelRequests", func(t *testing.T) {
		f := newFixture(t, h)
		c := f.cancelCursor()
		queued := f.add()
		active := f.add(inQueue("ai"), ofType("summarize"))
		l := f.leaseID(f.at(time.Second), active, "ai")
		if err := f.b.Progress(f.ctx, f.at(2*time.Second), l.Ref(), 10, "half"); err != nil {
			t.Fatalf("Progress: got error %v, want nil", err)
		}
		f.cancelOK(f.at(3*time.Second), queued, "not needed", backend.StateCanceled)
		f.cancelOK(f.at(4*time.Second), active, "user asked", backend.StateActive)
		ctx, cancel := context.WithTimeout(f.ctx, 5*time.Second)
		defer cancel()
		evs, err := f.b.ReadCancels(ctx, c, 10)
		if err != nil || len(evs) != 1 {
			t.Fatalf("ReadCancels after one queued and one active job were canceled: got %s and error %v, want the active job's request alone", kinds(evs), err)
		}
		checkEvent(t, 0, evs[0], backend.Event{Kind: backend.EventCancelRequested, JobID: active,
			Type: "summarize", Queue: "ai", State: backend.StateActive, Attempt: 1, Time: f.at(4 * time.Second)})
		f.wantNoCancels(evs[0].ID)
	})

	t.Run("CursorStartsAfterNewest", func(t *testing.T) {
		f := newFixture(t, h)
		first := f.add()
		second := f.add()
		f.leaseID(f.t0, first)
		f.leaseID(f.t0, second)
		f.cancelOK(f.at(time.Second), first, "", backend.StateActive)
		c := f.cancelCursor()
		f.wantNoCancels(c)
		f.cancelOK(f.at(2*time.Second), second, "", backend.StateActive)
		f.wantCancels(c, second)
	})

	t.Run("OrderAndPaging", func(t *testing.T) {
		f := newFixture(t, h)
		c := f.cancelCursor()
		var ids []string
		for i := range 5 {
			q := "default"
			if i%2 == 1 {
				q = "ai" // requests of several queues come in the order they were made
			}
			id := f.add(inQueue(q))
			f.leaseID(f.t0, id, q)
			ids = append(ids, id)
		}
		for i, id := range ids {
			f.cancelOK(f.at(time.Duration(i+1)*time.Second), id, "", backend.StateActive)
		}
		got, c := pageThrough(t, f.ctx, "ReadCancels", f.b.ReadCancels, c, len(ids), 2)
		for i := range ids {
			if got[i] != ids[i] {
				t.Fatalf("cancel requests read two at a time: got %v, want %v once each, in order", got, ids)
			}
		}
		f.wantNoCancels(c)
	})

	t.Run("RepeatedCancelRecordsOnce", func(t *testing.T) {
		f := newFixture(t, h)
		id := f.add()
		f.leaseID(f.t0, id)
		c := f.cancelCursor()
		f.cancelOK(f.at(time.Second), id, "", backend.StateActive)
		f.cancelOK(f.at(2*time.Second), id, "again", backend.StateActive)
		c = f.wantCancels(c, id)
		f.wantNoCancels(c)
	})

	t.Run("BlocksUntilRequest", func(t *testing.T) {
		f := newFixture(t, h)
		id := f.add()
		f.leaseID(f.t0, id)
		c := f.cancelCursor()
		done := readAsync(f.ctx, f.b.ReadCancels, c, 10*time.Second)
		f.add() // other events do not end the wait with nothing
		f.cancelOK(f.at(time.Second), id, "", backend.StateActive)
		r := await(t, done, 10*time.Second, "blocked ReadCancels")
		if r.err != nil || len(r.evs) != 1 {
			t.Fatalf("blocked ReadCancels: got %s and error %v, want the one request", kinds(r.evs), r.err)
		}
		checkEvent(t, 0, r.evs[0], backend.Event{Kind: backend.EventCancelRequested, JobID: id, State: backend.StateActive, Attempt: 1})
	})

	t.Run("ContextEndsWait", func(t *testing.T) {
		f := newFixture(t, h)
		c := f.cancelCursor()
		contextEndsRead(t, f.ctx, "ReadCancels", f.b.ReadCancels, c)
	})

	t.Run("Closed", func(t *testing.T) {
		f := newFixture(t, h)
		c := f.cancelCursor()
		readEndsAtClose(t, f, "ReadCancels", f.b.ReadCancels, c)
		_, err := f.b.CancelCursor(f.ctx)
		wantErrIs(t, "CancelCursor after Close", err, backend.ErrClosed)
		ctx, cancel := context.WithTimeout(f.ctx, 5*time.Second)
		defer cancel()
		_, err = f.b.ReadCancels(ctx, c, 10)
		wantErrIs(t, "ReadCancels after Close", err, backend.ErrClosed)
	})
}
