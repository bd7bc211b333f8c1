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

// level is the FIFO of one priority: a ring of entries.
type level struct {
	prio int
	buf  []entry // len is a power of two
	head int
	n    int
}

// keepLevels is how many empty priority levels a queue keeps for reuse
// before it frees them.
const keepLevels = 4

func (r *readyQueue) pushBack(j *job) {
	l := r.level(j.Priority)
	l.grow()
	j.gen++
	r.back++
	l.buf[(l.head+l.n)&(len(l.buf)-1)] = entry{key: r.back, j: j, gen: j.gen}
	l.n++
	r.live++
}

func (r *readyQueue) pushFront(j *job) {
	l := r.level(j.Priority)
	l.grow()
	j.gen++
	r.front--
	l.head = (l.head - 1) & (len(l.buf) - 1)
	l.buf[l.head] = entry{key: r.front, j: j, gen: j.gen}
	l.n++
	r.live++
}

// pop removes and returns the first job of the highest priority and its
// place, or nil.
func (r *readyQueue) pop() (*job, int64) {
	for i := 0; i < len(r.levels); {
		l := r.levels[i]
		for l.n > 0 {
			e := l.buf[l.head]
			l.buf[l.head] = entry{}
			l.head = (l.head + 1) & (len(l.buf) - 1)
			l.n--
			if shrinkable(l.n, len(l.buf)) {
				l.resize(len(l.buf) / 4)
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
		for l.n > 0 {
			if e := &l.buf[l.head]; e.live() {
				return e
			}
			l.buf[l.head] = entry{}
			l.head = (l.head + 1) & (len(l.buf) - 1)
			l.n--
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
		k := 0
		for i := range l.n {
			e := l.buf[(l.head+i)&(len(l.buf)-1)]
			if e.live() {
				l.buf[(l.head+k)&(len(l.buf)-1)] = e
				k++
			}
		}
		for i := k; i < l.n; i++ {
			l.buf[(l.head+i)&(len(l.buf)-1)] = entry{}
		}
		l.n = k
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

// grow makes room for one more entry.
func (l *level) grow() {
	if l.n < len(l.buf) {
		return
	}
	l.resize(max(16, 2*len(l.buf)))
}

// resize moves the entries into a ring of size (a power of two, >= n).
func (l *level) resize(size int) {
	buf := make([]entry, size)
	for i := range l.n {
		buf[i] = l.buf[(l.head+i)&(len(l.buf)-1)]
	}
	l.buf, l.head = buf, 0
}
