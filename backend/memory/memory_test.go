package memory_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/jobrelay/engine/backend"
	"github.com/jobrelay/engine/backend/backendtest"
	"github.com/jobrelay/engine/backend/memory"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestConformance(t *testing.T) {
	backendtest.Run(t, backendtest.Harness{
		New: func(t *testing.T) backend.Backend { return memory.New(memory.Options{}) },
	})
}

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func newJob(i int) backend.NewJob {
	return backend.NewJob{ID: fmt.Sprintf("job-%06d", i), Type: "t", Queue: "default", Payload: []byte(`{}`),
		MaxRetries: 3, MaxStalls: 3, ResultTTL: time.Hour, FailureTTL: time.Hour}
}

func enqueue(t *testing.T, b *memory.Backend, jobs ...backend.NewJob) {
	t.Helper()
	res, err := b.Enqueue(context.Background(), t0, jobs)
	if err != nil {
		t.Fatalf("Enqueue: got error %v, want nil", err)
	}
	for _, r := range res {
		if r.Err != nil {
			t.Fatalf("Enqueue %s: got error %v, want nil", r.ID, r.Err)
		}
	}
}

// The event log keeps the newest EventLogSize events; a reader behind them
// resumes at the oldest kept one, and cursors keep counting across the wrap.
func TestEventRingWrapAround(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{EventLogSize: 8})
	defer b.Close()
	for i := 1; i <= 20; i++ {
		enqueue(t, b, newJob(i)) // one EventQueued each
	}
	cur, err := b.EventCursor(ctx)
	if err != nil || cur != "20" {
		t.Fatalf("EventCursor: got %q, %v, want \"20\", nil", cur, err)
	}

	for _, from := range []string{"", "0", "3", "12"} {
		evs, err := b.ReadEvents(ctx, from, 100)
		if err != nil {
			t.Fatalf("ReadEvents(%q): got error %v, want nil", from, err)
		}
		if len(evs) != 8 || evs[0].ID != "13" || evs[0].JobID != "job-000013" || evs[7].ID != "20" {
			t.Errorf("ReadEvents(%q) past the cap: got %d events from %s, want the 8 kept: 13..20", from, len(evs), evs[0].ID)
		}
	}
	evs, err := b.ReadEvents(ctx, "17", 2)
	if err != nil || len(evs) != 2 || evs[0].ID != "18" || evs[1].ID != "19" {
		t.Errorf("ReadEvents(\"17\", 2): got %v, %v, want events 18 and 19", evs, err)
	}

	enqueue(t, b, newJob(21))
	evs, err = b.ReadEvents(ctx, cur, 10)
	if err != nil || len(evs) != 1 || evs[0].ID != "21" || evs[0].JobID != "job-000021" {
		t.Errorf("ReadEvents after the wrap: got %v, %v, want event 21 of job-000021", evs, err)
	}
}

func TestReadEventsBadCursor(t *testing.T) {
	b := memory.New(memory.Options{})
	defer b.Close()
	if _, err := b.ReadEvents(context.Background(), "not-a-number", 1); err == nil {
		t.Errorf("ReadEvents with a bad cursor: got nil error, want one")
	}
}

// A second job with a stored ID would corrupt the indexes; it is refused as a
// duplicate of the first.
func TestDuplicateID(t *testing.T) {
	b := memory.New(memory.Options{})
	defer b.Close()
	enqueue(t, b, newJob(1))
	res, err := b.Enqueue(context.Background(), t0, []backend.NewJob{newJob(1)})
	if err != nil || !errors.Is(res[0].Err, backend.ErrDuplicateJob) || res[0].ID != "job-000001" {
		t.Errorf("Enqueue of a stored ID: got %+v, %v, want ErrDuplicateJob naming job-000001", res, err)
	}
}

