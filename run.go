package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jobrelay/engine/backend"
	"golang.org/x/sync/errgroup"
)

// Causes of a job context's end, kept on the run (see run.cancel).
var (
	errCanceledByUser = errors.New("job canceled by request")
	errLeaseLost      = fmt.Errorf("job lease lost: %w", ErrLeaseLost)
	errShutdown       = errors.New("engine shutting down")
)

// timeoutError is the cause of a job context that reached its deadline.
type timeoutError struct{ timeout time.Duration }

func (e *timeoutError) Error() string {
	return fmt.Sprintf("job exceeded its timeout of %s", e.timeout)
}

// Is lets errors.Is(err, context.DeadlineExceeded) hold for a timeout.
func (e *timeoutError) Is(target error) bool { return target == context.DeadlineExceeded }

// Who ended a run: the worker when the handler returned, or the watchdog
// when the job's context ended first (timeout, cancel, shutdown, lost
// lease). Only the first to claim a run acknowledges it.
const (
	runOpen int32 = iota
	runClaimedByWorker
	runClaimedByWatchdog
)

// run is one attempt of one job in this process. It holds the handler's
// context and Job view by value, so that an attempt costs no allocation of
// its own (runs are carved from a chunk, see pool.start), and copies what
// it needs of its lease, which the dispatcher hands back to the backend
// for reuse (see backend.LeaseRequest.Reuse). A handler may keep its Job
// and context after it returned, so a run is never reused; every byte of
// it is allocated once per job, hence the compact fields.
type run struct {
	engine *Engine
	pool   *pool // nil for runs of Drain, which acknowledge in place
	lease  backend.LeaseRef
	ctx    runContext
	view   Job // what the handler sees
	// The job's timeout ends the run: through the pool's deadline heap
	// (heapIndex is its place there, -1 outside it), or for a run of Drain
	// through a timer that Drain keeps.
	timeout   time.Duration
	cause     atomic.Pointer[error] // why the run's context ended
	result    []byte
	state     atomic.Int32
	heapIndex int32
	slot      int32 // its place in the engine's runTable, -1 outside it
	failures  int32 // the job's failed attempts before this one
}

// newRun prepares one attempt that starts at now: a context whose deadline
// is the job's timeout, ended then by the pool's deadlines or, without a
// pool, by a timer that the caller starts (see Drain).
func (e *Engine) newRun(base context.Context, l *backend.Lease, p *pool, now time.Time) *run {
	r := new(run)
	e.initRun(r, base, l, p, now)
	return r
}

// initRun fills the zero run r as newRun describes.
func (e *Engine) initRun(r *run, base context.Context, l *backend.Lease, p *pool, now time.Time) {
	j := l.Job
	timeout := j.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	r.engine, r.pool, r.lease, r.failures, r.timeout = e, p, l.Ref(), int32(j.Failures), timeout
	r.heapIndex, r.slot = -1, -1
	r.ctx.parent = base
	r.ctx.deadline = now.Add(timeout)
	r.view = Job{
		ID: j.ID, Type: j.Type, Queue: j.Queue, Attempt: j.Attempt,
		Payload: j.Payload, Meta: j.Meta, Priority: j.Priority,
		MaxRetries: j.MaxRetries, CreatedAt: j.CreatedAt, StartedAt: j.StartedAt, run: r,
	}
}

// leaseRef names the run's lease. It is a copy of the lease's own, not
// rebuilt from the Job view, which a handler could change.
func (r *run) leaseRef() backend.LeaseRef { return r.lease }

// began is when the run started.
func (r *run) began() time.Time { return r.ctx.deadline.Add(-r.timeout) }

// timedOut ends the run at its job's timeout.
func (r *run) timedOut() { r.cancel(&timeoutError{timeout: r.timeout}) }

// cancel ends the run's context for the given reason (the first reason
// wins) and, if the handler has not returned yet, lets the watchdog record
// the outcome now rather than whenever the handler returns. A run of Drain
// has no watchdog: Drain waits for its handler in any case, and records
// the outcome itself before it returns.
func (r *run) cancel(cause error) {
	r.cause.CompareAndSwap(nil, &cause)
	end := endedCanceled
	if errors.Is(cause, context.DeadlineExceeded) {
		end = endedDeadline
	}
	if r.ctx.cancel(end) && r.pool != nil && r.state.Load() == runOpen {
		go r.engine.watchdog(r)
	}
}

