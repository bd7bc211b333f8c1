package memory

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"
	"unsafe"

	"github.com/jobrelay/engine/backend"
)

// Lease takes up to req.Max queued jobs; see backend.Backend. With req.Block
// it waits on the ready channel, which every transition that queues a job
// closes, and on a timer; it starts no goroutine.
func (b *Backend) Lease(ctx context.Context, req backend.LeaseRequest) ([]*backend.Lease, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := stamp(req.Now)
	limit := max(req.Max, 1)
	var timer *time.Timer
	var began time.Time
	for last := false; ; {
		if !began.IsZero() {
			// Jobs taken after a wait are stamped with the time they are
			// taken: lease expiry and rate windows count from then.
			now = stamp(req.Now).Add(time.Since(began))
		}
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			return nil, errClosed
		}
		out := b.leaseLocked(req, now, limit)
		if len(out) > 0 || req.Block <= 0 || last {
			b.unlock() // archives what earlier calls left in ended
			return out, nil
		}
		if b.ready == nil {
			b.ready = make(chan struct{})
		}
		ready := b.ready
		b.mu.Unlock()

		if timer == nil {
			began = time.Now()
			timer = time.NewTimer(req.Block)
			defer timer.Stop()
		}
		// A wake-up may be for another queue, or another caller may take
		// the job first: then wait on for the rest of Block.
		select {
		case <-ready:
		case <-timer.C:
			last = true
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-b.done:
			return nil, errClosed
		}
	}
}

// leaseBox holds a Lease and its Job in one allocation.
type leaseBox struct {
	lease backend.Lease
	job   backend.Job
}

func (b *Backend) leaseLocked(req backend.LeaseRequest, now time.Time, limit int) []*backend.Lease {
	at := b.limitTime(now)
	b.leaseSpare.dry = false // the pool may have records again
	if len(b.wakes) > 0 && b.wakes[0].wakeAt <= at {
		b.openDue(at)
	}
	picked := b.scratch[:0]
	made := len(b.fresh) // records that popReady made before this call
	for _, name := range req.Queues {
		q := b.lastQueue
		if q == nil || q.name != name {
			q = b.queues[name]
		}
		if q == nil || q.paused {
			continue
		}
		for len(picked) < limit {
			j := b.nextJob(q, at)
			if j == nil {
				break
			}
			picked = append(picked, j)
		}
		if len(picked) == limit {
			break
		}
	}
	b.scratch = picked
	if len(picked) == 0 {
		return nil
	}
	if len(b.fresh)-made < len(picked) {
		b.fetchRecords(picked)
	}

	// One string holds every token of the batch; each job keeps a slice
	// of it. A token is the backend's random prefix, the job's lease slot
	// and a counter, in fixed-width hex: unique without a lookup, and it
	// leads Heartbeat and Finish to the job without one either.
	width := len(b.tokenPrefix) + tokenDigits
	buf := b.tokenBuf[:0]
	for _, j := range picked {
		var slot uint32
		if n := len(b.freeSlots); n > 0 {
			slot = b.freeSlots[n-1]
			b.freeSlots = b.freeSlots[:n-1]
			b.slots[slot] = j
		} else {
			slot = uint32(len(b.slots))
			b.slots = append(b.slots, j)
		}
		b.tokenSeq++
		buf = append(buf, b.tokenPrefix...)
		buf = appendTokenDigits(buf, slot, b.tokenSeq)
	}
	b.tokenBuf = buf
	tokens := b.tokenString(buf)

	// Leases the caller handed back (req.Reuse) are filled first; the
	// rest are new, in one allocation for the batch.
	reuse := req.Reuse[:min(len(req.Reuse), len(picked))]
	var boxes []leaseBox
	var out []*backend.Lease
	if len(picked) == 1 && len(reuse) == 0 {
		// The dispatcher of a busy engine often asks for the one worker
		// that just freed: one allocation then.
		one := &leaseOne{}
		boxes, out = one.box[:], one.out[:]
	} else {
		boxes = make([]leaseBox, len(picked)-len(reuse))
		out = make([]*backend.Lease, len(picked))
	}
	expires := now.Add(req.TTL)
	expiresKey := nanos(expires)
	for i, j := range picked {
		j.Attempt++
		j.StartedAt = now
		j.LeaseToken = tokens[i*width : (i+1)*width]
		j.LeaseExpiresAt = expires
		j.Worker = req.Worker
		j.CancelRequested = false
		b.setState(j, backend.StateActive)
		b.leased.push(j, expiresKey)
		b.emit(backend.EventActive, j, now)

		var l *backend.Lease
		switch {
		case i >= len(reuse):
			box := &boxes[i-len(reuse)]
			box.lease.Job = &box.job
			l = &box.lease
		case reuse[i] != nil && reuse[i].Job != nil:
			l = reuse[i]
		default: // nothing to reuse in this entry after all
			box := &leaseBox{}
			box.lease.Job = &box.job
			l = &box.lease
		}
		// Payload, Meta and DependsOn never change once stored, so the
		// lease shares them (a Lease's Job is read-only).
		*l.Job = j.Job
		l.Job.Result = nil // a job that is leased has no result yet
		out[i] = l
	}
	clear(picked)
	return out
}

