package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.etcd.io/bbolt"

	"github.com/jobrelay/engine/backend"
)

// Limits live in two places. The Limit of each key is stored in the limits
// bucket (so it survives a restart) and mirrored in memory at Open; what a
// limit is judged on — the key's active jobs, the times of its latest
// leases, its throttle — is kept in memory only. One process holds the file
// and Open reaps every lease, so active counts rightly start at zero; rate
// windows and throttles start empty after a reopen.
//
// Lease judges a job with a limit key as it meets it in the ready index.
// A job whose key is held back is parked: its ready key goes into the key's
// parked list for its queue, in memory, and the job stays queued in the
// file. Lease's floor moves past it like past a claimed job, so held-back
// jobs are never walked again while their key stays held back, and they
// never block the jobs behind them. While the key is open, Lease merges the
// heads of its parked lists with the ready index by ready key, so a parked
// job goes before every job that stood behind it: it keeps its place.
//
// All of it is guarded by claimMu, which Lease holds while it decides and
// the commit loop holds while it applies ops. Ops never change it directly:
// they record what happened (a lease ended, a key throttled, a limit set)
// in their txn, and apply hands it over once the whole transaction has been
// applied, so that a batch replayed op by op is not counted twice.

// limiter is the in-memory state of limits; see the comment above.
type limiter struct {
	keys map[string]*keyState
	// byQueue holds, per queue, the parked lists that have jobs.
	byQueue map[string][]*parkList
	// parkedKeys holds the ready keys of every parked job, so that a Lease
	// walking the ready index again (its floor reset) passes over them.
	parkedKeys map[string]struct{}
	// active maps each leased job with a limit key to that key, so that
	// the end of its lease frees the slot it took, once.
	active map[string]string
	// promotedAt is the latest now given to Promote (see at).
	promotedAt time.Time
}

// keyState is what the backend knows of one limit key in use. It exists
// while the key has a Limit, active jobs, parked jobs or a throttle, so that
// keys taken from jobs (one per tenant) do not pile up.
type keyState struct {
	key   string
	limit backend.Limit
	set   bool

	// active counts the key's active jobs, whether or not a Limit was set
	// when they were leased: a cap set while they run counts them.
	active int
	// starts holds the times of the key's latest leases, oldest first, at
	// most Rate of them: all a sliding window needs.
	starts []time.Time
	// throttled is when the key's throttle (OutcomeThrottled) ends.
	throttled time.Time

	parked  map[string]*parkList // by queue
	nParked int
}

// parkList is a key's parked jobs in one queue: their ready keys, sorted.
type parkList struct {
	k     *keyState
	queue string
	keys  [][]byte
}

func newLimiter() limiter {
	return limiter{
		keys:       make(map[string]*keyState),
		byQueue:    make(map[string][]*parkList),
		parkedKeys: make(map[string]struct{}),
		active:     make(map[string]string),
	}
}

// at returns the time at which limits are judged for a call made at now:
// now, or the now of the latest Promote if that is later. A Lease that
// blocked before a rate window opened, and that the Promote at its opening
// wakes, must see the window open though its own now is from before.
func (l *limiter) at(now time.Time) time.Time {
	if l.promotedAt.After(now) {
		return l.promotedAt
	}
	return now
}

func (l *limiter) key(name string) *keyState {
	k := l.keys[name]
	if k == nil {
		k = &keyState{key: name}
		l.keys[name] = k
	}
	return k
}

// held reports whether k is held back at at: Lease leases none of its jobs.
func (k *keyState) held(at time.Time) bool {
	if k.throttled.After(at) {
		return true
	}
	if c := k.limit.Concurrency; c > 0 && k.active >= c {
		return true
	}
	return k.rateFull(at)
}

// rateFull reports whether Rate leases of k fall in the window
// (at-Period, at]: a lease at t counts until, not at, t+Period.
func (k *keyState) rateFull(at time.Time) bool {
	r := k.limit.Rate
	return r > 0 && len(k.starts) >= r && k.starts[0].After(at.Add(-k.limit.Period))
}

