package bolt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/bbolt"

	"github.com/jobrelay/engine/backend"
)

// txn is one write transaction of the commit loop, shared by the ops of a
// batch. It keeps the index buckets at hand, gathers the events of the
// transitions (published only after the commit), and sums counter changes
// per queue so that each queue's counters are written once per commit.
type txn struct {
	b      *Backend
	tx     *bbolt.Tx
	jobs   *bbolt.Bucket
	ready  *bbolt.Bucket
	sched  *bbolt.Bucket
	leases *bbolt.Bucket
	expiry *bbolt.Bucket
	unique *bbolt.Bucket
	uexp   *bbolt.Bucket
	deps   *bbolt.Bucket
	queues *bbolt.Bucket
	paused *bbolt.Bucket
	work   *bbolt.Bucket

	seq     uint64
	dirty   bool
	events  []backend.Event
	wake    bool // wake blocked Lease calls after the commit (Resume)
	counts  map[string]*counters
	cursors map[*bbolt.Bucket]*bbolt.Cursor

	// The ready-index changes of this transaction, which Lease sees
	// through the overlay while the transaction commits: keys added (to
	// the job ID) and keys that were there before and are deleted.
	addedReady   map[string]string
	deletedReady map[string]struct{}

	kbuf []byte // scratch for keys to delete

	claimsDone [][]byte // ready keys of the claims this transaction wrote
	jseq       uint64   // the highest journal sequence this transaction wrote

	limitChanges []limitChange // handed to the limiter once applied whole

	// heldAt is where the events held back by the transaction before
	// (Backend.held) go among this one's, or -1 when this transaction
	// writes no claims.
	heldAt int
}

func newTxn(b *Backend, tx *bbolt.Tx) *txn {
	t := &txn{
		b:      b,
		tx:     tx,
		jobs:   tx.Bucket(bucketJobs),
		ready:  tx.Bucket(bucketReady),
		sched:  tx.Bucket(bucketSched),
		leases: tx.Bucket(bucketLeases),
		expiry: tx.Bucket(bucketExpiry),
		unique: tx.Bucket(bucketUnique),
		uexp:   tx.Bucket(bucketUExpiry),
		deps:   tx.Bucket(bucketDeps),
		queues: tx.Bucket(bucketQueues),
		paused: tx.Bucket(bucketPaused),
		work:   tx.Bucket(bucketWorkers),
		seq:    b.seq,
		events: b.eventBuf[:0],
		heldAt: -1,
	}
	// Job IDs, ready keys and time keys mostly grow, so pages split near
	// the end and can be packed full.
	t.jobs.FillPercent = 0.9
	t.ready.FillPercent = 0.9
	t.expiry.FillPercent = 0.9
	t.leases.FillPercent = 0.9
	return t
}

// flush writes the counters and the sequence before the commit.
func (t *txn) flush() error {
	for q, c := range t.counts {
		t.dirty = true
		if err := t.queues.Put(queueKey(q), c.encode()); err != nil {
			return fmt.Errorf("bolt: write counters of queue %q: %w", q, err)
		}
	}
	if t.jseq > 0 {
		t.dirty = true
		if err := t.tx.Bucket(bucketMeta).Put(metaJournalKey, binary.BigEndian.AppendUint64(nil, t.jseq)); err != nil {
			return fmt.Errorf("bolt: write journal sequence: %w", err)
		}
	}
	if t.seq != t.b.seq {
		if err := t.tx.Bucket(bucketMeta).Put(metaSeqKey, binary.BigEndian.AppendUint64(nil, t.seq)); err != nil {
			return fmt.Errorf("bolt: write sequence: %w", err)
		}
	}
	return nil
}

// journalSeq returns the highest lease-journal sequence whose claim is in
// the database.
func (t *txn) journalSeq() uint64 {
	if v := t.tx.Bucket(bucketMeta).Get(metaJournalKey); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// setJournalSeq raises the journal sequence this transaction stores.
func (t *txn) setJournalSeq(seq uint64) { t.jseq = max(t.jseq, seq) }

// queueCounters returns the counters of queue, registering the queue when
// it is new.
func (t *txn) queueCounters(queue string) *counters {
	if c, ok := t.counts[queue]; ok {
		return c
	}
	if t.counts == nil {
		t.counts = make(map[string]*counters)
	}
	c := decodeCounters(t.queues.Get(queueKey(queue)))
	t.counts[queue] = &c
	return &c
}

// count moves one job of queue from state from to state to ("" for none).
func (t *txn) count(queue string, from, to backend.State) {
	c := t.queueCounters(queue)
	if i := stateCode(from); i > 0 {
		c.states[i-1]--
	}
	if i := stateCode(to); i > 0 {
		c.states[i-1]++
	}
}

func (t *txn) event(ev backend.Event) { t.events = append(t.events, ev) }

// jobEvent builds the event of a transition of r that has just happened.
func jobEvent(kind backend.EventKind, r *record, now time.Time) backend.Event {
	return backend.Event{
		Kind:    kind,
		JobID:   r.ID,
		Type:    r.Type,
		Queue:   r.Queue,
		State:   r.State,
		Attempt: r.Attempt,
		Time:    now,
	}
}

// load reads a job. It returns (nil, nil) when there is no such job and an
// error wrapping ErrCorruptJob when its record does not decode.
func (t *txn) load(id string) (*record, error) {
	if id == "" {
		return nil, nil
	}
	v := t.get(t.jobs, []byte(id))
	if v == nil {
		return nil, nil
	}
	r, err := decodeRecord(id, v, t.b.loopNames)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %v", ErrCorruptJob, id, err)
	}
	return r, nil
}