// release stops the run's timeout and ends its context quietly, once the
// outcome is claimed, so that contexts a handler derived are released.
func (r *run) release() {
	r.stopTimer()
	r.ctx.cancel(endedCanceled)
}

// stopTimer takes the run out of the pool's deadlines. A run of Drain has
// no pool: Drain stops its timer once the handler returns, and a timer that
// fires after the outcome was claimed ends nothing.
func (r *run) stopTimer() {
	if r.pool != nil {
		r.pool.deadlines.remove(r)
	}
}

// causeErr says why the run's context ended, or nil while it runs.
func (r *run) causeErr() error {
	if p := r.cause.Load(); p != nil {
		return *p
	}
	return r.ctx.Err()
}

// Run works the engine's queues until ctx is cancelled: it leases jobs,
// runs their handlers, keeps their leases alive, promotes due jobs, reaps
// expired leases and sweeps expired jobs. On cancel it stops taking work,
// waits up to the shutdown timeout for running jobs, hands the rest back to
// their queue at once, and returns nil.
func (e *Engine) Run(ctx context.Context) error {
	if e.closed.Load() {
		return ErrClosed
	}
	if !e.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer e.running.Store(false)
	cancels, err := e.backend.CancelCursor(ctx)
	if err != nil {
		return fmt.Errorf("run: read cancel cursor: %w", err)
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	e.runDone = make(chan struct{})
	defer close(e.runDone)
	e.stopRun.Store(&stop)
	defer e.stopRun.Store(nil)

	host, _ := os.Hostname()
	started := e.clock.Now()
	info := backend.WorkerInfo{ID: e.workerID, Name: e.workerName, Host: host, PID: os.Getpid(),
		Queues: e.cfg.queues, Concurrency: e.cfg.concurrency, StartedAt: started}
	if err := e.backend.RegisterWorker(ctx, started, info, e.cfg.lease); err != nil {
		return fmt.Errorf("run: register worker: %w", err)
	}
	e.log.Info("jobrelay: running", "worker", e.workerName, "queues", e.cfg.queues, "concurrency", e.cfg.concurrency)

	p := newPool(e)
	loops, loopCtx := errgroup.WithContext(ctx)
	loops.Go(func() error { p.dispatch(loopCtx); return nil })
	loops.Go(func() error { e.schedule(loopCtx); return nil })
	loops.Go(func() error { e.runPeriodic(loopCtx); return nil })
	// Heartbeats and acks go on through the shutdown wait, until the last
	// run is acknowledged.
	hbCtx, stopHeartbeats := context.WithCancel(context.WithoutCancel(ctx))
	var tail sync.WaitGroup
	tail.Go(func() { e.heartbeat(hbCtx, info) })
	tail.Go(func() { e.watchCancels(hbCtx, cancels) })
	tail.Go(p.ack)
	tail.Go(func() { p.deadlines.run(hbCtx) })

	<-ctx.Done()
	_ = loops.Wait()
	p.shutdown()
	stopHeartbeats()
	tail.Wait()

	rmCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.backend.RemoveWorker(rmCtx, e.workerID); err != nil {
		e.log.Warn("jobrelay: remove worker entry", "err", err)
	}
	e.log.Info("jobrelay: stopped", "worker", e.workerName)
	return nil
}

// pool is the set of worker goroutines of one Run, fed by the dispatcher
// with started runs through its run queue and draining into the acker.
type pool struct {
	e *Engine
	// idle counts the workers free for a job that the dispatcher has not
	// leased for yet; a worker that makes it 1 signals idleWake, which the
	// dispatcher waits on when it found none. A counter, not a token per
	// worker in a channel: a busy pool then frees a worker with one atomic
	// add, and the dispatcher takes every free one in one swap.
	idle     atomic.Int64
	idleWake chan struct{}
	size     int       // workers in all
	queue    *runQueue // started runs on their way to a worker
	acks     *ackQueue
	workers  sync.WaitGroup
	// deadlines ends runs at their job's timeout.
	deadlines deadlines
	// lastBegan is when the run that last freed a worker began, as time
	// since epoch, for shortRuns.
	epoch     time.Time
	lastBegan atomic.Int64
	// stopping is set at shutdown: leased jobs not yet started go straight
	// back to their queue.
	stopping atomic.Bool
	// fresh are runs not yet used, the rest of the dispatcher's last
	// chunk (see start).
	fresh []run
}

// runChunk is how many runs the dispatcher allocates at a time: one
// allocation for many jobs, where one per run, or per Lease call, costs
// the malloc and the slack of its size class each time. A handler that
// keeps its Job keeps the whole chunk (about 12 KiB) in memory.
const runChunk = 32

func newPool(e *Engine) *pool {
	n := e.cfg.concurrency
	p := &pool{
		e:        e,
		idleWake: make(chan struct{}, 1),
		size:     n,
		queue:    newRunQueue(n),
		acks:     newAckQueue(4 * n),
		epoch:    time.Now(),
	}
	p.deadlines.wake = make(chan struct{}, 1)
	p.idle.Store(int64(n))
	for range n {
		p.workers.Add(1)
		go p.worker()
	}
	return p
}

// idleBlock is how long one blocking Lease call waits for work before the
// dispatcher calls again; a wake-up comes sooner whenever a job is ready.
const idleBlock = 5 * time.Second

// shortRun is the longest run that counts as short. Right after a short
// run ended, the dispatcher expects the pool's other runs to end soon too,
// and yields once to let them (see dispatch).
const shortRun = 5 * time.Millisecond

// dispatch leases as many jobs as there are idle workers and hands them
// over, blocking in the backend while there is no work.
func (p *pool) dispatch(ctx context.Context) {
	e := p.e
	// A lease taken at the end of a wait is stamped with the time the wait
	// began; a wait of at most a quarter lease keeps that error small.
	block := min(idleBlock, e.cfg.lease/4)
	failing := false
	backoff := 50 * time.Millisecond
	var started []*run
	var spare []*backend.Lease // leases done with, for the backend to reuse
	var gather *time.Timer
	var lastLease time.Time
	lastShort := false
	full := false // the last call took a job for every free worker
	for {
		free := int(p.idle.Swap(0))
		if free == 0 {
			select {
			case <-ctx.Done():
				return
			case <-p.idleWake:
			}
			continue
		}
		now := time.Now()
		// Jobs wait, most workers are busy, and a short run just freed
		// one: the other runs are likely about to end as well. Without
		// this, each freed worker wakes the dispatcher for a Lease call of
		// one job, and a busy pool runs in lockstep with it. One yield lets
		// the goroutines ready to run go first, so that the workers they
		// free join this call. No timer is involved: an idle engine, or a
		// pool of long jobs, never waits here, and while handlers keep
		// every CPU busy the yield waits its turn as a new job would.
		if full && free < p.size/2 && p.shortRuns(now) {
			runtime.Gosched()
			free += int(p.idle.Swap(0))
			now = time.Now()
		}
		// The last call emptied the queue while jobs still came: let more
		// arrive, so that the next call carries more of them.
		if lastShort && free < p.size {
			if wait := e.cfg.batchWindow - now.Sub(lastLease); wait > 0 {
				gather = resetTimer(gather, wait)
				select {
				case <-ctx.Done():
				case <-gather.C:
				}
				free += int(p.idle.Swap(0))
				now = time.Now()
			}
		}
		if ctx.Err() != nil {
			return
		}
		lastLease = now
		leases, err := e.backend.Lease(ctx, backend.LeaseRequest{
			Queues: e.cfg.queues, Worker: e.workerName, Max: free,
			Now: e.clock.Now(), TTL: e.cfg.lease, Block: block, Reuse: spare,
		})
		// The backend may have filled the first of spare for this call.
		spare = slices.Delete(spare, 0, min(len(leases), len(spare)))
		// Several jobs but not all that were asked for: jobs arrive faster
		// than one a call. A lone job is no such sign, so that a client
		// that waits for each job before it enqueues the next never waits
		// for the window.
		lastShort = e.cfg.batchWindow > 0 && len(leases) > 1 && len(leases) < free
		full = len(leases) == free
		if unused := free - len(leases); unused > 0 {
			p.idle.Add(int64(unused))
		}
		if err != nil && ctx.Err() == nil {
			if !failing {
				e.log.Warn("jobrelay: lease failed; backing off", "err", err)
				failing = true
			}
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 5*time.Second)
		} else if err == nil && failing {
			e.log.Info("jobrelay: leasing again")
			failing, backoff = false, 50*time.Millisecond
		}
		if len(leases) == 0 {
			continue
		}
		// A lease taken as the context ended still runs: shutdown hands it
		// back after the grace period if it has not finished.
		started = p.start(leases, started[:0])
		p.queue.push(started)
		clear(started)
		// The runs copied what they need: the leases go back for reuse.
		if room := p.size - len(spare); room > 0 {
			spare = append(spare, leases[:min(room, len(leases))]...)
		}
	}
}

