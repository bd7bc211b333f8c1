package memory

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
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
	// Times at the edges of what int64 nanoseconds hold, and just past them.
	const maxSec = math.MaxInt64/int64(time.Second) - 1
	edges := backend.Job{
		UniqueUntil: time.Unix(maxSec, 999999999).UTC(), CreatedAt: time.Unix(-maxSec, 0).UTC(),
		RunAt: time.Unix(maxSec+2, 999999999).UTC(), StartedAt: time.Unix(-maxSec-2, 0).UTC(),
		FinishedAt: time.Unix(-1, 500).UTC(), ExpiresAt: time.Unix(0, 0).UTC(),
	}
	// Values that do not fit the narrow widths of the layout.
	wide := backend.Job{
		ID: strings.Repeat("i", 300), Type: "t", Payload: make([]byte, 70000), Result: []byte{},
		Priority: math.MinInt, Attempt: 128, Failures: -129, Stalls: math.MaxInt, MaxRetries: 127, MaxStalls: -128,
		Timeout: time.Second + 1, ResultTTL: -time.Hour, FailureTTL: (math.MaxUint32 + 1) * time.Second,
	}
	// A job's times close to one another, and its ExpiresAt its FinishedAt
	// plus a TTL: the times that take four bytes or none, and the edges of
	// both.
	typical := backend.Job{
		ID: "j1", Type: "t", ResultTTL: 24 * time.Hour, FailureTTL: 7 * 24 * time.Hour,
		CreatedAt: at, StartedAt: at.Add(math.MaxUint32), FinishedAt: at.Add(math.MaxUint32 + 1 + math.MaxUint32),
		ExpiresAt: at.Add(math.MaxUint32 + 1 + math.MaxUint32 + 7*24*time.Hour),
	}
	backwards := backend.Job{
		CreatedAt: at, StartedAt: at.Add(-1), FinishedAt: at.Add(-1), ExpiresAt: at.Add(-1 + 90*time.Second),
		ResultTTL: time.Minute, FailureTTL: time.Minute,
	}
	// An ExpiresAt that is FinishedAt plus a TTL only if the sum wraps
	// around, and one past a FinishedAt that does not fit nanoseconds.
	first, end := time.Unix(-maxSec, 0).UTC(), time.Unix(maxSec, 0).UTC()
	wraps := backend.Job{FinishedAt: end, ExpiresAt: first, ResultTTL: time.Duration(first.UnixNano() - end.UnixNano())}
	pastWide := backend.Job{
		FinishedAt: time.Unix(maxSec+2, 0).UTC(), ExpiresAt: time.Unix(maxSec+3, 0).UTC(), ResultTTL: time.Second,
	}
	var a archive
	hd := uint32(0)
	cases := map[string]backend.Job{"full": full, "zero": {}, "empty": empty, "edges": edges, "wide": wide,
		"typical": typical, "backwards": backwards, "wraps": wraps, "past wide": pastWide}
	for name, j := range cases {
		var got backend.Job
		packed := pack(nil, &j)
		unpack(packed, &got)
		if !reflect.DeepEqual(got, j) {
			t.Errorf("%s: got %+v, want %+v", name, got, j)
		}
		if n := packBound(&j); len(packed) > n {
			t.Errorf("%s: packed in %d bytes, above its bound of %d", name, len(packed), n)
		}
		// Packed straight into a slab, it unpacks the same.
		if got, want := typeOf(packed), j.Type; got != want {
			t.Errorf("%s: typeOf: got %q, want %q", name, got, want)
		}
		if key, until := uniqueOf(packed); key != j.UniqueKey || until != j.UniqueUntil {
			t.Errorf("%s: uniqueOf: got %q and %v, want %q and %v", name, key, until, j.UniqueKey, j.UniqueUntil)
		}
		hd = a.recs.grow()
		if !a.addJob(hd, &j, uint64(hd)+1, 0, backend.StateCompleted, false) {
			if len(j.Payload) < slabSize/4 {
				t.Fatalf("%s: addJob refused a small job", name)
			}
			a.add(hd, packed, uint64(hd)+1, 0, backend.StateCompleted, false)
		}
		got = backend.Job{}
		unpack(a.body(hd), &got)
		if !reflect.DeepEqual(got, j) {
			t.Errorf("%s: packed into a slab, got %+v, want %+v", name, got, j)
		}
		if got, want := a.id(hd), j.ID; got != want {
			t.Errorf("%s: archive.id: got %q, want %q", name, got, want)
		}
	}
}

