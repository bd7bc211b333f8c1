package memory

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"slices"
	"testing"
	"time"
	"unsafe"

	"github.com/jobrelay/engine/backend"
)

// tq is the time the tests of packed jobs enqueue at.
var tq = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// queuedJobs returns n plain jobs due at once, with IDs that rise above
// those of earlier calls with a larger first.
func queuedJobs(first, n int) []backend.NewJob {
	jobs := make([]backend.NewJob, n)
	for i := range jobs {
		jobs[i] = backend.NewJob{ID: fmt.Sprintf("job-%06d", first+i), Type: "transcribe", Queue: "default",
			Payload: fmt.Appendf(nil, `{"n":%d}`, first+i), MaxRetries: 3, MaxStalls: 2,
			Timeout: time.Minute, ResultTTL: time.Hour, FailureTTL: 2 * time.Hour}
	}
	return jobs
}

// packedLeft reports how many blocks of packed jobs the store still holds.
func (b *Backend) packedLeft() int {
	b.lockBoth()
	defer b.unlockBoth()
	return len(b.blocks) - len(b.freeBlocks)
}

// A packed job keeps every field it was enqueued with, whether Lease makes
// its record or Job does, and its ID and payload, views of its block,
// still read right once the block is left to the collector.
func TestPackedJobsKeepTheirFields(t *testing.T) {
	ctx := context.Background()
	b := New(Options{})
	defer b.Close()
	jobs := queuedJobs(1, 6)
	jobs[1].Meta = map[string]string{"tenant": "acme", "traceparent": "00-1-2-01"}
	jobs[2].Priority, jobs[2].Timeout = 5, 90*time.Second // settings of its own
	jobs[3].RunAt = tq.Add(-time.Hour)                    // due already
	jobs[4].Payload = []byte{}                            // empty, not nil
	jobs[5].Payload, jobs[5].Type, jobs[5].Queue = nil, "a-type-with-a-long-name", "other"
	want := make([]backend.Job, len(jobs))
	for i, nj := range jobs {
		want[i] = backend.Job{ID: nj.ID, Type: nj.Type, Queue: nj.Queue, Payload: bytes.Clone(nj.Payload), Meta: nj.Meta,
			Priority: nj.Priority, MaxRetries: nj.MaxRetries, MaxStalls: nj.MaxStalls, Timeout: nj.Timeout,
			ResultTTL: nj.ResultTTL, FailureTTL: nj.FailureTTL, CreatedAt: tq, RunAt: stamp(nj.RunAt),
			State: backend.StateQueued}
	}
	if !packable(jobs, tq) {
		t.Fatal("packable: got false, want true for due plain jobs")
	}
	if _, err := b.Enqueue(ctx, tq, jobs); err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	// The caller may reuse its buffers once Enqueue returned.
	for i := range jobs {
		if len(jobs[i].Payload) > 0 {
			jobs[i].Payload[0] = 'X'
		}
	}
	got, err := b.Job(ctx, want[1].ID) // made a record in its place
	if err != nil {
		t.Fatalf("Job: %v", err)
	}
	if !reflect.DeepEqual(*got, want[1]) {
		t.Errorf("Job %s:\n got %+v\nwant %+v", want[1].ID, *got, want[1])
	}

	var leased []*backend.Lease
	for _, q := range []string{"default", "other"} {
		ls, err := b.Lease(ctx, backend.LeaseRequest{Queues: []string{q}, Worker: "w", Max: 10, TTL: time.Minute, Now: tq})
		if err != nil {
			t.Fatalf("Lease: %v", err)
		}
		leased = append(leased, ls...)
	}
	runtime.GC()
	runtime.GC()
	// Lease order: priority 5 first, then FIFO; then the other queue.
	order := []int{2, 0, 1, 3, 4, 5}
	if len(leased) != len(order) {
		t.Fatalf("Lease: got %d jobs, want %d", len(leased), len(order))
	}
	for k, i := range order {
		w := want[i]
		w.State, w.Attempt, w.StartedAt, w.Worker = backend.StateActive, 1, tq, "w"
		w.LeaseExpiresAt = tq.Add(time.Minute)
		g := *leased[k].Job
		g.LeaseToken = ""
		if !reflect.DeepEqual(g, w) {
			t.Errorf("lease %d:\n got %+v\nwant %+v", k, g, w)
		}
	}
}

