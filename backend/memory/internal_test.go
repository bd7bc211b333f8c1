package memory

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"testing"
	"time"
	"unsafe"

	"github.com/jobrelay/engine/backend"
)

// After a burst of large event data, the data ring gives its memory back
// once the events that held it are overwritten, and keeps what the newer
// ones hold.
func TestEventDataShrinks(t *testing.T) {
	b := New(Options{EventLogSize: 4})
	defer b.Close()
	b.queueLocked("default")
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	emit := func(i, size int) {
		j := &job{}
		j.ID, j.Type, j.Queue, j.State = "job-"+strconv.Itoa(i), "t", "default", backend.StateFailed
		b.emitWith(backend.EventFailed, j, now, &details{err: string(bytes.Repeat([]byte{'e'}, size))})
	}
	for i := range 4 {
		emit(i, 1<<20)
	}
	if n := len(b.events.data); n < 4<<20 {
		t.Fatalf("data ring after four 1 MiB errors: got %d bytes, want at least 4 MiB", n)
	}
	for i := 4; i < 12; i++ {
		emit(i, 10)
	}
	if n := len(b.events.data); n > minData {
		t.Errorf("data ring once the large errors were overwritten: got %d bytes, want at most %d", n, minData)
	}
	evs := b.read(&b.events, 0, 10)
	if len(evs) != 4 {
		t.Fatalf("read: got %d events, want the 4 kept", len(evs))
	}
	for k, e := range evs {
		if e.JobID != "job-"+strconv.Itoa(8+k) || e.Error != "eeeeeeeeee" {
			t.Errorf("event %d: got %s with error %q, want job-%d with 10 e's", k, e.JobID, e.Error, 8+k)
		}
	}
}

// Once the table of types is full, events of new types keep the type in
// their data and still read back with it.
func TestEventTypesBeyondTable(t *testing.T) {
	b := New(Options{EventLogSize: 8})
	defer b.Close()
	for i := range maxTypes {
		b.types.num("type-" + strconv.Itoa(i))
	}
	if n := b.types.num("one-too-many"); n != noType {
		t.Fatalf("num of a type past the table: got %d, want noType", n)
	}
	b.queueLocked("default")
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, typ := range []string{"type-7", "one-too-many", ""} {
		j := &job{}
		j.ID, j.Type, j.Queue, j.State = "job-"+typ, typ, "default", backend.StateQueued
		b.emit(backend.EventQueued, j, now)
	}
	evs := b.read(&b.events, 0, 10)
	for k, want := range []string{"type-7", "one-too-many", ""} {
		if evs[k].Type != want || evs[k].JobID != "job-"+want {
			t.Errorf("event %d: got type %q of %s, want %q of job-%s", k, evs[k].Type, evs[k].JobID, want, want)
		}
	}
}

// A job's record must stay within 512 bytes, the largest objects that the
// garbage collector marks span by span (see job).
func TestJobRecordSize(t *testing.T) {
	if size := unsafe.Sizeof(job{}); size > 512 {
		t.Errorf("job record: got %d bytes, want at most 512", size)
	}
}

// Every kind the backend records keeps its own number in an eventRec.
func TestKindIndexUndoesEventKinds(t *testing.T) {
	for i, k := range eventKinds {
		if got := kindIndex(k); int(got) != i {
			t.Errorf("kindIndex(%q): got %d, want %d", k, got, i)
		}
	}
}

// A record whose gen passed half its range is not reused, so that its gen
// never wraps around to match a stale entry; others are.
func TestRecycleRetiresOldRecords(t *testing.T) {
	b := New(Options{})
	defer b.Close()
	old, young := &job{gen: 1 << 31}, &job{gen: 7}
	old.ID, young.ID = "old", "young"
	b.recycle(old)
	b.recycle(young)
	if b.freeing == nil || b.freeing.n != 1 || b.freeing.recs[0] != young {
		t.Fatalf("spare records after recycling both: got %+v, want the young one alone", b.freeing)
	}
	if young.ID != "" || young.gen != 7 || old.ID != "" {
		t.Errorf("recycled records: got IDs %q and %q, gen %d, want both cleared and gen 7 kept", old.ID, young.ID, young.gen)
	}
}

// Jobs that end while another call holds smu wait in ended instead of
// holding up Finish; a call that finds jobs by ID archives them first, so
// that it sees each of them archived, in its state, as if Finish had
// archived it.
func TestEndedJobsWaitForTheStore(t *testing.T) {
	ctx := context.Background()
	b := New(Options{})
	defer b.Close()
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	jobs := make([]backend.NewJob, 3)
	for i := range jobs {
		jobs[i] = backend.NewJob{ID: "job-" + strconv.Itoa(i), Type: "t", Queue: "default", ResultTTL: time.Hour, FailureTTL: time.Hour}
	}
	if _, err := b.Enqueue(ctx, now, jobs); err != nil {
		t.Fatal(err)
	}
	ls, err := b.Lease(ctx, backend.LeaseRequest{Queues: []string{"default"}, Max: 3, Now: now, TTL: time.Minute})
	if err != nil || len(ls) != 3 {
		t.Fatalf("Lease: got %d jobs and %v, want 3", len(ls), err)
	}
	acks := []backend.Ack{
		{Lease: ls[0].Ref(), Outcome: backend.OutcomeFailed, Error: "boom"},
		{Lease: ls[1].Ref(), Outcome: backend.OutcomeFailed, Error: "boom"},
		{Lease: ls[2].Ref(), Outcome: backend.OutcomeCompleted, Result: []byte("ok")},
	}
	b.smu.Lock() // as an Enqueue or another call's archiving would
	_, err = b.Finish(ctx, now, acks)
	b.smu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if len(b.ended) != 3 {
		t.Fatalf("jobs waiting to be archived: got %d, want the 3 that Finish ended", len(b.ended))
	}

	if err := b.Requeue(ctx, now, "job-0"); err != nil {
		t.Errorf("Requeue of a failed job: got error %v, want nil", err)
	}
	if st, err := b.Cancel(ctx, now, "job-1", "late"); st != backend.StateFailed || !errors.Is(err, backend.ErrInvalidState) {
		t.Errorf("Cancel of a failed job: got %q and %v, want failed and ErrInvalidState", st, err)
	}
	want := map[string]backend.State{"job-0": backend.StateQueued, "job-1": backend.StateFailed, "job-2": backend.StateCompleted}
	page, err := b.List(ctx, backend.ListFilter{})
	if err != nil || len(page.Jobs) != 3 {
		t.Fatalf("List: got %d jobs and %v, want 3", len(page.Jobs), err)
	}
	for _, j := range page.Jobs {
		if j.State != want[j.ID] {
			t.Errorf("List: got %s %s, want %s", j.ID, j.State, want[j.ID])
		}
	}
	if j, err := b.Job(ctx, "job-2"); err != nil || string(j.Result) != "ok" {
		t.Errorf("Job job-2: got %v and %v, want its result", j, err)
	}
	if *b.jobs.live.at(1) != nil || *b.jobs.live.at(2) != nil {
		t.Errorf("job-1 and job-2 after the calls: still live, want them archived")
	}
}
