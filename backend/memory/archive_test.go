package memory

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/jobrelay/engine/backend"
)

// A packed job unpacks to the very same fields, nil and empty kept apart.
func TestPackRoundTrip(t *testing.T) {
	at := time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)
	full := backend.Job{
		ID: "job-1", Type: "t", Payload: []byte("p"), Meta: map[string]string{"a": "1", "b": ""},
		Priority: -3, Attempt: 2, Failures: 1, Stalls: 1, MaxRetries: 5, MaxStalls: 3, Progress: 40,
		Timeout: time.Minute, ResultTTL: -time.Second, FailureTTL: 1<<63 - 1,
		UniqueKey: "k", UniqueUntil: time.Date(9999, 12, 31, 0, 0, 0, 999999999, time.UTC), LimitKey: "tenant",
		DependsOn: []string{"a", "b"}, ProgressMessage: "half", Result: []byte{0, 1}, Error: "boom",
		CreatedAt: at, StartedAt: at.Add(time.Second), FinishedAt: at.Add(2 * time.Second),
		ExpiresAt: stamp(time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC)),
	}
	empty := backend.Job{Payload: []byte{}, Meta: map[string]string{}, DependsOn: []string{}, Result: []byte{}}
	for name, j := range map[string]backend.Job{"full": full, "zero": {}, "empty": empty} {
		var got backend.Job
		unpack(pack(nil, &j), &got)
		if !reflect.DeepEqual(got, j) {
			t.Errorf("%s: got %+v, want %+v", name, got, j)
		}
	}
}

// Slabs are dropped as their jobs are swept; one that a few long-kept jobs
// keep mostly empty has them moved out, so that the archive holds at most
// about four times what its jobs need. Every job stays readable throughout.
func TestArchiveGivesSlabsBack(t *testing.T) {
	ctx := context.Background()
	b := New(Options{EventLogSize: 16})
	defer b.Close()
	t0 := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	const n = 4000
	payload := func(i int) []byte { return bytes.Repeat([]byte{byte(i)}, 200+i%300) }
	var jobs []backend.NewJob
	for i := range n {
		nj := backend.NewJob{ID: fmt.Sprintf("job-%06d", i), Type: "t", Queue: "default", Payload: payload(i),
			ResultTTL: time.Hour, FailureTTL: time.Hour}
		if i%16 == 0 {
			nj.ResultTTL = 48 * time.Hour
		}
		if i == 7 {
			nj.Payload = make([]byte, slabSize) // a slab of its own
		}
		jobs = append(jobs, nj)
	}
	if _, err := b.Enqueue(ctx, t0, jobs); err != nil {
		t.Fatal(err)
	}
	for {
		ls, err := b.Lease(ctx, backend.LeaseRequest{Queues: []string{"default"}, Max: 100, Now: t0, TTL: time.Hour})
		if err != nil || len(ls) == 0 {
			break
		}
		acks := make([]backend.Ack, len(ls))
		for i, l := range ls {
			acks[i] = backend.Ack{Lease: l.Ref(), Outcome: backend.OutcomeCompleted, Result: []byte(l.Job.ID)}
		}
		if _, err := b.Finish(ctx, t0, acks); err != nil {
			t.Fatal(err)
		}
	}
	check := func(stage string, kept func(i int) bool) {
		t.Helper()
		live, held := 0, 0
		for _, s := range b.arch.slabs {
			live += s.live
			held += cap(s.buf)
		}
		if held > 4*live+slabSize {
			t.Errorf("%s: slabs hold %d bytes for %d of records, want at most 4× and one slab", stage, held, live)
		}
		for i := range n {
			j, err := b.Job(ctx, jobs[i].ID)
			if !kept(i) {
				if err == nil {
					t.Fatalf("%s: Job %s: got it, want it swept", stage, jobs[i].ID)
				}
				continue
			}
			if err != nil || j.State != backend.StateCompleted || !bytes.Equal(j.Payload, jobs[i].Payload) ||
				string(j.Result) != jobs[i].ID || j.Queue != "default" {
				t.Fatalf("%s: Job %s: got %v, want it completed with its payload and result", stage, jobs[i].ID, err)
			}
		}
	}
	check("all archived", func(int) bool { return true })
	if swept, _ := b.Sweep(ctx, t0.Add(2*time.Hour), 0); swept != n-n/16 {
		t.Fatalf("Sweep: got %d deleted, want %d", swept, n-n/16)
	}
	check("long-kept left", func(i int) bool { return i%16 == 0 })
	if swept, _ := b.Sweep(ctx, t0.Add(49*time.Hour), 0); swept != n/16 {
		t.Fatalf("Sweep: got %d deleted, want %d", swept, n/16)
	}
	check("all swept", func(int) bool { return false })
	if got := len(b.arch.slabs) - len(b.arch.freeSlabs); got > 1 {
		t.Errorf("after every job was swept: got %d slabs, want at most the current one", got)
	}
}

// Records of archived jobs are reused by Enqueue while other calls still
// meet stale index entries that point to them: producers and a dispatcher
// that reaps race, and every job runs once (run with -race).
func TestRecycledRecordsUnderLoad(t *testing.T) {
	ctx := context.Background()
	b := New(Options{EventLogSize: 16})
	defer b.Close()
	t0 := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	const producers, batches, batch = 2, 40, 50
	done := make(chan struct{}, producers)
	for p := range producers {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range batches {
				jobs := make([]backend.NewJob, batch)
				for k := range jobs {
					jobs[k] = backend.NewJob{ID: fmt.Sprintf("p%d-%04d-%03d", p, i, k), Type: "t", Queue: "default",
						ResultTTL: time.Hour, FailureTTL: time.Hour}
				}
				if _, err := b.Enqueue(ctx, t0, jobs); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	seen := make(map[string]bool)
	waiting := producers
	for finished := 0; finished < producers*batches*batch; {
		ls, err := b.Lease(ctx, backend.LeaseRequest{Queues: []string{"default"}, Max: 7, Now: t0, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		acks := make([]backend.Ack, len(ls))
		for i, l := range ls {
			if seen[l.Job.ID] {
				t.Fatalf("Lease: got %s a second time", l.Job.ID)
			}
			seen[l.Job.ID] = true
			acks[i] = backend.Ack{Lease: l.Ref(), Outcome: backend.OutcomeCompleted}
		}
		if _, err := b.Finish(ctx, t0, acks); err != nil {
			t.Fatal(err)
		}
		finished += len(ls)
		// Reap and Sweep meet the stale entries of the jobs just finished.
		if _, err := b.Reap(ctx, t0.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Sweep(ctx, t0.Add(2*time.Hour), 10); err != nil {
			t.Fatal(err)
		}
		if len(ls) == 0 && waiting > 0 {
			select {
			case <-done:
				waiting--
			case <-time.After(time.Millisecond):
			}
		}
	}
	for ; waiting > 0; waiting-- {
		<-done
	}
}

// An archived record keeps its state as a stateIndex; stateAt must undo it.
func TestStateAtUndoesStateIndex(t *testing.T) {
	if len(stateAt) != numStates {
		t.Fatalf("stateAt has %d states, want %d", len(stateAt), numStates)
	}
	for i, st := range stateAt {
		if got := stateIndex(st); got != i {
			t.Errorf("stateIndex(%s) = %d, want %d", st, got, i)
		}
	}
}
