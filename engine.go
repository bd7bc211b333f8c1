// Package engine is jobrelay: an embeddable job engine for long background
// work. A program picks a backend (memory, a bbolt file, or Redis shared by
// many processes), registers handlers, enqueues jobs and runs workers; every
// job runs at least once, retries with backoff, reports progress, and is
// handed back to the queue when the process running it dies.
//
//	e, err := engine.New(engine.WithBolt("jobs.db"))
//	engine.Handle(e, "summarize", summarize, engine.Timeout(2*time.Hour))
//	id, err := e.Enqueue(ctx, "summarize", args, engine.MaxRetries(5))
//	go e.Run(ctx)
//	sum, err := engine.Result[Summary](ctx, e, id)
package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jobrelay/engine/backend"
	"github.com/jobrelay/engine/backend/memory"
	"github.com/jobrelay/engine/internal/jobid"
)

// Engine enqueues jobs, runs them with registered handlers, and reports on
// them. Construct one per process with New and share it; all methods are
// safe for concurrent use.
type Engine struct {
	cfg         *config
	backend     backend.Backend
	ownsBackend bool
	clock       Clock
	log         *slog.Logger
	workerID    string
	workerName  string
	hub         *hub
	ids         jobid.Generator

	// handlers maps job types to their handlers. Every enqueue and every
	// run reads it and only registration writes it, so it is copied on
	// write (under mu) and read without a lock.
	mu       sync.Mutex
	handlers atomic.Pointer[map[string]*handlerEntry]

	runs runTable // the runs of this process, see runTable

	// jobBufs holds the []backend.NewJob of finished EnqueueMany calls
	// (as *[]backend.NewJob): a batch of 512 jobs is 120 KB, which a busy
	// producer would otherwise allocate, and fault in, on every call.
	jobBufs sync.Pool

	running   atomic.Bool
	stopRun   atomic.Pointer[context.CancelFunc]
	runDone   chan struct{}
	schedWake chan struct{}
	schedules periodicTable // see periodic.go
	closeOnce sync.Once
	closed    atomic.Bool
}

// New builds an engine. Without a backend option it keeps jobs in memory.
// It fails when an option is invalid or the backend cannot be opened.
func New(opts ...Option) (*Engine, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		if o != nil {
			o(cfg)
		}
	}
	if len(cfg.errs) > 0 {
		return nil, fmt.Errorf("engine: %w", errors.Join(cfg.errs...))
	}
	e := &Engine{
		cfg:       cfg,
		clock:     cfg.clock,
		log:       cfg.logger,
		schedWake: make(chan struct{}, 1),
		schedules: periodicTable{jobs: make(map[string]*periodicJob), changed: make(chan struct{}, 1)},
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	switch {
	case cfg.backend != nil:
		e.backend = cfg.backend
	case cfg.openBackend != nil:
		b, err := cfg.openBackend(cfg)
		if err != nil {
			return nil, fmt.Errorf("engine: open backend: %w", err)
		}
		e.backend, e.ownsBackend = b, true
	default:
		e.backend, e.ownsBackend = memory.New(memory.Options{}), true
	}
	host, _ := os.Hostname()
	e.workerName = cfg.workerName
	if e.workerName == "" {
		e.workerName = fmt.Sprintf("%s:%d", host, os.Getpid())
	}
	e.workerID = jobid.New(time.Now())
	if cfg.batchWindow < 0 { // not given: the backend's, if it has one
		cfg.batchWindow = 0
		if b, ok := e.backend.(backend.Batcher); ok {
			cfg.batchWindow = min(max(b.BatchWindow(), 0), maxBatchWindow)
		}
	}
	e.hub = newHub(e)
	if err := e.applyLimits(); err != nil {
		e.Close()
		return nil, fmt.Errorf("engine: %w", err)
	}
	for _, l := range cfg.listeners {
		if _, err := e.hub.listen(l); err != nil {
			e.Close()
			return nil, fmt.Errorf("engine: start listener: %w", err)
		}
	}
	return e, nil
}

// Backend returns the backend the engine uses, for tools that need calls
// the engine does not wrap.
func (e *Engine) Backend() backend.Backend { return e.backend }

