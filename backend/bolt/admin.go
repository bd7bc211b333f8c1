package bolt

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"go.etcd.io/bbolt"

	"github.com/jobrelay/engine/backend"
)

// Cancel cancels a live job: at once when it waits, by request when it
// runs (the worker finishes it).
func (b *Backend) Cancel(ctx context.Context, now time.Time, id, reason string) (backend.State, error) {
	if err := b.check(ctx); err != nil {
		return "", err
	}
	var state backend.State
	var res error
	err := b.do(ctx, func(t *txn) error {
		state, res = "", nil
		r, err := t.load(id)
		if err != nil {
			if err := t.quarantine(id, err, now, "", ""); err != nil {
				return err
			}
			state, res = backend.StateFailed, fmt.Errorf("bolt: cancel %s: %w", id, err)
			return nil
		}
		if r == nil {
			res = fmt.Errorf("bolt: cancel %s: %w", id, backend.ErrJobNotFound)
			return nil
		}
		switch r.State {
		case backend.StateCanceled:
			state = r.State
		case backend.StateCompleted, backend.StateFailed:
			state = r.State
			res = fmt.Errorf("bolt: cancel %s: job is %s: %w", id, r.State, backend.ErrInvalidState)
		case backend.StateActive:
			state = r.State
			if r.CancelRequested {
				return nil // asked before: one request, one event
			}
			if err := t.move(r, func(r *record) {
				r.CancelRequested = true
				r.cancelReason = reason
			}); err != nil {
				return err
			}
			ev := jobEvent(backend.EventCancelRequested, r, now)
			ev.Error = reason
			t.event(ev)
		default:
			if err := t.move(r, func(r *record) {
				finishTerminal(r, backend.StateCanceled, now)
				r.Error = reason
			}); err != nil {
				return err
			}
			state = r.State
			ev := jobEvent(backend.EventCanceled, r, now)
			ev.Error = reason
			t.event(ev)
			return t.resolveDependents(r, now)
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("bolt: cancel %s: %w", id, err)
	}
	return state, res
}

// Requeue puts a failed or canceled job back in its queue as a fresh job.
func (b *Backend) Requeue(ctx context.Context, now time.Time, id string) error {
	if err := b.check(ctx); err != nil {
		return err
	}
	var res error
	err := b.do(ctx, func(t *txn) error {
		res = nil
		r, err := t.load(id)
		if err != nil {
			res = fmt.Errorf("bolt: requeue %s: %w", id, err)
			return nil
		}
		if r == nil {
			res = fmt.Errorf("bolt: requeue %s: %w", id, backend.ErrJobNotFound)
			return nil
		}
		if r.State != backend.StateFailed && r.State != backend.StateCanceled {
			res = fmt.Errorf("bolt: requeue %s: job is %s: %w", id, r.State, backend.ErrInvalidState)
			return nil
		}
		if err := t.move(r, func(r *record) {
			r.State = backend.StateQueued
			r.Attempt = 0
			r.Failures = 0
			r.Stalls = 0
			r.Error = ""
			r.Progress = 0
			r.ProgressMessage = ""
			r.Result = nil
			r.StartedAt = time.Time{}
			r.FinishedAt = time.Time{}
			r.ExpiresAt = time.Time{}
			clearLease(r)
		}); err != nil {
			return err
		}
		if r.UniqueKey != "" {
			// Take the key again unless another job holds it now; the job
			// runs either way.
			if holder, _, held := t.uniqueHolder(r.UniqueKey, now); !held || holder == r.ID {
				if err := t.put(t.unique, []byte(r.UniqueKey), uniqueValue(r.UniqueUntil, "", r.ID)); err != nil {
					return err
				}
			}
		}
		t.event(jobEvent(backend.EventQueued, r, now))
		return nil
	})
	if err != nil {
		return fmt.Errorf("bolt: requeue %s: %w", id, err)
	}
	return res
}

// Job returns the stored job, ErrJobNotFound, or an error wrapping
// ErrCorruptJob when its record cannot be read.
func (b *Backend) Job(ctx context.Context, id string) (*backend.Job, error) {
	var r *record
	err := b.view(ctx, func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketJobs).Get([]byte(id))
		if v == nil || id == "" {
			return fmt.Errorf("bolt: job %s: %w", id, backend.ErrJobNotFound)
		}
		var err error
		r, err = decodeRecord(id, v, nil)
		if err != nil {
			return fmt.Errorf("%w %s: %v", ErrCorruptJob, id, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &r.Job, nil
}

// DefaultListLimit is the page size of List when the filter gives none.
const DefaultListLimit = 100

// List returns a page of jobs that match filter, in ID order. It walks the
// jobs in ID order and reads only the header of those that do not match. A
// record that cannot be read is listed as a failed job whose Error says so
// (it matches only a filter on no queue and no type).
func (b *Backend) List(ctx context.Context, filter backend.ListFilter) (backend.Page, error) {
	limit := filter.Limit
	if limit <= 0 {
		limit = DefaultListLimit
	}
	var page backend.Page
	err := b.view(ctx, func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketJobs).Cursor()
		var k, v []byte
		if filter.Cursor == "" {
			k, v = c.First()
		} else {
			k, v = c.Seek([]byte(filter.Cursor))
			if k != nil && string(k) == filter.Cursor {
				k, v = c.Next()
			}
		}
		for ; k != nil; k, v = c.Next() {
			if len(page.Jobs)%256 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			st, typ, queue, err := peekHeader(v)
			if err != nil {
				if filter.Queue != "" || filter.Type != "" || (filter.State != "" && filter.State != backend.StateFailed) {
					continue
				}
			} else if (filter.State != "" && st != filter.State) ||
				(filter.Type != "" && string(typ) != filter.Type) ||
				(filter.Queue != "" && string(queue) != filter.Queue) {
				continue
			}
			if len(page.Jobs) == limit {
				page.Next = page.Jobs[len(page.Jobs)-1].ID
				return nil
			}
			r, err := decodeRecord(string(k), v, nil)
			if err != nil {
				j := &backend.Job{ID: string(k), State: backend.StateFailed,
					Error: fmt.Sprintf("%v %s: %v", ErrCorruptJob, k, err)}
				page.Jobs = append(page.Jobs, j)
				continue
			}
			page.Jobs = append(page.Jobs, &r.Job)
		}
		return nil
	})
	if err != nil {
		return backend.Page{}, fmt.Errorf("bolt: list: %w", err)
	}
	return page, nil
}

// Stats returns the counters of every queue that ever held a job or was
// paused, by queue name. Counters are kept with every transition, so Stats
// reads one small record per queue.
func (b *Backend) Stats(ctx context.Context) ([]backend.QueueStats, error) {
	var out []backend.QueueStats
	err := b.view(ctx, func(tx *bbolt.Tx) error {
		paused := tx.Bucket(bucketPaused)
		return tx.Bucket(bucketQueues).ForEach(func(k, v []byte) error {
			c := decodeCounters(v)
			qs := backend.QueueStats{
				Queue:     string(k[1:]),
				Counts:    make(map[backend.State]int, len(backend.States)),
				Processed: c.processed,
				Failed:    c.failed,
				Paused:    paused.Get(k) != nil,
			}
			for i, s := range backend.States {
				qs.Counts[s] = int(c.states[i])
			}
			out = append(out, qs)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("bolt: stats: %w", err)
	}
	return out, nil
}

// Pause stops Lease from taking jobs of queue until Resume.
func (b *Backend) Pause(ctx context.Context, now time.Time, queue string) error {
	return b.setPaused(ctx, now, queue, true)
}

// Resume undoes Pause and wakes blocked Lease calls.
func (b *Backend) Resume(ctx context.Context, now time.Time, queue string) error {
	return b.setPaused(ctx, now, queue, false)
}

func (b *Backend) setPaused(ctx context.Context, now time.Time, queue string, pause bool) error {
	if err := b.check(ctx); err != nil {
		return err
	}
	if len(queue) > maxKeyLen {
		return fmt.Errorf("bolt: pause: queue name longer than %d bytes", maxKeyLen)
	}
	err := b.do(ctx, func(t *txn) error {
		t.queueCounters(queue) // the queue now shows in Stats
		ev := backend.Event{Kind: backend.EventPaused, Queue: queue, Time: now}
		if pause {
			if err := t.put(t.paused, queueKey(queue), nil); err != nil {
				return err
			}
		} else {
			if err := t.del(t.paused, queueKey(queue)); err != nil {
				return err
			}
			ev.Kind = backend.EventResumed
			t.wake = true
		}
		t.event(ev)
		return nil
	})
	if err != nil {
		return fmt.Errorf("bolt: pause %q: %w", queue, err)
	}
	return nil
}

func workerKey(id string) []byte { return append([]byte{'w'}, id...) }

// RegisterWorker adds or refreshes a worker entry until now+ttl, and drops
// entries that have expired.
func (b *Backend) RegisterWorker(ctx context.Context, now time.Time, w backend.WorkerInfo, ttl time.Duration) error {
	if err := b.check(ctx); err != nil {
		return err
	}
	if len(w.ID) > maxKeyLen {
		return fmt.Errorf("bolt: register worker: id longer than %d bytes", maxKeyLen)
	}
	w.LastHeartbeat = now
	w.ExpiresAt = now.Add(ttl)
	v, err := json.Marshal(w)
	if err != nil {
		return fmt.Errorf("bolt: register worker %s: %w", w.ID, err)
	}
	err = b.do(ctx, func(t *txn) error {
		var stale [][]byte
		_ = t.work.ForEach(func(k, v []byte) error {
			var o backend.WorkerInfo
			if json.Unmarshal(v, &o) != nil || !o.ExpiresAt.After(now) {
				stale = append(stale, append([]byte(nil), k...))
			}
			return nil
		})
		for _, k := range stale {
			if err := t.del(t.work, k); err != nil {
				return err
			}
		}
		return t.put(t.work, workerKey(w.ID), v)
	})
	if err != nil {
		return fmt.Errorf("bolt: register worker %s: %w", w.ID, err)
	}
	return nil
}

// RemoveWorker deletes a worker entry at shutdown.
func (b *Backend) RemoveWorker(ctx context.Context, id string) error {
	if err := b.check(ctx); err != nil {
		return err
	}
	err := b.do(ctx, func(t *txn) error { return t.del(t.work, workerKey(id)) })
	if err != nil {
		return fmt.Errorf("bolt: remove worker %s: %w", id, err)
	}
	return nil
}

// Workers lists the workers whose entry has not expired at now.
func (b *Backend) Workers(ctx context.Context, now time.Time) ([]backend.WorkerInfo, error) {
	var out []backend.WorkerInfo
	err := b.view(ctx, func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketWorkers).ForEach(func(k, v []byte) error {
			var w backend.WorkerInfo
			if err := json.Unmarshal(v, &w); err != nil {
				return nil // an unreadable entry is no live worker
			}
			if w.ExpiresAt.After(now) {
				out = append(out, w)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("bolt: workers: %w", err)
	}
	return out, nil
}
