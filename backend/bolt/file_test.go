package bolt

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/jobrelay/engine/backend"
)

func TestOpenCreatesFolder(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "a", "b", "jobs.db")
	b := openAt(t, path, Options{})
	enqueue(t, b, t0, newJob("x"))
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("database file: %v", err)
	}
}

func TestReopenKeepsEverything(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "jobs.db")
	b, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	sched := newJob("scheduled")
	sched.RunAt = t0.Add(time.Hour)
	uniq := newJob("unique")
	uniq.UniqueKey = "u"
	dep := newJob("deferred")
	dep.DependsOn = []string{"active"}
	enqueue(t, b, t0, newJob("active"), newJob("retrying"), newJob("done"), newJob("failed"), newJob("queued1"), newJob("queued2"), sched, uniq, dep)
	ls := lease(t, b, t0, 4)
	finish(t, b, t0,
		backend.Ack{Lease: ls[1].Ref(), Outcome: backend.OutcomeRetry, Error: "again", RetryAt: t0.Add(time.Minute)},
		backend.Ack{Lease: ls[2].Ref(), Outcome: backend.OutcomeCompleted, Result: []byte(`{"n":1}`)},
		backend.Ack{Lease: ls[3].Ref(), Outcome: backend.OutcomeFailed, Error: "bad"})
	if err := b.Pause(ctx, t0, "paused"); err != nil {
		t.Fatal(err)
	}
	before := map[string]*backend.Job{}
	page, err := b.List(ctx, backend.ListFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range page.Jobs {
		before[j.ID] = j
	}
	statsBefore, _ := b.Stats(ctx)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	b = openAt(t, path, Options{})
	page, err = b.List(ctx, backend.ListFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Jobs) != len(before) {
		t.Fatalf("after reopen: got %d jobs, want %d", len(page.Jobs), len(before))
	}
	for _, j := range page.Jobs {
		want := before[j.ID]
		if j.ID == "active" {
			// Its lease was left by the closed backend: reaped on open.
			if j.State != backend.StateQueued || j.Stalls != 1 || j.Failures != 0 || j.LeaseToken != "" {
				t.Fatalf("reaped job: got state %q stalls %d failures %d", j.State, j.Stalls, j.Failures)
			}
			continue
		}
		if fmt.Sprintf("%+v", *j) != fmt.Sprintf("%+v", *want) {
			t.Fatalf("job %s after reopen:\ngot  %+v\nwant %+v", j.ID, *j, *want)
		}
	}
	stats, _ := b.Stats(ctx)
	if len(stats) != len(statsBefore) || !stats[1].Paused || stats[0].Counts[backend.StateQueued] != statsBefore[0].Counts[backend.StateQueued]+1 ||
		stats[0].Counts[backend.StateActive] != 0 || stats[0].Processed != 1 || stats[0].Failed != 2 {
		t.Fatalf("stats after reopen: got %+v, before %+v", stats, statsBefore)
	}
	// FIFO order and the sequence survive: queued1 and queued2 keep their
	// places, the reaped job keeps the place it had.
	var order []string
	for _, l := range lease(t, b, t0, 10) {
		order = append(order, l.Job.ID)
	}
	if want := "[active queued1 queued2 unique]"; fmt.Sprint(order) != want {
		t.Fatalf("lease order after reopen: got %v, want %v", order, want)
	}
	if res := enqueue(t, b, t0, func() backend.NewJob { j := newJob("u2"); j.UniqueKey = "u"; return j }()); !errors.Is(res[0].Err, backend.ErrDuplicateJob) {
		t.Fatalf("unique key after reopen: got %v, want ErrDuplicateJob", res[0].Err)
	}
}

func TestSecondOpenIsLocked(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "jobs.db")
	openAt(t, path, Options{})
	start := time.Now()
	b, err := Open(path, Options{OpenTimeout: 200 * time.Millisecond})
	took := time.Since(start)
	if err == nil {
		_ = b.Close()
		t.Fatal("second Open of a held file: got no error, want ErrLocked")
	}
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: got %v, want ErrLocked", err)
	}
	if took < 150*time.Millisecond || took > 2*time.Second {
		t.Fatalf("second Open: failed after %v, want about the 200ms timeout", took)
	}
	if !strings.Contains(err.Error(), path) {
		t.Fatalf("error %q does not name the file", err)
	}
}