// Close stops Run if it is going (as a cancelled context would), stops
// event delivery after the events already read, and closes the backend if
// the engine opened it (a bbolt file, a Redis client made from the
// environment). Close is safe to call more than once.
func (e *Engine) Close() error {
	var err error
	e.closeOnce.Do(func() {
		e.closed.Store(true)
		if stop := e.stopRun.Load(); stop != nil {
			(*stop)()
			<-e.runDone
		}
		e.hub.close()
		if e.ownsBackend {
			err = e.backend.Close()
		}
	})
	return err
}

// Enqueue stores a job of type typ with payload (encoded to JSON, or kept as
// is when it is []byte or json.RawMessage) and returns its ID. A duplicate
// UniqueKey returns the existing job's ID with an error wrapping
// ErrDuplicateJob.
func (e *Engine) Enqueue(ctx context.Context, typ string, payload any, opts ...EnqueueOption) (string, error) {
	now := e.clock.Now()
	var nj backend.NewJob
	if err := e.fillJob(&nj, now, e.ids.New(now), typ, e.handler(typ), payload, opts); err != nil {
		return "", fmt.Errorf("enqueue %q: %w", typ, err)
	}
	res, err := e.backend.Enqueue(ctx, now, []backend.NewJob{nj})
	if err != nil {
		return "", fmt.Errorf("enqueue %q: %w", typ, err)
	}
	r := res[0]
	e.afterEnqueue(now, nj)
	if r.Err != nil {
		return r.ID, fmt.Errorf("enqueue %q: %w", typ, r.Err)
	}
	return r.ID, nil
}

// JobSpec is one job of an EnqueueMany batch.
type JobSpec struct {
	Type    string
	Payload any
	Options []EnqueueOption
}

// EnqueueResult is the outcome of one job of an EnqueueMany batch: its ID,
// or the ID of the job holding its unique key with Err wrapping
// ErrDuplicateJob.
type EnqueueResult struct {
	ID  string
	Err error
}

// EnqueueMany stores many jobs in one call to the backend, which costs far
// less than one Enqueue each. An invalid spec refuses the whole batch and
// stores nothing; duplicates and unknown dependencies are reported per job.
func (e *Engine) EnqueueMany(ctx context.Context, specs []JobSpec) ([]EnqueueResult, error) {
	now := e.clock.Now()
	buf, _ := e.jobBufs.Get().(*[]backend.NewJob)
	if buf == nil {
		buf = new([]backend.NewJob)
	}
	jobs := slices.Grow((*buf)[:0], len(specs))[:len(specs)]
	defer func() {
		// The backend copied what it keeps (see backend.Backend.Enqueue).
		if cap(jobs) <= maxPooledBatch {
			clear(jobs)
			*buf = jobs[:0]
			e.jobBufs.Put(buf)
		}
	}()
	ids := e.ids.NewBatch(now, len(specs))
	var typ string
	var h *handlerEntry
	for i, s := range specs {
		if i == 0 || s.Type != typ { // batches are mostly of one type
			typ, h = s.Type, e.handler(s.Type)
		}
		id := ids[jobid.Size*i : jobid.Size*(i+1)]
		if err := e.fillJob(&jobs[i], now, id, typ, h, s.Payload, s.Options); err != nil {
			return nil, fmt.Errorf("enqueue batch: job %d (%q): %w", i, s.Type, err)
		}
	}
	res, err := e.backend.Enqueue(ctx, now, jobs)
	if err != nil {
		return nil, fmt.Errorf("enqueue batch of %d: %w", len(jobs), err)
	}
	out := make([]EnqueueResult, len(res))
	for i, r := range res {
		out[i] = EnqueueResult{ID: r.ID, Err: r.Err}
		if r.Err != nil {
			out[i].Err = fmt.Errorf("enqueue %q: %w", jobs[i].Type, r.Err)
		}
	}
	for i := range jobs {
		e.afterEnqueue(now, jobs[i])
	}
	return out, nil
}

// maxPooledBatch is the largest batch whose buffer EnqueueMany keeps for
// the next call, so that one huge batch does not stay in memory.
const maxPooledBatch = 4096

// afterEnqueue wakes this engine's scheduler when a job was scheduled for
// later, so that it is promoted on time without polling.
func (e *Engine) afterEnqueue(now time.Time, nj backend.NewJob) {
	if nj.RunAt.After(now) {
		e.wakeScheduler()
	}
}

func (e *Engine) wakeScheduler() {
	select {
	case e.schedWake <- struct{}{}:
	default:
	}
}

