package engine

import (
	"sync"
	"sync/atomic"
)

// runQueue hands started runs to the pool's workers. A worker whose run
// ended takes the next queued run without parking, and a parked worker is
// woken only when no awake worker is on its way to the queue: handing each
// run to a parked worker cost a goroutine wake-up and switch per job, about
// as much CPU as a no-op job's whole run. The wake-ups chain: a worker that
// takes a run and leaves more queued wakes one more, so that a queued run
// never waits behind a handler while a worker is parked.
type runQueue struct {
	mu      sync.Mutex
	parking sync.Cond // parked workers wait here
	runs    []*run    // queued from head on
	head    int
	parked  int // workers waiting on parking, signalled or not
	closed  bool
	// searching counts the workers that will look at the queue before they
	// park or run a handler: those whose run just ended and those a wake
	// was sent to. It rises without the lock (a worker counts itself
	// before it frees its slot, so the dispatcher, which leases for free
	// slots only, sees it) and falls under it. Once the queue is closed
	// every worker is woken and the count no longer matters.
	searching atomic.Int32
}

func newRunQueue(workers int) *runQueue {
	q := &runQueue{}
	q.parking.L = &q.mu
	q.searching.Store(int32(workers))
	return q
}

// search counts a worker that will call take next (its run ended, or it is
// new) as searching. A worker whose run ended calls it before it frees its
// slot.
func (q *runQueue) search() { q.searching.Add(1) }

// push queues started runs and wakes a worker if none is searching.
func (q *runQueue) push(runs []*run) {
	q.mu.Lock()
	q.runs = append(q.runs, runs...)
	q.wakeLocked()
	q.mu.Unlock()
}

// take returns the next queued run, parking while there is none; the
// caller counts as searching until it returns. It reports false once the
// queue is closed and empty.
func (q *runQueue) take() (*run, bool) {
	q.mu.Lock()
	for q.head == len(q.runs) {
		q.searching.Add(-1)
		if q.closed {
			q.mu.Unlock()
			return nil, false
		}
		q.parked++
		q.parking.Wait() // the waker counted this worker as searching
		q.parked--
	}
	r := q.runs[q.head]
	q.runs[q.head] = nil
	q.head++
	if q.head == len(q.runs) {
		q.runs, q.head = q.runs[:0], 0
	}
	q.searching.Add(-1)
	q.wakeLocked()
	q.mu.Unlock()
	return r, true
}

// wakeLocked wakes one parked worker when runs are queued and no worker is
// searching; q.mu is held.
func (q *runQueue) wakeLocked() {
	if q.head < len(q.runs) && q.parked > 0 && q.searching.Load() <= 0 {
		q.searching.Add(1)
		q.parking.Signal()
	}
}

// close wakes every worker to take what is queued and then leave.
func (q *runQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.searching.Add(int32(q.parked))
	q.mu.Unlock()
	q.parking.Broadcast()
}