// start registers leased jobs as running here, under one lock for the
// batch, and appends their runs to runs.
func (p *pool) start(leases []*backend.Lease, runs []*run) []*run {
	e := p.e
	now := time.Now()
	for _, l := range leases {
		if len(p.fresh) == 0 {
			// Grow rounds the chunk up to its allocation's size class,
			// so that no byte of it is left unused.
			p.fresh = slices.Grow([]run(nil), runChunk)
			p.fresh = p.fresh[:cap(p.fresh)]
		}
		r := &p.fresh[0]
		p.fresh = p.fresh[1:]
		e.initRun(r, context.Background(), l, p, now)
		runs = append(runs, r)
	}
	p.deadlines.add(runs)
	e.runs.add(runs...)
	return runs
}

// shortRuns reports whether the run that last freed a worker, seen at now,
// took less than shortRun.
func (p *pool) shortRuns(now time.Time) bool {
	return now.Sub(p.epoch)-time.Duration(p.lastBegan.Load()) < shortRun
}

// free gives a worker back to the dispatcher.
func (p *pool) free() {
	if p.idle.Add(1) == 1 {
		select {
		case p.idleWake <- struct{}{}:
		default: // a wake-up is pending already
		}
	}
}

// worker runs jobs until the pool closes. A worker whose handler overran
// its context leaves the pool's WaitGroup count to its replacement, so that
// shutdown never waits on a handler that ignores its context.
func (p *pool) worker() {
	for {
		r, ok := p.queue.take()
		if !ok {
			break
		}
		if p.stopping.Load() {
			r.state.Store(runClaimedByWorker)
			r.release()
			p.e.sendAck(r, backend.Ack{Lease: r.leaseRef(), Outcome: backend.OutcomeReleased})
			p.queue.search()
			continue
		}
		if !p.e.execute(r) {
			// The watchdog claimed the run and started a replacement.
			return
		}
		p.lastBegan.Store(int64(r.began().Sub(p.epoch)))
		// Counted before the slot is free, so that the dispatcher, which
		// leases only for free slots, knows this worker will look for the
		// run it leases (see runQueue).
		p.queue.search()
		p.free()
	}
	p.workers.Done()
}

