package engine

import (
	"sync"
	"sync/atomic"
)

// runTable holds the runs of this process, from their start to their
// acknowledgement, so that a cancel request, the heartbeat and shutdown can
// reach them. Each run has a slot, so that starting and ending one is a
// store and a free-list push, where a map by job ID cost a hash, an insert
// and a delete on every job; the rare lookups by ID (a cancel of a job
// running here) scan the slots instead.
type runTable struct {
	mu    sync.Mutex
	slots []*run  // nil where free
	free  []int32 // free slots, the last freed on top
	// count is the number of runs held; read without the lock by the
	// acker on every batch.
	count atomic.Int64
}

// add gives each run of the batch a slot, under one lock for the batch.
func (t *runTable) add(runs ...*run) {
	t.mu.Lock()
	for _, r := range runs {
		if n := len(t.free); n > 0 {
			r.slot = t.free[n-1]
			t.free = t.free[:n-1]
			t.slots[r.slot] = r
		} else {
			r.slot = int32(len(t.slots))
			t.slots = append(t.slots, r)
		}
	}
	t.count.Add(int64(len(runs)))
	t.mu.Unlock()
}

// remove frees the slots of the runs that hold one, under one lock for
// the batch.
func (t *runTable) remove(runs ...*run) {
	t.mu.Lock()
	removed := 0
	for _, r := range runs {
		if r.slot >= 0 && t.slots[r.slot] == r {
			t.slots[r.slot] = nil
			t.free = append(t.free, r.slot)
			r.slot = -1
			removed++
		}
	}
	t.count.Add(-int64(removed))
	t.mu.Unlock()
}

// len is the number of runs held.
func (t *runTable) len() int { return int(t.count.Load()) }

// appendAll appends every run held to runs.
func (t *runTable) appendAll(runs []*run) []*run {
	t.mu.Lock()
	for _, r := range t.slots {
		if r != nil {
			runs = append(runs, r)
		}
	}
	t.mu.Unlock()
	return runs
}

// find appends the runs of job id to runs: one, or more when this process
// took the job again after losing its lease while the first run's handler
// still goes on.
func (t *runTable) find(id string, runs []*run) []*run {
	t.mu.Lock()
	for _, r := range t.slots {
		if r != nil && r.view.ID == id {
			runs = append(runs, r)
		}
	}
	t.mu.Unlock()
	return runs
}