// applyOptions applies the handler's defaults, then the caller's options, to
// a copy of c. Options take a pointer, so the copy lives on the heap; kept
// apart, it costs nothing to jobs enqueued without options.
func applyOptions(c jobConfig, h *handlerEntry, opts []EnqueueOption) jobConfig {
	p := &c
	if h != nil {
		for _, o := range h.defaults {
			o.applyEnqueue(p)
		}
	}
	for _, o := range opts {
		if o != nil {
			o.applyEnqueue(p)
		}
	}
	return *p
}

func encodePayload(payload any) ([]byte, error) {
	switch p := payload.(type) {
	case nil:
		return nil, nil
	case []byte:
		return p, nil
	case json.RawMessage:
		return p, nil
	}
	b, err := json.Marshal(payload)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidPayload, err)
	}
	return b, nil
}

// fillJob validates a job and fills nj, a zero NewJob, with it and its
// defaults: the engine's, then those of h (the type's handler, nil if
// none), then the caller's options. It fills in place: a NewJob is ~250
// bytes, which a return by value copied once more per job.
func (e *Engine) fillJob(nj *backend.NewJob, now time.Time, id, typ string, h *handlerEntry, payload any, opts []EnqueueOption) error {
	if typ == "" {
		return ErrEmptyType
	}
	b, err := encodePayload(payload)
	if err != nil {
		return err
	}
	if len(b) > e.cfg.maxPayload {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrPayloadTooLarge, len(b), e.cfg.maxPayload)
	}
	c := jobConfig{
		queue:      DefaultQueue,
		timeout:    DefaultTimeout,
		resultTTL:  DefaultResultTTL,
		failureTTL: DefaultFailureTTL,
		maxRetries: e.cfg.retry.MaxRetries,
	}
	if (h != nil && len(h.defaults) > 0) || len(opts) > 0 {
		c = applyOptions(c, h, opts)
	}
	if len(c.errs) > 0 {
		return errors.Join(c.errs...)
	}
	if c.uniqueFor > 0 && c.uniqueKey == "" {
		return invalidOption("UniqueFor without UniqueKey")
	}
	*nj = backend.NewJob{
		ID:         id,
		Type:       typ,
		Queue:      c.queue,
		Payload:    b,
		Meta:       c.meta,
		Priority:   c.priority,
		RunAt:      c.runAt,
		MaxRetries: c.maxRetries,
		MaxStalls:  e.cfg.maxStalls,
		Timeout:    c.timeout,
		ResultTTL:  c.resultTTL,
		FailureTTL: c.failureTTL,
		UniqueKey:  c.uniqueKey,
		LimitKey:   c.limitKey,
	}
	if len(c.dependsOn) > 0 {
		nj.DependsOn = slices.Compact(slices.Sorted(slices.Values(c.dependsOn)))
	}
	if c.delay > 0 {
		nj.RunAt = now.Add(c.delay)
	}
	if c.uniqueFor > 0 {
		nj.UniqueUntil = now.Add(c.uniqueFor)
	}
	return nil
}

// Status returns what is known of job id now, or ErrJobNotFound.
func (e *Engine) Status(ctx context.Context, id string) (*JobInfo, error) {
	if id == "" {
		return nil, fmt.Errorf("status of job %q: %w", id, ErrJobNotFound)
	}
	j, err := e.backend.Job(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("status of job %s: %w", id, err)
	}
	return newJobInfo(j), nil
}

// Wait blocks until job id reaches a terminal state (completed, failed or
// canceled) and returns it, or returns ctx's error. It hears the job's end
// from the event log, so it works for jobs run by other processes too.
func (e *Engine) Wait(ctx context.Context, id string) (*JobInfo, error) {
	done, unwatch, err := e.hub.watch(id)
	if err != nil {
		return nil, fmt.Errorf("wait for job %s: %w", id, err)
	}
	defer func() { unwatch() }() // the watch in force when Wait returns
	// A check after watching cannot miss an end: one that came before the
	// watch is seen here, one after it closes done.
	recheck := time.NewTicker(5 * time.Second)
	defer recheck.Stop()
	for {
		info, err := e.Status(ctx, id)
		if err != nil {
			return nil, err
		}
		if info.State.Terminal() {
			return info, nil
		}
		select {
		case <-ctx.Done():
			return info, fmt.Errorf("wait for job %s: %w", id, context.Cause(ctx))
		case <-done:
			done, unwatch, err = e.rewatch(id, unwatch)
			if err != nil {
				return nil, fmt.Errorf("wait for job %s: %w", id, err)
			}
		case <-recheck.C:
			// The event log is capped; a reader that fell behind may have
			// missed the end, so look again now and then.
		}
	}
}

