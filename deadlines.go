package engine

import (
	"context"
	"sync"
	"time"
)

// deadlines ends the pool's runs at their job's timeout with one timer for
// all of them, where a timer per run would cost two allocations and a
// runtime timer on every job. Runs are kept in a min-heap by deadline; the
// timer is armed for the earliest and moved only when a run with an
// earlier deadline arrives, which jobs of one timeout never do.
type deadlines struct {
	mu    sync.Mutex
	runs  runHeap
	armed time.Time     // when the loop wakes next; zero while it sleeps without a deadline
	wake  chan struct{} // tells the loop that an earlier deadline arrived (buffered, 1)
}

// add starts watching the deadlines of runs, under one lock for the batch.
func (d *deadlines) add(runs []*run) {
	earlier := false
	d.mu.Lock()
	for _, r := range runs {
		d.runs.push(r)
		if d.armed.IsZero() || r.ctx.deadline.Before(d.armed) {
			d.armed = r.ctx.deadline
			earlier = true
		}
	}
	d.mu.Unlock()
	if earlier {
		select {
		case d.wake <- struct{}{}:
		default:
		}
	}
}

// remove stops watching r; it does nothing when r is not watched.
func (d *deadlines) remove(r *run) {
	d.mu.Lock()
	if r.heapIndex >= 0 {
		d.runs.remove(int(r.heapIndex))
	}
	d.mu.Unlock()
}

// run ends runs whose deadline passed until ctx ends.
func (d *deadlines) run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var due []*run
	for {
		now := time.Now()
		d.mu.Lock()
		for len(d.runs) > 0 && !d.runs[0].ctx.deadline.After(now) {
			due = append(due, d.runs.remove(0))
		}
		wait := time.Hour
		d.armed = time.Time{}
		if len(d.runs) > 0 {
			d.armed = d.runs[0].ctx.deadline
			wait = d.armed.Sub(now)
		}
		d.mu.Unlock()
		for i, r := range due {
			r.timedOut()
			due[i] = nil
		}
		due = due[:0]
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-d.wake:
		case <-timer.C:
		}
	}
}

// runHeap is a min-heap of runs by deadline. Each run knows its index, so
// that a run that ends early leaves in O(log n). It is written out for the
// one type rather than through container/heap, whose interface calls cost
// more than the sifting itself on every job.
type runHeap []*run

// push adds r.
func (h *runHeap) push(r *run) {
	*h = append(*h, r)
	h.up(len(*h) - 1)
}

// remove takes out the run at index i and returns it.
func (h *runHeap) remove(i int) *run {
	s := *h
	r := s[i]
	last := len(s) - 1
	if i != last {
		s[i] = s[last]
		s[i].heapIndex = int32(i)
	}
	s[last] = nil
	*h = s[:last]
	if i != last {
		if !h.down(i) {
			h.up(i)
		}
	}
	r.heapIndex = -1
	return r
}

// up moves the run at i towards the root to its place.
func (h runHeap) up(i int) {
	r := h[i]
	for i > 0 {
		parent := (i - 1) / 2
		if !r.ctx.deadline.Before(h[parent].ctx.deadline) {
			break
		}
		h[i] = h[parent]
		h[i].heapIndex = int32(i)
		i = parent
	}
	h[i] = r
	r.heapIndex = int32(i)
}

// down moves the run at i towards the leaves to its place and reports
// whether it moved.
func (h runHeap) down(i int) bool {
	r := h[i]
	start := i
	for {
		child := 2*i + 1
		if child >= len(h) {
			break
		}
		if right := child + 1; right < len(h) && h[right].ctx.deadline.Before(h[child].ctx.deadline) {
			child = right
		}
		if !h[child].ctx.deadline.Before(r.ctx.deadline) {
			break
		}
		h[i] = h[child]
		h[i].heapIndex = int32(i)
		i = child
	}
	h[i] = r
	r.heapIndex = int32(i)
	return i > start
}