// abandon replaces a worker whose handler still runs after the watchdog
// recorded its outcome: a new goroutine takes its place and its slot.
func (p *pool) abandon() {
	p.queue.search()
	go p.worker()
	p.free()
}

// shutdown waits for running jobs up to the shutdown timeout, then hands
// the rest back to their queue, and closes the pool.
func (p *pool) shutdown() {
	e := p.e
	p.stopping.Store(true)
	p.queue.close()
	done := make(chan struct{})
	go func() { p.workers.Wait(); close(done) }()
	timer := time.NewTimer(e.cfg.shutdownTimeout)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		for _, r := range e.runs.appendAll(nil) {
			r.cancel(errShutdown)
		}
		<-done
	}
	p.acks.close()
}

// ack sends acknowledgements to the backend in batches: whatever is waiting
// goes in one Finish call. With a batch window, it waits up to the window
// for the acks of the other runs in flight, so that they go together.
// Without one it calls at once rather than yield for them as the
// dispatcher does: acks queue up while a Finish call runs anyway, and a
// yield here cost more CPU than its larger batches saved.
func (p *pool) ack() {
	window := p.e.cfg.batchWindow
	var runs []*run
	var acks []backend.Ack
	var gather *time.Timer
	for {
		var open bool
		runs, acks, open = p.acks.take(runs[:0], acks[:0], nil)
		if len(runs) == 0 {
			return // closed
		}
		if open && window > 0 && p.awaited(runs) {
			gather = resetTimer(gather, window)
			for open && p.awaited(runs) {
				runs, acks, open = p.acks.take(runs, acks, gather.C)
			}
		}
		p.e.finish(runs, acks)
		clear(runs)
		clear(acks)
	}
}