// rewatch watches id anew, then drops the old watch, so that the event
// reader keeps going in between.
func (e *Engine) rewatch(id string, unwatch func()) (<-chan struct{}, func(), error) {
	done, next, err := e.hub.watch(id)
	unwatch()
	return done, next, err
}

// Result waits for job id to end and decodes its result into T. A job that
// failed or was canceled gives a *JobError wrapping ErrJobFailed or
// ErrJobCanceled.
func Result[T any](ctx context.Context, e *Engine, id string) (T, error) {
	var out T
	info, err := e.Wait(ctx, id)
	if err != nil {
		return out, err
	}
	if info.State != StateCompleted {
		return out, &JobError{ID: id, State: info.State, Message: info.Error}
	}
	if len(info.Result) == 0 {
		return out, nil
	}
	if err := json.Unmarshal(info.Result, &out); err != nil {
		return out, fmt.Errorf("decode result of job %s into %T: %w", id, out, err)
	}
	return out, nil
}

// Cancel stops job id. A job that has not started never runs; an active
// job's context is cancelled (at once in this process, within moments in
// another through the event log, at the latest at its next heartbeat) and it
// ends canceled without a retry. Canceling a completed or failed job is an
// error wrapping ErrInvalidState; canceling a canceled job is not.
func (e *Engine) Cancel(ctx context.Context, id string) error {
	state, err := e.backend.Cancel(ctx, e.clock.Now(), id, "canceled by request")
	if err != nil {
		return fmt.Errorf("cancel job %s: %w", id, err)
	}
	if state == StateActive {
		e.cancelLocal(id)
	}
	return nil
}

// Requeue puts a failed or canceled job back in its queue to run again from
// a clean slate (failures, stalls and error reset).
func (e *Engine) Requeue(ctx context.Context, id string) error {
	if err := e.backend.Requeue(ctx, e.clock.Now(), id); err != nil {
		return fmt.Errorf("requeue job %s: %w", id, err)
	}
	return nil
}

// Pause stops every engine that shares the backend from starting jobs of
// queue until Resume. Running jobs finish; new jobs are still accepted.
func (e *Engine) Pause(ctx context.Context, queue string) error {
	if queue == "" {
		return fmt.Errorf("pause: %w", invalidOption("empty queue name"))
	}
	if err := e.backend.Pause(ctx, e.clock.Now(), queue); err != nil {
		return fmt.Errorf("pause queue %s: %w", queue, err)
	}
	return nil
}

// Resume lets the engines start jobs of a paused queue again.
func (e *Engine) Resume(ctx context.Context, queue string) error {
	if queue == "" {
		return fmt.Errorf("resume: %w", invalidOption("empty queue name"))
	}
	if err := e.backend.Resume(ctx, e.clock.Now(), queue); err != nil {
		return fmt.Errorf("resume queue %s: %w", queue, err)
	}
	return nil
}

// JobFilter selects jobs for Jobs. Empty fields match every job.
type JobFilter struct {
	Queue string
	State State
	Type  string
	// Cursor is the Next of the previous page; empty for the first.
	Cursor string
	// Limit is the page size. Defaults to 100.
	Limit int
}

// JobPage is one page of a listing, oldest job first.
type JobPage struct {
	Jobs []*JobInfo `json:"jobs"`
	// Next is the cursor of the following page; empty on the last page.
	Next string `json:"next,omitempty"`
}

// Jobs lists jobs that match f, a page at a time, oldest first.
func (e *Engine) Jobs(ctx context.Context, f JobFilter) (*JobPage, error) {
	if f.State != "" && !f.State.Valid() {
		return nil, fmt.Errorf("list jobs: %w", invalidOption("unknown state %q", f.State))
	}
	if f.Limit < 0 {
		return nil, fmt.Errorf("list jobs: %w", invalidOption("negative limit %d", f.Limit))
	}
	p, err := e.backend.List(ctx, backend.ListFilter{Queue: f.Queue, State: f.State, Type: f.Type, Cursor: f.Cursor, Limit: f.Limit})
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	page := &JobPage{Jobs: make([]*JobInfo, len(p.Jobs)), Next: p.Next}
	for i, j := range p.Jobs {
		page.Jobs[i] = newJobInfo(j)
	}
	return page, nil
}

