package bolt

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"go.etcd.io/bbolt"

	"github.com/jobrelay/engine/backend"
)

// Leasing does not wait for a commit.
//
// A worker's Lease is on the engine's critical path: with N workers, at most
// N jobs are leased per Lease round trip, so a Lease that waited for the
// next commit and its fsyncs would cap throughput at N jobs per commit,
// however fast the disk. So Lease decides in the caller's goroutine, on the
// state the commit loop has applied so far: the last committed state (a
// read transaction), plus the overlay of the transaction that is committing
// now (ready keys it added, with their records, and ready keys it deleted),
// minus the jobs already claimed by other Lease calls. The decision is a
// claim; the commit loop writes the claims at the start of its next
// transaction, before any other op, so that no op can come between a
// claim and its write. claimMu makes Lease and the loop's apply phase take
// turns, so a claim is always made on the state right after an apply.
//
// A claim is not durable when Lease returns, and needs not be: if the
// process dies first, the job is still queued in the file and runs again,
// as at-least-once allows (a written lease would have been reaped on Open
// all the same). The lease journal (journal.go) makes sure such a death
// still counts as a stall. Reads wait for the claims' commit (settle), so a
// caller that leased sees the job active in Job, List and Stats.
//
// The overlay also lets Lease take a job that the committing transaction
// made ready, before that commit ends: a released or promoted job right
// away, and an enqueued one possibly before its Enqueue returns. Should
// that commit fail (an I/O error), such a lease is void and its worker
// finds it lost.

// claim is a lease decided by Lease and not yet written.
type claim struct {
	key     []byte // the job's ready key when it was claimed
	id      string
	token   string
	worker  string
	now     time.Time
	expires time.Time

	seq   uint64 // its lease-journal sequence
	queue string
	pre   []byte        // the record as Lease read it
	post  []byte        // the record with the lease applied
	event backend.Event // its EventActive
}

// overlayEntry is a ready key added by the transaction being committed,
// with a copy of its job's record.
type overlayEntry struct {
	key    string
	id     string
	record []byte
}

// overlay is what the transaction being committed changed in the ready
// index.
type overlay struct {
	added   []overlayEntry // sorted by key
	deleted map[string]struct{}
}

// Lease takes up to req.Max queued jobs, queue by queue in the order given,
// skipping paused queues. It decides in the caller's goroutine and returns
// without waiting for a commit (the leases are written by the commit loop's
// next transaction), so that a worker's round trip does not include an
// fsync. With req.Block and nothing ready it waits for a job to become
// queued in this process, then looks again, until Block has passed.
func (b *Backend) Lease(ctx context.Context, req backend.LeaseRequest) ([]*backend.Lease, error) {
	if err := b.check(ctx); err != nil {
		return nil, err
	}
	limit := max(req.Max, 1)
	var timer *time.Timer
	began, now := time.Now(), req.Now
	for waited := false; ; waited = true {
		if waited {
			// Leases taken after a wait are stamped with the time they
			// are taken: lease expiry and rate windows count from then.
			req.Now = now.Add(time.Since(began))
		}
		wake := b.wakeChan()
		out, taken, err := b.claim(req, limit)
		if err != nil {
			return nil, fmt.Errorf("bolt: lease: %w", err)
		}
		if len(out) == 0 && taken != nil {
			// Held back for a durable call's sake (see claimShare):
			// look again once the loop has taken the claims.
			select {
			case <-taken:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-b.closing:
				return nil, backend.ErrClosed
			}
		}
		if len(out) > 0 || req.Block <= 0 {
			return out, nil
		}
		if timer == nil {
			timer = time.NewTimer(req.Block)
			defer timer.Stop()
		}
		select {
		case <-wake:
		case <-timer.C:
			return out, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-b.closing:
			return nil, backend.ErrClosed
		}
	}
}

// claimShare bounds the claims that Lease adds to the next transaction
// while durable calls (Enqueue, Cancel, ...) wait for a commit: as many as
// the jobs those calls bring, and at least claimShare. Lease does not wait
// for commits, so with a backlog its workers drain jobs as fast as the CPU
// allows, and every claim (and its completion) adds pages to a commit and
// time to its fsync: with a million jobs queued, each Enqueue waited
// behind hundreds of them. Past the share, Lease waits until the commit
// loop has taken the claims, so that the drain keeps pace with what comes
// in rather than crowding it out. With no durable call waiting, nothing
// holds Lease back.
const claimShare = 8

// claimLimit returns how many claims the next transaction may hold: no
// bound while no durable call waits, else as many as the jobs those calls
// bring, and at least claimShare.
func (b *Backend) claimLimit() int {
	w := b.durableWaiting.Load()
	if w <= 0 {
		return math.MaxInt
	}
	return int(max(w, claimShare))
}