// maxAckBatch is the most acks the acker waits to gather for one call.
const maxAckBatch = 256

// awaited reports whether batch has room and other runs of this engine are
// still going, whose acks it could carry too.
func (p *pool) awaited(batch []*run) bool {
	if len(batch) >= maxAckBatch {
		return false
	}
	return len(batch) < p.e.runs.len()
}

// resetTimer makes t fire after d, making it if it is nil. Since Go 1.23 a
// Reset timer never delivers a stale tick.
func resetTimer(t *time.Timer, d time.Duration) *time.Timer {
	if t == nil {
		return time.NewTimer(d)
	}
	t.Reset(d)
	return t
}

// finish acknowledges the runs of a batch, acks[i] for runs[i], retrying
// while the backend is unreachable so that no outcome is dropped; a lease
// that was lost meanwhile is reported and dropped.
func (e *Engine) finish(runs []*run, acks []backend.Ack) {
	backoff := 50 * time.Millisecond
	var errs []error
	for attempt := 0; ; attempt++ {
		var err error
		errs, err = e.backend.Finish(context.Background(), e.clock.Now(), acks)
		if err == nil {
			break
		}
		if errors.Is(err, backend.ErrClosed) || attempt == 100 {
			e.log.Error("jobrelay: acknowledge jobs failed; their leases will expire and they will run again", "jobs", len(acks), "err", err)
			errs = nil
			break
		}
		if attempt == 0 {
			e.log.Warn("jobrelay: acknowledge jobs failed; retrying", "jobs", len(acks), "err", err)
		}
		time.Sleep(backoff)
		backoff = min(backoff*2, 2*time.Second)
	}
	promote := false
	e.runs.remove(runs...)
	for i, r := range runs {
		if i < len(errs) && errs[i] != nil {
			e.log.Warn("jobrelay: job outcome dropped", "job_id", r.view.ID, "outcome", acks[i].Outcome, "err", errs[i])
		}
		if acks[i].Outcome == backend.OutcomeRetry || acks[i].Outcome == backend.OutcomeThrottled {
			promote = true
		}
	}
	if promote {
		e.wakeScheduler()
	}
}

// execute runs the handler of r in this goroutine and acknowledges the
// outcome, unless the watchdog claimed the run first; it reports whether
// this goroutine still owns its worker slot.
func (e *Engine) execute(r *run) bool {
	err := e.callHandler(r)
	if !r.state.CompareAndSwap(runOpen, runClaimedByWorker) {
		return r.pool == nil
	}
	r.release()
	ack, ok := e.decide(r, err)
	if ok {
		e.sendAck(r, ack)
	} else {
		e.forget(r)
	}
	return true
}

// watchdog ends a run whose context ended while its handler still runs: a
// handler that ignores its context still has its job recorded at the
// deadline, canceled at a cancel, handed back at shutdown.
func (e *Engine) watchdog(r *run) {
	if !r.state.CompareAndSwap(runOpen, runClaimedByWatchdog) {
		return
	}
	r.stopTimer()
	ack, ok := e.decide(r, r.causeErr())
	if ok {
		e.sendAck(r, ack)
	} else {
		e.forget(r)
	}
	e.log.Warn("jobrelay: handler still running after its context ended; its result will be ignored",
		"job_id", r.view.ID, "type", r.view.Type, "cause", r.causeErr())
	if r.pool != nil {
		r.pool.abandon()
	}
}