// fetchRecords reads a word of every cache line of the records js, in a
// loop whose reads do not wait for one another, so that Lease finds them in
// the cache. Records that Enqueue built (jobs it could not pack, and jobs
// back from a retry or a stall) are mostly cold: written on another core,
// or long ago, and Lease writes and copies all of each record; one by one,
// each of its lines would be a cache miss that Lease waits out in turn.
// Lease skips it when it made every record of the batch from packed jobs
// itself (see popReady): those are in the cache already.
func (b *Backend) fetchRecords(js []*job) {
	var sum uint64
	for _, j := range js {
		p := unsafe.Pointer(j)
		for off := uintptr(0); off < unsafe.Sizeof(job{}); off += 64 {
			sum += *(*uint64)(unsafe.Add(p, off))
		}
	}
	b.fetched = sum
}

// leaseOne holds the result of a Lease of one job.
type leaseOne struct {
	box [1]leaseBox
	out [1]*backend.Lease
}

// tokenBlock is the size of the blocks that tokens are copied into.
const tokenBlock = 16 << 10

// tokenString returns the tokens in buf as a string that shares a block
// with the tokens of earlier calls, so that a lease of one job does not
// allocate one. A block's bytes are never written again once a string
// holds them, which is what unsafe.String asks; a block stays in memory
// while any of its tokens does.
func (b *Backend) tokenString(buf []byte) string {
	if len(buf) > tokenBlock/4 {
		return string(buf)
	}
	if cap(b.tokens)-len(b.tokens) < len(buf) {
		b.tokens = make([]byte, 0, tokenBlock)
	}
	start := len(b.tokens)
	b.tokens = append(b.tokens, buf...)
	return unsafe.String(&b.tokens[start], len(buf))
}

// tokenDigits is the length of a token after the prefix: 8 hex digits of
// slot and 16 of counter.
const tokenDigits = 8 + 16

const hexDigits = "0123456789abcdef"

// appendTokenDigits appends a token's slot and counter in hex, a byte of
// them at a time (the digit at a time it replaced cost as much as the rest
// of a token).
func appendTokenDigits(buf []byte, slot uint32, seq uint64) []byte {
	var raw [12]byte
	binary.BigEndian.PutUint32(raw[:4], slot)
	binary.BigEndian.PutUint64(raw[4:], seq)
	n := len(buf)
	buf = append(buf, make([]byte, tokenDigits)...)
	hex.Encode(buf[n:], raw[:])
	return buf
}

// Heartbeat extends leases; see backend.Backend. A lease whose expiry passed
// but that Reap has not handled yet still owns its job, so it is extended.
func (b *Backend) Heartbeat(ctx context.Context, now, until time.Time, leases []backend.LeaseRef) ([]error, error) {
	until = stamp(until)
	errs := make([]error, len(leases))
	key := nanos(until)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, errClosed
	}
	for i, ref := range leases {
		j := b.ownedLocked(ref)
		if j == nil {
			errs[i] = leaseLost("heartbeat", ref.JobID)
			continue
		}
		j.LeaseExpiresAt = until
		b.leased.drop(j)
		b.leased.push(j, key)
		if j.CancelRequested {
			errs[i] = cancelRequested("heartbeat", ref.JobID)
		}
	}
	return errs, nil
}