// claim picks up to limit jobs for req and records the claims for the
// commit loop; see the comment at the top of this file. When it takes no
// job because of claimShare, taken is the channel that is closed once the
// loop has taken the pending claims.
func (b *Backend) claim(req backend.LeaseRequest, limit int) (out []*backend.Lease, taken <-chan struct{}, err error) {
	b.claimMu.Lock()
	defer b.claimMu.Unlock()
	if b.claimsClosed {
		return nil, nil, backend.ErrClosed
	}
	share := b.claimLimit()
	if len(b.claims) >= share {
		return nil, b.claimsTaken, nil
	}
	tx, err := b.db.Begin(false)
	if err != nil {
		return nil, nil, mapClosed(err)
	}
	defer func() { _ = tx.Rollback() }()
	ready, paused := tx.Bucket(bucketReady), tx.Bucket(bucketPaused)
	var jobs *bbolt.Bucket
	now := req.Now
	expires := now.Add(req.TTL)
	lim := &b.lim
	at := lim.at(now)
	var claims []*claim
	limit = min(limit, share-len(b.claims))
	for _, q := range req.Queues {
		if len(out) >= limit {
			break
		}
		if paused.Get(queueKey(q)) != nil {
			continue
		}
		prefix := queuePrefix(q)
		added := b.overlay.added
		i, _ := slices.BinarySearchFunc(added, string(prefix), func(e overlayEntry, p string) int {
			return cmpString(e.key, p)
		})
		// Committed keys up to the queue's floor were all consumed by
		// earlier calls (claimed, deleted, or handed to repair): start
		// after it, so that outstanding claims are not walked again.
		c := ready.Cursor()
		floor := b.floor[q]
		var k, v []byte
		if floor == nil {
			k, v = c.Seek(prefix)
		} else if k, v = c.Seek(floor); k != nil && bytes.Equal(k, floor) {
			k, v = c.Next()
		}
		// Parked jobs (limits.go) stand below the floor; while their key
		// is open they are merged in by ready key. Most queues have none.
		_, hasParked := lim.byQueue[q]
		for len(out) < limit {
			if k != nil && !bytes.HasPrefix(k, prefix) {
				k = nil
			}
			hasAdded := i < len(added) && hasPrefix([]byte(added[i].key), prefix)
			var pl *parkList
			if hasParked {
				pl = lim.firstOpen(q, at)
			}
			if k == nil && !hasAdded && pl == nil {
				break
			}
			// Merge the committed ready keys with the overlay's, in key
			// order; a key in both (the commit finished while we read) is
			// taken once, from the overlay.
			var key, idb, rec []byte
			fromParked, fromOverlay := false, k == nil
			if k != nil && hasAdded {
				d := bytes.Compare(k, []byte(added[i].key))
				if d == 0 {
					k, v = c.Next()
				}
				fromOverlay = d >= 0
			}
			if pl != nil && (fromOverlay && (!hasAdded || bytes.Compare(pl.keys[0], []byte(added[i].key)) < 0) ||
				!fromOverlay && bytes.Compare(pl.keys[0], k) < 0) {
				key, fromParked = lim.pop(pl), true
				hasParked = len(lim.byQueue[q]) > 0
				if idb, rec = b.parkedJob(ready, key); idb == nil {
					continue // it left the queue while parked
				}
			} else if fromOverlay {
				key, idb, rec = []byte(added[i].key), []byte(added[i].id), added[i].record
				i++
			} else {
				key, idb = k, v
				k, v = c.Next()
			}
			if floor == nil || bytes.Compare(key, floor) > 0 {
				floor = append(floor[:0:0], key...)
				b.floor[q] = floor
			}
			if _, gone := b.overlay.deleted[string(key)]; gone {
				continue
			}
			if _, taken := b.claimed[string(key)]; taken {
				continue
			}
			if hasParked && !fromParked {
				if _, parked := lim.parkedKeys[string(key)]; parked {
					continue // met again after a floor reset: its list has it
				}
			}
			if rec == nil {
				if jobs == nil {
					jobs = tx.Bucket(bucketJobs)
				}
				rec = jobs.Get(idb)
			}
			id, sk := string(idb), string(key)
			r, err := decodeRecord(id, rec, b.claimNames)
			if err != nil || r.State != backend.StateQueued || !bytes.Equal(readyKey(r.Queue, r.Priority, r.seq), key) {
				// A damaged record or a stale index entry: the commit loop
				// sorts it out (Quarantine fails the job).
				b.requestRepair(id, sk)
				continue
			}
			if r.LimitKey != "" && !lim.admit(r.LimitKey, q, id, key, at) {
				hasParked = true
				continue // parked: its key is held back
			}
			cl := &claim{key: append([]byte(nil), key...), id: id, token: b.newToken(), worker: req.Worker, now: now, expires: expires}
			// The record's new bytes and the event are made here, in the
			// caller's goroutine, to keep the commit loop short; it
			// writes them if the record is still the one read here.
			cl.queue = r.Queue
			cl.pre = bytes.Clone(rec)
			applyLease(r, cl)
			cl.post = encodeRecord(r)
			cl.event = jobEvent(backend.EventActive, r, now)
			cl.seq = b.journal.add(r.Attempt, id)
			b.claimed[sk] = struct{}{}
			claims = append(claims, cl)
			out = append(out, &backend.Lease{Job: &r.Job})
		}
	}
	if err := b.journal.write(); err != nil {
		// Without its journal entry a claim could hide a stall: give the
		// jobs back (and let Lease look at their keys again).
		for _, cl := range claims {
			delete(b.claimed, string(cl.key))
			lim.ended(cl.id, at)
		}
		clear(b.floor)
		return nil, nil, err
	}
	b.claims = append(b.claims, claims...)
	b.leasedMu.Lock()
	if len(b.leased)+len(claims) > maxLeased {
		clear(b.leased) // only a cache: Finish falls back to the loop
	}
	for _, cl := range claims {
		b.leased[cl.id] = cl.post
	}
	b.leasedMu.Unlock()
	if len(out) > 0 {
		// Reads after this call wait for the transaction that writes
		// these claims: the next one.
		b.answered(b.gen + 1)
		b.signal()
	}
	return out, nil, nil
}

