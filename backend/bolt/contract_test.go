package bolt

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/jobrelay/engine/backend"
)

// These tests cover the contract where the bbolt backend has its own code
// paths; the conformance suite (TestConformance) is the full specification.

func TestLifecycleAndEvents(t *testing.T) {
	t.Parallel()
	b := open(t)
	ctx := context.Background()
	cur, err := b.EventCursor(ctx)
	if err != nil {
		t.Fatal(err)
	}
	nj := newJob("a")
	nj.Meta = map[string]string{"tenant": "acme"}
	res := enqueue(t, b, t0, nj)
	if res[0].Err != nil || res[0].State != backend.StateQueued {
		t.Fatalf("enqueue: got %+v, want queued", res[0])
	}
	ls := lease(t, b, t0, 10)
	if len(ls) != 1 {
		t.Fatalf("lease: got %d jobs, want 1", len(ls))
	}
	j := ls[0].Job
	if j.Attempt != 1 || j.State != backend.StateActive || j.LeaseToken == "" || !j.LeaseExpiresAt.Equal(t0.Add(30*time.Second)) || j.Meta["tenant"] != "acme" {
		t.Fatalf("leased job: got %+v", j)
	}
	if err := b.Progress(ctx, t0, ls[0].Ref(), 50, "half"); err != nil {
		t.Fatalf("Progress: %v", err)
	}
	errs := finish(t, b, t0.Add(time.Second), backend.Ack{Lease: ls[0].Ref(), Outcome: backend.OutcomeCompleted, Result: []byte(`"ok"`)})
	if errs[0] != nil {
		t.Fatalf("finish: %v", errs[0])
	}
	got := wantState(t, b, "a", backend.StateCompleted)
	if string(got.Result) != `"ok"` || got.Progress != 50 || got.LeaseToken != "" || !got.ExpiresAt.Equal(t0.Add(time.Second+time.Hour)) {
		t.Fatalf("completed job: got %+v", got)
	}
	// A second finish with the same token is a late worker.
	if errs := finish(t, b, t0, backend.Ack{Lease: ls[0].Ref(), Outcome: backend.OutcomeFailed}); !errors.Is(errs[0], backend.ErrLeaseLost) {
		t.Fatalf("late finish: got %v, want ErrLeaseLost", errs[0])
	}
	evs, err := b.ReadEvents(ctx, cur, 100)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []backend.EventKind
	for _, ev := range evs {
		kinds = append(kinds, ev.Kind)
	}
	want := []backend.EventKind{backend.EventQueued, backend.EventActive, backend.EventProgress, backend.EventCompleted}
	if fmt.Sprint(kinds) != fmt.Sprint(want) {
		t.Fatalf("events: got %v, want %v", kinds, want)
	}
	if string(evs[3].Result) != `"ok"` || evs[3].JobID != "a" || evs[3].Queue != "default" {
		t.Fatalf("completed event: got %+v", evs[3])
	}
}

func TestLeaseOrder(t *testing.T) {
	t.Parallel()
	b := open(t)
	var jobs []backend.NewJob
	for i, p := range []int{0, 5, 0, -3, 5} {
		nj := newJob(fmt.Sprintf("j%d", i))
		nj.Priority = p
		jobs = append(jobs, nj)
	}
	other := newJob("hi")
	other.Queue = "urgent"
	jobs = append(jobs, other)
	enqueue(t, b, t0, jobs...)
	var got []string
	for _, l := range lease(t, b, t0, 10, "urgent", "default") {
		got = append(got, l.Job.ID)
	}
	if want := "[hi j1 j4 j0 j2 j3]"; fmt.Sprint(got) != want {
		t.Fatalf("lease order: got %v, want %v", got, want)
	}
}

func TestReleaseKeepsPlace(t *testing.T) {
	t.Parallel()
	b := open(t)
	enqueue(t, b, t0, newJob("a"), newJob("b"))
	ls := lease(t, b, t0, 1)
	finish(t, b, t0, backend.Ack{Lease: ls[0].Ref(), Outcome: backend.OutcomeReleased})
	j := wantState(t, b, "a", backend.StateQueued)
	if j.Attempt != 0 {
		t.Fatalf("released job: got attempt %d, want 0", j.Attempt)
	}
	if ls := lease(t, b, t0, 1); ls[0].Job.ID != "a" || ls[0].Job.Attempt != 1 {
		t.Fatalf("after release: got %s attempt %d, want a attempt 1", ls[0].Job.ID, ls[0].Job.Attempt)
	}
}