// The ID index stays ordered when IDs arrive out of order and are swept in
// any order, across many chunks.
func TestListOrderAcrossChunks(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{EventLogSize: 16})
	defer b.Close()
	const n = 3000
	// A permutation of 0..n-1 that is far from sorted.
	var jobs []backend.NewJob
	for i := range n {
		nj := newJob((i * 1237) % n)
		nj.ResultTTL = time.Duration(1+(i*7)%5) * time.Minute
		jobs = append(jobs, nj)
	}
	enqueue(t, b, jobs...)
	wantListed(t, b, n, func(i int) bool { return true })

	// Complete every job; those with a TTL of at most 2 minutes (i*7%5 < 2)
	// are swept.
	for {
		ls, err := b.Lease(ctx, backend.LeaseRequest{Queues: []string{"default"}, Max: 500, Now: t0, TTL: time.Hour})
		if err != nil {
			t.Fatalf("Lease: got error %v, want nil", err)
		}
		if len(ls) == 0 {
			break
		}
		acks := make([]backend.Ack, len(ls))
		for i, l := range ls {
			acks[i] = backend.Ack{Lease: l.Ref(), Outcome: backend.OutcomeCompleted}
		}
		if _, err := b.Finish(ctx, t0, acks); err != nil {
			t.Fatalf("Finish: got error %v, want nil", err)
		}
	}
	if _, err := b.Sweep(ctx, t0.Add(2*time.Minute+time.Second), 0); err != nil {
		t.Fatalf("Sweep: got error %v, want nil", err)
	}
	kept := func(id int) bool {
		// Job id was the i-th enqueued with id == i*1237 % n; 1237 is
		// invertible mod 3000.
		for i := range n {
			if (i*1237)%n == id {
				return (i*7)%5 >= 2
			}
		}
		return false
	}
	count := 0
	for i := range n {
		if kept(i) {
			count++
		}
	}
	wantListed(t, b, count, kept)
}

func wantListed(t *testing.T, b *memory.Backend, want int, keep func(int) bool) {
	t.Helper()
	var ids []string
	f := backend.ListFilter{Limit: 97}
	for {
		page, err := b.List(context.Background(), f)
		if err != nil {
			t.Fatalf("List: got error %v, want nil", err)
		}
		for _, j := range page.Jobs {
			ids = append(ids, j.ID)
		}
		if page.Next == "" {
			break
		}
		f.Cursor = page.Next
	}
	if len(ids) != want {
		t.Fatalf("List: got %d jobs, want %d", len(ids), want)
	}
	next := 0
	for _, id := range ids {
		for !keep(next) {
			next++
		}
		if wantID := fmt.Sprintf("job-%06d", next); id != wantID {
			t.Fatalf("List: got %s, want %s next", id, wantID)
		}
		next++
	}
}

// A unique key that outlived its swept job is forgotten by a later Sweep
// once UniqueUntil has passed, and is free again.
func TestUniqueTombstoneLapses(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	defer b.Close()
	nj := newJob(1)
	nj.UniqueKey, nj.UniqueUntil, nj.ResultTTL = "k", t0.Add(time.Hour), time.Minute
	enqueue(t, b, nj)
	ls, _ := b.Lease(ctx, backend.LeaseRequest{Queues: []string{"default"}, Max: 1, Now: t0, TTL: time.Minute})
	if _, err := b.Finish(ctx, t0, []backend.Ack{{Lease: ls[0].Ref(), Outcome: backend.OutcomeCompleted}}); err != nil {
		t.Fatal(err)
	}
	if n, _ := b.Sweep(ctx, t0.Add(2*time.Minute), 10); n != 1 {
		t.Fatalf("Sweep: got %d deleted, want 1", n)
	}
	dup := newJob(2)
	dup.UniqueKey = "k"
	res, _ := b.Enqueue(ctx, t0.Add(3*time.Minute), []backend.NewJob{dup})
	if !errors.Is(res[0].Err, backend.ErrDuplicateJob) || res[0].ID != "job-000001" || res[0].State != backend.StateCompleted {
		t.Fatalf("Enqueue while the tomb holds the key: got %+v, want ErrDuplicateJob from completed job-000001", res[0])
	}
	if n, _ := b.Sweep(ctx, t0.Add(2*time.Hour), 10); n != 0 {
		t.Errorf("Sweep of the lapsed tomb: got %d jobs deleted, want 0 (tombs are not jobs)", n)
	}
	res, _ = b.Enqueue(ctx, t0.Add(2*time.Hour), []backend.NewJob{dup})
	if res[0].Err != nil {
		t.Errorf("Enqueue after UniqueUntil: got error %v, want nil", res[0].Err)
	}
}

