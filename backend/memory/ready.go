package memory

import "slices"

// readyQueue holds the queued jobs of one queue: a FIFO per priority, the
// priorities highest first. Enqueue appends and Lease pops the front of the
// highest priority in O(1); a job released at shutdown or back from a stall
// goes to the front of its priority, since it was first in line before.
//
// Each entry carries the job's place (in readyEntry.key): pushBack numbers
// up from 0 and pushFront down from 0, so that within a priority the FIFO
// order is the order of places. A job that Lease parks because its limit
// key is held back (see parked) keeps its place, which tells Lease where it
// stands against the jobs still here.
//
// An entry holds a job's record, or, for a job that Enqueue packed (see
// queuedBlock), where its packed bytes are: Lease makes the record when it
// pops the entry.
type readyQueue struct {
	levels []*level // by priority, highest first
	live   int
	stale  int
	back   int64 // place of the last job pushed at the back
	front  int64 // place of the last job pushed at the front
}

// readyEntry places a queued job in a readyQueue. An entry with a record
// is live while gen equals the record's gen, as entry is. An entry of a
// packed job (j is nil) has its handle in gen and its place in blk in off;
// it is live until a call that needed its record made one in its place
// (see queuedBlock.moved), and then as that record's entry.
type readyEntry struct {
	key int64
	j   *job
	blk *queuedBlock
	gen uint32
	off uint32
}

// live reports whether e still places its job here.
func (e *readyEntry) live() bool {
	if e.j != nil {
		return e.gen == e.j.gen
	}
	if e.blk.moved == nil {
		return true
	}
	m, ok := e.blk.moved[e.off]
	return !ok || m.gen == m.j.gen
}

// forget drops what the stale entry e keeps beside itself: the record
// made in place of its packed job (see queuedBlock.moved).
func (e *readyEntry) forget() {
	if e.j == nil {
		e.blk.takeMoved(*e)
	}
}

// level is the FIFO of one priority, a deque of chunks: a backlog of a
// million jobs grows it a chunk at a time, never copying its entries.
type level struct {
	prio int
	q    deque[readyEntry]
}

// keepLevels is how many empty priority levels a queue keeps for reuse
// before it frees them.
const keepLevels = 4

// pushBack and pop do the deque's pushBack and popFront in place: the
// compiler does not inline those, and on this path, once per job in Enqueue
// and in Lease, the two calls would cost a sixth of the time
// (BenchmarkReadyQueue).
func (r *readyQueue) pushBack(j *job) {
	j.gen++
	r.push(j.Priority, readyEntry{j: j, gen: j.gen})
}

// pushPacked appends the job that Enqueue packed at off in blk, with handle
// hd and priority prio.
func (r *readyQueue) pushPacked(prio int, blk *queuedBlock, off, hd uint32) {
	r.push(prio, readyEntry{blk: blk, off: off, gen: hd})
}

func (r *readyQueue) push(prio int, e readyEntry) {
	q := &r.level(prio).q
	r.back++
	e.key = r.back
	if q.tail == len(q.tc) {
		q.addBack()
	}
	q.tc[q.tail] = e
	q.tail++
	r.live++
}

func (r *readyQueue) pushFront(j *job) {
	l := r.level(j.Priority)
	j.gen++
	r.front--
	l.q.pushFront(readyEntry{key: r.front, j: j, gen: j.gen})
	r.live++
}

// pop removes the first live entry of the highest priority and returns it,
// or an entry with neither j nor blk set. An entry with a record has left
// it (its gen moved on); one of a packed job is the caller's to make a
// record of (see Backend.popReady).
func (r *readyQueue) pop() readyEntry {
	for i := 0; i < len(r.levels); {
		q := &r.levels[i].q
		for q.len() > 0 {
			e := q.hc[q.head]
			q.hc[q.head] = readyEntry{} // as popFront: the deque must not keep the job alive
			q.head++
			if q.head == len(q.hc) {
				q.passChunk()
			}
			if e.j == nil && e.blk.moved != nil {
				e = e.blk.takeMoved(e)
			}
			if e.j == nil || e.gen == e.j.gen {
				r.live--
				if e.j != nil {
					e.j.gen++
				}
				return e
			}
			r.stale--
		}
		if len(r.levels) > keepLevels {
			r.levels = slices.Delete(r.levels, i, i+1)
			continue
		}
		i++
	}
	return readyEntry{}
}

// peek returns the entry pop would take next and its priority, or nil,
// dropping stale entries on the way. The entry is valid until r changes.
func (r *readyQueue) peek() (*readyEntry, int) {
	for i := 0; i < len(r.levels); {
		l := r.levels[i]
		for l.q.len() > 0 {
			e := l.q.front()
			if e.live() {
				return e, l.prio
			}
			e.forget()
			l.q.popFront()
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
		l.q.filter(func(e *readyEntry) bool {
			if e.live() {
				return true
			}
			e.forget()
			return false
		})
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