func TestRefusesForeignFiles(t *testing.T) {
	t.Parallel()
	junk := make([]byte, 20000)
	_, _ = rand.Read(junk)
	cases := []struct {
		name  string
		write func(t *testing.T, path string)
		want  error
	}{
		{"text", func(t *testing.T, path string) { writeFile(t, path, []byte("hello, world\n")) }, ErrNotJobrelay},
		{"random bytes", func(t *testing.T, path string) { writeFile(t, path, junk) }, ErrNotJobrelay},
		{"other bbolt database", func(t *testing.T, path string) {
			db, err := bbolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if err := db.Update(func(tx *bbolt.Tx) error {
				b, err := tx.CreateBucket([]byte("users"))
				if err != nil {
					return err
				}
				return b.Put([]byte("ann"), []byte("admin"))
			}); err != nil {
				t.Fatal(err)
			}
		}, ErrNotJobrelay},
		{"newer format", func(t *testing.T, path string) {
			b, err := Open(path, Options{})
			if err != nil {
				t.Fatal(err)
			}
			enqueue(t, b, t0, newJob("x"))
			_ = b.Close()
			setFormat(t, path, FormatVersion+1)
		}, ErrFormatVersion},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "jobs.db")
			c.write(t, path)
			before, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			b, err := Open(path, Options{})
			if err == nil {
				_ = b.Close()
				t.Fatalf("Open: got no error, want %v", c.want)
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("Open: got %v, want %v", err, c.want)
			}
			after, _ := os.ReadFile(path)
			if !bytes.Equal(before, after) {
				t.Fatal("Open changed a file it refused")
			}
		})
	}
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// setFormat rewrites the format version of a closed database, as a newer
// release would have written it.
func setFormat(t *testing.T, path string, v uint32) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(metaFormatKey, binary.BigEndian.AppendUint32(nil, v))
	}); err != nil {
		t.Fatal(err)
	}
}

func TestEmptyFileIsInitialized(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "jobs.db")
	writeFile(t, path, nil)
	b := openAt(t, path, Options{})
	enqueue(t, b, t0, newJob("x"))
	wantState(t, b, "x", backend.StateQueued)
}

// TestCorruptRecordFailsOnlyThatJob damages one job's record on disk: the
// job fails with an error that says so, and the others run.
func TestCorruptRecordFailsOnlyThatJob(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "jobs.db")
	b, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	enqueue(t, b, t0, newJob("a"), newJob("b"), newJob("c"))
	_ = b.Close()
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error {
		jobs := tx.Bucket(bucketJobs)
		v := append([]byte(nil), jobs.Get([]byte("b"))...)
		v[len(v)/2] ^= 0xff
		return jobs.Put([]byte("b"), v)
	}); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()

	b = openAt(t, path, Options{NoSync: true})
	if _, err := b.Job(ctx, "b"); !errors.Is(err, ErrCorruptJob) {
		t.Fatalf("Job of a corrupt record: got %v, want ErrCorruptJob", err)
	}
	cur, _ := b.EventCursor(ctx)
	ls := lease(t, b, t0, 10)
	if len(ls) != 2 || ls[0].Job.ID != "a" || ls[1].Job.ID != "c" {
		t.Fatalf("lease past a corrupt job: got %d jobs", len(ls))
	}
	j := wantState(t, b, "b", backend.StateFailed)
	if !strings.Contains(j.Error, "corrupt") {
		t.Fatalf("corrupt job: got error %q, want it to say corrupt", j.Error)
	}
	evs, _ := b.ReadEvents(ctx, cur, 10)
	failed := 0
	for _, ev := range evs {
		if ev.Kind == backend.EventFailed && ev.JobID == "b" && ev.Error == j.Error {
			failed++
		}
	}
	if len(evs) != 3 || failed != 1 {
		t.Fatalf("events: got %+v, want two active and b failed", evs)
	}
	stats, _ := b.Stats(ctx)
	if c := stats[0].Counts; c[backend.StateQueued] != 0 || c[backend.StateActive] != 2 || c[backend.StateFailed] != 1 {
		t.Fatalf("counts: got %v", c)
	}

	// An active job whose record breaks, met by ID (Cancel): failed too,
	// its lease index entry found and dropped, the counters right.
	corrupt(t, b, "c")
	if _, err := b.Cancel(ctx, t0, "c", "stop"); !errors.Is(err, ErrCorruptJob) {
		t.Fatalf("Cancel of a corrupt job: got %v, want ErrCorruptJob", err)
	}
	wantState(t, b, "c", backend.StateFailed)
	if n, err := b.Reap(ctx, t0.Add(time.Hour)); err != nil || n != 1 {
		t.Fatalf("Reap: got %d, %v; want only a's lease", n, err)
	}
	stats, _ = b.Stats(ctx)
	if c := stats[0].Counts; len(stats) != 1 || c[backend.StateQueued] != 1 || c[backend.StateActive] != 0 || c[backend.StateFailed] != 2 {
		t.Fatalf("counts: got %+v", stats)
	}
}