func TestScheduleRetryPromote(t *testing.T) {
	t.Parallel()
	b := open(t)
	ctx := context.Background()
	nj := newJob("later")
	nj.RunAt = t0.Add(time.Minute)
	if res := enqueue(t, b, t0, nj, newJob("now")); res[0].State != backend.StateScheduled {
		t.Fatalf("got state %q, want scheduled", res[0].State)
	}
	ls := lease(t, b, t0, 10)
	if len(ls) != 1 || ls[0].Job.ID != "now" {
		t.Fatalf("lease: got %d jobs, want only the due one", len(ls))
	}
	finish(t, b, t0, backend.Ack{Lease: ls[0].Ref(), Outcome: backend.OutcomeRetry, Error: "boom", RetryAt: t0.Add(2 * time.Minute)})
	j := wantState(t, b, "now", backend.StateRetrying)
	if j.Failures != 1 || j.Error != "boom" {
		t.Fatalf("retrying job: got %+v", j)
	}
	moved, next, err := b.Promote(ctx, t0.Add(30*time.Second))
	if err != nil || moved != 0 || !next.Equal(t0.Add(time.Minute)) {
		t.Fatalf("early Promote: got %d, %v, %v; want 0, %v", moved, next, err, t0.Add(time.Minute))
	}
	moved, next, err = b.Promote(ctx, t0.Add(time.Minute))
	if err != nil || moved != 1 || !next.Equal(t0.Add(2*time.Minute)) {
		t.Fatalf("Promote: got %d, %v, %v; want 1 and the retry time", moved, next, err)
	}
	moved, next, err = b.Promote(ctx, t0.Add(time.Hour))
	if err != nil || moved != 1 || !next.IsZero() {
		t.Fatalf("last Promote: got %d, %v, %v; want 1, zero", moved, next, err)
	}
	if ls := lease(t, b, t0.Add(time.Hour), 10); len(ls) != 2 || ls[0].Job.ID != "later" {
		t.Fatalf("after promote: got %d jobs", len(ls))
	}
}

func TestReapStallsThenFails(t *testing.T) {
	t.Parallel()
	b := open(t)
	ctx := context.Background()
	nj := newJob("a")
	nj.MaxStalls = 2
	enqueue(t, b, t0, nj)
	now := t0
	for stall := 1; stall <= 2; stall++ {
		ls := lease(t, b, now, 1)
		if len(ls) != 1 {
			t.Fatalf("stall %d: nothing to lease", stall)
		}
		if n, err := b.Reap(ctx, now.Add(30*time.Second)); err != nil || n != 0 {
			t.Fatalf("Reap at expiry: got %d, %v; want 0 (not before now)", n, err)
		}
		now = now.Add(31 * time.Second)
		if n, err := b.Reap(ctx, now); err != nil || n != 1 {
			t.Fatalf("Reap: got %d, %v; want 1", n, err)
		}
		// The old worker lost its lease.
		if errs := finish(t, b, now, backend.Ack{Lease: ls[0].Ref(), Outcome: backend.OutcomeCompleted}); !errors.Is(errs[0], backend.ErrLeaseLost) {
			t.Fatalf("late finish: got %v, want ErrLeaseLost", errs[0])
		}
	}
	j := wantState(t, b, "a", backend.StateFailed)
	if j.Stalls != 2 || j.Failures != 0 {
		t.Fatalf("stalled job: got stalls %d failures %d, want 2, 0", j.Stalls, j.Failures)
	}
}