// ownedLocked returns the active job that ref's token owns, or nil. The
// token names its lease slot; the slot's job must carry the very same token
// and ID, or the lease was lost.
func (b *Backend) ownedLocked(ref backend.LeaseRef) *job {
	slot, ok := b.tokenSlot(ref.Token)
	if !ok || slot >= len(b.slots) {
		return nil
	}
	j := b.slots[slot]
	if j == nil || j.LeaseToken != ref.Token || j.ID != ref.JobID {
		return nil
	}
	return j
}

// tokenSlot returns the lease slot that token t names, or false when t is
// not a token of this backend.
func (b *Backend) tokenSlot(t string) (int, bool) {
	p := len(b.tokenPrefix)
	if len(t) != p+tokenDigits || t[:p] != b.tokenPrefix {
		return 0, false
	}
	slot := 0
	for _, c := range []byte(t[p : p+8]) {
		d := hexValue[c]
		if d < 0 {
			return 0, false
		}
		slot = slot<<4 | int(d)
	}
	return slot, true
}

// hexValue is the value of each lowercase hex digit, and -1 for any other
// byte.
var hexValue = func() (v [256]int8) {
	for i := range v {
		v[i] = -1
	}
	for i := range len(hexDigits) {
		v[hexDigits[i]] = int8(i)
	}
	return v
}()

// Progress stores an active job's progress; see backend.Backend. Percent is
// clamped to 0..100.
func (b *Backend) Progress(ctx context.Context, now time.Time, lease backend.LeaseRef, percent int, message string) error {
	now = stamp(now)
	percent = min(max(percent, 0), 100)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return errClosed
	}
	j := b.ownedLocked(lease)
	if j == nil {
		return leaseLost("progress", lease.JobID)
	}
	j.Progress = percent
	j.ProgressMessage = message
	b.emitWith(backend.EventProgress, j, now, &details{progress: percent, message: message})
	if j.CancelRequested {
		return cancelRequested("progress", lease.JobID)
	}
	return nil
}

// Finish ends attempts; see backend.Backend. Results are copied into one
// buffer per call before the lock is taken.
func (b *Backend) Finish(ctx context.Context, now time.Time, acks []backend.Ack) ([]error, error) {
	now = stamp(now)
	errs := make([]error, len(acks))
	size := 0
	for i := range acks {
		if acks[i].Outcome == backend.OutcomeCompleted {
			size += len(acks[i].Result)
		}
	}
	arena := make([]byte, 0, size)

	b.mu.Lock()
	defer b.unlock()
	if b.closed {
		return nil, errClosed
	}
	for i := range acks {
		a := &acks[i]
		var result []byte
		if a.Outcome == backend.OutcomeCompleted && a.Result != nil {
			start := len(arena)
			arena = append(arena, a.Result...)
			result = arena[start:len(arena):len(arena)]
		}
		errs[i] = b.finishLocked(now, a, result)
	}
	return errs, nil
}