// WorkerInfo describes one running engine, in this process or another.
type WorkerInfo struct {
	ID            string    `json:"id"`
	Name          string    `json:"name"`
	Host          string    `json:"host"`
	PID           int       `json:"pid"`
	Queues        []string  `json:"queues"`
	Concurrency   int       `json:"concurrency"`
	StartedAt     time.Time `json:"started_at"`
	LastHeartbeat time.Time `json:"last_heartbeat"`
}

// Workers lists the engines whose Run is going on this backend now; one
// whose process died drops out once its heartbeat expires (one lease).
func (e *Engine) Workers(ctx context.Context) ([]WorkerInfo, error) {
	ws, err := e.backend.Workers(ctx, e.clock.Now())
	if err != nil {
		return nil, fmt.Errorf("list workers: %w", err)
	}
	out := make([]WorkerInfo, len(ws))
	for i, w := range ws {
		out[i] = WorkerInfo{ID: w.ID, Name: w.Name, Host: w.Host, PID: w.PID, Queues: w.Queues,
			Concurrency: w.Concurrency, StartedAt: w.StartedAt, LastHeartbeat: w.LastHeartbeat}
	}
	return out, nil
}

// QueueStats counts one queue's jobs. It encodes to JSON with the keys the
// original Python service returned (queue_name, job_count,
// started_job_registry_count, finished_job_registry_count,
// failed_job_registry_count, worker_count, timestamp) and more beside them.
type QueueStats struct {
	Queue     string    `json:"queue_name"`
	Queued    int       `json:"job_count"`
	Active    int       `json:"started_job_registry_count"`
	Completed int       `json:"finished_job_registry_count"`
	Failed    int       `json:"failed_job_registry_count"`
	Workers   int       `json:"worker_count"`
	Timestamp time.Time `json:"timestamp"`
	Scheduled int       `json:"scheduled_job_count"`
	Deferred  int       `json:"deferred_job_count"`
	Retrying  int       `json:"retrying_job_count"`
	Canceled  int       `json:"canceled_job_count"`
	// Processed and FailedTotal count attempts since the queue was first
	// used: those that completed, and those that failed (retried or not).
	Processed   int64 `json:"processed_total"`
	FailedTotal int64 `json:"failed_total"`
	Paused      bool  `json:"paused"`
}

// Stats counts the jobs of every queue by state, with the number of live
// engines that work each queue. Queues this engine works appear even when
// empty.
func (e *Engine) Stats(ctx context.Context) ([]QueueStats, error) {
	now := e.clock.Now()
	qs, err := e.backend.Stats(ctx)
	if err != nil {
		return nil, fmt.Errorf("stats: %w", err)
	}
	ws, err := e.backend.Workers(ctx, now)
	if err != nil {
		return nil, fmt.Errorf("stats: %w", err)
	}
	// Every queue the backend knows, this engine works, or a worker works,
	// once each and sorted; out is built whole before pointers into it are
	// taken.
	names := make([]string, 0, len(qs)+len(e.cfg.queues))
	for _, q := range qs {
		names = append(names, q.Queue)
	}
	names = append(names, e.cfg.queues...)
	for _, w := range ws {
		names = append(names, w.Queues...)
	}
	slices.Sort(names)
	names = slices.Compact(names)
	out := make([]QueueStats, len(names))
	byName := make(map[string]*QueueStats, len(names))
	for i, n := range names {
		out[i] = QueueStats{Queue: n, Timestamp: now.UTC()}
		byName[n] = &out[i]
	}
	for _, q := range qs {
		s := byName[q.Queue]
		s.Queued = q.Counts[StateQueued]
		s.Active = q.Counts[StateActive]
		s.Completed = q.Counts[StateCompleted]
		s.Failed = q.Counts[StateFailed]
		s.Scheduled = q.Counts[StateScheduled]
		s.Deferred = q.Counts[StateDeferred]
		s.Retrying = q.Counts[StateRetrying]
		s.Canceled = q.Counts[StateCanceled]
		s.Processed, s.FailedTotal, s.Paused = q.Processed, q.Failed, q.Paused
	}
	for _, w := range ws {
		for _, q := range slices.Compact(slices.Sorted(slices.Values(w.Queues))) {
			byName[q].Workers++
		}
	}
	return out, nil
}
