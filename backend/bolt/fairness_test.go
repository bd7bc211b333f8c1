package bolt

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jobrelay/engine/backend"
)

// TestEnqueueCommitsBeforePendingClaims covers a plain Enqueue that the
// commit loop takes while claims of an earlier Lease are not written yet:
// it commits on its own, the claims follow in the next transaction, and
// nobody can tell: a read after the Lease sees the job active, and the
// event log keeps the order of the calls.
func TestEnqueueCommitsBeforePendingClaims(t *testing.T) {
	t.Parallel()
	b := open(t)
	ctx := context.Background()
	enqueue(t, b, t0, newJob("a"))
	cursor, err := b.EventCursor(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// Holding b.mu keeps the loop from taking a batch, so the claim is
	// still pending when the Enqueue of "b" is handed over.
	b.mu.Lock()
	ls := lease(t, b, t0, 1)
	o, results := b.enqueueOp(ctx, t0, []backend.NewJob{newJob("b")})
	if !o.standalone {
		b.mu.Unlock()
		t.Fatal("Enqueue of a plain job: got an op that is not standalone, want standalone")
	}
	b.pending = append(b.pending, o)
	b.durableWaiting.Add(1)
	b.mu.Unlock()
	b.signal()
	if err := <-o.done; err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	if results[0].Err != nil || results[0].State != backend.StateQueued {
		t.Fatalf("Enqueue result: got %+v, want queued", results[0])
	}
	if b.skippedGen.Load() == 0 {
		t.Fatal("got no transaction that left the claim pending, want the Enqueue's")
	}

	j := wantState(t, b, "a", backend.StateActive)
	if j.LeaseToken != ls[0].Job.LeaseToken {
		t.Fatalf("job a: got lease token %q, want %q", j.LeaseToken, ls[0].Job.LeaseToken)
	}
	wantState(t, b, "b", backend.StateQueued)
	evs, err := b.ReadEvents(ctx, cursor, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 || evs[0].Kind != backend.EventActive || evs[0].JobID != "a" ||
		evs[1].Kind != backend.EventQueued || evs[1].JobID != "b" {
		t.Fatalf("events: got %s, want active of a then queued of b", eventList(evs))
	}
}

// TestDuplicateOfPendingClaimIsActive covers a standalone Enqueue whose ID
// is taken by a job leased by a claim not written yet: the duplicate
// reports the holder active, as it is for every reader.
func TestDuplicateOfPendingClaimIsActive(t *testing.T) {
	t.Parallel()
	b := open(t)
	ctx := context.Background()
	enqueue(t, b, t0, newJob("a"))
	b.mu.Lock()
	lease(t, b, t0, 1)
	o, results := b.enqueueOp(ctx, t0, []backend.NewJob{newJob("a")})
	b.pending = append(b.pending, o)
	b.durableWaiting.Add(1)
	b.mu.Unlock()
	b.signal()
	if err := <-o.done; err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	if results[0].State != backend.StateActive {
		t.Fatalf("duplicate of a leased job: got state %q, want active", results[0].State)
	}
}

// TestLeaseHoldsBackForDurableCalls covers claimShare: while a durable
// call waits for a commit, one transaction takes at most claimShare claims
// (or as many as the jobs those calls bring), and Lease goes on once the
// loop has taken them; with no durable call waiting, it takes all it asks.
func TestLeaseHoldsBackForDurableCalls(t *testing.T) {
	t.Parallel()
	b := open(t)
	ctx := context.Background()
	var jobs []backend.NewJob
	for i := range 3*claimShare + 4 {
		jobs = append(jobs, newJob(fmt.Sprintf("j%03d", i)))
	}
	enqueue(t, b, t0, jobs...)

	b.durableWaiting.Add(1) // as if an Enqueue of one job waited
	first := lease(t, b, t0, 100)
	if len(first) != claimShare {
		t.Fatalf("Lease of 100 while a durable call waits: got %d jobs, want %d", len(first), claimShare)
	}
	second := lease(t, b, t0, 100) // waits until the loop took the first claims
	if len(second) != claimShare {
		t.Fatalf("second Lease of 100 while a durable call waits: got %d jobs, want %d", len(second), claimShare)
	}
	b.durableWaiting.Add(-1)
	rest := lease(t, b, t0, 100)
	if len(rest) != claimShare+4 {
		t.Fatalf("Lease of 100 with no durable call waiting: got %d jobs, want %d", len(rest), claimShare+4)
	}
	for _, l := range append(append(first, second...), rest...) {
		wantState(t, b, l.Job.ID, backend.StateActive)
	}

	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	b.durableWaiting.Add(2 * claimShare) // the share grows with the jobs waiting
	var more []backend.NewJob
	for i := range 3 * claimShare {
		more = append(more, newJob(fmt.Sprintf("k%03d", i)))
	}
	enqueue(t, b, t0, more...)
	ls, err := b.Lease(ctx, backend.LeaseRequest{Queues: []string{"default"}, Worker: "w", Max: 100, Now: t0, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 2*claimShare {
		t.Fatalf("Lease of 100 while durable calls of %d jobs wait: got %d jobs, want %d", 2*claimShare, len(ls), 2*claimShare)
	}
	b.durableWaiting.Add(-2 * claimShare)
}

func eventList(evs []backend.Event) string {
	s := "["
	for i, e := range evs {
		if i > 0 {
			s += " "
		}
		s += string(e.Kind) + " " + e.JobID
	}
	return s + "]"
}

// TestEventOrderUnderLoad runs plain Enqueues and workers side by side, so
// that Enqueue commits leave claims pending again and again, and checks
// that the event log still tells each job's story in order: queued, active,
// completed, each once.
func TestEventOrderUnderLoad(t *testing.T) {
	t.Parallel()
	b := open(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cursor, err := b.EventCursor(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const producers, perProducer = 4, 300
	total := producers * perProducer
	var done atomic.Int64
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for done.Load() < int64(total) && ctx.Err() == nil {
				ls, err := b.Lease(ctx, backend.LeaseRequest{Queues: []string{"default"}, Worker: fmt.Sprint("w", w),
					Max: 16, Now: t0, TTL: time.Minute, Block: 10 * time.Millisecond})
				if err != nil {
					t.Errorf("Lease: %v", err)
					return
				}
				var acks []backend.Ack
				for _, l := range ls {
					acks = append(acks, backend.Ack{Lease: l.Ref(), Outcome: backend.OutcomeCompleted})
				}
				if len(acks) == 0 {
					continue
				}
				if _, err := b.Finish(ctx, t0, acks); err != nil {
					t.Errorf("Finish: %v", err)
					return
				}
				done.Add(int64(len(acks)))
			}
		}()
	}
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perProducer {
				if _, err := b.Enqueue(ctx, t0, []backend.NewJob{newJob(fmt.Sprintf("p%d-%04d", p, i))}); err != nil {
					t.Errorf("Enqueue: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if got := done.Load(); got != int64(total) {
		t.Fatalf("completed %d jobs, want %d", got, total)
	}
	if _, err := b.Job(ctx, "p0-0000"); err != nil { // settles every write
		t.Fatal(err)
	}
	want := []backend.EventKind{backend.EventQueued, backend.EventActive, backend.EventCompleted}
	seen := make(map[string][]backend.EventKind, total)
	for n := 0; n < 3*total; {
		evs, err := b.ReadEvents(ctx, cursor, 1000)
		if err != nil {
			t.Fatalf("ReadEvents after %d of %d events: %v", n, 3*total, err)
		}
		for _, e := range evs {
			seen[e.JobID] = append(seen[e.JobID], e.Kind)
			cursor = e.ID
		}
		n += len(evs)
	}
	for id, kinds := range seen {
		if !slices.Equal(kinds, want) {
			t.Fatalf("events of job %s: got %v, want %v", id, kinds, want)
		}
	}
	if len(seen) != total {
		t.Fatalf("events of %d jobs, want %d", len(seen), total)
	}
	t.Logf("transactions that left claims pending: %v", b.skippedGen.Load() > 0)
}
