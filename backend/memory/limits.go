package memory

import (
	"container/heap"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jobrelay/engine/backend"
)

// SetLimit stores the limit of l.Key; see backend.Limiter. Raising or
// removing a limit lets the jobs it held back be leased at once, and wakes
// blocked Lease calls.
func (b *Backend) SetLimit(ctx context.Context, now time.Time, l backend.Limit) error {
	switch {
	case l.Key == "":
		return fmt.Errorf("memory: set limit: empty key")
	case l.Concurrency < 0 || l.Rate < 0:
		return fmt.Errorf("memory: set limit %q: negative cap", l.Key)
	case l.Rate > 0 && l.Period <= 0:
		return fmt.Errorf("memory: set limit %q: a rate needs a positive period", l.Key)
	}
	remove := l.Concurrency == 0 && l.Rate == 0
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return errClosed
	}
	at := b.limitTime(now)
	k := b.limits[l.Key]
	if k == nil {
		if remove {
			return nil
		}
		k = b.keyLimitLocked(l.Key)
	}
	if remove {
		k.limit, k.set = backend.Limit{}, false
	} else {
		k.limit, k.set = l, true
	}
	k.starts.trim(k.limit.Rate)
	b.scheduleWake(k, at)
	b.openKey(k, at)
	b.forgetIdle(k, at)
	return nil
}

