package memory

import (
	"container/heap"
	"slices"
)

// entry places a job in an index: a timeHeap or a readyQueue. It is live
// while gen equals the job's gen. Moving a job out of an index bumps its gen,
// which makes the old entry stale in O(1) with no search; an index skips
// stale entries when it meets them and purges them all once they make up
// half of it, so that it stays O(live jobs) in size.
type entry struct {
	key int64  // the heap's order key; the job's place in a readyQueue
	seq uint64 // ties by push order
	j   *job
	gen uint32
}

func (e *entry) live() bool { return e.gen == e.j.gen }

// purgeMin is the fewest stale entries worth a purge: below it, skipping them
// costs less than sweeping the index.
const purgeMin = 64

// timeHeap is a binary min-heap of entries by (key, seq): scheduled and
// retrying jobs by RunAt, active jobs by lease expiry, parked jobs by their
// place (see parked). The keys live in the entries, so that sifting never
// touches the jobs themselves.
type timeHeap struct {
	items []entry
	stale int
	seq   uint64
}

// push adds j with key; j must be in no index.
func (h *timeHeap) push(j *job, key int64) {
	h.seq++
	h.pushAt(j, key, h.seq)
}

// pushAt adds j with key and the tie-breaker seq that the caller chose.
func (h *timeHeap) pushAt(j *job, key int64, seq uint64) {
	j.gen++
	h.items = append(h.items, entry{key: key, seq: seq, j: j, gen: j.gen})
	h.up(len(h.items) - 1)
}

// min returns the live entry with the smallest key, or nil, dropping stale
// entries from the top on the way.
func (h *timeHeap) min() *entry {
	for len(h.items) > 0 {
		if e := &h.items[0]; e.live() {
			return e
		}
		h.removeTop()
		h.stale--
	}
	return nil
}

// pop removes and returns the job of the entry min returned.
func (h *timeHeap) pop() *job {
	j := h.items[0].j
	h.removeTop()
	j.gen++
	return j
}

// drop takes j, whose live entry is in h, out of h.
func (h *timeHeap) drop(j *job) {
	j.gen++
	h.stale++
	if h.stale >= purgeMin && h.stale > len(h.items)/2 {
		h.purge()
	}
}

func (h *timeHeap) purge() {
	live := h.items[:0]
	for _, e := range h.items {
		if e.live() {
			live = append(live, e)
		}
	}
	clear(h.items[len(live):]) // the backing array must not keep swept jobs alive
	h.items = live
	h.stale = 0
	for i := len(live)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

func (h *timeHeap) less(i, k int) bool {
	a, b := &h.items[i], &h.items[k]
	return a.key < b.key || a.key == b.key && a.seq < b.seq
}

func (h *timeHeap) removeTop() {
	n := len(h.items) - 1
	h.items[0] = h.items[n]
	h.items[n] = entry{}
	h.items = h.items[:n]
	if n > 0 {
		h.down(0)
	}
	if shrinkable(n, cap(h.items)) {
		h.items = slices.Clone(h.items)
	}
}

// shrinkable reports whether a buffer of capacity c holding n items should
// be reallocated smaller, so that a burst does not pin its memory for good.
// Buffers below 64Ki items are kept: regrowing them after every lull would
// cost more than the memory they hold.
func shrinkable(n, c int) bool { return c > 1<<16 && n < c/8 }

func (h *timeHeap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !h.less(i, p) {
			return
		}
		h.items[i], h.items[p] = h.items[p], h.items[i]
		i = p
	}
}

func (h *timeHeap) down(i int) {
	n := len(h.items)
	for {
		l := 2*i + 1
		if l >= n || l < 0 {
			return
		}
		c := l
		if r := l + 1; r < n && h.less(r, l) {
			c = r
		}
		if !h.less(c, i) {
			return
		}
		h.items[i], h.items[c] = h.items[c], h.items[i]
		i = c
	}
}

// tomb is a unique key whose job was swept while UniqueUntil still holds it.
type tomb struct {
	until int64
	key   string
	id    string
}

// tombHeap orders tombs by until so that Sweep can drop them when they lapse;
// it is small and rarely touched, so container/heap serves.
type tombHeap []tomb

func (h tombHeap) Len() int           { return len(h) }
func (h tombHeap) Less(i, k int) bool { return h[i].until < h[k].until }
func (h tombHeap) Swap(i, k int)      { h[i], h[k] = h[k], h[i] }
func (h *tombHeap) Push(x any)        { *h = append(*h, x.(tomb)) }
func (h *tombHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	*h = old[:len(old)-1]
	return t
}

var _ heap.Interface = (*tombHeap)(nil)
