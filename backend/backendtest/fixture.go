package backendtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jobrelay/engine/backend"
)

// leaseTTL is the lease the suite's workers take unless a case says
// otherwise.
const leaseTTL = 30 * time.Second

// fixture is one subtest's backend, its clock and its helpers. Helpers fail
// the test on errors the case does not expect, so that a case reads as its
// story.
type fixture struct {
	t   *testing.T
	b   backend.Backend
	ctx context.Context
	t0  time.Time // the suite's "now" at the start of the case
	n   int       // last job number handed out
}

func newFixture(t *testing.T, h Harness) *fixture {
	t.Helper()
	b := h.New(t)
	if b == nil {
		t.Fatal("Harness.New returned nil")
	}
	closeAtEnd(t, b)
	return &fixture{t: t, b: b, ctx: t.Context(), t0: baseTime()}
}

// baseTime is a whole second near the wall clock, so that backends that
// store coarse times, or that hand real-time TTLs to a server, still agree
// with the suite.
func baseTime() time.Time { return time.Now().UTC().Truncate(time.Second) }

func closeAtEnd(t *testing.T, b backend.Backend) {
	t.Cleanup(func() {
		if err := b.Close(); err != nil && !errors.Is(err, backend.ErrClosed) {
			t.Errorf("Close: got error %v, want nil", err)
		}
	})
}

// at returns the case's time d after its start.
func (f *fixture) at(d time.Duration) time.Time { return f.t0.Add(d) }

// jobOption shapes a NewJob.
type jobOption func(*backend.NewJob)

func withID(id string) jobOption        { return func(j *backend.NewJob) { j.ID = id } }
func inQueue(q string) jobOption        { return func(j *backend.NewJob) { j.Queue = q } }
func ofType(typ string) jobOption       { return func(j *backend.NewJob) { j.Type = typ } }
func withPriority(p int) jobOption      { return func(j *backend.NewJob) { j.Priority = p } }
func runAt(t time.Time) jobOption       { return func(j *backend.NewJob) { j.RunAt = t } }
func uniqueKey(k string) jobOption      { return func(j *backend.NewJob) { j.UniqueKey = k } }
func uniqueUntil(t time.Time) jobOption { return func(j *backend.NewJob) { j.UniqueUntil = t } }
func maxStalls(n int) jobOption         { return func(j *backend.NewJob) { j.MaxStalls = n } }
func resultTTL(d time.Duration) jobOption {
	return func(j *backend.NewJob) { j.ResultTTL = d }
}
func dependsOn(ids ...string) jobOption {
	return func(j *backend.NewJob) { j.DependsOn = append([]string(nil), ids...) }
}

// newJob returns a job as the engine would fill it, with the next ID.
func (f *fixture) newJob(opts ...jobOption) backend.NewJob {
	f.n++
	j := backend.NewJob{
		ID:         fmt.Sprintf("job-%05d", f.n),
		Type:       "email",
		Queue:      "default",
		Payload:    []byte(fmt.Sprintf(`{"n":%d}`, f.n)),
		MaxRetries: 3,
		MaxStalls:  3,
		Timeout:    time.Minute,
		ResultTTL:  time.Hour,
		FailureTTL: 2 * time.Hour,
	}
	for _, o := range opts {
		o(&j)
	}
	return j
}

// enqueue stores jobs at now and returns the per-job results.
func (f *fixture) enqueue(now time.Time, jobs ...backend.NewJob) []backend.EnqueueResult {
	f.t.Helper()
	res, err := f.b.Enqueue(f.ctx, now, jobs)
	if err != nil {
		f.t.Fatalf("Enqueue: got error %v, want nil", err)
	}
	if len(res) != len(jobs) {
		f.t.Fatalf("Enqueue of %d jobs: got %d results, want %d", len(jobs), len(res), len(jobs))
	}
	return res
}

// addAt enqueues one new job at now and returns its ID.
func (f *fixture) addAt(now time.Time, opts ...jobOption) string {
	f.t.Helper()
	nj := f.newJob(opts...)
	res := f.enqueue(now, nj)
	if res[0].Err != nil {
		f.t.Fatalf("Enqueue %s: got error %v, want nil", nj.ID, res[0].Err)
	}
	if res[0].ID != nj.ID {
		f.t.Fatalf("Enqueue %s: got ID %q, want %q", nj.ID, res[0].ID, nj.ID)
	}
	return nj.ID
}

// add enqueues one new job at the start of the case.
func (f *fixture) add(opts ...jobOption) string {
	f.t.Helper()
	return f.addAt(f.t0, opts...)
}

// request is a LeaseRequest of the suite's worker.
func request(now time.Time, max int, queues ...string) backend.LeaseRequest {
	if len(queues) == 0 {
		queues = []string{"default"}
	}
	return backend.LeaseRequest{Queues: queues, Worker: "worker-1", Max: max, Now: now, TTL: leaseTTL}
}