func (t *txn) save(r *record) error {
	t.dirty = true
	t.forget(r.ID)
	if err := t.jobs.Put([]byte(r.ID), encodeRecord(r)); err != nil {
		return fmt.Errorf("bolt: write job %s: %w", r.ID, err)
	}
	return nil
}

// put and del are the only ways ops write indexes; they mark the
// transaction dirty, so that a batch that wrote nothing is rolled back
// instead of paying for a commit and its fsync.
func (t *txn) put(b *bbolt.Bucket, k, v []byte) error {
	t.dirty = true
	if b == t.ready {
		t.readyAdded(k, v)
	}
	if err := b.Put(k, v); err != nil {
		return fmt.Errorf("bolt: write index: %w", err)
	}
	return nil
}

func (t *txn) del(b *bbolt.Bucket, k []byte) error {
	c := t.cursor(b)
	if ck, _ := c.Seek(k); ck == nil || !bytes.Equal(ck, k) {
		return nil
	}
	t.dirty = true
	if b == t.ready {
		t.readyDeleted(k)
	}
	if err := c.Delete(); err != nil {
		return fmt.Errorf("bolt: delete index: %w", err)
	}
	return nil
}

// cursor returns the transaction's cursor on b. Point reads and deletes go
// through it rather than Bucket.Get and Bucket.Delete, which make a new
// cursor (and its stack) on every call.
func (t *txn) cursor(b *bbolt.Bucket) *bbolt.Cursor {
	if c, ok := t.cursors[b]; ok {
		return c
	}
	if t.cursors == nil {
		t.cursors = make(map[*bbolt.Bucket]*bbolt.Cursor, 8)
	}
	c := b.Cursor()
	t.cursors[b] = c
	return c
}

// get is Bucket.Get through the transaction's cursor.
func (t *txn) get(b *bbolt.Bucket, k []byte) []byte {
	ck, v := t.cursor(b).Seek(k)
	if ck == nil || !bytes.Equal(ck, k) {
		return nil
	}
	return v
}

// unindex removes r from the index of its current state.
//
// Keys to delete are built in a scratch buffer: bbolt keeps no reference
// to a deleted key (it does to the keys and values it stores).
func (t *txn) unindex(r *record) error {
	switch r.State {
	case backend.StateQueued:
		t.kbuf = appendReadyKey(t.kbuf[:0], r.Queue, r.Priority, r.seq)
		return t.del(t.ready, t.kbuf)
	case backend.StateScheduled, backend.StateRetrying:
		t.kbuf = appendTimeKey(t.kbuf[:0], r.RunAt, r.ID)
		return t.del(t.sched, t.kbuf)
	case backend.StateActive:
		t.kbuf = appendTimeKey(t.kbuf[:0], r.LeaseExpiresAt, r.ID)
		return t.del(t.leases, t.kbuf)
	case backend.StateDeferred:
		for _, d := range r.DependsOn {
			if err := t.del(t.deps, depKey(d, r.ID)); err != nil {
				return err
			}
		}
	case backend.StateCompleted, backend.StateFailed, backend.StateCanceled:
		t.kbuf = appendTimeKey(t.kbuf[:0], r.ExpiresAt, r.ID)
		return t.del(t.expiry, t.kbuf)
	}
	return nil
}