// opensAt returns when the time-bound holds on k (throttle, rate window)
// have all passed, or zero when none holds at at.
func (k *keyState) opensAt(at time.Time) time.Time {
	var t time.Time
	if k.throttled.After(at) {
		t = k.throttled
	}
	if k.rateFull(at) {
		if w := k.starts[0].Add(k.limit.Period); w.After(t) {
			t = w
		}
	}
	return t
}

// trimStarts keeps the newest Rate lease times.
func (k *keyState) trimStarts() {
	r := k.limit.Rate
	if r <= 0 {
		k.starts = nil
		return
	}
	if n := len(k.starts); n > r {
		k.starts = append(k.starts[:0], k.starts[n-r:]...)
	}
}

// admit decides on a queued job id of queue with limit key name, met at key
// in the ready index: it counts the lease and returns true, or parks the
// job and returns false when the key is held back at at.
func (l *limiter) admit(name, queue, id string, key []byte, at time.Time) bool {
	k := l.key(name)
	if k.held(at) {
		l.park(k, queue, key)
		return false
	}
	k.active++
	l.active[id] = name
	if k.limit.Rate > 0 {
		i := len(k.starts)
		for i > 0 && k.starts[i-1].After(at) { // a late clock: keep them sorted
			i--
		}
		k.starts = slices.Insert(k.starts, i, at)
		k.trimStarts()
	}
	return true
}

// park files key in k's parked list for queue.
func (l *limiter) park(k *keyState, queue string, key []byte) {
	p := k.parked[queue]
	if p == nil {
		p = &parkList{k: k, queue: queue}
		if k.parked == nil {
			k.parked = make(map[string]*parkList)
		}
		k.parked[queue] = p
		l.byQueue[queue] = append(l.byQueue[queue], p)
	}
	key = bytes.Clone(key)
	i, found := slices.BinarySearchFunc(p.keys, key, bytes.Compare)
	if found {
		return
	}
	p.keys = slices.Insert(p.keys, i, key)
	k.nParked++
	l.parkedKeys[string(key)] = struct{}{}
}

// firstOpen returns the parked list of queue whose key is open at at and
// whose first job stands first, or nil.
func (l *limiter) firstOpen(queue string, at time.Time) *parkList {
	var best *parkList
	for _, p := range l.byQueue[queue] {
		if p.k.held(at) {
			continue
		}
		if best == nil || bytes.Compare(p.keys[0], best.keys[0]) < 0 {
			best = p
		}
	}
	return best
}

// pop takes the first job of p out of its list.
func (l *limiter) pop(p *parkList) []byte {
	key := p.keys[0]
	p.keys[0] = nil
	p.keys = p.keys[1:]
	l.unparked(p, key)
	return key
}

// unpark takes key out of the parked list of the job's key and queue, if it
// is there (the job left the queue while parked: canceled).
func (l *limiter) unpark(name, queue string, key []byte) {
	k := l.keys[name]
	if k == nil || k.parked[queue] == nil {
		return
	}
	p := k.parked[queue]
	i, found := slices.BinarySearchFunc(p.keys, key, bytes.Compare)
	if !found {
		return
	}
	p.keys = slices.Delete(p.keys, i, i+1)
	l.unparked(p, key)
}

func (l *limiter) unparked(p *parkList, key []byte) {
	delete(l.parkedKeys, string(key))
	p.k.nParked--
	if len(p.keys) > 0 {
		return
	}
	delete(p.k.parked, p.queue)
	lists := l.byQueue[p.queue]
	i := slices.Index(lists, p)
	lists[i] = lists[len(lists)-1]
	lists[len(lists)-1] = nil
	if lists = lists[:len(lists)-1]; len(lists) == 0 {
		delete(l.byQueue, p.queue)
	} else {
		l.byQueue[p.queue] = lists
	}
}