func (f *fixture) lease(req backend.LeaseRequest) []*backend.Lease {
	f.t.Helper()
	ls, err := f.b.Lease(f.ctx, req)
	if err != nil {
		f.t.Fatalf("Lease: got error %v, want nil", err)
	}
	for _, l := range ls {
		if l == nil || l.Job == nil {
			f.t.Fatalf("Lease: got a nil lease or job, want every lease to carry its job")
		}
	}
	return ls
}

// leaseOne leases at now from queues and requires exactly one job.
func (f *fixture) leaseOne(now time.Time, queues ...string) *backend.Lease {
	f.t.Helper()
	ls := f.lease(request(now, 1, queues...))
	if len(ls) != 1 {
		f.t.Fatalf("Lease at %s: got %d jobs, want 1", f.since(now), len(ls))
	}
	return ls[0]
}

// leaseID leases at now and requires the job id.
func (f *fixture) leaseID(now time.Time, id string, queues ...string) *backend.Lease {
	f.t.Helper()
	l := f.leaseOne(now, queues...)
	if l.Job.ID != id {
		f.t.Fatalf("Lease: got job %s, want %s", l.Job.ID, id)
	}
	return l
}

// wantNoLease requires that nothing is leasable at now from queues.
func (f *fixture) wantNoLease(now time.Time, queues ...string) {
	f.t.Helper()
	if ls := f.lease(request(now, 10, queues...)); len(ls) != 0 {
		f.t.Fatalf("Lease at %s: got %d jobs (first %s), want none", f.since(now), len(ls), ls[0].Job.ID)
	}
}

func (f *fixture) finish(now time.Time, acks ...backend.Ack) []error {
	f.t.Helper()
	errs, err := f.b.Finish(f.ctx, now, acks)
	if err != nil {
		f.t.Fatalf("Finish: got error %v, want nil", err)
	}
	if len(errs) != len(acks) {
		f.t.Fatalf("Finish of %d acks: got %d errors, want %d", len(acks), len(errs), len(acks))
	}
	return errs
}

// finishOK ends one attempt and requires that the lease still held.
func (f *fixture) finishOK(now time.Time, a backend.Ack) {
	f.t.Helper()
	if err := f.finish(now, a)[0]; err != nil {
		f.t.Fatalf("Finish %s (%s): got error %v, want nil", a.Lease.JobID, a.Outcome, err)
	}
}

func (f *fixture) complete(now time.Time, l *backend.Lease, result string) {
	f.t.Helper()
	f.finishOK(now, backend.Ack{Lease: l.Ref(), Outcome: backend.OutcomeCompleted, Result: []byte(result)})
}

func (f *fixture) retry(now time.Time, l *backend.Lease, msg string, retryAt time.Time) {
	f.t.Helper()
	f.finishOK(now, backend.Ack{Lease: l.Ref(), Outcome: backend.OutcomeRetry, Error: msg, RetryAt: retryAt})
}

func (f *fixture) fail(now time.Time, l *backend.Lease, msg string) {
	f.t.Helper()
	f.finishOK(now, backend.Ack{Lease: l.Ref(), Outcome: backend.OutcomeFailed, Error: msg})
}

func (f *fixture) release(now time.Time, l *backend.Lease) {
	f.t.Helper()
	f.finishOK(now, backend.Ack{Lease: l.Ref(), Outcome: backend.OutcomeReleased})
}

// run enqueues a job, leases it and completes it, all at now.
func (f *fixture) run(now time.Time, opts ...jobOption) string {
	f.t.Helper()
	id := f.addAt(now, opts...)
	f.complete(now, f.leaseID(now, id, f.job(id).Queue), `"ok"`)
	return id
}

func (f *fixture) job(id string) *backend.Job {
	f.t.Helper()
	j, err := f.b.Job(f.ctx, id)
	if err != nil {
		f.t.Fatalf("Job %s: got error %v, want nil", id, err)
	}
	if j == nil {
		f.t.Fatalf("Job %s: got nil job and nil error", id)
	}
	return j
}

func (f *fixture) wantState(id string, want backend.State) *backend.Job {
	f.t.Helper()
	j := f.job(id)
	if j.State != want {
		f.t.Fatalf("job %s: got state %q, want %q", id, j.State, want)
	}
	return j
}

func (f *fixture) wantGone(id string) {
	f.t.Helper()
	if _, err := f.b.Job(f.ctx, id); !errors.Is(err, backend.ErrJobNotFound) {
		f.t.Fatalf("Job %s: got error %v, want ErrJobNotFound", id, err)
	}
}

