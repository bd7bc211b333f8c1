package redis

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/jobrelay/engine/backend"
)

// Lease takes up to req.Max queued jobs; see backend.Backend. Each queue is
// one script call, tried in the order given until Max jobs are taken. With
// req.Block, an idle caller blocks in BZPOPMIN on the queues' wake markers
// (on the blocker's connections) until a job becomes ready in any process.
func (b *Backend) Lease(ctx context.Context, req backend.LeaseRequest) ([]*backend.Lease, error) {
	if b.closed.Load() {
		return nil, errClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	limit := max(req.Max, 1)
	var deadline time.Time
	var woken []string // queues whose marker this call took
	var waitBegan time.Time
	now := req.Now
	for last := false; ; {
		// Leases taken after a wait are stamped with the time they are
		// taken, not the time the call began: rate windows and lease
		// expiry depend on it.
		if !waitBegan.IsZero() {
			req.Now = now.Add(time.Since(waitBegan))
		}
		out, visited, err := b.leaseOnce(ctx, req, limit, woken)
		// A marker this call took for a queue it did not get to must go
		// back, or another waiter on that queue would sleep through.
		for _, q := range woken {
			if !visited[q] {
				b.putBack(b.queueKeys(q)[keyWake])
			}
		}
		woken = nil
		if err != nil {
			if len(out) > 0 {
				// Jobs taken from the first queues are active now: hand
				// them over rather than leave them to stall.
				b.log.Warn("redis: lease: a later queue failed; returning the jobs taken", "err", err)
				return out, nil
			}
			return nil, b.fail("lease", err)
		}
		if len(out) > 0 || req.Block <= 0 || last || len(req.Queues) == 0 {
			return out, nil
		}
		if deadline.IsZero() {
			waitBegan = time.Now()
			deadline = waitBegan.Add(req.Block)
		}
		remaining := time.Until(deadline)
		if remaining <= 0 {
			last = true
			continue
		}
		// A wake-up may be for a job another caller takes first: then wait
		// on for the rest of Block.
		woken, err = b.waitReady(ctx, req.Queues, remaining)
		if err != nil {
			for _, q := range woken {
				b.putBack(b.queueKeys(q)[keyWake])
			}
			if errors.Is(err, errStopped) {
				return nil, errClosed
			}
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, b.fail("lease: wait for jobs", err)
		}
		if len(woken) == 0 && time.Until(deadline) <= 0 {
			last = true
		}
	}
}

// leaseOnce runs the lease script on each queue in order until limit jobs
// are taken, and says which queues it ran on. woken names the queues whose
// wake marker the caller took: their calls put it back while jobs are left.
func (b *Backend) leaseOnce(ctx context.Context, req backend.LeaseRequest, limit int, woken []string) ([]*backend.Lease, map[string]bool, error) {
	var out []*backend.Lease
	visited := make(map[string]bool, len(req.Queues))
	until := nsString(req.Now.Add(req.TTL))
	for _, q := range req.Queues {
		if len(out) >= limit || visited[q] {
			continue
		}
		visited[q] = true
		for len(out) < limit {
			got, more, err := b.leaseQueue(ctx, req, q, min(limit-len(out), maintChunk), until, slices.Contains(woken, q))
			if err != nil {
				return out, visited, err
			}
			out = append(out, got...)
			if !more {
				break
			}
		}
	}
	return out, visited, nil
}

// leaseQueue runs the lease script once on queue q for up to n jobs; more
// says that the queue may have more (the script took all n). took says that
// the caller took q's wake marker (the script puts it back while jobs are
// left).
func (b *Backend) leaseQueue(ctx context.Context, req backend.LeaseRequest, q string, n int, until string, took bool) ([]*backend.Lease, bool, error) {
	var rnd [8]byte
	binary.LittleEndian.PutUint64(rnd[:], rand.Uint64())
	c := b.newCall(scriptLease, q, req.Now, 6)
	tookArg := "0"
	if took {
		tookArg = "1"
	}
	c.args = append(c.args, n, req.Worker, until, hex.EncodeToString(rnd[:])+".", int64(corruptTTL), tookArg)
	if err := b.evalAll(ctx, []*call{c}); err != nil {
		return nil, false, err
	}
	items, _ := c.cmd.Val().([]any)
	if len(items) == 1 {
		if s, ok := items[0].(string); ok && s == "paused" {
			return nil, false, nil
		}
	}
	var out []*backend.Lease
	taken := 0
	// Pairs of ID and record, or ID and {why} for a corrupt record.
	for i := 0; i+1 < len(items); i += 2 {
		id, _ := items[i].(string)
		rec, ok := items[i+1].(string)
		if !ok {
			why := ""
			if f, _ := items[i+1].([]any); len(f) > 0 {
				why, _ = f[0].(string)
			}
			b.log.Warn("redis: failed a job whose record is corrupt", "job_id", id, "queue", q, "why", why)
			continue
		}
		taken++
		j, err := decodeJob(id, q, rec)
		if err != nil {
			b.failCorrupt(ctx, q, req.Now, id, rec, err)
			continue
		}
		out = append(out, &backend.Lease{Job: j})
	}
	return out, taken == n, nil
}

// failCorrupt fails a job that was just leased but whose record cannot be
// read (the script reads only what it needs of it), so that it never runs.
func (b *Backend) failCorrupt(ctx context.Context, q string, now time.Time, id, rec string, why error) {
	detail := why.Error()
	var ce *corruptError
	if errors.As(why, &ce) {
		detail = ce.detail
	}
	token := ""
	_ = eachField(rec, func(tag byte, v string) error {
		if tag == tagLeaseToken {
			token = v
		}
		return nil
	})
	c := b.newCall(scriptCorrupt, q, now, 4)
	c.args = append(c.args, id, token, detail, int64(corruptTTL))
	err := b.evalAll(ctx, []*call{c})
	b.log.Warn("redis: failed a job whose record is corrupt", "job_id", id, "queue", q, "why", why, "err", err)
}

// waitReady blocks until one of queues has a wake marker (it takes it) or d
// passes, and returns the queues whose marker it took.
func (b *Backend) waitReady(ctx context.Context, queues []string, d time.Duration) ([]string, error) {
	type woke struct {
		key string
		err error
	}
	keyQueue := make(map[string]string, len(queues))
	var keys []string
	for _, q := range queues {
		k := b.queueKeys(q)[keyWake]
		if _, dup := keyQueue[k]; !dup {
			keyQueue[k] = q
			keys = append(keys, k)
		}
	}
	// On a Cluster the markers live in different slots and one command
	// cannot wait on them all: wait on each with a command of its own.
	groups := [][]string{keys}
	if b.blk.cluster && len(keys) > 1 {
		groups = groups[:0]
		for _, k := range keys {
			groups = append(groups, []string{k})
		}
	}
	wg := newWaitGroup[woke](len(groups))
	for _, g := range groups {
		started := b.blk.goBlock(func() {
			z, err := b.blk.c.BZPopMin(context.Background(), blockChunk, g...).Result()
			if err != nil {
				if errors.Is(err, goredis.Nil) || b.blk.isClosed() {
					wg.deliver(woke{}, false)
				} else {
					wg.deliver(woke{err: err}, true)
				}
				return
			}
			if !wg.deliver(woke{key: z.Key}, true) {
				b.putBack(z.Key)
			}
		})
		if !started {
			return nil, errStopped
		}
	}
	got, err := wg.wait(ctx, b.blk.done, d)
	var out []string
	var cmdErr error
	for _, w := range got {
		if w.err != nil {
			cmdErr = w.err
			continue
		}
		out = append(out, keyQueue[w.key])
	}
	if err == nil {
		err = cmdErr
	}
	return out, err
}

// putBack puts a wake marker back: its taker will not lease from its queue.
// A marker too many only wakes someone for nothing.
func (b *Backend) putBack(key string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = b.rdb.ZAdd(ctx, key, goredis.Z{Score: 0, Member: "w"}).Err()
}

// Heartbeat extends leases; see backend.Backend. It is one script call per
// queue, all in one pipeline.
func (b *Backend) Heartbeat(ctx context.Context, now, until time.Time, leases []backend.LeaseRef) ([]error, error) {
	if b.closed.Load() {
		return nil, errClosed
	}
	errs := make([]error, len(leases))
	groups, order := b.groupLeases(leases, errs, "heartbeat")
	calls := make([]*call, 0, len(order))
	untilArg := nsString(until)
	var parts [][]int
	for _, q := range order {
		idx := groups[q]
		for len(idx) > 0 {
			n := min(len(idx), enqueueChunk)
			c := b.newCall(scriptHeartbeat, q, now, 1+2*n)
			c.args = append(c.args, untilArg)
			for _, i := range idx[:n] {
				c.args = append(c.args, leases[i].JobID, leases[i].Token)
			}
			calls = append(calls, c)
			parts = append(parts, idx[:n])
			idx = idx[n:]
		}
	}
	if err := b.evalAll(ctx, calls); err != nil {
		return nil, b.fail("heartbeat", err)
	}
	for ci, part := range parts {
		codes := asStrings(calls[ci].cmd.Val())
		for k, i := range part {
			code := ""
			if k < len(codes) {
				code = codes[k]
			}
			switch code {
			case "ok":
			case "cancel":
				errs[i] = fmt.Errorf("redis: heartbeat %s: %w", leases[i].JobID, backend.ErrCancelRequested)
			default:
				errs[i] = leaseLost("heartbeat", leases[i].JobID)
			}
		}
	}
	return errs, nil
}

// groupLeases groups leases by the queue their token names, in first-seen
// order; a token that names none is lost at once.
func (b *Backend) groupLeases(leases []backend.LeaseRef, errs []error, op string) (map[string][]int, []string) {
	groups := make(map[string][]int)
	var order []string
	for i, l := range leases {
		if errs[i] != nil {
			continue
		}
		q, ok := queueOfToken(l.Token)
		if !ok {
			errs[i] = leaseLost(op, l.JobID)
			continue
		}
		if _, seen := groups[q]; !seen {
			order = append(order, q)
		}
		groups[q] = append(groups[q], i)
	}
	return groups, order
}

func leaseLost(op, id string) error {
	return fmt.Errorf("redis: %s %s: %w", op, id, backend.ErrLeaseLost)
}

// Progress stores an active job's progress; see backend.Backend. Percent is
// clamped to 0..100.
func (b *Backend) Progress(ctx context.Context, now time.Time, lease backend.LeaseRef, percent int, message string) error {
	if b.closed.Load() {
		return errClosed
	}
	q, ok := queueOfToken(lease.Token)
	if !ok {
		return leaseLost("progress", lease.JobID)
	}
	percent = min(max(percent, 0), 100)
	c := b.newCall(scriptProgress, q, now, 4)
	c.args = append(c.args, lease.JobID, lease.Token, strconv.Itoa(percent), message)
	if err := b.evalAll(ctx, []*call{c}); err != nil {
		return b.fail("progress "+lease.JobID, err)
	}
	switch c.cmd.Val() {
	case "ok":
		return nil
	case "cancel":
		return fmt.Errorf("redis: progress %s: %w", lease.JobID, backend.ErrCancelRequested)
	}
	return leaseLost("progress", lease.JobID)
}

// Finish ends attempts; see backend.Backend. Acks are grouped by queue, one
// script call per queue (per enqueueChunk acks), all in one pipeline;
// dependents in other queues are then resolved in theirs.
func (b *Backend) Finish(ctx context.Context, now time.Time, acks []backend.Ack) ([]error, error) {
	if b.closed.Load() {
		return nil, errClosed
	}
	errs := make([]error, len(acks))
	refs := make([]backend.LeaseRef, len(acks))
	for i := range acks {
		refs[i] = acks[i].Lease
		if o := acks[i].Outcome; o < backend.OutcomeCompleted || o > backend.OutcomeThrottled {
			errs[i] = fmt.Errorf("redis: finish %s: unknown outcome %d", acks[i].Lease.JobID, int(o))
		}
	}
	groups, order := b.groupLeases(refs, errs, "finish")
	type part struct {
		c   *call
		idx []int
	}
	var parts []part
	var calls []*call
	for _, q := range order {
		idx := groups[q]
		for len(idx) > 0 {
			n := min(len(idx), enqueueChunk)
			c := b.newCall(scriptFinish, q, now, 1+6*n)
			c.args = append(c.args, n)
			for _, i := range idx[:n] {
				a := &acks[i]
				retryAt := ""
				if a.Outcome == backend.OutcomeRetry || a.Outcome == backend.OutcomeThrottled {
					retryAt = nsString(a.RetryAt)
				}
				c.args = append(c.args, a.Lease.JobID, a.Lease.Token, int(a.Outcome), a.Result, a.Error, retryAt)
			}
			parts = append(parts, part{c, idx[:n]})
			calls = append(calls, c)
			idx = idx[n:]
		}
	}
	if err := b.evalAll(ctx, calls); err != nil {
		return nil, b.fail("finish", err)
	}
	var cross []any
	for _, p := range parts {
		reply, _ := p.c.cmd.Val().([]any)
		var codes []string
		if len(reply) == 2 {
			codes = asStrings(reply[0])
			more, _ := reply[1].([]any)
			cross = append(cross, more...)
		}
		for k, i := range p.idx {
			if k >= len(codes) || codes[k] != "ok" {
				errs[i] = leaseLost("finish", acks[i].Lease.JobID)
			}
		}
	}
	b.resolveCross(ctx, now, cross)
	return errs, nil
}