func TestUniqueKeys(t *testing.T) {
	t.Parallel()
	b := open(t)
	ctx := context.Background()
	a := newJob("a")
	a.UniqueKey = "k"
	a.UniqueUntil = t0.Add(time.Hour)
	a.ResultTTL = 0
	dup := newJob("b")
	dup.UniqueKey = "k"
	res := enqueue(t, b, t0, a, dup)
	if res[0].Err != nil || !errors.Is(res[1].Err, backend.ErrDuplicateJob) || res[1].ID != "a" {
		t.Fatalf("enqueue: got %+v", res)
	}
	ls := lease(t, b, t0, 1)
	finish(t, b, t0, backend.Ack{Lease: ls[0].Ref(), Outcome: backend.OutcomeCompleted})
	if n, err := b.Sweep(ctx, t0.Add(time.Second), 10); err != nil || n != 1 {
		t.Fatalf("Sweep: got %d, %v; want 1", n, err)
	}
	res = enqueue(t, b, t0.Add(time.Minute), dup)
	if !errors.Is(res[0].Err, backend.ErrDuplicateJob) || res[0].ID != "a" || res[0].State != backend.StateCompleted {
		t.Fatalf("enqueue while UniqueUntil holds a swept job's key: got %+v", res[0])
	}
	if _, err := b.Sweep(ctx, t0.Add(2*time.Hour), 10); err != nil {
		t.Fatal(err)
	}
	var n int
	_ = b.view(ctx, func(tx *bbolt.Tx) error { n = tx.Bucket(bucketUnique).Stats().KeyN; return nil })
	if n != 0 {
		t.Fatalf("unique keys after UniqueUntil passed: got %d, want 0", n)
	}
	if res := enqueue(t, b, t0.Add(2*time.Hour), dup); res[0].Err != nil {
		t.Fatalf("enqueue after the key expired: %v", res[0].Err)
	}
}

func TestDependencies(t *testing.T) {
	t.Parallel()
	b := open(t)
	ctx := context.Background()
	child := newJob("child")
	child.DependsOn = []string{"p1", "p2"}
	grandchild := newJob("grand")
	grandchild.DependsOn = []string{"child"}
	unknown := newJob("orphan")
	unknown.DependsOn = []string{"nope"}
	res := enqueue(t, b, t0, newJob("p1"), newJob("p2"), child, grandchild, unknown)
	if res[2].State != backend.StateDeferred || res[3].State != backend.StateDeferred || !errors.Is(res[4].Err, backend.ErrDependencyNotFound) {
		t.Fatalf("enqueue: got %+v", res)
	}
	if _, err := b.Job(ctx, "orphan"); !errors.Is(err, backend.ErrJobNotFound) {
		t.Fatalf("refused job: got %v, want ErrJobNotFound", err)
	}
	ls := lease(t, b, t0, 2)
	finish(t, b, t0, backend.Ack{Lease: ls[0].Ref(), Outcome: backend.OutcomeCompleted})
	wantState(t, b, "child", backend.StateDeferred)
	finish(t, b, t0, backend.Ack{Lease: ls[1].Ref(), Outcome: backend.OutcomeCompleted})
	wantState(t, b, "child", backend.StateQueued)
	ls = lease(t, b, t0, 1)
	finish(t, b, t0, backend.Ack{Lease: ls[0].Ref(), Outcome: backend.OutcomeFailed, Error: "bad"})
	g := wantState(t, b, "grand", backend.StateCanceled)
	if g.Error != "dependency child failed" {
		t.Fatalf("canceled dependent: got error %q", g.Error)
	}
	late := newJob("late")
	late.DependsOn = []string{"child"}
	if res := enqueue(t, b, t0, late); res[0].State != backend.StateCanceled {
		t.Fatalf("dependent of a failed job: got %q, want canceled", res[0].State)
	}
}

func TestCancel(t *testing.T) {
	t.Parallel()
	b := open(t)
	ctx := context.Background()
	enqueue(t, b, t0, newJob("run"), newJob("wait"))
	ls := lease(t, b, t0, 1)
	if st, err := b.Cancel(ctx, t0, "wait", "no longer needed"); err != nil || st != backend.StateCanceled {
		t.Fatalf("cancel queued: got %q, %v", st, err)
	}
	if st, err := b.Cancel(ctx, t0, "run", "stop"); err != nil || st != backend.StateActive {
		t.Fatalf("cancel active: got %q, %v", st, err)
	}
	if _, err := b.Heartbeat(ctx, t0, t0.Add(time.Minute), []backend.LeaseRef{ls[0].Ref()}); err != nil {
		t.Fatal(err)
	}
	errs, _ := b.Heartbeat(ctx, t0, t0.Add(time.Minute), []backend.LeaseRef{ls[0].Ref()})
	if !errors.Is(errs[0], backend.ErrCancelRequested) {
		t.Fatalf("heartbeat after cancel: got %v, want ErrCancelRequested", errs[0])
	}
	finish(t, b, t0, backend.Ack{Lease: ls[0].Ref(), Outcome: backend.OutcomeCanceled, Error: "context canceled"})
	if j := wantState(t, b, "run", backend.StateCanceled); j.Error != "stop" {
		t.Fatalf("canceled job: got error %q, want the cancel reason", j.Error)
	}
	if st, err := b.Cancel(ctx, t0, "run", ""); err != nil || st != backend.StateCanceled {
		t.Fatalf("cancel canceled: got %q, %v", st, err)
	}
	if _, err := b.Cancel(ctx, t0, "nope", ""); !errors.Is(err, backend.ErrJobNotFound) {
		t.Fatalf("cancel unknown: got %v", err)
	}
	if err := b.Requeue(ctx, t0, "run"); err != nil {
		t.Fatalf("Requeue: %v", err)
	}
	if j := wantState(t, b, "run", backend.StateQueued); j.Error != "" || j.Attempt != 0 {
		t.Fatalf("requeued job: got %+v", j)
	}
	if err := b.Requeue(ctx, t0, "run"); !errors.Is(err, backend.ErrInvalidState) {
		t.Fatalf("requeue queued: got %v, want ErrInvalidState", err)
	}
}