func (f *fixture) promote(now time.Time) (int, time.Time) {
	f.t.Helper()
	moved, next, err := f.b.Promote(f.ctx, now)
	if err != nil {
		f.t.Fatalf("Promote: got error %v, want nil", err)
	}
	return moved, next
}

func (f *fixture) reap(now time.Time) int {
	f.t.Helper()
	n, err := f.b.Reap(f.ctx, now)
	if err != nil {
		f.t.Fatalf("Reap: got error %v, want nil", err)
	}
	return n
}

func (f *fixture) sweep(now time.Time, limit int) int {
	f.t.Helper()
	n, err := f.b.Sweep(f.ctx, now, limit)
	if err != nil {
		f.t.Fatalf("Sweep: got error %v, want nil", err)
	}
	return n
}

// cancelOK cancels id and requires the returned state.
func (f *fixture) cancelOK(now time.Time, id, reason string, want backend.State) {
	f.t.Helper()
	st, err := f.b.Cancel(f.ctx, now, id, reason)
	if err != nil {
		f.t.Fatalf("Cancel %s: got error %v, want nil", id, err)
	}
	if st != want {
		f.t.Fatalf("Cancel %s: got state %q, want %q", id, st, want)
	}
}

func (f *fixture) stats() map[string]backend.QueueStats {
	f.t.Helper()
	list, err := f.b.Stats(f.ctx)
	if err != nil {
		f.t.Fatalf("Stats: got error %v, want nil", err)
	}
	m := make(map[string]backend.QueueStats, len(list))
	for _, s := range list {
		m[s.Queue] = s
	}
	return m
}

func (f *fixture) cursor() string {
	f.t.Helper()
	c, err := f.b.EventCursor(f.ctx)
	if err != nil {
		f.t.Fatalf("EventCursor: got error %v, want nil", err)
	}
	return c
}

// readEvents reads exactly n events after cursor, waiting up to a few
// seconds for them, and returns them with the cursor after the last.
func (f *fixture) readEvents(cursor string, n int) ([]backend.Event, string) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(f.ctx, 5*time.Second)
	defer cancel()
	var got []backend.Event
	for len(got) < n {
		evs, err := f.b.ReadEvents(ctx, cursor, n-len(got))
		if err != nil {
			f.t.Fatalf("ReadEvents after %d of %d events: got error %v, want nil (events so far: %s)", len(got), n, err, kinds(got))
		}
		if len(evs) > n-len(got) {
			f.t.Fatalf("ReadEvents with max %d: got %d events, want at most %d", n-len(got), len(evs), n-len(got))
		}
		for _, e := range evs {
			got = append(got, e)
			cursor = e.ID
		}
	}
	return got, cursor
}

// wantNoEvents requires that no event follows cursor within a short wait.
func (f *fixture) wantNoEvents(cursor string) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(f.ctx, 50*time.Millisecond)
	defer cancel()
	evs, err := f.b.ReadEvents(ctx, cursor, 10)
	if len(evs) > 0 {
		f.t.Fatalf("ReadEvents: got %d more events (%s), want none", len(evs), kinds(evs))
	}
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		f.t.Fatalf("ReadEvents on an idle log: got error %v, want nil or context.DeadlineExceeded", err)
	}
}

// wantEvents reads len(want) events after cursor, compares them with want
// (see checkEvent) and returns the cursor after them.
func (f *fixture) wantEvents(cursor string, want ...backend.Event) string {
	f.t.Helper()
	got, next := f.readEvents(cursor, len(want))
	for i := range want {
		checkEvent(f.t, i, got[i], want[i])
	}
	return next
}

// checkEvent compares an event with want: Kind, JobID, State and Attempt
// always; Type, Queue, Error, Message, Progress, Result, RunAt and Time when
// want sets them.
func checkEvent(t *testing.T, i int, got, want backend.Event) {
	t.Helper()
	if got.ID == "" {
		t.Errorf("event %d (%s): got empty ID, want a cursor", i, got.Kind)
	}
	if got.Kind != want.Kind || got.JobID != want.JobID {
		t.Fatalf("event %d: got %s of job %q, want %s of job %q", i, got.Kind, got.JobID, want.Kind, want.JobID)
	}
	if got.State != want.State {
		t.Errorf("event %d (%s): got state %q, want %q", i, got.Kind, got.State, want.State)
	}
	if got.Attempt != want.Attempt {
		t.Errorf("event %d (%s): got attempt %d, want %d", i, got.Kind, got.Attempt, want.Attempt)
	}
	if want.Type != "" && got.Type != want.Type {
		t.Errorf("event %d (%s): got type %q, want %q", i, got.Kind, got.Type, want.Type)
	}
	if want.Queue != "" && got.Queue != want.Queue {
		t.Errorf("event %d (%s): got queue %q, want %q", i, got.Kind, got.Queue, want.Queue)
	}
	if want.Error != "" && got.Error != want.Error {
		t.Errorf("event %d (%s): got error %q, want %q", i, got.Kind, got.Error, want.Error)
	}
	if want.Message != "" && got.Message != want.Message {
		t.Errorf("event %d (%s): got message %q, want %q", i, got.Kind, got.Message, want.Message)
	}
	if want.Progress != 0 && got.Progress != want.Progress {
		t.Errorf("event %d (%s): got progress %d, want %d", i, got.Kind, got.Progress, want.Progress)
	}
	if want.Result != nil && !bytes.Equal(got.Result, want.Result) {
		t.Errorf("event %d (%s): got result %q, want %q", i, got.Kind, got.Result, want.Result)
	}
	if !want.RunAt.IsZero() && !got.RunAt.Equal(want.RunAt) {
		t.Errorf("event %d (%s): got RunAt %v, want %v", i, got.Kind, got.RunAt, want.RunAt)
	}
	if !want.Time.IsZero() && !got.Time.Equal(want.Time) {
		t.Errorf("event %d (%s): got time %v, want %v", i, got.Kind, got.Time, want.Time)
	}
}

