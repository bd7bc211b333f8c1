package memory

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/jobrelay/engine/backend"
)

// Enqueue stores a batch of new jobs; see backend.Backend. The jobs are
// packed, or their records built, and payloads copied, before either mutex
// is taken. A batch of plain jobs, as the engine makes them, is stored
// under smu alone and made due under mu alone (see enqueuePacked and
// enqueuePlain); any other takes both.
func (b *Backend) Enqueue(ctx context.Context, now time.Time, jobs []backend.NewJob) ([]backend.EnqueueResult, error) {
	now = stamp(now)
	results := make([]backend.EnqueueResult, len(jobs))
	// The IDs are hashed here, once, outside the mutexes (see hash); the
	// read-ahead and store both use the hashes.
	var few [8]uint64
	hashes := few[:0]
	if len(jobs) > len(few) {
		hashes = make([]uint64, 0, len(jobs))
	}
	for i := range jobs {
		hashes = append(hashes, b.hash(jobs[i].ID))
	}
	if len(jobs) > 0 && packable(jobs, now) {
		if done, err := b.enqueuePacked(now, jobs, hashes, results); done {
			if err != nil {
				return nil, err
			}
			return results, nil
		}
	}

	recs := make([]*job, len(jobs))
	var arena []byte
	var spare spareTaker
	for i := range jobs {
		recs[i] = b.newRecord(&jobs[i], now, &spare)
		recs[i].Payload = copyPayload(&arena, jobs[i].Payload, len(jobs))
	}
	b.keepSpare(&spare)
	if len(recs) > 0 && plain(recs) {
		if done, err := b.enqueuePlain(now, recs, hashes, results); done {
			if err != nil {
				return nil, err
			}
			return results, nil
		}
	}
	b.lockBoth()
	defer b.unlockBoth()
	if b.closed {
		return nil, errClosed
	}
	b.prefetchNew(hashes)
	for i, j := range recs {
		b.queueLocked(j.Queue) // made on first use
		results[i] = b.enqueueLocked(now, j, hashes[i])
	}
	return results, nil
}

// plain reports whether the batch recs can be stored without looking at
// any other job's state: no job has a unique key or dependencies, and the
// IDs are set and rise, so that the batch holds no ID twice and, if its
// first ID is above every stored one, none that is stored.
func plain(recs []*job) bool {
	for i, j := range recs {
		if j.ID == "" || j.UniqueKey != "" || j.DependsOn != nil || i > 0 && recs[i-1].ID >= j.ID {
			return false
		}
	}
	return true
}

// enqueuePlain stores the plain batch recs (see plain) whose IDs hash to
// hashes, and fills results; it returns false, having done nothing, when a
// stored ID may equal one of the batch's (see enqueueRising).
func (b *Backend) enqueuePlain(now time.Time, recs []*job, hashes []uint64, results []backend.EnqueueResult) (bool, error) {
	for i, j := range recs {
		results[i] = backend.EnqueueResult{ID: j.ID, State: backend.StateQueued}
		if j.RunAt.After(now) {
			results[i].State = backend.StateScheduled
		}
	}
	return b.enqueueRising(&pendingBatch{recs: recs, now: now}, recs[0].ID, hashes)
}

// enqueuePacked stores the packable batch jobs (see packable), whose IDs
// hash to hashes, as packed jobs (see queuedBlock), and fills results; it
// returns false, having done nothing, when a stored ID may equal one of the
// batch's (see enqueueRising).
func (b *Backend) enqueuePacked(now time.Time, jobs []backend.NewJob, hashes []uint64, results []backend.EnqueueResult) (bool, error) {
	refs := packJobs(jobs, now)
	for i := range jobs {
		results[i] = backend.EnqueueResult{ID: jobs[i].ID, State: backend.StateQueued}
	}
	return b.enqueueRising(&pendingBatch{packed: refs, now: now}, jobs[0].ID, hashes)
}