// A finished job of the usual kind, its times close together and its
// ExpiresAt its FinishedAt plus its TTL, packs in the narrow widths: the
// wide ones, which fit every value, are for the rare job that needs them.
func TestPackTypicalJobIsNarrow(t *testing.T) {
	at := time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)
	j := backend.Job{
		ID: "j1000000000001", Type: "noop", Payload: []byte(`{"meeting":"m-1"}`), Attempt: 1, MaxRetries: 25,
		MaxStalls: 1, Timeout: 30 * time.Second, ResultTTL: 24 * time.Hour, FailureTTL: 7 * 24 * time.Hour,
		CreatedAt: at, StartedAt: at.Add(3 * time.Millisecond), FinishedAt: at.Add(3*time.Millisecond + 40*time.Microsecond),
	}
	j.ExpiresAt = j.FinishedAt.Add(j.ResultTTL)
	packed := pack(nil, &j)
	// The flags, four lengths, seven counters, three durations, CreatedAt
	// in full and StartedAt and FinishedAt after it.
	const overhead = 4 + 4 + 7 + 3*4 + 8 + 2*4
	if want := overhead + len(j.ID) + len(j.Type) + len(j.Payload); len(packed) != want {
		t.Errorf("packed in %d bytes, want %d", len(packed), want)
	}
}

// Slabs are dropped as their jobs are swept; one that a few long-kept jobs
// keep mostly empty has them moved out, so that the archive holds at most
// about four times what its jobs need, and one spare slab. Every job stays
// readable throughout.
// completeAll leases every queued job of the queue "default" at now and
// completes it, with its ID as its result when withResult is set.
func completeAll(t *testing.T, b *Backend, now time.Time, withResult bool) {
	t.Helper()
	ctx := context.Background()
	for {
		ls, err := b.Lease(ctx, backend.LeaseRequest{Queues: []string{"default"}, Max: 100, Now: now, TTL: time.Hour})
		if err != nil || len(ls) == 0 {
			return
		}
		acks := make([]backend.Ack, len(ls))
		for i, l := range ls {
			acks[i] = backend.Ack{Lease: l.Ref(), Outcome: backend.OutcomeCompleted}
			if withResult {
				acks[i].Result = []byte(l.Job.ID)
			}
		}
		if _, err := b.Finish(ctx, now, acks); err != nil {
			t.Fatal(err)
		}
	}
}

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
	completeAll(t, b, t0, true)
	check := func(stage string, kept func(i int) bool) {
		t.Helper()
		live, held := 0, cap(b.arch.spare)
		for _, s := range b.arch.slabs {
			live += s.live
			held += cap(s.buf)
		}
		if held > 4*live+2*slabSize {
			t.Errorf("%s: slabs hold %d bytes for %d of records, want at most 4× and two slabs (the current one and the spare)", stage, held, live)
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

// Sweep meets archived jobs in (ExpiresAt, seq) order, whether they were
// pushed in that order (the FIFO) or not (the heap), and skips the ones
// that Requeue took back; random pushes, takes and pops are checked against
// a sorted model.
func TestExpiringOrder(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed>>1))
	var a archive
	var model []expiryEntry // the live entries
	var nextHD uint32
	key := int64(0)
	push := func() {
		key += rng.Int64N(3) // in order, ties included: to the FIFO
		k := key
		if rng.IntN(8) == 0 {
			k -= 1 + rng.Int64N(50) // out of order: to the heap
		}
		hd := nextHD
		nextHD++
		a.recs.grow()
		seq := a.expiring.next()
		a.add(hd, []byte("x"), seq, 0, backend.StateCompleted, false)
		a.expiring.push(k, seq, hd)
		model = append(model, expiryEntry{key: k, seq: seq, hd: hd})
	}
	take := func() {
		i := rng.IntN(len(model))
		a.take(model[i].hd)
		model = slices.Delete(model, i, i+1)
	}
	pop := func() {
		least := slices.MinFunc(model, func(e, f expiryEntry) int {
			if e.before(&f) {
				return -1
			}
			return 1
		})
		e := a.minExpiring()
		if e == nil || *e != least {
			t.Fatalf("minExpiring: got %+v, want %+v", e, least)
		}
		a.expiring.removeTop()
		a.remove(least.hd)
		model = slices.DeleteFunc(model, func(e expiryEntry) bool { return e == least })
	}
	for round := range 4 {
		for range 3000 {
			switch r := rng.IntN(10); {
			case r < 5 || len(model) == 0:
				push()
			case r < 7:
				take()
			default:
				pop()
			}
		}
		if round%2 == 1 {
			for len(model) > 0 {
				pop()
			}
			if e := a.minExpiring(); e != nil {
				t.Fatalf("emptied: minExpiring got %+v, want nil", e)
			}
			if n := a.expiring.fifo.len(); n != 0 {
				t.Fatalf("emptied: the FIFO keeps %d entries, want 0", n)
			}
			if n := a.expiring.fifo.used; n > 1 {
				t.Fatalf("emptied: the FIFO keeps %d chunks, want at most 1", n)
			}
		}
	}
	// Requeue takes most jobs back: their stale entries must not pile up.
	for range 2000 {
		push()
	}
	for range 1500 {
		take()
	}
	if n := a.expiring.len(); n > 2*len(model)+2*purgeMin {
		t.Errorf("expiring holds %d entries for %d live jobs, want stale ones purged", n, len(model))
	}
	for len(model) > 0 {
		pop()
	}
}