// index adds r to the index of its current state. A job that becomes
// queued takes the next sequence number (FIFO within its priority), unless
// keepSeq: a job that comes back from a lease (released or stalled) keeps
// the place it had. Blocked Lease calls wake once the transaction is
// applied (apply wakes them when the overlay has new ready keys).
func (t *txn) index(r *record, keepSeq bool) error {
	switch r.State {
	case backend.StateQueued:
		if !keepSeq || r.seq == 0 {
			t.seq++
			r.seq = t.seq
		}
		return t.put(t.ready, readyKey(r.Queue, r.Priority, r.seq), []byte(r.ID))
	case backend.StateScheduled, backend.StateRetrying:
		return t.put(t.sched, timeKey(r.RunAt, r.ID), append([]byte{stateCode(r.State)}, r.Queue...))
	case backend.StateActive:
		return t.put(t.leases, timeKey(r.LeaseExpiresAt, r.ID), []byte(r.Queue))
	case backend.StateDeferred:
		for _, d := range r.DependsOn {
			if err := t.put(t.deps, depKey(d, r.ID), []byte(r.Queue)); err != nil {
				return err
			}
		}
	case backend.StateCompleted, backend.StateFailed, backend.StateCanceled:
		return t.put(t.expiry, timeKey(r.ExpiresAt, r.ID), append([]byte{stateCode(r.State)}, r.Queue...))
	}
	return nil
}

// move takes r from its stored state to a new one: mutate changes the
// record, then move rewrites the indexes whose keys changed, the counters
// and the record itself.
func (t *txn) move(r *record, mutate func(*record)) error {
	old := *r
	mutate(r)
	if old.State != r.State || !old.RunAt.Equal(r.RunAt) ||
		!old.LeaseExpiresAt.Equal(r.LeaseExpiresAt) || !old.ExpiresAt.Equal(r.ExpiresAt) {
		if err := t.unindex(&old); err != nil {
			return err
		}
		if err := t.index(r, old.State == backend.StateActive); err != nil {
			return err
		}
	}
	if old.State != r.State {
		t.count(r.Queue, old.State, r.State)
		if r.LimitKey != "" {
			t.limitMoved(&old, r)
		}
	}
	return t.save(r)
}

// finishTerminal stamps r as having reached a terminal state at now: its
// lease is dropped and Sweep may delete it after its TTL.
func finishTerminal(r *record, state backend.State, now time.Time) {
	r.State = state
	r.FinishedAt = now
	ttl := r.FailureTTL
	if state == backend.StateCompleted {
		ttl = r.ResultTTL
	}
	r.ExpiresAt = now.Add(ttl)
	clearLease(r)
}

func clearLease(r *record) {
	r.LeaseToken = ""
	r.LeaseExpiresAt = time.Time{}
	r.Worker = ""
	r.CancelRequested = false
	r.cancelReason = ""
}

// makeReady makes a job that may run queued, or scheduled when its RunAt is
// still ahead.
func makeReady(r *record, now time.Time) {
	if r.RunAt.After(now) {
		r.State = backend.StateScheduled
	} else {
		r.State = backend.StateQueued
	}
}

// resolveDependents settles the jobs waiting on r, which has just reached a
// terminal state. When r completed, a dependent whose dependencies have all
// completed becomes queued (or scheduled). When r failed or was canceled,
// its dependents are canceled, and theirs in turn. Only a job that ever had
// a dependent (hasDependents) is looked up in the dependency index, so that
// the common job pays nothing for the feature.
func (t *txn) resolveDependents(r *record, now time.Time) error {
	if !r.hasDependents {
		return nil
	}
	work := []*record{r}
	for len(work) > 0 {
		d := work[len(work)-1]
		work = work[:len(work)-1]
		prefix := queuePrefix(d.ID)
		var keys [][]byte
		var queues []string
		c := t.deps.Cursor()
		for k, v := c.Seek(prefix); k != nil && hasPrefix(k, prefix); k, v = c.Next() {
			keys = append(keys, append([]byte(nil), k...))
			queues = append(queues, string(v))
		}
		// Keys are deleted after the cursor loop: deleting under a bbolt
		// cursor skips the entry that follows.
		for _, k := range keys {
			if err := t.del(t.deps, k); err != nil {
				return err
			}
		}
		for i, k := range keys {
			id := string(k[len(prefix):])
			r, err := t.load(id)
			if err != nil {
				if err := t.quarantine(id, err, now, queues[i], backend.StateDeferred); err != nil {
					return err
				}
				continue
			}
			if r == nil || r.State != backend.StateDeferred {
				continue
			}
			if d.State == backend.StateCompleted {
				blocked, failedDep, failedState := t.waitingOn(r)
				if blocked {
					continue
				}
				if failedDep != "" {
					if err := t.cancelDeferred(r, failedDep, failedState, now); err != nil {
						return err
					}
					if r.hasDependents {
						work = append(work, r)
					}
					continue
				}
				if err := t.move(r, func(r *record) { makeReady(r, now) }); err != nil {
					return err
				}
				e := jobEvent(backend.EventQueued, r, now)
				e.RunAt = r.RunAt
				t.event(e)
				continue
			}
			if err := t.cancelDeferred(r, d.ID, d.State, now); err != nil {
				return err
			}
			if r.hasDependents {
				work = append(work, r)
			}
		}
	}
	return nil
}