// ended frees the slot of job id, if it took one; it reports whether the
// key has parked jobs that may now go.
func (l *limiter) ended(id string, at time.Time) bool {
	name, ok := l.active[id]
	if !ok {
		return false
	}
	delete(l.active, id)
	k := l.keys[name]
	k.active--
	open := k.nParked > 0
	l.forgetIdle(k, at)
	return open
}

// forgetIdle drops k once nothing about it is left to remember.
func (l *limiter) forgetIdle(k *keyState, at time.Time) {
	if k.set || k.active > 0 || k.nParked > 0 || k.throttled.After(at) {
		return
	}
	delete(l.keys, k.key)
}

// limitChange is what a transaction did to limits; apply hands it to the
// limiter once the transaction has been applied whole.
type limitChange struct {
	kind  limitChangeKind
	id    string // limitEnded: the job
	key   string // limitThrottled: the limit key
	queue string // limitUnparked
	ready []byte // limitUnparked: the job's ready key
	at    time.Time
	limit backend.Limit // limitSet
}

type limitChangeKind uint8

const (
	limitEnded     limitChangeKind = iota + 1 // an active job stopped being active
	limitThrottled                            // OutcomeThrottled on a job with a limit key
	limitUnparked                             // a queued job with a limit key left the queue
	limitSet                                  // SetLimit
)

// applyLimits hands the transaction's limit changes to the limiter.
// claimMu must be held. It reports whether blocked Lease calls should look
// again: a key with parked jobs may have opened.
func (t *txn) applyLimits() (wake bool) {
	l := &t.b.lim
	// Throttles first, so that a freed slot does not wake Lease calls for a
	// key that stays held back.
	for i := range t.limitChanges {
		c := &t.limitChanges[i]
		if c.kind == limitThrottled {
			k := l.key(c.key)
			if c.at.After(k.throttled) { // a throttle never ends an earlier one sooner
				k.throttled = c.at
			}
		}
	}
	for i := range t.limitChanges {
		c := &t.limitChanges[i]
		switch c.kind {
		case limitEnded:
			wake = l.ended(c.id, l.at(c.at)) || wake
		case limitUnparked:
			l.unpark(c.key, c.queue, c.ready)
		case limitSet:
			k := l.key(c.limit.Key)
			k.limit, k.set = c.limit, c.limit.Concurrency > 0 || c.limit.Rate > 0
			if !k.set {
				k.limit = backend.Limit{}
			}
			k.trimStarts()
			wake = wake || k.nParked > 0
			l.forgetIdle(k, l.at(c.at))
		}
	}
	clear(t.limitChanges)
	t.limitChanges = t.limitChanges[:0]
	return wake
}

// leftActive records that r, a job with a limit key, stopped being active.
func (t *txn) leftActive(id string, now time.Time) {
	t.limitChanges = append(t.limitChanges, limitChange{kind: limitEnded, id: id, at: now})
}

// SetLimit stores the limit of l.Key, replacing the one before; see
// backend.Limiter. It returns once the limit is committed. Raising or
// removing a limit wakes blocked Lease calls to take the jobs it held back.
func (b *Backend) SetLimit(ctx context.Context, now time.Time, l backend.Limit) error {
	switch {
	case l.Key == "":
		return fmt.Errorf("bolt: set limit: empty key")
	case len(l.Key) > maxKeyLen:
		return fmt.Errorf("bolt: set limit %.64q: key longer than %d bytes", l.Key, maxKeyLen)
	case l.Concurrency < 0 || l.Rate < 0:
		return fmt.Errorf("bolt: set limit %q: negative cap", l.Key)
	case l.Rate > 0 && l.Period <= 0:
		return fmt.Errorf("bolt: set limit %q: a rate needs a positive period", l.Key)
	}
	if l.Rate == 0 {
		l.Period = 0
	}
	if err := b.check(ctx); err != nil {
		return fmt.Errorf("bolt: set limit %q: %w", l.Key, err)
	}
	err := b.do(ctx, func(t *txn) error {
		bucket := t.tx.Bucket(bucketLimits)
		if l.Concurrency == 0 && l.Rate == 0 {
			if err := t.del(bucket, []byte(l.Key)); err != nil {
				return err
			}
		} else if err := t.put(bucket, []byte(l.Key), encodeLimit(l)); err != nil {
			return err
		}
		t.dirty = true
		t.limitChanges = append(t.limitChanges, limitChange{kind: limitSet, limit: l, at: now})
		return nil
	})
	if err != nil {
		return fmt.Errorf("bolt: set limit %q: %w", l.Key, err)
	}
	return nil
}