// Sweep deletes in chunks (see sweepChunk): across chunks it keeps to its
// limit, deletes in expiry order, and leaves the jobs that have not expired.
func TestSweepAcrossChunks(t *testing.T) {
	ctx := context.Background()
	b := New(Options{EventLogSize: 16})
	defer b.Close()
	t0 := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	const n, kept = 3*sweepChunk + 10, 20
	var jobs []backend.NewJob
	for i := range n + kept {
		// TTLs out of order, so that expiring uses its heap and its FIFO.
		ttl := time.Hour + time.Duration(i%7)*time.Minute
		if i >= n {
			ttl = 48 * time.Hour
		}
		jobs = append(jobs, backend.NewJob{ID: fmt.Sprintf("job-%06d", i), Type: "t", Queue: "default",
			ResultTTL: ttl, FailureTTL: ttl})
	}
	if _, err := b.Enqueue(ctx, t0, jobs); err != nil {
		t.Fatal(err)
	}
	completeAll(t, b, t0, false)
	// At 1h1m1s only the jobs of the two shortest TTLs have expired: those
	// go, the others stay.
	at := t0.Add(time.Hour + time.Minute + time.Second)
	short := 0
	for i := range n {
		if i%7 <= 1 {
			short++
		}
	}
	if got, _ := b.Sweep(ctx, at, 0); got != short {
		t.Fatalf("Sweep at 1h1m1s: got %d deleted, want the %d jobs of the shortest TTLs", got, short)
	}
	for i := range n {
		_, err := b.Job(ctx, jobs[i].ID)
		if gone := i%7 <= 1; gone != (err != nil) {
			t.Fatalf("after Sweep at 1h1m1s: Job %s: got error %v, want it gone: %v", jobs[i].ID, err, gone)
		}
	}
	at = t0.Add(2 * time.Hour)
	limit := sweepChunk + sweepChunk/2
	if got, _ := b.Sweep(ctx, at, limit); got != limit {
		t.Fatalf("Sweep with limit %d: got %d deleted, want %d", limit, got, limit)
	}
	if got, _ := b.Sweep(ctx, at, 0); got != n-short-limit {
		t.Fatalf("Sweep without limit: got %d deleted, want the %d left", got, n-short-limit)
	}
	if got, _ := b.Sweep(ctx, at, 0); got != 0 {
		t.Fatalf("Sweep a second time: got %d deleted, want 0", got)
	}
	for i := range n + kept {
		_, err := b.Job(ctx, jobs[i].ID)
		if kept := i >= n; kept != (err == nil) {
			t.Fatalf("after Sweep at 2h: Job %s: got error %v, want it kept: %v", jobs[i].ID, err, kept)
		}
	}
}