// corrupt flips a byte in the middle of a stored job record, through the
// backend's own handle on the file.
func corrupt(t *testing.T, b *Backend, id string) {
	t.Helper()
	if err := b.db.Update(func(tx *bbolt.Tx) error {
		jobs := tx.Bucket(bucketJobs)
		v := append([]byte(nil), jobs.Get([]byte(id))...)
		v[len(v)/2] ^= 0xff
		return jobs.Put([]byte(id), v)
	}); err != nil {
		t.Fatal(err)
	}
}

func TestCompact(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	b := openAt(t, filepath.Join(dir, "jobs.db"), Options{NoSync: true})
	payload := bytes.Repeat([]byte("x"), 1000)
	var jobs []backend.NewJob
	for i := range 5000 {
		nj := newJob(fmt.Sprintf("j%05d", i))
		nj.Payload = payload
		nj.ResultTTL = 0
		jobs = append(jobs, nj)
	}
	enqueue(t, b, t0, jobs...)
	for {
		ls := lease(t, b, t0, 500)
		if len(ls) == 0 {
			break
		}
		acks := make([]backend.Ack, len(ls))
		for i, l := range ls {
			acks[i] = backend.Ack{Lease: l.Ref(), Outcome: backend.OutcomeCompleted}
		}
		finish(t, b, t0, acks...)
	}
	enqueue(t, b, t0, newJob("keep1"), newJob("keep2"))
	for {
		n, err := b.Sweep(ctx, t0.Add(time.Second), 1000)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
	}
	dst := filepath.Join(dir, "compact", "jobs.db")
	if err := b.Compact(ctx, dst); err != nil {
		t.Fatalf("Compact: %v", err)
	}
	if err := b.Compact(ctx, dst); !errors.Is(err, os.ErrExist) {
		t.Fatalf("Compact over an existing file: got %v, want ErrExist", err)
	}
	src, _ := os.Stat(b.Path())
	out, _ := os.Stat(dst)
	if out.Size()*4 > src.Size() {
		t.Fatalf("compacted file: %d bytes, source %d; want far smaller", out.Size(), src.Size())
	}
	c := openAt(t, dst, Options{NoSync: true})
	p, err := c.List(ctx, backend.ListFilter{})
	if err != nil || len(p.Jobs) != 2 || p.Jobs[0].ID != "keep1" {
		t.Fatalf("compacted jobs: got %d, %v", len(p.Jobs), err)
	}
	stats, _ := c.Stats(ctx)
	if stats[0].Processed != 5000 || stats[0].Counts[backend.StateQueued] != 2 || stats[0].Counts[backend.StateCompleted] != 0 {
		t.Fatalf("compacted stats: got %+v", stats[0])
	}
	if ls := lease(t, c, t0, 10); len(ls) != 2 {
		t.Fatalf("lease from compacted file: got %d", len(ls))
	}
}

// TestJournaledLeaseCountsAsStall plays a process that died between a
// Lease and the commit of its claim: the journal has the claim, the
// database does not. Open counts the stall.
func TestJournaledLeaseCountsAsStall(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "jobs.db")
	b, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	enqueue(t, b, t0, newJob("a"), newJob("b"))
	_ = b.Close()
	// The claim the dead process journaled for "a": a sequence above the
	// database's, attempt 1.
	j, _, err := openJournal(path, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	j.seq = 1000
	j.add(1, "a")
	if err := j.write(); err != nil {
		t.Fatal(err)
	}
	_ = j.close()

	b = openAt(t, path, Options{NoSync: true})
	a := wantState(t, b, "a", backend.StateQueued)
	if a.Stalls != 1 || a.Attempt != 1 {
		t.Fatalf("journaled job: got stalls %d attempt %d, want 1, 1", a.Stalls, a.Attempt)
	}
	if o := wantState(t, b, "b", backend.StateQueued); o.Stalls != 0 || o.Attempt != 0 {
		t.Fatalf("other job: got stalls %d attempt %d, want 0, 0", o.Stalls, o.Attempt)
	}
	// The journal was emptied: a second Open counts nothing more.
	_ = b.Close()
	b = openAt(t, path, Options{NoSync: true})
	if a := job(t, b, "a"); a.Stalls != 1 {
		t.Fatalf("after a second Open: got stalls %d, want 1", a.Stalls)
	}
	for _, p := range journalPaths(path) {
		if fi, err := os.Stat(p); err != nil || fi.Size() != 0 {
			t.Fatalf("journal %s after a clean Close: %v, want empty", p, err)
		}
	}
	// With the journal empty, new claims still number above the ones the
	// database has seen, so that a crash cannot hide them.
	if b.journal.seq < 1001 {
		t.Fatalf("journal sequence after reopen: got %d, want at least 1001", b.journal.seq)
	}
	_ = ctx
}
