package memory

import (
	"context"
	"fmt"
	"time"

	"github.com/jobrelay/engine/backend"
)

// Cancel cancels a live job; see backend.Backend. The reason given for an
// active job is kept until its worker finishes it, and becomes its Error.
func (b *Backend) Cancel(ctx context.Context, now time.Time, id, reason string) (backend.State, error) {
	now = stamp(now)
	b.lockBoth()
	defer b.unlockBoth()
	if b.closed {
		return "", errClosed
	}
	j, hd, found := b.lookup(id)
	switch {
	case !found:
		return "", notFound("cancel", id)
	case j == nil:
		// Archived, so terminal.
		if st := b.arch.recs.at(hd).state(); st != backend.StateCanceled {
			return st, fmt.Errorf("memory: cancel %s: job is %s: %w", id, st, backend.ErrInvalidState)
		}
		return backend.StateCanceled, nil
	}
	switch j.State {
	case backend.StateQueued, backend.StateScheduled, backend.StateDeferred, backend.StateRetrying:
		b.unindex(j, now)
		j.Error = reason
		b.terminate(j, backend.StateCanceled, now, j.FailureTTL)
		b.emitWith(backend.EventCanceled, j, now, &details{err: reason})
		b.cancelDependents(j, now)
		return backend.StateCanceled, nil
	case backend.StateActive:
		if !j.CancelRequested {
			j.CancelRequested = true
			b.extra(j).cancelReason = reason
			b.emitCancelRequest(j, now)
		}
		return backend.StateActive, nil
	case backend.StateCanceled:
		return backend.StateCanceled, nil
	}
	return j.State, fmt.Errorf("memory: cancel %s: job is %s: %w", id, j.State, backend.ErrInvalidState)
}

// Requeue runs a failed or canceled job again as a fresh job; see
// backend.Backend. Its dependencies are not checked again: an operator who
// requeues a job wants it to run.
func (b *Backend) Requeue(ctx context.Context, now time.Time, id string) error {
	now = stamp(now)
	b.lockBoth()
	defer b.unlockBoth()
	if b.closed {
		return errClosed
	}
	j, hd, found := b.lookup(id)
	var st backend.State
	switch {
	case j != nil:
		st = j.State
	case found:
		st = b.arch.recs.at(hd).state()
	default:
		return notFound("requeue", id)
	}
	if st != backend.StateFailed && st != backend.StateCanceled {
		return fmt.Errorf("memory: requeue %s: job is %s: %w", id, st, backend.ErrInvalidState)
	}
	// Under both mutexes a live job is never terminal (see lockBoth): j is
	// archived, and comes back with no lease, dependents or cancel reason.
	j = b.unarchive(hd)
	j.Attempt, j.Failures, j.Stalls = 0, 0, 0
	j.Error, j.Result = "", nil
	j.Progress, j.ProgressMessage = 0, ""
	j.RunAt, j.StartedAt, j.FinishedAt, j.ExpiresAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	// The key is taken again only if nobody else holds it now; otherwise
	// the job runs without it.
	if j.UniqueKey != "" {
		if u, ok := b.unique[j.UniqueKey]; !ok || u.archived && u.id == j.ID {
			b.unique[j.UniqueKey] = uniqueHold{j: j}
		} else if _, _, held := b.uniqueHolder(j.UniqueKey, now); !held {
			b.unique[j.UniqueKey] = uniqueHold{j: j}
		}
	}
	b.makeQueued(j)
	b.emit(backend.EventQueued, j, now)
	return nil
}

// Pause stops Lease from taking jobs of a queue; see backend.Backend. Pausing
// a paused queue changes nothing and records no event.
func (b *Backend) Pause(ctx context.Context, now time.Time, name string) error {
	now = stamp(now)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return errClosed
	}
	q := b.queueLocked(name)
	if !q.paused {
		q.paused = true
		b.emitQueue(backend.EventPaused, q, now)
	}
	return nil
}

// Resume undoes Pause and wakes blocked Lease calls; see backend.Backend.
// Resuming a queue that is not paused changes nothing.
func (b *Backend) Resume(ctx context.Context, now time.Time, name string) error {
	now = stamp(now)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return errClosed
	}
	if q := b.queues[name]; q != nil && q.paused {
		q.paused = false
		b.emitQueue(backend.EventResumed, q, now)
		b.jobReady()
	}
	return nil
}