// enqueueRising stores the batch p, whose IDs rise from first and hash to
// hashes, and makes it due; it returns false, having done nothing, when a
// stored ID may equal one of the batch's. It takes smu alone to store the
// jobs (the ID table and index), then mu alone to make them due (the ready
// queue and events), so that Lease and Finish run meanwhile. Between the
// two the jobs are stored without a state; a call that holds both mutexes
// makes them due first (see settle), which this call then sees.
func (b *Backend) enqueueRising(p *pendingBatch, first string, hashes []uint64) (bool, error) {
	b.smu.Lock()
	if b.closed {
		b.smu.Unlock()
		return true, errClosed
	}
	if b.byID.mayHold(first) {
		b.smu.Unlock()
		return false, nil
	}
	b.pending = slices.DeleteFunc(b.pending, func(p *pendingBatch) bool { return p.done.Load() })
	b.pending = append(b.pending, p)
	b.prefetchNew(hashes)
	for i, j := range p.recs {
		b.store(j, hashes[i], true)
	}
	b.storePacked(p.packed, hashes)
	b.smu.Unlock()

	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return true, errClosed
	}
	if !p.done.Load() {
		b.makeDue(p)
	}
	b.unlock() // archives what earlier calls left in ended
	return true, nil
}

// newRecord copies a NewJob into a fresh record (see spareJob), so that the
// caller may reuse its buffers once Enqueue returns; the caller copies the
// payload.
func (b *Backend) newRecord(nj *backend.NewJob, now time.Time, spare *spareTaker) *job {
	j := b.spareJob(spare)
	j.ID = nj.ID
	j.Type = nj.Type
	j.Queue = nj.Queue
	j.Meta = maps.Clone(nj.Meta)
	j.Priority = nj.Priority
	j.RunAt = stamp(nj.RunAt)
	j.MaxRetries = nj.MaxRetries
	j.MaxStalls = nj.MaxStalls
	j.Timeout = nj.Timeout
	j.ResultTTL = nj.ResultTTL
	j.FailureTTL = nj.FailureTTL
	j.UniqueKey = nj.UniqueKey
	j.UniqueUntil = stamp(nj.UniqueUntil)
	j.LimitKey = nj.LimitKey
	j.DependsOn = slices.Clone(nj.DependsOn)
	j.CreatedAt = now
	return j
}

// Payloads of batches are copied into shared blocks when small: one
// allocation per block instead of one per job. A block stays in memory while
// any of its jobs is stored, so blocks are kept small, and payloads that are
// large or come alone get a copy of their own.
const (
	arenaBlock    = 16 << 10
	arenaMaxItem  = 1 << 10
	arenaMinBatch = 8
)

// copyPayload copies p for the store, into the batch's current block when p
// is small and the batch has at least arenaMinBatch jobs.
func copyPayload(arena *[]byte, p []byte, batch int) []byte {
	if p == nil {
		return nil
	}
	if batch < arenaMinBatch || len(p) > arenaMaxItem {
		return bytes.Clone(p)
	}
	if cap(*arena)-len(*arena) < len(p) {
		*arena = make([]byte, 0, arenaBlock)
	}
	start := len(*arena)
	*arena = append(*arena, p...)
	return (*arena)[start:len(*arena):len(*arena)]
}