// claimPending reports whether job id is claimed by a claim not yet
// written. claimMu must be held.
func (b *Backend) claimPending(id string) bool {
	for _, cl := range b.claims {
		if cl.id == id {
			return true
		}
	}
	return false
}

// maxLeased bounds Backend.leased.
const maxLeased = 1 << 16

// forget drops the job from Backend.leased: its record is about to change.
func (t *txn) forget(id string) {
	t.b.leasedMu.Lock()
	delete(t.b.leased, id)
	t.b.leasedMu.Unlock()
}

// applyLease makes r active under the lease cl.
func applyLease(r *record, cl *claim) {
	r.State = backend.StateActive
	r.Attempt++
	r.StartedAt = cl.now
	r.LeaseToken = cl.token
	r.LeaseExpiresAt = cl.expires
	r.Worker = cl.worker
	r.CancelRequested = false
	r.cancelReason = ""
}

// requestRepair asks the commit loop to look at a ready entry that Lease
// could not use (once per entry).
func (b *Backend) requestRepair(id, key string) {
	if _, asked := b.repairs[key]; asked {
		return
	}
	b.repairs[key] = id
	b.signal()
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// takeClaims hands the pending claims and repairs to the commit loop as an
// op that runs first in its next transaction. claimMu must be held.
func (b *Backend) takeClaims() *op {
	if !b.claimsPending() {
		return nil
	}
	claims, repairs, completions := b.claims, b.repairs, b.completions
	b.claims, b.repairs, b.completions = nil, make(map[string]string), nil
	if len(claims) > 0 {
		close(b.claimsTaken)
		b.claimsTaken = make(chan struct{})
	}
	// Claims and completions made before the transaction that left them
	// pending come before its events; the others after (see apply).
	nc, np := len(claims), len(completions)
	if b.owesClaims {
		nc, np = min(b.heldSplit.claims, nc), min(b.heldSplit.completions, np)
	}
	return &op{ctx: context.Background(), done: make(chan error, 1), early: true,
		fn: func(t *txn) error {
			if err := t.writeClaims(claims[:nc], repairs); err != nil {
				return err
			}
			if err := t.writeCompletions(completions[:np]); err != nil {
				return err
			}
			t.heldAt = len(t.events)
			if err := t.writeClaims(claims[nc:], nil); err != nil {
				return err
			}
			return t.writeCompletions(completions[np:])
		}}
}

// claimsPending reports whether claims, repairs or completions wait for
// the commit loop. claimMu must be held.
func (b *Backend) claimsPending() bool {
	return len(b.claims) > 0 || len(b.repairs) > 0 || len(b.completions) > 0
}

// writeClaims writes leases that Lease decided. Nothing ran between the
// decision and this transaction, so each claimed job is still queued under
// the key it was claimed by; the check is a safety net.
func (t *txn) writeClaims(claims []*claim, repairs map[string]string) error {
	now := time.Time{}
	for _, cl := range claims {
		// The key stays claimed until the transaction is applied whole
		// (apply then moves it into the overlay's deletions): if an op
		// fails, the claims are written again in the replay.
		t.claimsDone = append(t.claimsDone, cl.key)
		t.setJournalSeq(cl.seq)
		now = cl.now
		if v := t.get(t.jobs, []byte(cl.id)); v != nil && bytes.Equal(v, cl.pre) {
			if err := t.writeClaim(cl); err != nil {
				return err
			}
			continue
		}
		r, err := t.load(cl.id)
		if err != nil {
			if err := t.quarantine(cl.id, err, cl.now, prefixedName(cl.key), backend.StateQueued); err != nil {
				return err
			}
			if err := t.del(t.ready, cl.key); err != nil {
				return err
			}
			continue
		}
		if r == nil || r.State != backend.StateQueued || !bytes.Equal(readyKey(r.Queue, r.Priority, r.seq), cl.key) {
			// The claim is void; its worker will find the lease lost.
			t.leftActive(cl.id, cl.now)
			continue
		}
		if err := t.move(r, func(r *record) { applyLease(r, cl) }); err != nil {
			return err
		}
		t.event(jobEvent(backend.EventActive, r, cl.now))
	}
	if now.IsZero() {
		now = time.Now()
	}
	for key, id := range repairs {
		r, err := t.load(id)
		if err == nil && r != nil && r.State == backend.StateQueued && string(readyKey(r.Queue, r.Priority, r.seq)) == key {
			delete(t.b.floor, r.Queue) // fine after all: Lease must see it again
			continue
		}
		if ck, _ := t.cursor(t.ready).Seek([]byte(key)); ck == nil || string(ck) != key {
			continue // gone meanwhile
		}
		if err := t.del(t.ready, []byte(key)); err != nil {
			return err
		}
		if err != nil {
			if err := t.quarantine(id, err, now, prefixedName([]byte(key)), backend.StateQueued); err != nil {
				return err
			}
		}
	}
	return nil
}

// writeClaim writes a claim whose record has not changed since Lease read
// it: the same writes as move, with the bytes Lease prepared.
func (t *txn) writeClaim(cl *claim) error {
	if err := t.del(t.ready, cl.key); err != nil {
		return err
	}
	if err := t.put(t.leases, timeKey(cl.expires, cl.id), []byte(cl.queue)); err != nil {
		return err
	}
	if err := t.put(t.jobs, []byte(cl.id), cl.post); err != nil {
		return err
	}
	t.count(cl.queue, backend.StateQueued, backend.StateActive)
	t.event(cl.event)
	return nil
}

// prefixedName returns the length-prefixed name at the start of k: the
// queue of a ready key, the dependency of a dependency key.
func prefixedName(k []byte) string {
	if len(k) < 2 {
		return ""
	}
	n := int(k[0])<<8 | int(k[1])
	if len(k) < 2+n {
		return ""
	}
	return string(k[2 : 2+n])
}

// readyAdded and readyDeleted track the transaction's ready-index changes
// for the overlay.
func (t *txn) readyAdded(k, id []byte) {
	if t.addedReady == nil {
		t.addedReady = make(map[string]string)
	}
	t.addedReady[string(k)] = string(id)
	delete(t.deletedReady, string(k)) // deleted and put back: there at the end
}

func (t *txn) readyDeleted(k []byte) {
	if _, ok := t.addedReady[string(k)]; ok {
		delete(t.addedReady, string(k))
		return
	}
	if t.deletedReady == nil {
		t.deletedReady = make(map[string]struct{})
	}
	t.deletedReady[string(k)] = struct{}{}
}

// overlay builds the overlay of this transaction once every op has run,
// copying the records of newly ready jobs out of bbolt's memory. A key
// added at or below its queue's floor lowers the floor away, so that Lease
// looks there again.
func (t *txn) overlay() overlay {
	o := overlay{deleted: t.deletedReady}
	if len(t.addedReady) > 0 {
		o.added = make([]overlayEntry, 0, len(t.addedReady))
		for k, id := range t.addedReady {
			o.added = append(o.added, overlayEntry{key: k, id: id, record: bytes.Clone(t.get(t.jobs, []byte(id)))})
			q := prefixedName([]byte(k))
			if f := t.b.floor[q]; f != nil && k <= string(f) {
				delete(t.b.floor, q)
			}
		}
		slices.SortFunc(o.added, func(a, b overlayEntry) int { return cmpString(a.key, b.key) })
	}
	return o
}

// parkedJob finds the job of a parked ready key: its ID, and its record when
// the key is one the committing transaction added. It returns a nil ID when
// the key is gone (the job was canceled while parked).
func (b *Backend) parkedJob(ready *bbolt.Bucket, key []byte) (idb, rec []byte) {
	if v := ready.Get(key); v != nil {
		return v, nil
	}
	added := b.overlay.added
	if i, found := slices.BinarySearchFunc(added, string(key), func(e overlayEntry, k string) int {
		return cmpString(e.key, k)
	}); found {
		return []byte(added[i].id), added[i].record
	}
	return nil, nil
}