func (e *Engine) sendAck(r *run, ack backend.Ack) {
	if r.pool == nil {
		e.finish([]*run{r}, []backend.Ack{ack})
		return
	}
	r.pool.acks.put(r, ack)
}

func (e *Engine) forget(r *run) { e.runs.remove(r) }

// callHandler finds the job's handler and calls it, turning a panic into an
// error that carries the panic value and stack.
func (e *Engine) callHandler(r *run) (err error) {
	h := e.handler(r.view.Type)
	if h == nil {
		return fmt.Errorf("no handler registered for job type %q in worker %s", r.view.Type, e.workerName)
	}
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("handler of job type %q panicked: %v\n%s", r.view.Type, v, debug.Stack())
		}
	}()
	return h.handler.Handle(&r.ctx, &r.view)
}

// decide turns how an attempt ended into an acknowledgement; ok is false when
// nothing is to be acknowledged (the lease was lost).
func (e *Engine) decide(r *run, err error) (backend.Ack, bool) {
	ack := backend.Ack{Lease: r.leaseRef()}
	if err == nil && r.cause.Load() == nil {
		// The common case: nothing ended the run before its handler
		// returned nil, so none of the causes below apply.
		ack.Outcome = backend.OutcomeCompleted
		ack.Result = r.result
		return ack, true
	}
	cause := r.causeErr()
	switch {
	case errors.Is(cause, errLeaseLost):
		return ack, false
	case errors.Is(cause, errCanceledByUser):
		ack.Outcome = backend.OutcomeCanceled
		ack.Error = "canceled by request"
		return ack, true
	case errors.Is(cause, errShutdown) && err != nil:
		ack.Outcome = backend.OutcomeReleased
		return ack, true
	case err == nil:
		ack.Outcome = backend.OutcomeCompleted
		ack.Result = r.result
		return ack, true
	}
	if t, ok := e.throttle(r, err); ok {
		return t, true
	}
	if timeout, ok := errors.AsType[*timeoutError](cause); ok {
		err = timeout
	}
	ack.Error = err.Error()
	failures := int(r.failures)
	var skip *skipRetryError
	if errors.As(err, &skip) || failures >= r.view.MaxRetries {
		ack.Outcome = backend.OutcomeFailed
		return ack, true
	}
	delay := e.cfg.retry.Delay(failures)
	var after *retryAfterError
	if errors.As(err, &after) {
		delay = after.delay
	}
	ack.Outcome = backend.OutcomeRetry
	ack.RetryAt = e.clock.Now().Add(delay)
	return ack, true
}

// cancelLocal cancels the context of job id if it runs in this process.
func (e *Engine) cancelLocal(id string) {
	for _, r := range e.runs.find(id, nil) {
		r.cancel(errCanceledByUser)
	}
}

// heartbeat renews the leases of running jobs and this engine's worker
// entry every third of the lease.
func (e *Engine) heartbeat(ctx context.Context, info backend.WorkerInfo) {
	every := e.cfg.lease / 3
	for {
		select {
		case <-ctx.Done():
			return
		case <-e.clock.After(every):
		}
		now := e.clock.Now()
		if err := e.backend.RegisterWorker(ctx, now, info, e.cfg.lease); err != nil && ctx.Err() == nil {
			e.log.Warn("jobrelay: worker heartbeat failed", "err", err)
		}
		runs := e.runs.appendAll(nil)
		refs := make([]backend.LeaseRef, len(runs))
		for i, r := range runs {
			refs[i] = r.leaseRef()
		}
		if len(refs) == 0 {
			continue
		}
		errs, err := e.backend.Heartbeat(ctx, now, now.Add(e.cfg.lease), refs)
		if err != nil {
			if ctx.Err() == nil {
				e.log.Warn("jobrelay: lease heartbeat failed", "jobs", len(refs), "err", err)
			}
			continue
		}
		for i, err := range errs {
			switch {
			case errors.Is(err, backend.ErrCancelRequested):
				runs[i].cancel(errCanceledByUser)
			case errors.Is(err, backend.ErrLeaseLost):
				e.log.Warn("jobrelay: lease lost; stopping the job here", "job_id", refs[i].JobID)
				runs[i].cancel(errLeaseLost)
			}
		}
	}
}