// Results in events are copies, and so are jobs a lease returns.
func TestEventsAreCopies(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	defer b.Close()
	enqueue(t, b, newJob(1))
	ls, _ := b.Lease(ctx, backend.LeaseRequest{Queues: []string{"default"}, Max: 1, Now: t0, TTL: time.Minute})
	result := []byte(`"result"`)
	if _, err := b.Finish(ctx, t0, []backend.Ack{{Lease: ls[0].Ref(), Outcome: backend.OutcomeCompleted, Result: result}}); err != nil {
		t.Fatal(err)
	}
	result[1] = 'X'
	evs, _ := b.ReadEvents(ctx, "2", 1)
	evs[0].Result[1] = 'Y'
	evs, _ = b.ReadEvents(ctx, "2", 1)
	j, _ := b.Job(ctx, "job-000001")
	if string(evs[0].Result) != `"result"` || string(j.Result) != `"result"` {
		t.Errorf("after callers changed their buffers: got event result %s and job result %s, want \"result\"", evs[0].Result, j.Result)
	}
}

func TestMaxStallsZeroFailsAtFirstStall(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	defer b.Close()
	nj := newJob(1)
	nj.MaxStalls = 0
	enqueue(t, b, nj)
	b.Lease(ctx, backend.LeaseRequest{Queues: []string{"default"}, Max: 1, Now: t0, TTL: time.Minute})
	b.Reap(ctx, t0.Add(time.Hour))
	if j, _ := b.Job(ctx, nj.ID); j.State != backend.StateFailed {
		t.Errorf("job with MaxStalls 0 after a stall: got state %q, want failed", j.State)
	}
}

// Many blocked Lease calls all return when their Block ends, and leave no
// goroutine behind (TestMain checks).
func TestManyBlockedLeases(t *testing.T) {
	b := memory.New(memory.Options{})
	defer b.Close()
	done := make(chan int, 16)
	for range 16 {
		go func() {
			ls, _ := b.Lease(context.Background(), backend.LeaseRequest{Queues: []string{"default"}, Max: 1,
				Now: t0, TTL: time.Minute, Block: 300 * time.Millisecond})
			done <- len(ls)
		}()
	}
	jobs := make([]backend.NewJob, 8)
	for i := range jobs {
		jobs[i] = newJob(i)
	}
	enqueue(t, b, jobs...)
	got := 0
	for range 16 {
		got += <-done
	}
	if got != 8 {
		t.Errorf("16 blocked Lease calls and 8 jobs: got %d leased, want 8", got)
	}
}

func TestTokensUnique(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	defer b.Close()
	var jobs []backend.NewJob
	for i := range 1000 {
		jobs = append(jobs, newJob(i))
	}
	enqueue(t, b, jobs...)
	seen := map[string]bool{}
	for range 10 {
		ls, _ := b.Lease(ctx, backend.LeaseRequest{Queues: []string{"default"}, Max: 100, Now: t0, TTL: time.Minute})
		for _, l := range ls {
			if seen[l.Job.LeaseToken] {
				t.Fatalf("token %q handed out twice", l.Job.LeaseToken)
			}
			seen[l.Job.LeaseToken] = true
		}
	}
	if len(seen) != 1000 {
		t.Errorf("tokens: got %d, want 1000", len(seen))
	}
	other := memory.New(memory.Options{})
	defer other.Close()
	enqueue(t, other, newJob(1))
	ls, _ := other.Lease(ctx, backend.LeaseRequest{Queues: []string{"default"}, Max: 1, Now: t0, TTL: time.Minute})
	if seen[ls[0].Job.LeaseToken] {
		t.Errorf("two backends handed out the same token %q", ls[0].Job.LeaseToken)
	}
}

func leaseAll(t *testing.T, b *memory.Backend, now time.Time, max int) []*backend.Lease {
	t.Helper()
	ls, err := b.Lease(context.Background(), backend.LeaseRequest{Queues: []string{"default"}, Worker: "w", Max: max, Now: now, TTL: time.Minute})
	if err != nil {
		t.Fatalf("Lease: got error %v, want nil", err)
	}
	return ls
}

// A job released at shutdown or back from a stall was first in line: it goes
// to the front of its priority, ahead of jobs that came after it.
func TestReleasedJobGoesFirst(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	defer b.Close()
	enqueue(t, b, newJob(1), newJob(2), newJob(3))
	l := leaseAll(t, b, t0, 1)[0]
	if _, err := b.Finish(ctx, t0, []backend.Ack{{Lease: l.Ref(), Outcome: backend.OutcomeReleased}}); err != nil {
		t.Fatal(err)
	}
	l = leaseAll(t, b, t0, 1)[0]
	if l.Job.ID != "job-000001" {
		t.Fatalf("after a release: got %s first, want job-000001", l.Job.ID)
	}
	b.Reap(ctx, t0.Add(time.Hour))
	if got := leaseAll(t, b, t0.Add(time.Hour), 1)[0].Job.ID; got != "job-000001" {
		t.Errorf("after a stall: got %s first, want job-000001", got)
	}
}

