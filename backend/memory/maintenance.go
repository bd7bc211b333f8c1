package memory

import (
	"container/heap"
	"context"
	"math"
	"time"

	"github.com/jobrelay/engine/backend"
)

// Promote queues due scheduled and retrying jobs, and opens the limit keys
// whose rate window or throttle has passed; see backend.Backend and
// backend.Limiter. Its next time is the earliest of the next RunAt and the
// next moment a held-back key opens.
func (b *Backend) Promote(ctx context.Context, now time.Time) (int, time.Time, error) {
	now = stamp(now)
	key := nanos(now)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, time.Time{}, errClosed
	}
	b.promotedAt = max(b.promotedAt, key)
	b.openDue(b.promotedAt)
	moved := 0
	for e := b.delayed.min(); e != nil && e.key <= key; e = b.delayed.min() {
		j := b.delayed.pop()
		b.makeQueued(j)
		b.emit(backend.EventQueued, j, now)
		moved++
	}
	var next time.Time
	if e := b.delayed.min(); e != nil {
		next = e.j.RunAt
	}
	if w := b.nextWake(); !w.IsZero() && (next.IsZero() || w.Before(next)) {
		next = w
	}
	return moved, next, nil
}

// Sweep deletes expired terminal jobs; see backend.Backend. A limit of zero
// or less means no limit. It also forgets unique keys of swept jobs once
// their UniqueUntil has passed, within the same limit, and worker entries
// that expired.
func (b *Backend) Sweep(ctx context.Context, now time.Time, limit int) (int, error) {
	now = stamp(now)
	if limit <= 0 {
		limit = math.MaxInt
	}
	key := nanos(now)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, errClosed
	}
	deleted := 0
	for e := b.expiring.min(); e != nil && e.key < key && deleted < limit; e = b.expiring.min() {
		j := b.expiring.pop()
		b.deleteLocked(j, now)
		deleted++
	}
	for n := 0; n < limit && len(b.tombs) > 0 && b.tombs[0].until <= key; n++ {
		t := heap.Pop(&b.tombs).(tomb)
		if h, ok := b.unique[t.key]; ok && h.j == nil && h.id == t.id {
			delete(b.unique, t.key)
		}
	}
	for id, w := range b.workers {
		if !w.ExpiresAt.After(now) {
			delete(b.workers, id)
		}
	}
	return deleted, nil
}

// deleteLocked removes a terminal job from every index. Its unique key
// outlives it as a tomb while UniqueUntil holds it.
func (b *Backend) deleteLocked(j *job, now time.Time) {
	b.jobs.delete(j)
	b.byID.remove(j)
	j.q.counts[stateIndex(j.State)]--
	if j.UniqueKey == "" {
		return
	}
	if h, ok := b.unique[j.UniqueKey]; ok && h.j == j {
		if j.UniqueUntil.After(now) {
			b.unique[j.UniqueKey] = uniqueHold{id: j.ID, state: j.State, until: j.UniqueUntil}
			heap.Push(&b.tombs, tomb{until: nanos(j.UniqueUntil), key: j.UniqueKey, id: j.ID})
		} else {
			delete(b.unique, j.UniqueKey)
		}
	}
}