func (b *Backend) finishLocked(now time.Time, a *backend.Ack, result []byte) error {
	if a.Outcome < backend.OutcomeCompleted || a.Outcome > backend.OutcomeThrottled {
		return fmt.Errorf("memory: finish %s: unknown outcome %d", a.Lease.JobID, int(a.Outcome))
	}
	j := b.ownedLocked(a.Lease)
	if j == nil {
		return leaseLost("finish", a.Lease.JobID)
	}
	outcome := a.Outcome
	// The worker must not hand back a job whose cancel was requested: it
	// would run again. Such a job ends canceled, and its failed attempt is
	// not counted, since the cancel is what stopped it.
	if j.CancelRequested && (outcome == backend.OutcomeRetry || outcome == backend.OutcomeReleased ||
		outcome == backend.OutcomeThrottled) {
		outcome = backend.OutcomeCanceled
	}
	// The API's answer holds for the key whatever becomes of this job. The
	// throttle comes before the slot frees, so that the freed slot does not
	// wake Lease calls for a key that stays held back.
	if a.Outcome == backend.OutcomeThrottled && j.LimitKey != "" {
		b.throttle(j.LimitKey, stamp(a.RetryAt), now)
	}
	b.leased.drop(j)
	b.endLease(j, now)
	switch outcome {
	case backend.OutcomeCompleted:
		b.queueOf(j).processed++
		j.Result = result
		b.terminate(j, backend.StateCompleted, now, j.ResultTTL)
		b.emitWith(backend.EventCompleted, j, now, &details{result: result})
		b.releaseDependents(j, now)
	case backend.OutcomeRetry:
		j.Failures++
		b.queueOf(j).failed++
		j.Error = a.Error
		j.RunAt = stamp(a.RetryAt)
		b.makeDelayed(j, backend.StateRetrying)
		b.emitWith(backend.EventRetrying, j, now, &details{err: j.Error, runAt: j.RunAt})
	case backend.OutcomeFailed:
		j.Failures++
		b.queueOf(j).failed++
		j.Error = a.Error
		b.terminate(j, backend.StateFailed, now, j.FailureTTL)
		b.emitWith(backend.EventFailed, j, now, &details{err: j.Error})
		b.cancelDependents(j, now)
	case backend.OutcomeCanceled:
		b.cancelActive(j, now, a.Error)
	case backend.OutcomeReleased:
		j.Attempt = max(j.Attempt-1, 0)
		b.makeFirst(j)
		b.emit(backend.EventQueued, j, now)
	case backend.OutcomeThrottled:
		// Not a failure: the job waits out the API's limit, scheduled.
		j.Attempt = max(j.Attempt-1, 0)
		j.Error = a.Error
		j.RunAt = stamp(a.RetryAt)
		b.makeDelayed(j, backend.StateScheduled)
		b.emitWith(backend.EventQueued, j, now, &details{runAt: j.RunAt, err: j.Error})
	}
	return nil
}

// cancelActive ends a job that was active as canceled. Its Error is the
// reason given to Cancel, or else the worker's.
func (b *Backend) cancelActive(j *job, now time.Time, workerError string) {
	b.endCanceled(j, now, workerError)
	b.emitWith(backend.EventCanceled, j, now, &details{err: j.Error})
	b.cancelDependents(j, now)
}

// endCanceled makes a job that was active canceled, without its event.
func (b *Backend) endCanceled(j *job, now time.Time, workerError string) {
	j.Error = workerError
	if x := b.extraOf(j); x != nil && x.cancelReason != "" {
		j.Error = x.cancelReason
		x.cancelReason = ""
	}
	b.terminate(j, backend.StateCanceled, now, j.FailureTTL)
}

// Reap handles expired leases; see backend.Backend. A job whose cancel was
// requested is canceled rather than queued again: its worker is gone, and
// the job must not run again.
func (b *Backend) Reap(ctx context.Context, now time.Time) (int, error) {
	now = stamp(now)
	key := nanos(now)
	b.mu.Lock()
	defer b.unlock()
	if b.closed {
		return 0, errClosed
	}
	reaped := 0
	for e := b.leased.min(); e != nil && e.key < key; e = b.leased.min() {
		j := b.leased.pop()
		reaped++
		j.Stalls++
		canceled := j.CancelRequested
		b.endLease(j, now)
		switch {
		case canceled:
			b.endCanceled(j, now, "canceled while active; its lease expired")
			b.stalled(j, now, "lease expired")
			b.emitWith(backend.EventCanceled, j, now, &details{err: j.Error})
			b.cancelDependents(j, now)
		case j.Stalls >= j.MaxStalls:
			j.Error = "job stalled " + strconv.Itoa(j.Stalls) + " times (its lease expired each time; MaxStalls is " +
				strconv.Itoa(j.MaxStalls) + ")"
			b.queueOf(j).failed++
			b.terminate(j, backend.StateFailed, now, j.FailureTTL)
			b.stalled(j, now, "lease expired")
			b.emitWith(backend.EventFailed, j, now, &details{err: j.Error})
			b.cancelDependents(j, now)
		default:
			b.makeFirst(j)
			b.stalled(j, now, "lease expired")
		}
	}
	return reaped, nil
}

func (b *Backend) stalled(j *job, now time.Time, msg string) {
	b.emitWith(backend.EventStalled, j, now, &details{err: msg})
}