// waitingOn reports whether r still waits for a dependency, or names one
// that failed or was canceled. A dependency that no longer exists was swept
// after it completed (one that failed would have canceled r already).
func (t *txn) waitingOn(r *record) (blocked bool, failed string, state backend.State) {
	for _, d := range r.DependsOn {
		dr, err := t.load(d)
		if err != nil {
			return false, d, backend.StateFailed
		}
		if dr == nil || dr.State == backend.StateCompleted || d == r.ID {
			continue
		}
		if dr.State == backend.StateFailed || dr.State == backend.StateCanceled {
			return false, d, dr.State
		}
		blocked = true
	}
	return blocked, "", ""
}

// cancelDeferred cancels a job whose dependency dep ended in state.
func (t *txn) cancelDeferred(r *record, dep string, state backend.State, now time.Time) error {
	err := t.move(r, func(r *record) {
		finishTerminal(r, backend.StateCanceled, now)
		r.Error = dependencyError(dep, state)
	})
	if err != nil {
		return err
	}
	ev := jobEvent(backend.EventCanceled, r, now)
	ev.Error = r.Error
	t.event(ev)
	return nil
}

func dependencyError(dep string, state backend.State) string {
	return fmt.Sprintf("dependency %s %s", dep, state)
}

func hasPrefix(k, prefix []byte) bool {
	return len(k) >= len(prefix) && string(k[:len(prefix)]) == string(prefix)
}

// corruptRetention is how long a job failed for a corrupt record is kept
// (its own FailureTTL cannot be read), so that an operator can see it.
const corruptRetention = 7 * 24 * time.Hour

// quarantine turns a job whose record does not decode into a failed job
// whose Error says why, so that it stops coming back and everything else
// runs on. Nothing of the record can be trusted, so its queue and former
// state come from its index entries, found by a scan of the indexes (a
// corrupt record is rare; the scan also removes the entries), or else from
// what the caller's index said (queue and was).
func (t *txn) quarantine(id string, cause error, now time.Time, queue string, was backend.State) error {
	if !errors.Is(cause, ErrCorruptJob) {
		return cause
	}
	if t.get(t.jobs, []byte(id)) == nil {
		return nil
	}
	if q, st, found, err := t.dropIndexEntries(id); err != nil {
		return err
	} else if found {
		queue, was = q, st
	}
	r := &record{}
	r.ID = id
	r.Queue = queue
	r.FailureTTL = corruptRetention
	r.Error = fmt.Sprintf("%v (the job cannot run)", cause)
	finishTerminal(r, backend.StateFailed, now)
	if err := t.put(t.expiry, timeKey(r.ExpiresAt, r.ID), append([]byte{stateCode(r.State)}, r.Queue...)); err != nil {
		return err
	}
	t.leftActive(id, now) // a no-op unless its lease took a limit slot
	if was != "" {
		t.count(queue, was, backend.StateFailed)
		t.queueCounters(queue).failed++
	}
	if err := t.save(r); err != nil {
		return err
	}
	ev := jobEvent(backend.EventFailed, r, now)
	ev.Error = r.Error
	t.event(ev)
	return nil
}

// dropIndexEntries deletes every index entry of job id, found by scanning
// the indexes, and returns the queue and state they give.
func (t *txn) dropIndexEntries(id string) (queue string, state backend.State, found bool, err error) {
	type hit struct {
		b   *bbolt.Bucket
		key []byte
	}
	var hits []hit
	scan := func(b *bbolt.Bucket, match func(k, v []byte) (string, backend.State, bool)) {
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if q, st, ok := match(k, v); ok {
				hits = append(hits, hit{b, append([]byte(nil), k...)})
				queue, state, found = q, st, true
			}
		}
	}
	byTimeKey := func(fixed backend.State) func(k, v []byte) (string, backend.State, bool) {
		return func(k, v []byte) (string, backend.State, bool) {
			if len(k) < 12 || string(k[12:]) != id {
				return "", "", false
			}
			if fixed != "" {
				return string(v), fixed, true
			}
			if len(v) == 0 {
				return "", "", true
			}
			st, _ := stateOf(v[0])
			return string(v[1:]), st, true
		}
	}
	scan(t.ready, func(k, v []byte) (string, backend.State, bool) {
		return prefixedName(k), backend.StateQueued, string(v) == id
	})
	scan(t.sched, byTimeKey(""))
	scan(t.leases, byTimeKey(backend.StateActive))
	scan(t.expiry, byTimeKey(""))
	scan(t.deps, func(k, v []byte) (string, backend.State, bool) {
		n := len(prefixedName(k)) + 2
		return string(v), backend.StateDeferred, len(k) >= n && string(k[n:]) == id
	})
	// Deleted after the scans: deleting under a bbolt cursor skips the
	// entry that follows.
	for _, h := range hits {
		if err := t.del(h.b, h.key); err != nil {
			return "", "", false, err
		}
	}
	return queue, state, found, nil
}