func TestListAndStats(t *testing.T) {
	t.Parallel()
	b := open(t)
	ctx := context.Background()
	var jobs []backend.NewJob
	for i := range 25 {
		nj := newJob(fmt.Sprintf("j%02d", i))
		if i%5 == 0 {
			nj.Queue = "other"
		}
		jobs = append(jobs, nj)
	}
	enqueue(t, b, t0, jobs...)
	var ids []string
	filter := backend.ListFilter{Queue: "default", Limit: 7}
	for pages := 0; ; pages++ {
		p, err := b.List(ctx, filter)
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range p.Jobs {
			ids = append(ids, j.ID)
		}
		if p.Next == "" {
			break
		}
		filter.Cursor = p.Next
	}
	if len(ids) != 20 || ids[0] != "j01" || ids[19] != "j24" {
		t.Fatalf("listing: got %v", ids)
	}
	if err := b.Pause(ctx, t0, "idle"); err != nil {
		t.Fatal(err)
	}
	stats, err := b.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]backend.QueueStats{}
	for _, s := range stats {
		got[s.Queue] = s
	}
	if len(stats) != 3 || stats[0].Queue != "default" || got["default"].Counts[backend.StateQueued] != 20 ||
		got["other"].Counts[backend.StateQueued] != 5 || !got["idle"].Paused {
		t.Fatalf("stats: got %+v", stats)
	}
}

func TestPauseAndBlock(t *testing.T) {
	t.Parallel()
	b := open(t)
	ctx := context.Background()
	if err := b.Pause(ctx, t0, "default"); err != nil {
		t.Fatal(err)
	}
	enqueue(t, b, t0, newJob("a"))
	if ls := lease(t, b, t0, 1); len(ls) != 0 {
		t.Fatalf("lease from a paused queue: got %d jobs", len(ls))
	}
	got := make(chan []*backend.Lease)
	go func() {
		ls, _ := b.Lease(ctx, backend.LeaseRequest{Queues: []string{"default"}, Max: 1, Now: t0, TTL: time.Second, Block: time.Minute})
		got <- ls
	}()
	if err := b.Resume(ctx, t0, "default"); err != nil {
		t.Fatal(err)
	}
	if ls := <-got; len(ls) != 1 {
		t.Fatalf("blocked lease after resume: got %d jobs, want 1", len(ls))
	}
	// An empty block times out with no jobs and no error.
	ls, err := b.Lease(ctx, backend.LeaseRequest{Queues: []string{"default"}, Max: 1, Now: t0, TTL: time.Second, Block: 10 * time.Millisecond})
	if err != nil || len(ls) != 0 {
		t.Fatalf("idle lease: got %d, %v", len(ls), err)
	}
}

