package engine

import (
	"container/heap"
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

// add starts watching r's deadline.
func (d *deadlines) add(r *run) {
	d.mu.Lock()
	heap.Push(&d.runs, r)
	earlier := d.armed.IsZero() || r.ctx.deadline.Before(d.armed)
	if earlier {
		d.armed = r.ctx.deadline
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
		heap.Remove(&d.runs, r.heapIndex)
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
			due = append(due, heap.Pop(&d.runs).(*run))
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

// runHeap orders runs by deadline for container/heap; each run knows its
// index, so that a run that ends early leaves in O(log n).
type runHeap []*run

func (h runHeap) Len() int           { return len(h) }
func (h runHeap) Less(i, j int) bool { return h[i].ctx.deadline.Before(h[j].ctx.deadline) }
func (h runHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIndex = i
	h[j].heapIndex = j
}

func (h *runHeap) Push(x any) {
	r := x.(*run)
	r.heapIndex = len(*h)
	*h = append(*h, r)
}

func (h *runHeap) Pop() any {
	old := *h
	r := old[len(old)-1]
	old[len(old)-1] = nil
	r.heapIndex = -1
	*h = old[:len(old)-1]
	return r
}