// Cancel and Job meet packed jobs by ID in the middle of their batch: a
// canceled job never runs, one that Job only looked at keeps its place,
// and the others run in their order. Enough are canceled that the ready
// queue purges its stale entries, records made in place among them.
func TestPackedJobsCanceledAndLookedUpInTheirPlace(t *testing.T) {
	ctx := context.Background()
	b := New(Options{})
	defer b.Close()
	jobs := queuedJobs(1, 400)
	if _, err := b.Enqueue(ctx, tq, jobs); err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	var want []string
	for i, nj := range jobs {
		switch {
		case i%3 == 0:
			if _, err := b.Cancel(ctx, tq, nj.ID, "not needed"); err != nil {
				t.Fatalf("Cancel %s: %v", nj.ID, err)
			}
			continue
		case i%5 == 0:
			if j, err := b.Job(ctx, nj.ID); err != nil || j.State != backend.StateQueued {
				t.Fatalf("Job %s: got %v, %v, want it queued", nj.ID, j, err)
			}
		}
		want = append(want, nj.ID)
	}
	var got []string
	for {
		ls, err := b.Lease(ctx, backend.LeaseRequest{Queues: []string{"default"}, Worker: "w", Max: 16, TTL: time.Minute, Now: tq})
		if err != nil {
			t.Fatalf("Lease: %v", err)
		}
		if len(ls) == 0 {
			break
		}
		acks := make([]backend.Ack, len(ls))
		for i, l := range ls {
			got = append(got, l.Job.ID)
			acks[i] = backend.Ack{Lease: l.Ref(), Outcome: backend.OutcomeCompleted}
		}
		if _, err := b.Finish(ctx, tq, acks); err != nil {
			t.Fatalf("Finish: %v", err)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("leased %d jobs, want %d in enqueue order without the canceled ones:\n got %v\nwant %v", len(got), len(want), got, want)
	}
	if n := b.packedLeft(); n != 0 {
		t.Errorf("blocks of packed jobs: got %d once every job left, want 0", n)
	}
	stats, err := b.Stats(ctx)
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	if c := stats[0].Counts; c[backend.StateQueued] != 0 || c[backend.StateCanceled] != 134 || c[backend.StateCompleted] != 266 {
		t.Errorf("Stats: got %v, want 134 canceled, 266 completed, none queued", c)
	}
}

// A job that depends on a packed queued job waits for it, and runs once it
// completed.
func TestDependentOfAPackedJob(t *testing.T) {
	ctx := context.Background()
	b := New(Options{})
	defer b.Close()
	parent := queuedJobs(1, 1)
	if _, err := b.Enqueue(ctx, tq, parent); err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	child := queuedJobs(2, 1)
	child[0].DependsOn = []string{parent[0].ID}
	if res, err := b.Enqueue(ctx, tq, child); err != nil || res[0].State != backend.StateDeferred {
		t.Fatalf("Enqueue child: got %v, %v, want it deferred", res, err)
	}
	for _, want := range []string{parent[0].ID, child[0].ID} {
		ls, err := b.Lease(ctx, backend.LeaseRequest{Queues: []string{"default"}, Worker: "w", Max: 4, TTL: time.Minute, Now: tq})
		if err != nil || len(ls) != 1 || ls[0].Job.ID != want {
			t.Fatalf("Lease: got %d jobs, %v, want %s alone", len(ls), err, want)
		}
		if _, err := b.Finish(ctx, tq, []backend.Ack{{Lease: ls[0].Ref(), Outcome: backend.OutcomeCompleted}}); err != nil {
			t.Fatalf("Finish: %v", err)
		}
	}
}

// A small batch takes a block no larger than it needs: a block stays in
// memory while any of its jobs waits, so one job must not hold a whole
// block.
func TestSmallBatchSmallBlock(t *testing.T) {
	jobs := queuedJobs(1, 1)
	refs := packJobs(jobs, tq)
	if c := cap(refs[0].blk.buf); c > queuedBound(&jobs[0]) {
		t.Errorf("block of one job: got %d bytes, want at most %d", c, queuedBound(&jobs[0]))
	}
	jobs = queuedJobs(1, 1000)
	refs = packJobs(jobs, tq)
	for _, r := range refs {
		if c := cap(r.blk.buf); c > queuedBlockSize {
			t.Fatalf("block: got %d bytes, want at most %d", c, queuedBlockSize)
		}
	}
	if refs[0].blk == refs[len(refs)-1].blk {
		t.Errorf("1,000 jobs share one block; want several of at most %d bytes", queuedBlockSize)
	}
}

// The type table keeps copies of the names it is given, which may be
// views of a packed job's block: it must not keep the block in memory, nor
// see its bytes change.
func TestTypeTableKeepsCopies(t *testing.T) {
	var tt typeTable
	buf := []byte("summarize")
	view := unsafe.String(&buf[0], len(buf))
	n := tt.num(view)
	c := tt.canonical(view)
	copy(buf, "XXXXXXXXX")
	if tt.names[n] != "summarize" || c != "summarize" || tt.last != "summarize" {
		t.Errorf("type table: got names %q, canonical %q, last %q after the view changed, want summarize", tt.names, c, tt.last)
	}
}

// Enqueue of an ID that a packed job has is refused as a duplicate, and
// asking for the packed job's state makes no record of it.
func TestDuplicateOfAPackedJob(t *testing.T) {
	ctx := context.Background()
	b := New(Options{})
	defer b.Close()
	jobs := queuedJobs(1, 3)
	if _, err := b.Enqueue(ctx, tq, jobs); err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	res, err := b.Enqueue(ctx, tq, jobs[1:2])
	if err != nil {
		t.Fatalf("Enqueue again: %v", err)
	}
	if !errors.Is(res[0].Err, backend.ErrDuplicateJob) || res[0].State != backend.StateQueued {
		t.Errorf("Enqueue of %s again: got state %q and error %v, want queued and ErrDuplicateJob", jobs[1].ID, res[0].State, res[0].Err)
	}
	b.lockBoth()
	records := 0
	for hd := range uint32(b.jobs.live.n) {
		if *b.jobs.live.at(hd) != nil {
			records++
		}
	}
	b.unlockBoth()
	if records != 0 {
		t.Errorf("records: got %d after the duplicate was refused, want 0 (the jobs stay packed)", records)
	}
}
