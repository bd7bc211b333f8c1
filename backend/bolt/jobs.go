package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/bbolt"

	"github.com/jobrelay/engine/backend"
)

// maxKeyLen bounds job IDs, queue names and unique keys: they become bbolt
// keys, and one oversized key must be refused for its own job rather than
// fail the transaction it shares with others.
const maxKeyLen = 4096

// batchLimit bounds how many jobs one Promote, Reap or Sweep transaction
// moves, so that a backlog never makes one commit huge. A caller that gets
// a full batch calls again.
const batchLimit = 5000

// Enqueue stores a batch of new jobs in one transaction (so one fsync),
// each job checked and stored on its own: a duplicate or an unknown
// dependency refuses that job only.
func (b *Backend) Enqueue(ctx context.Context, now time.Time, jobs []backend.NewJob) ([]backend.EnqueueResult, error) {
	if err := b.check(ctx); err != nil {
		return nil, err
	}
	o, results := b.enqueueOp(ctx, now, jobs)
	err := b.submit(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("bolt: enqueue: %w", err)
	}
	return results, nil
}

// enqueueOp returns the op of an Enqueue call and the results it fills.
func (b *Backend) enqueueOp(ctx context.Context, now time.Time, jobs []backend.NewJob) (*op, []backend.EnqueueResult) {
	results := make([]backend.EnqueueResult, len(jobs))
	standalone := true
	for i := range jobs {
		if jobs[i].UniqueKey != "" || len(jobs[i].DependsOn) > 0 {
			standalone = false // it reads other jobs, which claims may hold
		}
	}
	return &op{ctx: ctx, done: make(chan error, 1), standalone: standalone, weight: len(jobs),
		fn: func(t *txn) error {
			for i := range jobs {
				res, err := t.enqueue(now, &jobs[i])
				if err != nil {
					return err
				}
				results[i] = res
			}
			return nil
		}}, results
}

func (t *txn) enqueue(now time.Time, nj *backend.NewJob) (backend.EnqueueResult, error) {
	res := backend.EnqueueResult{ID: nj.ID}
	switch {
	case nj.ID == "":
		res.Err = fmt.Errorf("bolt: enqueue: empty job id")
		return res, nil
	case len(nj.ID) > maxKeyLen || len(nj.Queue) > maxKeyLen || len(nj.UniqueKey) > maxKeyLen:
		res.Err = fmt.Errorf("bolt: enqueue %.64s: id, queue or unique key longer than %d bytes", nj.ID, maxKeyLen)
		return res, nil
	}
	if v := t.get(t.jobs, []byte(nj.ID)); v != nil {
		st, _, _, _ := peekHeader(v)
		if st == backend.StateQueued && t.b.claimPending(nj.ID) {
			st = backend.StateActive // leased; its claim is not written yet
		}
		res.State = st
		res.Err = fmt.Errorf("bolt: enqueue %s: id already in use: %w", nj.ID, backend.ErrDuplicateJob)
		return res, nil
	}
	if nj.UniqueKey != "" {
		if holder, st, held := t.uniqueHolder(nj.UniqueKey, now); held {
			return backend.EnqueueResult{ID: holder, State: st,
				Err: fmt.Errorf("bolt: enqueue: unique key %q is held by job %s: %w", nj.UniqueKey, holder, backend.ErrDuplicateJob)}, nil
		}
	}
	r := &record{}
	r.Job = backend.Job{
		ID:          nj.ID,
		Type:        nj.Type,
		Queue:       nj.Queue,
		Payload:     nj.Payload,
		Meta:        nj.Meta,
		Priority:    nj.Priority,
		MaxRetries:  nj.MaxRetries,
		MaxStalls:   nj.MaxStalls,
		Timeout:     nj.Timeout,
		ResultTTL:   nj.ResultTTL,
		FailureTTL:  nj.FailureTTL,
		UniqueKey:   nj.UniqueKey,
		UniqueUntil: nj.UniqueUntil,
		LimitKey:    nj.LimitKey,
		DependsOn:   nj.DependsOn,
		CreatedAt:   now,
		RunAt:       nj.RunAt,
	}
	var waiting []*record // dependencies still to complete
	var failedDep string
	var failedState backend.State
	for _, d := range nj.DependsOn {
		if d == nj.ID {
			continue
		}
		dr, err := t.load(d)
		if err != nil {
			// An unreadable dependency will never complete.
			if failedDep == "" {
				failedDep, failedState = d, backend.StateFailed
			}
			continue
		}
		if dr == nil {
			res.Err = fmt.Errorf("bolt: enqueue %s: dependency %s: %w", nj.ID, d, backend.ErrDependencyNotFound)
			return res, nil
		}
		switch dr.State {
		case backend.StateCompleted:
		case backend.StateFailed, backend.StateCanceled:
			if failedDep == "" {
				failedDep, failedState = d, dr.State
			}
		default:
			waiting = append(waiting, dr)
		}
	}
	ev := backend.EventQueued
	switch {
	case failedDep != "":
		finishTerminal(r, backend.StateCanceled, now)
		r.Error = dependencyError(failedDep, failedState)
		ev = backend.EventCanceled
	case len(waiting) > 0:
		r.State = backend.StateDeferred
		for _, dr := range waiting {
			if !dr.hasDependents {
				dr.hasDependents = true
				if err := t.save(dr); err != nil {
					return res, err
				}
			}
		}
	default:
		makeReady(r, now)
	}
	if err := t.index(r, false); err != nil {
		return res, err
	}
	t.count(r.Queue, "", r.State)
	if err := t.save(r); err != nil {
		return res, err
	}
	if r.UniqueKey != "" {
		if err := t.put(t.unique, []byte(r.UniqueKey), uniqueValue(r.UniqueUntil, "", r.ID)); err != nil {
			return res, err
		}
	}
	e := jobEvent(ev, r, now)
	e.Error = r.Error
	e.RunAt = r.RunAt
	t.event(e)
	res.State = r.State
	return res, nil
}