// Limits lists the stored limits ordered by key; see backend.Limiter.
func (b *Backend) Limits(ctx context.Context) ([]backend.Limit, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, errClosed
	}
	out := []backend.Limit{}
	for _, k := range b.limits {
		if k.set {
			out = append(out, k.limit)
		}
	}
	slices.SortFunc(out, func(a, b backend.Limit) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

// keyLimit is what the backend knows of one limit key in use: its stored
// Limit, if any, and what the limit is judged on. It exists while the key
// has a Limit, an active job, a parked job or a throttle, so that keys
// taken from jobs (one per tenant) do not pile up.
type keyLimit struct {
	key   string
	limit backend.Limit
	set   bool // a Limit is stored for key

	// active counts the key's active jobs, whether or not a Limit was
	// stored when they were leased: a cap set while they run counts them.
	active int
	// starts holds the times of the key's latest leases while the limit has
	// a Rate.
	starts startLog
	// throttled is when the throttle of OutcomeThrottled ends, in
	// nanoseconds; no job with the key is leased before it.
	throttled int64

	// lists holds the key's parked jobs, one list per queue.
	lists []*parked
	// wakeAt is when the rate window or the throttle that holds the key
	// back ends; wake is the key's index in Backend.wakes, -1 when it is
	// not there (nothing but its concurrency, if anything, holds it).
	wakeAt int64
	wake   int
}

// heldAt reports whether the key is held back at at (nanoseconds): Lease
// leases none of its jobs then.
func (k *keyLimit) heldAt(at int64) bool {
	if k.throttled > at {
		return true
	}
	if c := k.limit.Concurrency; c > 0 && k.active >= c {
		return true
	}
	return k.rateFull(at)
}

// rateFull reports whether Rate leases of the key fall in the window
// (at-Period, at]: a lease at t counts until, not at, t+Period.
func (k *keyLimit) rateFull(at int64) bool {
	r := k.limit.Rate
	return r > 0 && k.starts.len() >= r && k.starts.first() > at-int64(k.limit.Period)
}

// opensAt returns when the time-bound holds on the key (its throttle, its
// rate window) have all passed, or 0 when none holds at at. The time is
// always after at, so that openDue, which files a key again at it, ends.
func (k *keyLimit) opensAt(at int64) int64 {
	var t int64
	if k.throttled > at {
		t = k.throttled
	}
	if k.rateFull(at) {
		t = max(t, k.starts.first()+int64(k.limit.Period))
	}
	return t
}

// listIn returns the key's parked list in q, or nil.
func (k *keyLimit) listIn(q *queue) *parked {
	for _, p := range k.lists {
		if p.q == q {
			return p
		}
	}
	return nil
}

// startLog keeps the times of a key's latest leases, oldest first, in
// nanoseconds: at most Rate of them, which is all the sliding window needs.
// Leases arrive in time order but for a late clock, so a time is nearly
// always appended, and the oldest dropped, in O(1).
type startLog struct {
	times []int64 // times[head:] are kept
	head  int
}

func (s *startLog) len() int     { return len(s.times) - s.head }
func (s *startLog) first() int64 { return s.times[s.head] }

// add records a lease at t and keeps the newest keep times.
func (s *startLog) add(t int64, keep int) {
	if s.len() >= keep {
		if t <= s.first() {
			return // older than every kept time: it would be dropped at once
		}
		s.head++
	}
	if n := len(s.times); n == s.head || s.times[n-1] <= t {
		s.times = append(s.times, t)
	} else {
		i, _ := slices.BinarySearch(s.times[s.head:], t)
		s.times = slices.Insert(s.times, s.head+i, t)
	}
	s.trim(keep)
}

// trim keeps the newest keep times and gives back the room of dropped ones.
func (s *startLog) trim(keep int) {
	if keep <= 0 {
		*s = startLog{}
		return
	}
	if s.len() > keep {
		s.head = len(s.times) - keep
	}
	if s.head >= 32 && 2*s.head >= len(s.times) {
		n := copy(s.times, s.times[s.head:])
		s.times, s.head = s.times[:n], 0
	}
}

// parked holds the jobs of one queue that Lease passed over because their
// limit key was held back. They are still queued, and keep their place: the
// heap orders them as the queue does, by priority and then by the place
// their entry had in the readyQueue (entry.key ^priority, entry.seq the
// place; see parkedAt). Lease takes them from here, in turn with the ready
// jobs, once the key opens.
type parked struct {
	q    *queue
	k    *keyLimit
	jobs timeHeap
	n    int // live jobs
	open int // index in q.open, or -1 while the key is held back
}

// parkedAt gives the heap key of a job of priority prio at place: higher
// priorities first, then lower places.
func parkedAt(prio int, place int64) (int64, uint64) {
	return int64(^prio), uint64(place) ^ 1<<63
}

// ahead reports whether a ready job of priority prio at place stands
// before p's first job.
func (p *parked) ahead(prio int, place int64) bool {
	key, seq := parkedAt(prio, place)
	e := &p.jobs.items[0]
	return key < e.key || key == e.key && seq < e.seq
}

// openLists is a queue's parked lists whose key is open (or was when last
// seen), a heap by their first job, so that Lease finds the earliest
// parked job it may take in O(log n).
type openLists []*parked

func (h openLists) Len() int { return len(h) }
func (h openLists) Less(i, k int) bool {
	a, b := &h[i].jobs.items[0], &h[k].jobs.items[0]
	return a.key < b.key || a.key == b.key && a.seq < b.seq
}
func (h openLists) Swap(i, k int) {
	h[i], h[k] = h[k], h[i]
	h[i].open, h[k].open = i, k
}
func (h *openLists) Push(x any) {
	p := x.(*parked)
	p.open = len(*h)
	*h = append(*h, p)
}
func (h *openLists) Pop() any {
	old := *h
	p := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	p.open = -1
	return p
}

// wakeHeap orders the keys that a rate window or a throttle holds back by
// when it ends, for Promote's next time and for opening them when it comes.
type wakeHeap []*keyLimit

func (h wakeHeap) Len() int           { return len(h) }
func (h wakeHeap) Less(i, k int) bool { return h[i].wakeAt < h[k].wakeAt }
func (h wakeHeap) Swap(i, k int) {
	h[i], h[k] = h[k], h[i]
	h[i].wake, h[k].wake = i, k
}
func (h *wakeHeap) Push(x any) {
	k := x.(*keyLimit)
	k.wake = len(*h)
	*h = append(*h, k)
}
func (h *wakeHeap) Pop() any {
	old := *h
	k := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	k.wake = -1
	return k
}

// limitTime returns the time, in nanoseconds, at which limits are judged for
// a call made at now: now, or the now of the latest Promote if that is
// later. A Lease that blocked before a rate window opened and that the
// Promote at its opening wakes must see the window open, though its own now
// is from before.
func (b *Backend) limitTime(now time.Time) int64 {
	return max(nanos(now), b.promotedAt)
}

func (b *Backend) keyLimitLocked(key string) *keyLimit {
	k := b.limits[key]
	if k == nil {
		k = &keyLimit{key: key, wake: -1}
		b.limits[key] = k
	}
	return k
}

// nextJob takes the next job of q that its limit lets run at at and counts
// it against its key, or returns nil when none is left. A job whose key is
// held back is parked on the way. Ready jobs and the first jobs of the open
// parked lists are taken in the queue's order, so a parked job goes before
// every job that stood behind it.
func (b *Backend) nextJob(q *queue, at int64) *job {
	for {
		if len(q.open) == 0 {
			j, place := b.popReady(q)
			if j == nil || j.LimitKey == "" || b.admit(q, j, place, at) {
				return j
			}
			continue
		}
		p := q.open[0]
		if !p.jobs.items[0].live() {
			p.jobs.min() // drops the canceled jobs on top; p.n > 0 keeps one
			heap.Fix(&q.open, 0)
			continue
		}
		if e, prio := q.ready.peek(); e != nil && p.ahead(prio, e.key) {
			j, place := b.popReady(q)
			if j.LimitKey == "" || b.admit(q, j, place, at) {
				return j
			}
			continue
		}
		if p.k.heldAt(at) {
			heap.Remove(&q.open, 0)
			b.scheduleWake(p.k, at)
			continue
		}
		j := p.jobs.pop()
		j.held = nil
		if p.n--; p.n == 0 {
			b.dropList(p)
		} else {
			heap.Fix(&q.open, p.open)
		}
		b.started(p.k, at)
		return j
	}
}

// admit decides on a ready job j with a limit key that Lease met at place:
// it counts j against its key and returns true, or parks j when the key is
// held back, or when jobs of the key wait parked before it.
func (b *Backend) admit(q *queue, j *job, place int64, at int64) bool {
	k := b.keyLimitLocked(j.LimitKey)
	held := k.heldAt(at)
	p := k.listIn(q)
	if !held && (p == nil || p.open >= 0) {
		// An open list's jobs were compared with j already: j is first.
		b.started(k, at)
		return true
	}
	if p == nil {
		p = &parked{q: q, k: k, open: -1}
		k.lists = append(k.lists, p)
	}
	key, seq := parkedAt(j.Priority, place)
	p.jobs.pushAt(j, key, seq)
	j.held = p
	p.n++
	switch {
	case held && p.open >= 0:
		heap.Remove(&q.open, p.open)
	case held:
		b.scheduleWake(k, at)
	case p.open >= 0:
		heap.Fix(&q.open, p.open)
	default:
		heap.Push(&q.open, p)
	}
	return false
}

// started counts a lease of a job with key k at at.
func (b *Backend) started(k *keyLimit, at int64) {
	k.active++
	if k.limit.Rate > 0 {
		k.starts.add(at, k.limit.Rate)
		if k.rateFull(at) {
			b.scheduleWake(k, at)
		}
	}
}

// leaseEnded is called when an active job with a limit key stops being
// active, however it ended: its slot frees, and parked jobs may go.
func (b *Backend) leaseEnded(j *job, now time.Time) {
	k := b.limits[j.LimitKey]
	if k == nil {
		return
	}
	at := b.limitTime(now)
	k.active--
	b.openKey(k, at)
	b.forgetIdle(k, at)
}

// throttle holds back key until until (OutcomeThrottled). A throttle never
// ends an earlier one sooner.
func (b *Backend) throttle(key string, until time.Time, now time.Time) {
	k := b.keyLimitLocked(key)
	k.throttled = max(k.throttled, nanos(until))
	b.scheduleWake(k, b.limitTime(now))
}

// unpark takes a parked job out of its list (Cancel).
func (b *Backend) unpark(j *job, now time.Time) {
	p := j.held
	j.held = nil
	p.jobs.drop(j)
	if p.n--; p.n == 0 {
		b.dropList(p)
		b.forgetIdle(p.k, b.limitTime(now))
	} else if p.open >= 0 {
		heap.Fix(&p.q.open, p.open) // a purge may have changed its first job
	}
}

// dropList forgets a parked list that has no job left.
func (b *Backend) dropList(p *parked) {
	if p.open >= 0 {
		heap.Remove(&p.q.open, p.open)
	}
	k := p.k
	i := slices.Index(k.lists, p)
	k.lists[i] = k.lists[len(k.lists)-1]
	k.lists[len(k.lists)-1] = nil
	k.lists = k.lists[:len(k.lists)-1]
}

// openKey puts the parked lists of k back in turn when k is open at at,
// and wakes blocked Lease calls to take them.
func (b *Backend) openKey(k *keyLimit, at int64) {
	if len(k.lists) == 0 || k.heldAt(at) {
		return
	}
	for _, p := range k.lists {
		if p.open < 0 {
			heap.Push(&p.q.open, p)
		}
	}
	b.jobReady()
}

// scheduleWake files k in b.wakes at the time its rate window or throttle
// ends, or takes it out when neither holds it at at.
func (b *Backend) scheduleWake(k *keyLimit, at int64) {
	t := k.opensAt(at)
	switch {
	case t == 0:
		if k.wake >= 0 {
			heap.Remove(&b.wakes, k.wake)
		}
	case k.wake >= 0:
		k.wakeAt = t
		heap.Fix(&b.wakes, k.wake)
	default:
		k.wakeAt = t
		heap.Push(&b.wakes, k)
	}
}

// openDue opens the keys whose rate window or throttle has ended by at.
func (b *Backend) openDue(at int64) {
	for len(b.wakes) > 0 && b.wakes[0].wakeAt <= at {
		k := heap.Pop(&b.wakes).(*keyLimit)
		b.scheduleWake(k, at)
		b.openKey(k, at)
		b.forgetIdle(k, at)
	}
}

// nextWake returns when the first held-back key opens, or zero.
func (b *Backend) nextWake() time.Time {
	if len(b.wakes) == 0 {
		return time.Time{}
	}
	return time.Unix(0, b.wakes[0].wakeAt).UTC()
}

// forgetIdle drops k once nothing about it is left to remember.
func (b *Backend) forgetIdle(k *keyLimit, at int64) {
	if k.set || k.active > 0 || len(k.lists) > 0 || k.throttled > at || b.limits[k.key] != k {
		return
	}
	if k.wake >= 0 {
		heap.Remove(&b.wakes, k.wake)
	}
	delete(b.limits, k.key)
}