// schedule promotes due jobs at the time they are due (or within the poll
// interval for jobs other processes scheduled), reaps expired leases and
// sweeps expired jobs.
func (e *Engine) schedule(ctx context.Context) {
	reapEvery := max(e.cfg.lease/2, 5*time.Millisecond)
	var nextReap, nextSweep time.Time
	for {
		now := e.clock.Now()
		wait := e.cfg.pollInterval
		_, next, err := e.backend.Promote(ctx, now)
		if err != nil && ctx.Err() == nil {
			e.log.Warn("jobrelay: promote due jobs failed", "err", err)
		}
		if !next.IsZero() {
			wait = min(wait, max(next.Sub(now), time.Millisecond))
		}
		if !now.Before(nextReap) {
			if n, err := e.backend.Reap(ctx, now); err != nil && ctx.Err() == nil {
				e.log.Warn("jobrelay: reap expired leases failed", "err", err)
			} else if n > 0 {
				e.log.Info("jobrelay: jobs stalled and went back to their queue", "jobs", n)
			}
			nextReap = now.Add(reapEvery)
		}
		wait = min(wait, max(nextReap.Sub(now), time.Millisecond))
		if !now.Before(nextSweep) {
			for {
				n, err := e.backend.Sweep(ctx, now, 1000)
				if err != nil && ctx.Err() == nil {
					e.log.Warn("jobrelay: sweep expired jobs failed", "err", err)
				}
				if n < 1000 || ctx.Err() != nil {
					break
				}
			}
			nextSweep = now.Add(e.cfg.sweepInterval)
		}
		select {
		case <-ctx.Done():
			return
		case <-e.schedWake:
		case <-e.clock.After(wait):
		}
	}
}

// Drain runs every job that is due now, one at a time in the caller's
// goroutine, until none is left, and returns how many it ran. It also
// reaps expired leases and sweeps expired jobs at the clock's time. It is for
// tests: enqueue, Drain, then assert, with no goroutines left behind. Jobs
// scheduled for later (a delay, a retry's backoff) run once the clock has
// reached their time (see WithClock and FakeClock). Drain works every queue
// the backend knows, this engine's queues first.
func (e *Engine) Drain(ctx context.Context) (int, error) {
	if e.closed.Load() {
		return 0, ErrClosed
	}
	ran := 0
	for {
		now := e.clock.Now()
		if _, _, err := e.backend.Promote(ctx, now); err != nil {
			return ran, fmt.Errorf("drain: %w", err)
		}
		if _, err := e.backend.Reap(ctx, now); err != nil {
			return ran, fmt.Errorf("drain: %w", err)
		}
		if _, err := e.backend.Sweep(ctx, now, 1000); err != nil {
			return ran, fmt.Errorf("drain: %w", err)
		}
		queues, err := e.drainQueues(ctx)
		if err != nil {
			return ran, err
		}
		leases, err := e.backend.Lease(ctx, backend.LeaseRequest{
			Queues: queues, Worker: e.workerName, Max: 1, Now: now, TTL: e.cfg.lease,
		})
		if err != nil {
			return ran, fmt.Errorf("drain: %w", err)
		}
		if len(leases) == 0 {
			return ran, nil
		}
		r := e.newRun(ctx, leases[0], nil, time.Now())
		e.runs.add(r)
		timer := time.AfterFunc(r.timeout, r.timedOut)
		stop := context.AfterFunc(ctx, func() { r.cancel(context.Cause(ctx)) })
		e.execute(r)
		stop()
		timer.Stop()
		ran++
	}
}

func (e *Engine) drainQueues(ctx context.Context) ([]string, error) {
	qs, err := e.backend.Stats(ctx)
	if err != nil {
		return nil, fmt.Errorf("drain: %w", err)
	}
	queues := slices.Clone(e.cfg.queues)
	for _, q := range qs {
		if !slices.Contains(queues, q.Queue) {
			queues = append(queues, q.Queue)
		}
	}
	return queues, nil
}
