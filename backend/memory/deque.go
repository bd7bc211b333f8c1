package memory

// deque is a double-ended queue kept in chunks, for the queues that grow to
// millions of entries: a priority's ready jobs (see level) and the archived
// jobs in expiry order (see expiryHeap). A slice that grows by doubling
// copies all its entries at each doubling, and in a store that keeps a day
// of jobs that copying costs more per job than the job's own entry; here
// a full queue takes a new chunk and never moves an entry.
//
// The chunks form a ring, in order: the first entry is at head in hc, the
// last just before tail in tc, and the chunks between are full. A chunk
// that the head passes becomes a spare for the tail, or is freed: a queue
// keeps chunks for dequeKeep entries, as a slice below shrinkable's size
// is kept, so that one that fills and drains again and again does not
// allocate, and beyond that one spare, so that a long one does not either;
// it holds at most its entries and three chunks, or dequeKeep entries'
// worth. A queue that empties goes on to the end of its chunk and then
// starts it over. A new queue has
// chunks of 16 entries: when it needs another while it is at least half a
// chunk long, it moves its entries to chunks twice as large (or larger),
// until they hold 4096. A short queue stays small, and the copies stop at
// that size.
type deque[T any] struct {
	hc    []T  // the first chunk, chunks[c0]
	head  int  // the first entry's index in hc
	tc    []T  // the last chunk: the one that holds the last entry, if any
	tail  int  // the index in tc after the last entry
	shift uint // every chunk holds 1<<shift entries

	chunks []([]T) // a ring, a power of two long; those in use are from c0 on
	c0     int     // the ring index of hc
	used   int     // chunks in use
	spares []([]T) // chunks passed, zeroed, for the next ones needed
}

const (
	// dequeMinShift sets the size of a new deque's chunks: 16 entries.
	dequeMinShift = 4
	// dequeMaxShift sets the size of the largest chunks: 4096 entries.
	dequeMaxShift = 12
	// dequeKeep is how many entries the chunks that a deque keeps, in use
	// or spare, may hold.
	dequeKeep = 1 << 16
)

// len returns the number of entries: the slots of the chunks in use but
// those before head and after tail.
func (d *deque[T]) len() int { return d.used<<d.shift - (len(d.tc) - d.tail) - d.head }

// at returns entry i, counting from the front; 0 <= i < d.len().
func (d *deque[T]) at(i int) *T {
	p := d.head + i
	return &d.chunks[(d.c0+p>>d.shift)&(len(d.chunks)-1)][p&(1<<d.shift-1)]
}

// front returns the first entry; the deque is not empty.
func (d *deque[T]) front() *T { return &d.hc[d.head] }

// back returns the last entry; the deque is not empty.
func (d *deque[T]) back() *T { return &d.tc[d.tail-1] }

// pushBack appends v.
func (d *deque[T]) pushBack(v T) {
	if d.tail == len(d.tc) {
		d.addBack()
	}
	d.tc[d.tail] = v
	d.tail++
}

// pushFront prepends v.
func (d *deque[T]) pushFront(v T) {
	if d.head == 0 {
		d.addFront()
	}
	d.head--
	d.hc[d.head] = v
}

// popFront removes the first entry, which front returns; the deque is not
// empty. The slot is zeroed, so that the deque does not keep what the entry
// points to alive.
func (d *deque[T]) popFront() {
	var zero T
	d.hc[d.head] = zero
	d.head++
	if d.head == len(d.hc) {
		d.passChunk()
	}
}

// passChunk follows popFront when the head has passed the first chunk: a
// deque with no other chunk is empty and starts it over, and one with
// others drops it for the next. It runs once a chunk, so it is kept out of
// line, where it does not crowd the loops that pop.
//
//go:noinline
func (d *deque[T]) passChunk() {
	if d.used == 1 {
		d.head, d.tail = 0, 0
		return
	}
	d.free(d.hc)
	d.chunks[d.c0] = nil
	d.c0 = (d.c0 + 1) & (len(d.chunks) - 1)
	d.used--
	d.hc, d.head = d.chunks[d.c0], 0
}

