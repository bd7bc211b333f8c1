package engine

import (
	"sync"
	"time"

	"github.com/jobrelay/engine/backend"
)

// ackQueue carries the workers' acknowledgements to the acker: two slices
// under a mutex, where a channel costs a send and a receive for every job.
// The acker takes everything waiting in one step and sleeps on wake only
// when it found nothing. A worker that finds the queue full (the backend
// is slow or failing) waits for room, so that a stuck acker stops the pool
// rather than letting outcomes pile up.
type ackQueue struct {
	mu       sync.Mutex
	runs     []*run
	acks     []backend.Ack // acks[i] acknowledges runs[i]
	limit    int
	closed   bool
	sleeping bool          // the acker waits on wake
	wake     chan struct{} // buffered, 1
	blocked  int           // workers waiting on room
	room     sync.Cond
}

func newAckQueue(limit int) *ackQueue {
	q := &ackQueue{limit: limit, wake: make(chan struct{}, 1)}
	q.room.L = &q.mu
	return q
}

// put queues the acknowledgement of r, waiting while the queue is full.
func (q *ackQueue) put(r *run, ack backend.Ack) {
	q.mu.Lock()
	for len(q.runs) >= q.limit {
		q.blocked++
		q.room.Wait()
		q.blocked--
	}
	q.runs = append(q.runs, r)
	q.acks = append(q.acks, ack)
	wake := q.sleeping
	q.sleeping = false
	q.mu.Unlock()
	if wake {
		q.signal()
	}
}

// close tells the acker that no more acknowledgements come, once it took
// those queued.
func (q *ackQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.signal()
}

func (q *ackQueue) signal() {
	select {
	case q.wake <- struct{}{}:
	default: // a wake-up is pending already
	}
}

// take appends what is queued to runs and acks, waiting while nothing is,
// until expire fires (nil: no limit). It reports false once the queue is
// closed and empty, or expire fired.
func (q *ackQueue) take(runs []*run, acks []backend.Ack, expire <-chan time.Time) ([]*run, []backend.Ack, bool) {
	for {
		q.mu.Lock()
		if len(q.runs) > 0 {
			runs, acks = q.takeLocked(runs, acks)
			q.mu.Unlock()
			return runs, acks, true
		}
		if q.closed {
			q.mu.Unlock()
			return runs, acks, false
		}
		q.sleeping = true
		q.mu.Unlock()
		select {
		case <-q.wake:
		case <-expire:
			q.mu.Lock()
			q.sleeping = false
			q.mu.Unlock()
			return runs, acks, false
		}
	}
}

func (q *ackQueue) takeLocked(runs []*run, acks []backend.Ack) ([]*run, []backend.Ack) {
	if len(q.runs) == 0 {
		return runs, acks
	}
	if len(runs) == 0 {
		// Swap rather than copy: the queue goes on in the caller's
		// emptied slices.
		runs, q.runs = q.runs, runs[:0]
		acks, q.acks = q.acks, acks[:0]
	} else {
		runs = append(runs, q.runs...)
		acks = append(acks, q.acks...)
		clear(q.runs)
		clear(q.acks)
		q.runs, q.acks = q.runs[:0], q.acks[:0]
	}
	if q.blocked > 0 {
		q.room.Broadcast()
	}
	return runs, acks
}
