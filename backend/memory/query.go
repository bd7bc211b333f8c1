package memory

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jobrelay/engine/backend"
)

// defaultPageSize is the page size of List when the filter gives none, as
// backend.ListFilter documents.
const defaultPageSize = 100

// Job returns a copy of the stored job; see backend.Backend.
func (b *Backend) Job(ctx context.Context, id string) (*backend.Job, error) {
	b.lockBoth()
	defer b.unlockBoth()
	if b.closed {
		return nil, errClosed
	}
	j, hd, found := b.lookup(id)
	switch {
	case j != nil:
		return j.snapshot(), nil
	case found:
		return b.archivedJob(hd), nil
	}
	return nil, notFound("job", id)
}

// List returns a page of jobs in ID order; see backend.Backend. A filter on
// state or type scans the index from the cursor, which suits an operator's
// dashboard; the engine's hot path never lists.
func (b *Backend) List(ctx context.Context, f backend.ListFilter) (backend.Page, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = defaultPageSize
	}
	b.lockBoth()
	defer b.unlockBoth()
	if b.closed {
		return backend.Page{}, errClosed
	}
	var page backend.Page
	for c := b.byID.after(f.Cursor); ; c.next() {
		hd, ok := c.entry()
		if !ok {
			return page, nil
		}
		var queue, typ string
		var state backend.State
		j := b.liveAt(hd)
		if j != nil {
			queue, state, typ = j.Queue, j.State, j.Type
		} else {
			r := b.arch.recs.at(hd)
			queue, state, typ = b.queueAt[r.queue].name, r.state(), typeOf(b.arch.body(hd))
		}
		if f.Queue != "" && queue != f.Queue || f.State != "" && state != f.State || f.Type != "" && typ != f.Type {
			continue
		}
		if len(page.Jobs) == limit {
			// One more match exists: the page is not the last.
			page.Next = page.Jobs[limit-1].ID
			return page, nil
		}
		if j != nil {
			page.Jobs = append(page.Jobs, j.snapshot())
		} else {
			page.Jobs = append(page.Jobs, b.archivedJob(hd))
		}
	}
}

// Stats counts jobs per queue and state; see backend.Backend. Every state has
// an entry, zero or not, so that a dashboard can show each column.
func (b *Backend) Stats(ctx context.Context) ([]backend.QueueStats, error) {
	b.lockBoth() // for the counts of the jobs that Sweep deleted (see Sweep)
	defer b.unlockBoth()
	if b.closed {
		return nil, errClosed
	}
	out := make([]backend.QueueStats, 0, len(b.queues))
	for _, q := range b.queues {
		counts := make(map[backend.State]int, numStates)
		for _, s := range backend.States {
			counts[s] = q.counts[stateIndex(s)]
		}
		out = append(out, backend.QueueStats{Queue: q.name, Counts: counts,
			Processed: q.processed, Failed: q.failed, Paused: q.paused})
	}
	slices.SortFunc(out, func(a, b backend.QueueStats) int { return strings.Compare(a.Queue, b.Queue) })
	return out, nil
}

// RegisterWorker adds or refreshes a worker entry; see backend.Backend.
// LastHeartbeat becomes now and ExpiresAt now+ttl, whatever w says.
func (b *Backend) RegisterWorker(ctx context.Context, now time.Time, w backend.WorkerInfo, ttl time.Duration) error {
	if w.ID == "" {
		return fmt.Errorf("memory: register worker: empty ID")
	}
	now = stamp(now)
	w.Queues = slices.Clone(w.Queues)
	w.LastHeartbeat = now
	w.ExpiresAt = now.Add(ttl)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return errClosed
	}
	b.workers[w.ID] = w
	return nil
}

// RemoveWorker deletes a worker entry; see backend.Backend. An unknown id is
// not an error: the entry may have expired already.
func (b *Backend) RemoveWorker(ctx context.Context, id string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return errClosed
	}
	delete(b.workers, id)
	return nil
}

// Workers lists live workers ordered by ID; see backend.Backend. Entries
// expired at now are dropped on the way.
func (b *Backend) Workers(ctx context.Context, now time.Time) ([]backend.WorkerInfo, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, errClosed
	}
	out := make([]backend.WorkerInfo, 0, len(b.workers))
	for id, w := range b.workers {
		if !w.ExpiresAt.After(now) {
			delete(b.workers, id)
			continue
		}
		w.Queues = slices.Clone(w.Queues)
		out = append(out, w)
	}
	slices.SortFunc(out, func(a, b backend.WorkerInfo) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}