// uniqueHolder tells whether key is held at now, and by which job: while
// the holder is live, and until its UniqueUntil whatever its state (even
// after Sweep deleted it).
func (t *txn) uniqueHolder(key string, now time.Time) (id string, state backend.State, held bool) {
	v := t.unique.Get([]byte(key))
	if v == nil {
		return "", "", false
	}
	until, state, id := decodeUniqueValue(v)
	if r, err := t.load(id); err == nil && r != nil {
		state = r.State
		if !state.Terminal() {
			return id, state, true
		}
	}
	if state == "" {
		state = backend.StateCompleted
	}
	return id, state, until.After(now)
}

// activeLease loads the job that ref names and checks that ref still owns
// it. A corrupt record is failed on the spot; its lease is lost.
func (t *txn) activeLease(ref backend.LeaseRef, now time.Time) (*record, error) {
	r, err := t.load(ref.JobID)
	if err != nil {
		if err := t.quarantine(ref.JobID, err, now, "", ""); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("bolt: job %s: %w", ref.JobID, backend.ErrLeaseLost)
	}
	if r == nil || r.State != backend.StateActive || r.LeaseToken != ref.Token || ref.Token == "" {
		return nil, fmt.Errorf("bolt: job %s: %w", ref.JobID, backend.ErrLeaseLost)
	}
	return r, nil
}

