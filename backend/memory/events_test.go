package memory_test

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jobrelay/engine/backend"
	"github.com/jobrelay/engine/backend/memory"
)

// Every field of an event comes back from the compact log as it was
// recorded: job IDs longer and shorter than those kept inline, types and
// queues, the empty fields of queue events, and the fields that only some
// kinds carry (progress, message, error, RunAt, and results nil, empty or
// not).
func TestEventFieldsRoundTrip(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	defer b.Close()
	longID := "job-" + strings.Repeat("x", 60)
	inlineID := "job-" + strings.Repeat("y", 24) // 28 bytes, the most kept inline
	runAt := t0.Add(time.Hour + 123)
	retryAt := t0.Add(time.Minute + 7)
	jobs := []backend.NewJob{
		{ID: longID, Type: "alpha", Queue: "q1", MaxRetries: 3, MaxStalls: 1},
		{ID: inlineID, Type: "beta", Queue: "q2", MaxStalls: 1},
		{ID: "job-c", Type: "alpha", Queue: "q1", RunAt: runAt, MaxStalls: 1},
		{ID: "job-d", Type: "gamma", Queue: "q3", MaxStalls: 1},
		{ID: "job-e", Type: "gamma", Queue: "q3", MaxStalls: 1},
	}
	enqueue(t, b, jobs...)
	if err := b.Pause(ctx, t0, "q1"); err != nil {
		t.Fatalf("Pause: got error %v, want nil", err)
	}
	if err := b.Resume(ctx, t0, "q1"); err != nil {
		t.Fatalf("Resume: got error %v, want nil", err)
	}
	lease := func(queue string) backend.LeaseRef {
		t.Helper()
		ls, err := b.Lease(ctx, backend.LeaseRequest{Queues: []string{queue}, Max: 1, Now: t0, TTL: time.Minute})
		if err != nil || len(ls) != 1 {
			t.Fatalf("Lease of %s: got %d jobs and error %v, want 1 job", queue, len(ls), err)
		}
		return ls[0].Ref()
	}
	finish := func(a backend.Ack) {
		t.Helper()
		errs, err := b.Finish(ctx, t0, []backend.Ack{a})
		if err != nil || errs[0] != nil {
			t.Fatalf("Finish of %s: got errors %v, %v, want nil", a.Lease.JobID, err, errs)
		}
	}
	a := lease("q1")
	if err := b.Progress(ctx, t0, a, 40, "half"); err != nil {
		t.Fatalf("Progress: got error %v, want nil", err)
	}
	finish(backend.Ack{Lease: a, Outcome: backend.OutcomeRetry, Error: "boom", RetryAt: retryAt})
	finish(backend.Ack{Lease: lease("q2"), Outcome: backend.OutcomeCompleted, Result: []byte(`{"ok":1}`)})
	finish(backend.Ack{Lease: lease("q3"), Outcome: backend.OutcomeCompleted, Result: []byte{}})
	finish(backend.Ack{Lease: lease("q3"), Outcome: backend.OutcomeCompleted})

	ev := func(kind backend.EventKind, id, typ, queue string, st backend.State, attempt int) backend.Event {
		return backend.Event{Kind: kind, JobID: id, Type: typ, Queue: queue, State: st, Attempt: attempt, Time: t0}
	}
	want := []backend.Event{
		ev(backend.EventQueued, longID, "alpha", "q1", backend.StateQueued, 0),
		ev(backend.EventQueued, inlineID, "beta", "q2", backend.StateQueued, 0),
		ev(backend.EventQueued, "job-c", "alpha", "q1", backend.StateScheduled, 0),
		ev(backend.EventQueued, "job-d", "gamma", "q3", backend.StateQueued, 0),
		ev(backend.EventQueued, "job-e", "gamma", "q3", backend.StateQueued, 0),
		ev(backend.EventPaused, "", "", "q1", "", 0),
		ev(backend.EventResumed, "", "", "q1", "", 0),
		ev(backend.EventActive, longID, "alpha", "q1", backend.StateActive, 1),
		ev(backend.EventProgress, longID, "alpha", "q1", backend.StateActive, 1),
		ev(backend.EventRetrying, longID, "alpha", "q1", backend.StateRetrying, 1),
		ev(backend.EventActive, inlineID, "beta", "q2", backend.StateActive, 1),
		ev(backend.EventCompleted, inlineID, "beta", "q2", backend.StateCompleted, 1),
		ev(backend.EventActive, "job-d", "gamma", "q3", backend.StateActive, 1),
		ev(backend.EventCompleted, "job-d", "gamma", "q3", backend.StateCompleted, 1),
		ev(backend.EventActive, "job-e", "gamma", "q3", backend.StateActive, 1),
		ev(backend.EventCompleted, "job-e", "gamma", "q3", backend.StateCompleted, 1),
	}
	want[2].RunAt = runAt
	want[8].Progress, want[8].Message = 40, "half"
	want[9].Error, want[9].RunAt = "boom", retryAt
	want[11].Result = []byte(`{"ok":1}`)
	want[13].Result = []byte{}
	for i := range want {
		want[i].ID = strconv.Itoa(i + 1)
	}

	got, err := b.ReadEvents(ctx, "", 100)
	if err != nil {
		t.Fatalf("ReadEvents: got error %v, want nil", err)
	}
	if len(got) != len(want) {
		t.Fatalf("ReadEvents: got %d events, want %d", len(got), len(want))
	}
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("event %d:\n got %+v\nwant %+v", i+1, got[i], want[i])
		}
	}
	if got[13].Result == nil || got[15].Result != nil {
		t.Errorf("results of job-d and job-e: got %#v and %#v, want empty and nil", got[13].Result, got[15].Result)
	}
}