// Canceling most waiting jobs and heartbeating a lease many times leaves
// stale index entries behind; the indexes purge them and keep their order.
func TestIndexesPurgeStaleEntries(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{EventLogSize: 16})
	defer b.Close()
	var jobs []backend.NewJob
	for i := range 2000 {
		nj := newJob(i)
		if i%2 == 1 {
			nj.RunAt = t0.Add(time.Duration(i) * time.Second) // scheduled
		}
		nj.Priority = i % 3
		jobs = append(jobs, nj)
	}
	enqueue(t, b, jobs...)
	for i := range 2000 {
		if i%10 != 0 && i%10 != 1 {
			if _, err := b.Cancel(ctx, t0, jobs[i].ID, "thin out"); err != nil {
				t.Fatal(err)
			}
		}
	}
	moved, next, err := b.Promote(ctx, t0.Add(1000*time.Second))
	if err != nil || moved != 100 || !next.Equal(t0.Add(1001*time.Second)) {
		t.Fatalf("Promote: got %d moved, next %v, %v; want 100, t0+1001s", moved, next, err)
	}
	ls := leaseAll(t, b, t0.Add(1000*time.Second), 1000)
	if len(ls) != 300 {
		t.Fatalf("Lease: got %d jobs, want the 300 left due", len(ls))
	}
	for i := 1; i < len(ls); i++ {
		a, c := ls[i-1].Job, ls[i].Job
		if a.Priority < c.Priority {
			t.Fatalf("lease order: got priority %d before %d", a.Priority, c.Priority)
		}
	}

	l := ls[0]
	for i := range 1000 {
		until := t0.Add(time.Duration(1000+i) * time.Hour)
		errs, err := b.Heartbeat(ctx, t0, until, []backend.LeaseRef{l.Ref()})
		if err != nil || errs[0] != nil {
			t.Fatalf("Heartbeat %d: got %v, %v", i, errs, err)
		}
	}
	if n, _ := b.Reap(ctx, t0.Add(1998*time.Hour)); n != 299 {
		t.Errorf("Reap before the last renewed expiry: got %d reaped, want the 299 not renewed", n)
	}
	if n, _ := b.Reap(ctx, t0.Add(2000*time.Hour)); n != 1 {
		t.Errorf("Reap after it: got %d reaped, want 1", n)
	}
}

// After a burst the indexes give memory back; the backend works on as before.
func TestShrinkAfterBurst(t *testing.T) {
	if testing.Short() {
		t.Skip("a burst of 70,000 jobs")
	}
	ctx := context.Background()
	b := memory.New(memory.Options{EventLogSize: 16})
	defer b.Close()
	const n = 70000
	jobs := make([]backend.NewJob, n)
	for i := range jobs {
		jobs[i] = newJob(i)
		if i%2 == 1 {
			jobs[i].RunAt = t0.Add(time.Second)
		}
	}
	enqueue(t, b, jobs...)
	if moved, _, _ := b.Promote(ctx, t0.Add(time.Second)); moved != n/2 {
		t.Fatalf("Promote: got %d moved, want %d", moved, n/2)
	}
	done := 0
	for {
		ls := leaseAll(t, b, t0.Add(time.Second), 1000)
		if len(ls) == 0 {
			break
		}
		acks := make([]backend.Ack, len(ls))
		for i, l := range ls {
			acks[i] = backend.Ack{Lease: l.Ref(), Outcome: backend.OutcomeCompleted}
		}
		if _, err := b.Finish(ctx, t0.Add(time.Second), acks); err != nil {
			t.Fatal(err)
		}
		done += len(ls)
	}
	if done != n {
		t.Fatalf("leased and finished %d jobs, want %d", done, n)
	}
	if swept, _ := b.Sweep(ctx, t0.Add(2*time.Hour), 0); swept != n {
		t.Fatalf("Sweep: got %d deleted, want %d", swept, n)
	}
	enqueue(t, b, newJob(n), newJob(n+1))
	if ls := leaseAll(t, b, t0.Add(2*time.Hour), 10); len(ls) != 2 {
		t.Fatalf("Lease after the burst: got %d jobs, want 2", len(ls))
	}
	if j, err := b.Job(ctx, jobs[0].ID); err == nil {
		t.Errorf("Job of a swept job: got %s, want ErrJobNotFound", j.ID)
	}
}