// Heartbeat extends leases to until, reporting per lease whether it was
// lost or its job should stop.
func (b *Backend) Heartbeat(ctx context.Context, now, until time.Time, leases []backend.LeaseRef) ([]error, error) {
	if err := b.check(ctx); err != nil {
		return nil, err
	}
	errs := make([]error, len(leases))
	err := b.doEarly(ctx, func(t *txn) error {
		for i, ref := range leases {
			errs[i] = nil
			r, err := t.activeLease(ref, now)
			if err != nil {
				if !isLeaseErr(err) {
					return err
				}
				errs[i] = err
				continue
			}
			if err := t.move(r, func(r *record) { r.LeaseExpiresAt = until }); err != nil {
				return err
			}
			if r.CancelRequested {
				errs[i] = fmt.Errorf("bolt: heartbeat %s: %w", r.ID, backend.ErrCancelRequested)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("bolt: heartbeat: %w", err)
	}
	return errs, nil
}

// Finish ends attempts as the engine decided: completed, retrying, failed,
// canceled or released. A completion of a job whose record is still the
// one its lease wrote is decided at once, like a lease (see
// decideCompletions); the other acks wait for the commit loop to apply
// them (not for the commit).
func (b *Backend) Finish(ctx context.Context, now time.Time, acks []backend.Ack) ([]error, error) {
	if err := b.check(ctx); err != nil {
		return nil, err
	}
	errs := make([]error, len(acks))
	decided, err := b.decideCompletions(now, acks)
	if err != nil {
		return nil, fmt.Errorf("bolt: finish: %w", err)
	}
	rest := len(acks)
	for _, d := range decided {
		if d {
			rest--
		}
	}
	if rest == 0 {
		return errs, nil
	}
	err = b.doEarly(ctx, func(t *txn) error {
		for i := range acks {
			if decided[i] {
				continue
			}
			errs[i] = nil
			r, err := t.activeLease(acks[i].Lease, now)
			if err != nil {
				if !isLeaseErr(err) {
					return err
				}
				errs[i] = err
				continue
			}
			if errs[i], err = t.finish(r, &acks[i], now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("bolt: finish: %w", err)
	}
	return errs, nil
}

// completion is a completed ack decided outside the commit loop: the
// record as the lease wrote it, and what to write instead.
type completion struct {
	id        string
	token     string
	result    []byte
	now       time.Time
	queue     string
	pre, post []byte
	leaseKey  []byte
	expiryKey []byte
	event     backend.Event
	limited   bool // the job has a limit key: the completion frees its slot
}

// decideCompletions settles, without the commit loop, the completed acks
// of jobs whose record is still the one their lease wrote: Backend.leased
// holds those bytes until the loop changes the record (a heartbeat, a
// cancel request, a reap) or the job is finished. For such a job nothing
// can have happened since the lease, so the completion cannot fail; it is
// queued for the loop, which writes it first in its next transaction,
// after the claims, like a lease. The records are decoded and re-encoded
// here, in the caller's goroutine. Jobs with dependents, or whose cancel
// was requested, take the ordinary path. decided[i] tells which acks were
// settled (their error is nil).
func (b *Backend) decideCompletions(now time.Time, acks []backend.Ack) (decided []bool, err error) {
	decided = make([]bool, len(acks))
	preps := make([]*completion, len(acks))
	any := false
	for i := range acks {
		a := &acks[i]
		if a.Outcome != backend.OutcomeCompleted {
			continue
		}
		b.leasedMu.Lock()
		raw := b.leased[a.Lease.JobID]
		b.leasedMu.Unlock()
		if raw == nil {
			continue
		}
		r, err := decodeRecord(a.Lease.JobID, raw, nil)
		if err != nil || r.State != backend.StateActive || r.LeaseToken != a.Lease.Token || r.hasDependents || r.CancelRequested {
			continue
		}
		p := &completion{id: r.ID, token: a.Lease.Token, now: now, queue: r.Queue, pre: raw,
			leaseKey: timeKey(r.LeaseExpiresAt, r.ID), limited: r.LimitKey != ""}
		finishTerminal(r, backend.StateCompleted, now)
		r.Result = cloneBytes(a.Result)
		p.result = r.Result
		p.post = encodeRecord(r)
		p.expiryKey = timeKey(r.ExpiresAt, r.ID)
		p.event = jobEvent(backend.EventCompleted, r, now)
		p.event.Result = r.Result
		preps[i] = p
		any = true
	}
	if !any {
		return decided, nil
	}
	wake := false
	b.claimMu.Lock()
	defer func() {
		b.claimMu.Unlock()
		if wake {
			b.wake()
		}
	}()
	if b.claimsClosed {
		return nil, backend.ErrClosed
	}
	// Under claimMu no transaction is being applied, so the cache entry
	// still being the same bytes means the record still is.
	b.leasedMu.Lock()
	for i, p := range preps {
		if p == nil {
			continue
		}
		if cur := b.leased[p.id]; len(cur) == 0 || &cur[0] != &p.pre[0] {
			continue // changed since, or finished by an earlier ack
		}
		delete(b.leased, p.id)
		b.completions = append(b.completions, p)
		decided[i] = true
		// The completion cannot fail now: its limit slot frees at once,
		// like the lease took it.
		if p.limited && b.lim.ended(p.id, b.lim.at(now)) {
			wake = true
		}
	}
	b.leasedMu.Unlock()
	// Reads after this call wait for the transaction that writes these
	// completions: the next one.
	b.answered(b.gen + 1)
	b.signal()
	return decided, nil
}

// writeCompletions writes the completions Finish decided. When the record
// is not the bytes the completion was prepared from (its lease's claim was
// written by the slow path, because the job changed in the transaction
// that was committing when it was leased), the completion is applied to
// the record as it is.
func (t *txn) writeCompletions(cs []*completion) error {
	for _, p := range cs {
		done, err := t.writeCompletion(p)
		if err != nil {
			return err
		}
		if done {
			continue
		}
		r, err := t.activeLease(backend.LeaseRef{JobID: p.id, Token: p.token}, p.now)
		if err != nil {
			if isLeaseErr(err) {
				continue // cannot happen: nothing runs between the decision and here
			}
			return err
		}
		ack := backend.Ack{Lease: backend.LeaseRef{JobID: p.id, Token: p.token}, Outcome: backend.OutcomeCompleted, Result: p.result}
		if _, err := t.finish(r, &ack, p.now); err != nil {
			return err
		}
	}
	return nil
}

// writeCompletion writes a completion if the job's record is still the one
// it was decided on; done is false when it is not.
func (t *txn) writeCompletion(p *completion) (done bool, err error) {
	if v := t.get(t.jobs, []byte(p.id)); v == nil || !bytes.Equal(v, p.pre) {
		return false, nil
	}
	if err := t.del(t.leases, p.leaseKey); err != nil {
		return false, err
	}
	if err := t.put(t.expiry, p.expiryKey, append([]byte{stateCode(backend.StateCompleted)}, p.queue...)); err != nil {
		return false, err
	}
	if err := t.put(t.jobs, []byte(p.id), p.post); err != nil {
		return false, err
	}
	t.forget(p.id)
	t.count(p.queue, backend.StateActive, backend.StateCompleted)
	t.queueCounters(p.queue).processed++
	t.event(p.event)
	return true, nil
}

// finish applies one ack to the active job r. ackErr is the ack's own
// error (an unknown outcome), err a storage failure.
func (t *txn) finish(r *record, a *backend.Ack, now time.Time) (ackErr, err error) {
	c := t.queueCounters(r.Queue)
	var ev backend.Event
	switch a.Outcome {
	case backend.OutcomeCompleted:
		err = t.move(r, func(r *record) {
			finishTerminal(r, backend.StateCompleted, now)
			r.Result = cloneBytes(a.Result)
		})
		c.processed++
		ev = jobEvent(backend.EventCompleted, r, now)
		ev.Result = r.Result
	case backend.OutcomeRetry:
		if r.CancelRequested {
			// The cancel is what stopped the attempt: no failure is
			// counted, and the job must not run again.
			return nil, t.cancelActive(r, a.Error, now)
		}
		c.failed++
		err = t.move(r, func(r *record) {
			r.Failures++
			r.Error = a.Error
			r.State = backend.StateRetrying
			r.RunAt = a.RetryAt
			clearLease(r)
		})
		ev = jobEvent(backend.EventRetrying, r, now)
		ev.Error = r.Error
		ev.RunAt = r.RunAt
	case backend.OutcomeFailed:
		c.failed++
		err = t.move(r, func(r *record) {
			r.Failures++
			r.Error = a.Error
			finishTerminal(r, backend.StateFailed, now)
		})
		ev = jobEvent(backend.EventFailed, r, now)
		ev.Error = r.Error
	case backend.OutcomeCanceled:
		return nil, t.cancelActive(r, a.Error, now)
	case backend.OutcomeThrottled:
		// The API's answer holds for the key whatever becomes of this job.
		if r.LimitKey != "" {
			t.limitChanges = append(t.limitChanges, limitChange{kind: limitThrottled, key: r.LimitKey, at: a.RetryAt})
		}
		if r.CancelRequested {
			return nil, t.cancelActive(r, a.Error, now)
		}
		// Not a failure: the job waits out the API's limit, scheduled,
		// and the run does not count as an attempt.
		err = t.move(r, func(r *record) {
			r.State = backend.StateScheduled
			r.Attempt = max(r.Attempt-1, 0)
			r.Error = a.Error
			r.RunAt = a.RetryAt
			clearLease(r)
		})
		ev = jobEvent(backend.EventQueued, r, now)
		ev.RunAt = r.RunAt
		ev.Error = r.Error
	case backend.OutcomeReleased:
		if r.CancelRequested {
			// The cancel wins over a shutdown: the job must not run again.
			return nil, t.cancelActive(r, a.Error, now)
		}
		err = t.move(r, func(r *record) {
			r.State = backend.StateQueued
			if r.Attempt > 0 {
				r.Attempt--
			}
			clearLease(r)
		})
		ev = jobEvent(backend.EventQueued, r, now)
	default:
		return fmt.Errorf("bolt: finish %s: unknown outcome %d", r.ID, a.Outcome), nil
	}
	if err != nil {
		return nil, err
	}
	t.event(ev)
	if r.State.Terminal() {
		return nil, t.resolveDependents(r, now)
	}
	return nil, nil
}

// cancelActive makes an active job canceled. Its Error is the reason given
// to Cancel when there was one, else msg (what the worker reported).
func (t *txn) cancelActive(r *record, msg string, now time.Time) error {
	err := t.move(r, func(r *record) {
		reason := r.cancelReason
		if reason == "" {
			reason = msg
		}
		if reason == "" {
			reason = "canceled"
		}
		finishTerminal(r, backend.StateCanceled, now)
		r.Error = reason
	})
	if err != nil {
		return err
	}
	ev := jobEvent(backend.EventCanceled, r, now)
	ev.Error = r.Error
	t.event(ev)
	return t.resolveDependents(r, now)
}

func cloneBytes(p []byte) []byte {
	if p == nil {
		return nil
	}
	return append(make([]byte, 0, len(p)), p...)
}

func isLeaseErr(err error) bool {
	return errors.Is(err, backend.ErrLeaseLost)
}

// Progress stores percent and message on an active job and records
// EventProgress.
func (b *Backend) Progress(ctx context.Context, now time.Time, lease backend.LeaseRef, percent int, message string) error {
	if err := b.check(ctx); err != nil {
		return err
	}
	var res error
	err := b.doEarly(ctx, func(t *txn) error {
		res = nil
		r, err := t.activeLease(lease, now)
		if err != nil {
			if !isLeaseErr(err) {
				return err
			}
			res = err
			return nil
		}
		percent := min(max(percent, 0), 100)
		if err := t.move(r, func(r *record) {
			r.Progress = percent
			r.ProgressMessage = message
		}); err != nil {
			return err
		}
		ev := jobEvent(backend.EventProgress, r, now)
		ev.Progress = percent
		ev.Message = message
		t.event(ev)
		if r.CancelRequested {
			res = fmt.Errorf("bolt: progress %s: %w", r.ID, backend.ErrCancelRequested)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("bolt: progress: %w", err)
	}
	return res
}

// firstKey returns the first key of bucket name in a read transaction, so
// that Promote, Reap and Sweep can tell without a write (and its fsync)
// that there is nothing to do.
func (b *Backend) firstKey(ctx context.Context, name []byte) ([]byte, error) {
	var first []byte
	err := b.view(ctx, func(tx *bbolt.Tx) error {
		if k, _ := tx.Bucket(name).Cursor().First(); k != nil {
			first = append([]byte(nil), k...)
		}
		return nil
	})
	return first, err
}

// Promote makes due scheduled and retrying jobs queued, earliest first.
//
// It also opens the limit keys whose rate window or throttle has passed by
// now (see backend.Limiter), and its next time is the earliest of the next
// RunAt and the next moment a key held back by time opens.
func (b *Backend) Promote(ctx context.Context, now time.Time) (int, time.Time, error) {
	moved, next, err := b.promote(ctx, now)
	if err != nil {
		return 0, time.Time{}, err
	}
	if w := b.promoteLimits(now); !w.IsZero() && (next.IsZero() || w.Before(next)) {
		next = w
	}
	return moved, next, nil
}

func (b *Backend) promote(ctx context.Context, now time.Time) (int, time.Time, error) {
	first, err := b.firstKey(ctx, bucketSched)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("bolt: promote: %w", err)
	}
	if first == nil {
		return 0, time.Time{}, nil
	}
	if at := keyTime(first); at.After(now) {
		return 0, at, nil
	}
	var moved int
	var next time.Time
	err = b.doEarly(ctx, func(t *txn) error {
		moved, next = 0, time.Time{}
		type hit struct {
			key   []byte
			val   []byte
			id    string
			state backend.State
		}
		var hits []hit
		c := t.sched.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if at := keyTime(k); at.After(now) || len(hits) >= batchLimit {
				next = at
				break
			}
			st := backend.State("")
			if len(v) > 0 {
				st, _ = stateOf(v[0])
			}
			hits = append(hits, hit{append([]byte(nil), k...), append([]byte(nil), v...), string(k[12:]), st})
		}
		for _, h := range hits {
			r, err := t.load(h.id)
			if err != nil {
				if err := t.del(t.sched, h.key); err != nil {
					return err
				}
				queue := ""
				if len(h.val) > 0 {
					queue = string(h.val[1:])
				}
				if err := t.quarantine(h.id, err, now, queue, h.state); err != nil {
					return err
				}
				continue
			}
			if r == nil || (r.State != backend.StateScheduled && r.State != backend.StateRetrying) ||
				!bytes.Equal(timeKey(r.RunAt, r.ID), h.key) {
				if err := t.del(t.sched, h.key); err != nil {
					return err
				}
				continue
			}
			if err := t.move(r, func(r *record) { r.State = backend.StateQueued }); err != nil {
				return err
			}
			e := jobEvent(backend.EventQueued, r, now)
			e.RunAt = r.RunAt
			t.event(e)
			moved++
		}
		return nil
	})
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("bolt: promote: %w", err)
	}
	return moved, next, nil
}

// Reap handles active jobs whose lease expired before now: back to the
// queue as stalled, or failed once their stalls reach MaxStalls.
func (b *Backend) Reap(ctx context.Context, now time.Time) (int, error) {
	first, err := b.firstKey(ctx, bucketLeases)
	if err != nil {
		return 0, fmt.Errorf("bolt: reap: %w", err)
	}
	if first == nil || !keyTime(first).Before(now) {
		return 0, nil
	}
	n, err := b.reap(ctx, now, false)
	if err != nil {
		return 0, fmt.Errorf("bolt: reap: %w", err)
	}
	return n, nil
}

// reapAll expires every lease in the file. Open calls it: the file is
// locked to this process, so any lease found there belongs to a process
// that died.
func (b *Backend) reapAll(now time.Time) (int, error) {
	total := 0
	for {
		n, err := b.reap(context.Background(), now, true)
		total += n
		if err != nil || n < batchLimit {
			return total, err
		}
	}
}

func (b *Backend) reap(ctx context.Context, now time.Time, all bool) (int, error) {
	var reaped int
	err := b.doEarly(ctx, func(t *txn) error {
		reaped = 0
		type hit struct {
			key   []byte
			id    string
			queue string
		}
		var hits []hit
		c := t.leases.Cursor()
		for k, v := c.First(); k != nil && len(hits) < batchLimit; k, v = c.Next() {
			if !all && !keyTime(k).Before(now) {
				break
			}
			hits = append(hits, hit{append([]byte(nil), k...), string(k[12:]), string(v)})
		}
		for _, h := range hits {
			r, err := t.load(h.id)
			if err != nil {
				if err := t.del(t.leases, h.key); err != nil {
					return err
				}
				if err := t.quarantine(h.id, err, now, h.queue, backend.StateActive); err != nil {
					return err
				}
				reaped++
				continue
			}
			if r == nil || r.State != backend.StateActive || !bytes.Equal(timeKey(r.LeaseExpiresAt, r.ID), h.key) {
				if err := t.del(t.leases, h.key); err != nil {
					return err
				}
				continue
			}
			if err := t.stall(r, now); err != nil {
				return err
			}
			reaped++
		}
		return nil
	})
	return reaped, err
}

// stall handles one expired lease. A stall is not a failure for the retry
// policy, but after MaxStalls of them the job fails, so that a job that
// kills its process cannot loop forever. A job whose cancel was requested
// is canceled instead of being run again.
func (t *txn) stall(r *record, now time.Time) error {
	stalls := r.Stalls + 1
	msg := fmt.Sprintf("lease expired (stall %d of at most %d)", stalls, r.MaxStalls)
	var final backend.State
	switch {
	case r.CancelRequested:
		final = backend.StateCanceled
	case stalls >= r.MaxStalls:
		final = backend.StateFailed
		msg = fmt.Sprintf("job stalled %d times: its lease expired each time (max stalls %d)", stalls, r.MaxStalls)
	}
	reason := r.cancelReason
	err := t.move(r, func(r *record) {
		r.Stalls = stalls
		switch final {
		case "":
			r.State = backend.StateQueued
			clearLease(r)
		case backend.StateFailed:
			finishTerminal(r, backend.StateFailed, now)
			r.Error = msg
		case backend.StateCanceled:
			finishTerminal(r, backend.StateCanceled, now)
			if reason == "" {
				reason = "canceled while active; its lease expired"
			}
			r.Error = reason
		}
	})
	if err != nil {
		return err
	}
	ev := jobEvent(backend.EventStalled, r, now)
	ev.Error = msg
	t.event(ev)
	if final == "" {
		return nil
	}
	kind := backend.EventFailed
	if final == backend.StateFailed {
		t.queueCounters(r.Queue).failed++
	} else {
		kind = backend.EventCanceled
	}
	ev = jobEvent(kind, r, now)
	ev.Error = r.Error
	t.event(ev)
	return t.resolveDependents(r, now)
}

// Sweep deletes up to limit terminal jobs whose ExpiresAt is before now,
// with their indexes; a unique key outlives its job while UniqueUntil holds
// it, and is swept too once that has passed.
func (b *Backend) Sweep(ctx context.Context, now time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, nil
	}
	jobsDue, keysDue := false, false
	err := b.view(ctx, func(tx *bbolt.Tx) error {
		if k, _ := tx.Bucket(bucketExpiry).Cursor().First(); k != nil && keyTime(k).Before(now) {
			jobsDue = true
		}
		if k, _ := tx.Bucket(bucketUExpiry).Cursor().First(); k != nil && keyTime(k).Before(now) {
			keysDue = true
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("bolt: sweep: %w", err)
	}
	if !jobsDue && !keysDue {
		return 0, nil
	}
	limit = min(limit, batchLimit)
	var deleted int
	err = b.doEarly(ctx, func(t *txn) error {
		deleted = 0
		var keys [][]byte
		c := t.expiry.Cursor()
		for k, _ := c.First(); k != nil && len(keys) < limit && keyTime(k).Before(now); k, _ = c.Next() {
			keys = append(keys, append([]byte(nil), k...))
		}
		for _, k := range keys {
			n, err := t.sweepJob(k, now)
			if err != nil {
				return err
			}
			deleted += n
		}
		return t.sweepUniqueKeys(now, limit)
	})
	if err != nil {
		return 0, fmt.Errorf("bolt: sweep: %w", err)
	}
	return deleted, nil
}

// sweepJob deletes the terminal job that expiry key k points to.
func (t *txn) sweepJob(k []byte, now time.Time) (int, error) {
	id := string(k[12:])
	if err := t.del(t.expiry, k); err != nil {
		return 0, err
	}
	r, err := t.load(id)
	if err != nil {
		// A corrupt record that reached the expiry index was quarantined
		// as failed and its time is up: delete it like any other.
		return 1, t.del(t.jobs, []byte(id))
	}
	if r == nil || !r.State.Terminal() || !bytes.Equal(timeKey(r.ExpiresAt, r.ID), k) {
		return 0, nil
	}
	if r.UniqueKey != "" {
		if v := t.unique.Get([]byte(r.UniqueKey)); v != nil {
			if _, _, holder := decodeUniqueValue(v); holder == r.ID {
				var err error
				if r.UniqueUntil.After(now) {
					// Keep the key for UniqueUntil, remembering the state
					// that a duplicate enqueue reports.
					err = t.put(t.unique, []byte(r.UniqueKey), uniqueValue(r.UniqueUntil, r.State, r.ID))
					if err == nil {
						err = t.put(t.uexp, timeKey(r.UniqueUntil, r.UniqueKey), nil)
					}
				} else {
					err = t.del(t.unique, []byte(r.UniqueKey))
				}
				if err != nil {
					return 0, err
				}
			}
		}
	}
	t.count(r.Queue, r.State, "")
	return 1, t.del(t.jobs, []byte(r.ID))
}

// sweepUniqueKeys deletes unique keys that outlived their swept job and
// whose UniqueUntil has passed.
func (t *txn) sweepUniqueKeys(now time.Time, limit int) error {
	var keys [][]byte
	c := t.uexp.Cursor()
	for k, _ := c.First(); k != nil && len(keys) < limit && keyTime(k).Before(now); k, _ = c.Next() {
		keys = append(keys, append([]byte(nil), k...))
	}
	for _, k := range keys {
		if err := t.del(t.uexp, k); err != nil {
			return err
		}
		key := k[12:]
		v := t.unique.Get(key)
		if v == nil {
			continue
		}
		until, _, holder := decodeUniqueValue(v)
		if until.After(now) || t.get(t.jobs, []byte(holder)) != nil {
			continue // taken again since, or held longer
		}
		if err := t.del(t.unique, key); err != nil {
			return err
		}
	}
	return nil
}
