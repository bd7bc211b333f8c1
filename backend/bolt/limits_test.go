package bolt

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/jobrelay/engine/backend"
)

func limitedJob(id, key string) backend.NewJob {
	nj := newJob(id)
	nj.LimitKey = key
	return nj
}

// TestLimitsSurviveReopen: a limit is stored in the file; what it is judged
// on is not, and Open reaps every lease, so a held-back job runs after a
// restart.
func TestLimitsSurviveReopen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "jobs.db")
	b, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	lim := backend.Limit{Key: "llm", Concurrency: 1, Rate: 10, Period: time.Minute}
	if err := b.SetLimit(ctx, t0, lim); err != nil {
		t.Fatalf("SetLimit: %v", err)
	}
	enqueue(t, b, t0, limitedJob("a", "llm"), limitedJob("b", "llm"))
	if ls := lease(t, b, t0, 10); len(ls) != 1 || ls[0].Job.ID != "a" {
		t.Fatalf("Lease under a cap of 1: got %d jobs, want a alone", len(ls))
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	b = openAt(t, path, Options{NoSync: true})
	got, err := b.Limits(ctx)
	if err != nil || !slices.Equal(got, []backend.Limit{lim}) {
		t.Fatalf("Limits after reopen: got %+v, %v, want %+v", got, err, lim)
	}
	// a was reaped as stalled at Open, so the key has no active job: one
	// of the two runs, and the cap holds back the other.
	ls := lease(t, b, t0.Add(time.Second), 10)
	if len(ls) != 1 {
		t.Fatalf("Lease after reopen: got %d jobs, want 1 (cap 1, no active job)", len(ls))
	}
}

// TestParkedJobCanceled: a job parked while its key was held back and then
// canceled is not leased once the key opens, and does not hold back the
// next one.
func TestParkedJobCanceled(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := open(t)
	if err := b.SetLimit(ctx, t0, backend.Limit{Key: "llm", Concurrency: 1}); err != nil {
		t.Fatal(err)
	}
	enqueue(t, b, t0, limitedJob("a", "llm"), limitedJob("b", "llm"), limitedJob("c", "llm"))
	ls := lease(t, b, t0, 10) // a runs; b and c are parked
	if len(ls) != 1 {
		t.Fatalf("Lease: got %d jobs, want 1", len(ls))
	}
	if _, err := b.Cancel(ctx, t0, "b", "not needed"); err != nil {
		t.Fatalf("Cancel b: %v", err)
	}
	finish(t, b, t0, backend.Ack{Lease: ls[0].Ref(), Outcome: backend.OutcomeCompleted})
	if ls := lease(t, b, t0, 10); len(ls) != 1 || ls[0].Job.ID != "c" {
		t.Fatalf("Lease once a finished: got %d jobs, want c alone", len(ls))
	}
	wantState(t, b, "b", backend.StateCanceled)
}

// TestLeaseAfterWaitStampsWaitedTime: a job leased after a Block wait is
// stamped with Now plus the wall time waited.
func TestLeaseAfterWaitStampsWaitedTime(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := open(t)
	done := make(chan []*backend.Lease, 1)
	started := make(chan struct{})
	go func() {
		close(started)
		ls, err := b.Lease(ctx, backend.LeaseRequest{Queues: []string{"default"}, Worker: "w", Max: 1,
			Now: t0, TTL: time.Minute, Block: 10 * time.Second})
		if err != nil {
			t.Errorf("Lease: %v", err)
		}
		done <- ls
	}()
	<-started
	const pause = 50 * time.Millisecond
	time.Sleep(pause) // the wait is what is measured; the Lease returns either way
	enqueue(t, b, t0, newJob("a"))
	ls := <-done
	if len(ls) != 1 {
		t.Fatalf("blocked Lease: got %d jobs, want 1", len(ls))
	}
	if got := ls[0].Job.StartedAt.Sub(t0); got < pause || got > 10*time.Second {
		t.Fatalf("StartedAt after a wait: got t0+%v, want t0 plus the time waited (at least %v)", got, pause)
	}
	if got := ls[0].Job.LeaseExpiresAt.Sub(ls[0].Job.StartedAt); got != time.Minute {
		t.Fatalf("LeaseExpiresAt: got StartedAt+%v, want StartedAt+1m", got)
	}
}
