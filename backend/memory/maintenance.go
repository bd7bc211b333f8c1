package memory

import (
	"container/heap"
	"context"
	"math"
	"strings"
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

// sweepChunk is how many expired jobs Sweep gathers before it deletes them,
// so that it can fetch their memory all at once first (see prefetchArchived).
const sweepChunk = 128

// Sweep deletes expired terminal jobs; see backend.Backend. A limit of zero
// or less means no limit. It also forgets unique keys of swept jobs once
// their UniqueUntil has passed, within the same limit, and worker entries
// that expired.
//
// It takes both mutexes, so that the jobs that ended before it are archived
// and so swept if they expired, and then deletes under smu alone: a store
// that keeps a day of jobs deletes as many as it finishes, and Lease and
// Finish go on meanwhile. The deleted jobs' queue counts, which mu guards,
// are taken off by the next call that holds both (see lockBoth).
func (b *Backend) Sweep(ctx context.Context, now time.Time, limit int) (int, error) {
	now = stamp(now)
	if limit <= 0 {
		limit = math.MaxInt
	}
	key := nanos(now)
	b.lockBoth()
	if b.closed {
		b.unlockBoth()
		return 0, errClosed
	}
	for id, w := range b.workers {
		if !w.ExpiresAt.After(now) {
			delete(b.workers, id)
		}
	}
	b.unlockMu()
	defer b.smu.Unlock()
	deleted := 0
	var chunk [sweepChunk]uint32
	var hashes [sweepChunk]uint64
	for deleted < limit {
		due := b.arch.popExpired(key, chunk[:0:min(len(chunk), limit-deleted)])
		if len(due) == 0 {
			break
		}
		hs := b.prefetchArchived(due, hashes[:0])
		for i, hd := range due {
			b.deleteLocked(hd, hs[i], now)
		}
		deleted += len(due)
	}
	for n := 0; n < limit && len(b.tombs) > 0 && b.tombs[0].until <= key; n++ {
		t := heap.Pop(&b.tombs).(tomb)
		if h, ok := b.unique[t.key]; ok && h.j == nil && !h.archived && h.id == t.id {
			delete(b.unique, t.key)
		}
	}
	return deleted, nil
}

// deleteLocked removes the archived job hd, whose ID hashes to h and whose
// expiring entry Sweep popped; the caller holds smu. Its unique key outlives
// it as a tomb while UniqueUntil holds it.
func (b *Backend) deleteLocked(hd uint32, h uint64, now time.Time) {
	r := *b.arch.recs.at(hd)
	for int(r.queue) >= len(b.swept) {
		b.swept = append(b.swept, [numStates]int{})
	}
	b.swept[r.queue][r.st]++
	b.sweptAny = true
	var key, id string
	var until time.Time
	if r.unique {
		key, until = uniqueOf(b.arch.body(hd))
		id = strings.Clone(b.arch.id(hd))
	}
	b.forget(hd, h)
	b.arch.remove(hd)
	if !r.unique {
		return
	}
	if h, ok := b.unique[key]; ok && h.archived && h.id == id {
		if until.After(now) {
			b.unique[key] = uniqueHold{id: id, state: r.state(), until: until}
			heap.Push(&b.tombs, tomb{until: nanos(until), key: key, id: id})
		} else {
			delete(b.unique, key)
		}
	}
}