// The data of events (here results of very different sizes) stays right
// while the log wraps around and its data ring grows and shrinks: every kept
// event reads back with its own result, and a reader behind the oldest kept
// event resumes there.
func TestEventDataAcrossWrapAndResize(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{EventLogSize: 8})
	defer b.Close()
	results := make(map[string][]byte)
	size := func(i int) int {
		switch {
		case i < 40:
			return (i % 7) * 300
		case i < 60:
			return 50_000 + i
		default:
			return i % 5
		}
	}
	for i := range 120 {
		nj := newJob(i)
		enqueue(t, b, nj)
		ls, err := b.Lease(ctx, backend.LeaseRequest{Queues: []string{"default"}, Max: 1, Now: t0, TTL: time.Minute})
		if err != nil || len(ls) != 1 {
			t.Fatalf("Lease of job %d: got %d jobs and error %v, want 1", i, len(ls), err)
		}
		result := bytes.Repeat([]byte{byte('a' + i%26)}, size(i))
		results[nj.ID] = result
		if _, err := b.Finish(ctx, t0, []backend.Ack{{Lease: ls[0].Ref(), Outcome: backend.OutcomeCompleted, Result: result}}); err != nil {
			t.Fatalf("Finish of job %d: got error %v, want nil", i, err)
		}

		last := 3 * (i + 1) // three events per job
		evs, err := b.ReadEvents(ctx, "", 100)
		if err != nil {
			t.Fatalf("ReadEvents after job %d: got error %v, want nil", i, err)
		}
		if len(evs) != min(8, last) || evs[len(evs)-1].ID != strconv.Itoa(last) {
			t.Fatalf("ReadEvents after job %d: got %d events up to %s, want %d up to %d", i, len(evs), evs[len(evs)-1].ID, min(8, last), last)
		}
		for k, e := range evs {
			if want := strconv.Itoa(last - len(evs) + 1 + k); e.ID != want {
				t.Fatalf("ReadEvents after job %d: got event %s at %d, want %s", i, e.ID, k, want)
			}
			if e.Kind == backend.EventCompleted && !bytes.Equal(e.Result, results[e.JobID]) {
				t.Fatalf("after job %d, event %s of %s: got a result of %d bytes, want its own %d", i, e.ID, e.JobID, len(e.Result), len(results[e.JobID]))
			}
		}
	}
}

// Events whose job IDs are longer than those kept inline read back whole,
// also when a batch mixes them with short ones and with queue events.
func TestEventLongIDs(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{EventLogSize: 16})
	defer b.Close()
	var ids []string
	for i := range 40 {
		id := fmt.Sprintf("%s-%03d", strings.Repeat("z", i), i)
		ids = append(ids, id)
		enqueue(t, b, backend.NewJob{ID: id, Type: "t", Queue: "default", MaxStalls: 1})
	}
	evs, err := b.ReadEvents(ctx, "0", 100)
	if err != nil || len(evs) != 16 {
		t.Fatalf("ReadEvents: got %d events and error %v, want the 16 kept", len(evs), err)
	}
	for k, e := range evs {
		if want := ids[24+k]; e.JobID != want || e.Type != "t" || e.ID != strconv.Itoa(25+k) {
			t.Errorf("event %d: got %s of %q (type %q), want %d of %q (type \"t\")", k, e.ID, e.JobID, e.Type, 25+k, want)
		}
	}
}
