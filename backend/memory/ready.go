package memory

import "slices"

// readyQueue holds the queued jobs of one queue: a FIFO per priority, the
// priorities highest first. Enqueue appends and Lease pops the front of the
// highest priority in O(1); a job released at shutdown or back from a stall
// goes to the front of its priority, since it was first in line before.
//
// Each entry carries the job's place (in entry.key): pushBack numbers up from
// 0 and pushFront down from 0, so that within a priority the FIFO order is
// the order of places. A job that Lease parks because its limit key is held
// back (see parked) keeps its place, which tells Lease where it stands
// against the jobs still here.
type readyQueue struct {
	levels []*level // by priority, highest first
	live   int
	stale  int
	back   int64 // place of the last job pushed at the back
	front  int64 // place of the last job pushed at the front
}

// level is the FIFO of one priority, a deque of chunks: a backlog of a
// million jobs grows it a chunk at a time, never copying its entries.
type level struct {
	prio int
	q    deque[entry]
}

// keepLevels is how many empty priority levels a queue keeps for reuse
// before it frees them.
const keepLevels = 4

// pushBack and pop do the deque's pushBack and popFront in place: the
// compiler does not inline those, and on this path, once per job in Enqueue
// and in Lease, the two calls would cost a sixth of the time
// (BenchmarkReadyQueue).
func (r *readyQueue) pushBack(j *job) {
	q := &r.level(j.Priority).q
	j.gen++
	r.back++
	if q.tail == len(q.tc) {
		q.addBack()
	}
	q.tc[q.tail] = entry{key: r.back, j: j, gen: j.gen}
	q.tail++
	r.live++
}

func (r *readyQueue) pushFront(j *job) {
	l := r.level(j.Priority)
	j.gen++
	r.front--
	l.q.pushFront(entry{key: r.front, j: j, gen: j.gen})
	r.live++
}

// pop removes and returns the first job of the highest priority and its
// place, or nil.
func (r *readyQueue) pop() (*job, int64) {
	for i := 0; i < len(r.levels); {
		q := &r.levels[i].q
		for q.len() > 0 {
			e := q.hc[q.head]
			q.hc[q.head] = entry{} // as popFront: the deque must not keep the job alive
			q.head++
			if q.head == len(q.hc) {
				q.passChunk()
			}
			if e.live() {
				r.live--
				e.j.gen++
				return e.j, e.key
			}
			r.stale--
		}
		if len(r.levels) > keepLevels {
			r.levels = slices.Delete(r.levels, i, i+1)
			continue
		}
		i++
	}
	return nil, 0
}

// peek returns the entry pop would take next, or nil, dropping stale
// entries on the way. The entry is valid until r changes.
func (r *readyQueue) peek() *entry {
	for i := 0; i < len(r.levels); {
		l := r.levels[i]
		for l.q.len() > 0 {
			if e := l.q.front(); e.live() {
				return e
			}
			l.q.popFront()
			r.stale--
		}
		if len(r.levels) > keepLevels {
			r.levels = slices.Delete(r.levels, i, i+1)
			continue
		}
		i++
	}
	return nil
}

// drop takes j, whose live entry is in r, out of r.
func (r *readyQueue) drop(j *job) {
	j.gen++
	r.live--
	r.stale++
	if r.stale >= purgeMin && r.stale > r.live {
		r.purge()
	}
}

func (r *readyQueue) purge() {
	for _, l := range r.levels {
		l.q.filter((*entry).live)
	}
	r.stale = 0
}

// level returns the FIFO of priority p, making it if needed.
func (r *readyQueue) level(p int) *level {
	lo, hi := 0, len(r.levels)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if r.levels[m].prio > p {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(r.levels) && r.levels[lo].prio == p {
		return r.levels[lo]
	}
	l := &level{prio: p}
	r.levels = append(r.levels, nil)
	copy(r.levels[lo+1:], r.levels[lo:])
	r.levels[lo] = l
	return l
}