// filter keeps, in order, only the entries for which keep returns true.
func (d *deque[T]) filter(keep func(*T) bool) {
	n, k := d.len(), 0
	for i := range n {
		if e := d.at(i); keep(e) {
			if k != i {
				*d.at(k) = *e
			}
			k++
		}
	}
	var zero T
	for i := k; i < n; i++ {
		*d.at(i) = zero
	}
	last := 0 // the chunk, counting from c0, that holds the last entry
	if k == 0 {
		d.tc, d.head, d.tail = d.hc, 0, 0
	} else {
		p := d.head + k - 1
		last = p >> d.shift
		d.tc, d.tail = d.chunks[(d.c0+last)&(len(d.chunks)-1)], p&(1<<d.shift-1)+1
	}
	for d.used > last+1 {
		i := (d.c0 + d.used - 1) & (len(d.chunks) - 1)
		d.free(d.chunks[i])
		d.chunks[i] = nil
		d.used--
	}
}

// addBack makes room after the last entry: it adds a chunk after the last
// one, or, while the deque is short, moves its entries to larger chunks.
func (d *deque[T]) addBack() {
	if d.shift == 0 {
		d.shift = dequeMinShift
	}
	if d.grown() && d.tail < len(d.tc) {
		return
	}
	d.ensureRing()
	c := d.chunk()
	d.chunks[(d.c0+d.used)&(len(d.chunks)-1)] = c
	d.used++
	d.tc, d.tail = c, 0
	if d.used == 1 {
		d.hc, d.head = c, 0
	}
}

// addFront makes room before the first entry: it adds a chunk before the
// first one, after moving the entries to larger chunks as addBack does.
func (d *deque[T]) addFront() {
	if d.shift == 0 {
		d.shift = dequeMinShift
	}
	if d.used > 0 && d.len() == 0 {
		d.head, d.tail = len(d.hc), len(d.hc) // fill the chunk from its end
		return
	}
	d.grown()
	d.ensureRing()
	c := d.chunk()
	d.c0 = (d.c0 - 1) & (len(d.chunks) - 1)
	d.chunks[d.c0] = c
	d.used++
	d.hc, d.head = c, len(c)
	if d.used == 1 {
		d.tc, d.tail = c, len(c)
	}
}

// grown doubles the size of the chunks (or more, up to the largest, for a
// long deque), moving the entries to the front of new ones, if the deque is
// at least half a chunk long and its chunks are below the largest size, and
// reports whether it did. Each doubling copies fewer than twice the entries
// of a largest chunk, all of them together fewer than four times.
func (d *deque[T]) grown() bool {
	n := d.len()
	if d.shift >= dequeMaxShift || n < 1<<d.shift/2 {
		return false
	}
	shift := d.shift + 1
	for shift < dequeMaxShift && 1<<shift < 2*n {
		shift++
	}
	used := (n + 1<<shift - 1) >> shift
	ring := max(2, len(d.chunks))
	for ring < used {
		ring *= 2
	}
	chunks := make([]([]T), ring)
	for c := range used {
		chunks[c] = make([]T, 1<<shift)
	}
	for i := range n {
		chunks[i>>shift][i&(1<<shift-1)] = *d.at(i)
	}
	last := (n - 1) >> shift
	*d = deque[T]{hc: chunks[0], tc: chunks[last], tail: (n-1)&(1<<shift-1) + 1, shift: shift,
		chunks: chunks, used: used}
	return true
}

// ensureRing makes room in the ring for one more chunk, keeping the chunks
// in use in order from c0.
func (d *deque[T]) ensureRing() {
	if d.used < len(d.chunks) {
		return
	}
	chunks := make([]([]T), max(2, 2*len(d.chunks)))
	for c := range d.used {
		chunks[c] = d.chunks[(d.c0+c)&(len(d.chunks)-1)]
	}
	d.chunks, d.c0 = chunks, 0
}

// chunk returns an empty chunk: a spare or a new one.
func (d *deque[T]) chunk() []T {
	if n := len(d.spares); n > 0 {
		c := d.spares[n-1]
		d.spares[n-1] = nil
		d.spares = d.spares[:n-1]
		return c
	}
	return make([]T, 1<<d.shift)
}

// free keeps chunk c, which is still counted in use and whose entries are
// zero, as a spare if it has the current size and the deque keeps fewer
// than dequeKeep entries' worth of chunks, or no spare.
func (d *deque[T]) free(c []T) {
	if len(c) == 1<<d.shift && (len(d.spares) == 0 || (d.used+len(d.spares))<<d.shift <= dequeKeep) {
		d.spares = append(d.spares, c)
	}
}