// enqueueLocked stores j, whose ID hashes to h (see jobTable.hash).
func (b *Backend) enqueueLocked(now time.Time, j *job, h uint64) backend.EnqueueResult {
	if j.ID == "" {
		return backend.EnqueueResult{Err: fmt.Errorf("memory: enqueue: job has no ID")}
	}
	// A second job with a stored ID would corrupt every index; it is a
	// duplicate of the job that has the ID. An ID above every stored one,
	// as the engine makes them, needs no lookup.
	if b.byID.mayHold(j.ID) {
		if st, ok := b.stateOf(j.ID); ok {
			return backend.EnqueueResult{ID: j.ID, State: st,
				Err: fmt.Errorf("memory: enqueue %s: ID exists: %w", j.ID, backend.ErrDuplicateJob)}
		}
	}
	if j.UniqueKey != "" {
		if id, st, held := b.uniqueHolder(j.UniqueKey, now); held {
			return backend.EnqueueResult{ID: id, State: st,
				Err: fmt.Errorf("memory: enqueue %s: unique key %q held by %s: %w", j.ID, j.UniqueKey, id, backend.ErrDuplicateJob)}
		}
	}

	// Look at every parent before storing anything: an unknown one refuses
	// the whole job.
	var ended string // why a failed or canceled parent cancels j
	pending := 0
	for i, pid := range j.DependsOn {
		if slices.Contains(j.DependsOn[:i], pid) {
			continue
		}
		st, ok := b.stateOf(pid)
		if !ok {
			return backend.EnqueueResult{Err: fmt.Errorf("memory: enqueue %s: depends on %s: %w", j.ID, pid, backend.ErrDependencyNotFound)}
		}
		switch st {
		case backend.StateCompleted:
		case backend.StateFailed, backend.StateCanceled:
			if ended == "" {
				ended = dependencyError(pid, st)
			}
		default:
			pending++
		}
	}

	b.store(j, h, false)
	if j.UniqueKey != "" {
		b.unique[j.UniqueKey] = uniqueHold{j: j}
	}
	switch {
	case ended != "":
		j.Error = ended
		b.terminate(j, backend.StateCanceled, now, j.FailureTTL)
		b.emitWith(backend.EventCanceled, j, now, &details{err: j.Error})
	case pending > 0:
		b.setState(j, backend.StateDeferred)
		b.extra(j).pending = pending
		for i, pid := range j.DependsOn {
			// A parent that is not live is archived, so completed.
			if p, _, _ := b.lookup(pid); p != nil && p.State != backend.StateCompleted &&
				!slices.Contains(j.DependsOn[:i], pid) {
				px := b.extra(p)
				px.children = append(px.children, j)
			}
		}
		b.emit(backend.EventQueued, j, now)
	default:
		b.becomeDue(j, now)
	}
	return backend.EnqueueResult{ID: j.ID, State: j.State}
}

// becomeDue makes a job that waits for nothing else queued, or scheduled when
// its RunAt is still ahead.
func (b *Backend) becomeDue(j *job, now time.Time) {
	if j.RunAt.After(now) {
		b.makeDelayed(j, backend.StateScheduled)
		b.emitWith(backend.EventQueued, j, now, &details{runAt: j.RunAt})
		return
	}
	b.makeQueued(j)
	b.emit(backend.EventQueued, j, now)
}

// uniqueHolder reports who holds key at now: a key is held while its job is
// live, and until UniqueUntil whatever the job's state (even once swept).
func (b *Backend) uniqueHolder(key string, now time.Time) (string, backend.State, bool) {
	h, ok := b.unique[key]
	switch {
	case !ok:
		return "", "", false
	case h.j != nil:
		if !h.j.State.Terminal() || h.j.UniqueUntil.After(now) {
			return h.j.ID, h.j.State, true
		}
	case h.until.After(now): // an archived or swept job
		return h.id, h.state, true
	}
	return "", "", false
}

// releaseDependents is called when p completed: each deferred child whose
// last parent this was becomes due.
func (b *Backend) releaseDependents(p *job, now time.Time) {
	px := b.extraOf(p)
	if px == nil {
		return
	}
	children := px.children
	px.children = nil
	for _, c := range children {
		if c.State != backend.StateDeferred {
			continue // canceled (and maybe requeued) meanwhile
		}
		cx := b.extras[c]
		if cx.pending--; cx.pending == 0 {
			b.becomeDue(c, now)
		}
	}
}

// cancelDependents is called when p failed or was canceled: its deferred
// children can never run, so they are canceled, and theirs in turn.
func (b *Backend) cancelDependents(p *job, now time.Time) {
	if px := b.extraOf(p); px == nil || len(px.children) == 0 {
		return
	}
	stack := []*job{p}
	for len(stack) > 0 {
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		px := b.extras[p]
		children := px.children
		px.children = nil
		for _, c := range children {
			if c.State != backend.StateDeferred {
				continue
			}
			c.Error = dependencyError(p.ID, p.State)
			b.terminate(c, backend.StateCanceled, now, c.FailureTTL)
			b.emitWith(backend.EventCanceled, c, now, &details{err: c.Error})
			if cx := b.extras[c]; cx != nil && len(cx.children) > 0 {
				stack = append(stack, c)
			}
		}
	}
}

// dependencyError says why a child was canceled, naming its parent.
func dependencyError(id string, st backend.State) string {
	return "dependency " + id + " " + string(st)
}