// Limits lists the stored limits ordered by key; see backend.Limiter.
func (b *Backend) Limits(ctx context.Context) ([]backend.Limit, error) {
	if err := b.check(ctx); err != nil {
		return nil, fmt.Errorf("bolt: limits: %w", err)
	}
	b.claimMu.Lock()
	out := []backend.Limit{}
	for _, k := range b.lim.keys {
		if k.set {
			out = append(out, k.limit)
		}
	}
	b.claimMu.Unlock()
	slices.SortFunc(out, func(a, b backend.Limit) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

// promoteLimits records a Promote at now: keys whose rate window or
// throttle has passed by then open, and blocked Lease calls wake to take
// their parked jobs. It returns the earliest time a key still held back by
// time opens, or zero.
func (b *Backend) promoteLimits(now time.Time) time.Time {
	b.claimMu.Lock()
	l := &b.lim
	if len(l.keys) == 0 {
		if now.After(l.promotedAt) {
			l.promotedAt = now
		}
		b.claimMu.Unlock()
		return time.Time{}
	}
	if now.After(l.promotedAt) {
		l.promotedAt = now
	}
	at := l.promotedAt
	var next time.Time
	wake := false
	for _, k := range l.keys {
		if t := k.opensAt(at); !t.IsZero() {
			if next.IsZero() || t.Before(next) {
				next = t
			}
			continue
		}
		if k.nParked > 0 && !k.held(at) {
			wake = true
		}
		l.forgetIdle(k, at)
	}
	b.claimMu.Unlock()
	if wake {
		b.wake()
	}
	return next
}

// loadLimits reads the stored limits into memory (Open).
func (b *Backend) loadLimits(tx *bbolt.Tx) error {
	return tx.Bucket(bucketLimits).ForEach(func(k, v []byte) error {
		l, err := decodeLimit(string(k), v)
		if err != nil {
			return err
		}
		ks := b.lim.key(l.Key)
		ks.limit, ks.set = l, true
		return nil
	})
}

// encodeLimit gives the stored form of a limit: a version byte, then
// Concurrency, Rate and Period (nanoseconds) as uvarints.
func encodeLimit(l backend.Limit) []byte {
	v := []byte{1}
	v = binary.AppendUvarint(v, uint64(l.Concurrency))
	v = binary.AppendUvarint(v, uint64(l.Rate))
	return binary.AppendUvarint(v, uint64(l.Period))
}

func decodeLimit(key string, v []byte) (backend.Limit, error) {
	l := backend.Limit{Key: key}
	if len(v) == 0 || v[0] != 1 {
		return l, fmt.Errorf("limit %q: unknown record version", key)
	}
	v = v[1:]
	var f [3]uint64
	for i := range f {
		x, n := binary.Uvarint(v)
		if n <= 0 {
			return l, fmt.Errorf("limit %q: truncated record", key)
		}
		f[i], v = x, v[n:]
	}
	l.Concurrency, l.Rate, l.Period = int(f[0]), int(f[1]), time.Duration(f[2])
	return l, nil
}

// limitMoved records what a state change of old into r, a job with a limit
// key, does to limits: a lease that ends frees its slot; a queued job that
// leaves the queue leaves its parked list.
func (t *txn) limitMoved(old, r *record) {
	switch old.State {
	case backend.StateActive:
		t.leftActive(r.ID, time.Time{})
	case backend.StateQueued:
		t.limitChanges = append(t.limitChanges, limitChange{kind: limitUnparked, key: r.LimitKey,
			queue: old.Queue, ready: readyKey(old.Queue, old.Priority, old.seq)})
	}
}