func TestCloseUnblocks(t *testing.T) {
	t.Parallel()
	b, err := Open(t.TempDir()+"/jobs.db", Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	done := make(chan error, 2)
	go func() {
		_, err := b.Lease(ctx, backend.LeaseRequest{Queues: []string{"q"}, Max: 1, Now: t0, Block: time.Hour})
		done <- err
	}()
	go func() {
		cur, _ := b.EventCursor(ctx)
		_, err := b.ReadEvents(ctx, cur, 1)
		done <- err
	}()
	time.Sleep(10 * time.Millisecond) // let both block; they return either way
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := <-done; !errors.Is(err, backend.ErrClosed) {
			t.Fatalf("blocked call after Close: got %v, want ErrClosed", err)
		}
	}
	if _, err := b.Enqueue(ctx, t0, []backend.NewJob{newJob("x")}); !errors.Is(err, backend.ErrClosed) {
		t.Fatalf("Enqueue after Close: got %v", err)
	}
	if _, err := b.Job(ctx, "x"); !errors.Is(err, backend.ErrClosed) {
		t.Fatalf("Job after Close: got %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestEventLogCap(t *testing.T) {
	t.Parallel()
	b := openAt(t, t.TempDir()+"/jobs.db", Options{NoSync: true, EventLogSize: 4})
	ctx := context.Background()
	for i := range 10 {
		enqueue(t, b, t0, newJob(fmt.Sprint(i)))
	}
	evs, err := b.ReadEvents(ctx, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 4 || evs[0].JobID != "6" || evs[3].JobID != "9" {
		t.Fatalf("capped log: got %d events starting at %q", len(evs), evs[0].JobID)
	}
	more, err := b.ReadEvents(ctx, evs[1].ID, 1)
	if err != nil || len(more) != 1 || more[0].ID != evs[2].ID {
		t.Fatalf("read after cursor: got %v, %v", more, err)
	}
}

func TestWorkers(t *testing.T) {
	t.Parallel()
	b := open(t)
	ctx := context.Background()
	if err := b.RegisterWorker(ctx, t0, backend.WorkerInfo{ID: "w1", Name: "one", Queues: []string{"a"}}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := b.RegisterWorker(ctx, t0, backend.WorkerInfo{ID: "w2"}, time.Second); err != nil {
		t.Fatal(err)
	}
	ws, err := b.Workers(ctx, t0.Add(2*time.Second))
	if err != nil || len(ws) != 1 || ws[0].Name != "one" || !ws[0].ExpiresAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("Workers: got %+v, %v", ws, err)
	}
	if err := b.RemoveWorker(ctx, "w1"); err != nil {
		t.Fatal(err)
	}
	if ws, _ := b.Workers(ctx, t0); len(ws) != 1 {
		t.Fatalf("after remove: got %d workers, want 1", len(ws))
	}
}

func TestThrottledJobWaitsWithoutFailure(t *testing.T) {
	t.Parallel()
	b := open(t)
	nj := newJob("a")
	nj.LimitKey = "llm"
	enqueue(t, b, t0, nj)
	ls := lease(t, b, t0, 1)
	if ls[0].Job.LimitKey != "llm" {
		t.Fatalf("leased job: got limit key %q, want llm", ls[0].Job.LimitKey)
	}
	retryAt := t0.Add(10 * time.Second)
	finish(t, b, t0, backend.Ack{Lease: ls[0].Ref(), Outcome: backend.OutcomeThrottled, Error: "429", RetryAt: retryAt})
	j := wantState(t, b, "a", backend.StateScheduled)
	if j.Attempt != 0 || j.Failures != 0 || j.Error != "429" || !j.RunAt.Equal(retryAt) || j.LimitKey != "llm" {
		t.Fatalf("throttled job: got %+v", j)
	}
}

// TestDecidedCompletionOnChangedRecord covers the completion that Finish
// decided from the bytes its lease wrote, when the record changed before
// the loop wrote it (the claim took the slow path): the completion is
// applied to the record as it is.
func TestDecidedCompletionOnChangedRecord(t *testing.T) {
	t.Parallel()
	b := open(t)
	ctx := context.Background()
	enqueue(t, b, t0, newJob("a"))
	ls := lease(t, b, t0, 1)
	if err := b.Progress(ctx, t0, ls[0].Ref(), 10, "changed"); err != nil {
		t.Fatal(err)
	}
	b.claimMu.Lock()
	b.completions = append(b.completions, &completion{id: "a", token: ls[0].Job.LeaseToken, now: t0,
		result: []byte(`"r"`), queue: "default", pre: []byte("not the record")})
	b.answered(b.gen + 1)
	b.claimMu.Unlock()
	b.signal()
	j := wantState(t, b, "a", backend.StateCompleted)
	if string(j.Result) != `"r"` || j.Progress != 10 {
		t.Fatalf("completed job: got result %q progress %d", j.Result, j.Progress)
	}
	stats, _ := b.Stats(ctx)
	if s := stats[0]; s.Processed != 1 || s.Counts[backend.StateActive] != 0 || s.Counts[backend.StateCompleted] != 1 {
		t.Fatalf("stats: got %+v", s)
	}
}