func kinds(evs []backend.Event) string {
	var buf bytes.Buffer
	for i, e := range evs {
		if i > 0 {
			buf.WriteString(", ")
		}
		fmt.Fprintf(&buf, "%s %s", e.Kind, e.JobID)
	}
	return buf.String()
}

// title capitalizes the first letter of a word for a subtest name.
func title(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// since names a time of the case as an offset from its start.
func (f *fixture) since(t time.Time) string { return "t0+" + t.Sub(f.t0).String() }

func wantTime(t *testing.T, what string, got, want time.Time) {
	t.Helper()
	if !got.Equal(want) {
		t.Errorf("%s: got %v, want %v", what, got, want)
	}
}

func wantErrIs(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: got error %v, want %v", what, err, target)
	}
}

// readFunc reads a log of events: ReadEvents or ReadCancels.
type readFunc func(ctx context.Context, cursor string, max int) ([]backend.Event, error)

// pageThrough reads n events after cursor with read, asking for at most max
// a call, and returns their job IDs in order and the cursor after them.
func pageThrough(t *testing.T, ctx context.Context, name string, read readFunc, cursor string, n, max int) ([]string, string) {
	t.Helper()
	var got []string
	for len(got) < n {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		evs, err := read(ctx, cursor, max)
		cancel()
		if err != nil {
			t.Fatalf("%s: got error %v, want nil", name, err)
		}
		if len(evs) == 0 || len(evs) > max {
			t.Fatalf("%s with max %d: got %d events, want 1 to %d", name, max, len(evs), max)
		}
		for _, e := range evs {
			got = append(got, e.JobID)
		}
		cursor = evs[len(evs)-1].ID
	}
	return got, cursor
}

// readOutcome is what a read returned.
type readOutcome struct {
	evs []backend.Event
	err error
}

// readAsync starts a read after cursor that may block for up to wait, and
// returns, once the read has had time to block, where its outcome arrives.
func readAsync(ctx context.Context, read readFunc, cursor string, wait time.Duration) <-chan readOutcome {
	started := make(chan struct{})
	done := make(chan readOutcome, 1)
	go func() {
		close(started)
		ctx, cancel := context.WithTimeout(ctx, wait)
		defer cancel()
		evs, err := read(ctx, cursor, 10)
		done <- readOutcome{evs, err}
	}()
	<-started
	letItBlock()
	return done
}

// contextEndsRead requires a read with nothing new after cursor to return
// soon after its context ends, with no events and nil or the context's error.
func contextEndsRead(t *testing.T, ctx context.Context, name string, read readFunc, cursor string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	begin := time.Now()
	evs, err := read(ctx, cursor, 10)
	if len(evs) != 0 {
		t.Errorf("%s with nothing new: got %d events, want none", name, len(evs))
	}
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("%s whose context ended: got error %v, want nil or context.DeadlineExceeded", name, err)
	}
	if took := time.Since(begin); took > 5*time.Second {
		t.Errorf("%s whose context ended after 100ms: returned after %v, want about 100ms", name, took)
	}
}

// readEndsAtClose starts a read that blocks after cursor, closes the
// backend, and requires the read to return at once with nil or ErrClosed.
func readEndsAtClose(t *testing.T, f *fixture, name string, read readFunc, cursor string) {
	t.Helper()
	done := readAsync(f.ctx, read, cursor, time.Minute)
	if err := f.b.Close(); err != nil {
		t.Fatalf("Close: got error %v, want nil", err)
	}
	err := await(t, done, 10*time.Second, name+" blocked at Close").err
	if err != nil && !errors.Is(err, backend.ErrClosed) {
		t.Errorf("%s blocked at Close: got error %v, want nil or ErrClosed", name, err)
	}
}
