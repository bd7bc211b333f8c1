package redis

import (
	"context"
	"time"
)

// Promote queues due scheduled and retrying jobs; see backend.Backend. It is
// one script call per queue, all in one pipeline. It also looks again at
// deferred jobs waiting for a job of another queue whose check is due (see
// cross.go), so that a process that died half way through linking or
// resolving them delays them but does not strand them.
func (b *Backend) Promote(ctx context.Context, now time.Time) (int, time.Time, error) {
	if b.closed.Load() {
		return 0, time.Time{}, errClosed
	}
	queues, err := b.queues(ctx, false)
	if err != nil {
		return 0, time.Time{}, b.fail("promote", err)
	}
	calls := make([]*call, len(queues))
	for i, q := range queues {
		c := b.newCall(scriptPromote, q, now, 3)
		c.args = append(c.args, maintChunk, recheckChunk, int64(corruptTTL))
		calls[i] = c
	}
	if err := b.evalAll(ctx, calls); err != nil {
		return 0, time.Time{}, b.fail("promote", err)
	}
	// Keys held back by a rate window or a throttle open at a time of their
	// own, which counts as a due time too.
	next, err := b.promoteLimits(ctx, now)
	if err != nil {
		return 0, time.Time{}, b.fail("promote: limits", err)
	}
	moved := 0
	for _, c := range calls {
		reply, _ := c.cmd.Val().([]any)
		if len(reply) < 3 {
			continue
		}
		moved += asInt(reply[0])
		if s, _ := reply[1].(string); s != "" {
			if t, err := parseTime(s); err == nil && (next.IsZero() || t.Before(next)) {
				next = t
			}
		}
		if items, _ := reply[2].([]any); len(items) > 0 {
			b.recheck(ctx, now, c.queue, items)
		}
	}
	return moved, next, nil
}

// Reap handles expired leases; see backend.Backend. It is one script call
// per queue, all in one pipeline.
func (b *Backend) Reap(ctx context.Context, now time.Time) (int, error) {
	if b.closed.Load() {
		return 0, errClosed
	}
	queues, err := b.queues(ctx, false)
	if err != nil {
		return 0, b.fail("reap", err)
	}
	calls := make([]*call, len(queues))
	for i, q := range queues {
		c := b.newCall(scriptReap, q, now, 2)
		c.args = append(c.args, maintChunk, int64(corruptTTL))
		calls[i] = c
	}
	if err := b.evalAll(ctx, calls); err != nil {
		return 0, b.fail("reap", err)
	}
	reaped := 0
	var cross []any
	for _, c := range calls {
		reply, _ := c.cmd.Val().([]any)
		if len(reply) < 2 {
			continue
		}
		reaped += asInt(reply[0])
		more, _ := reply[1].([]any)
		cross = append(cross, more...)
	}
	b.resolveCross(ctx, now, cross)
	return reaped, nil
}

// Sweep deletes expired terminal jobs; see backend.Backend. A limit of zero
// or less means no limit. Queues are swept one after another until limit
// jobs are deleted.
func (b *Backend) Sweep(ctx context.Context, now time.Time, limit int) (int, error) {
	if b.closed.Load() {
		return 0, errClosed
	}
	queues, err := b.queues(ctx, false)
	if err != nil {
		return 0, b.fail("sweep", err)
	}
	deleted := 0
	var keys []any
	for _, q := range queues {
		for limit <= 0 || deleted < limit {
			n := maintChunk
			if limit > 0 {
				n = min(n, limit-deleted)
			}
			c := b.newCall(scriptSweep, q, now, 1)
			c.args = append(c.args, n)
			if err := b.evalAll(ctx, []*call{c}); err != nil {
				return deleted, b.fail("sweep", err)
			}
			reply, _ := c.cmd.Val().([]any)
			got := 0
			if len(reply) == 2 {
				got = asInt(reply[0])
				more, _ := reply[1].([]any)
				keys = append(keys, more...)
			}
			deleted += got
			if got < n {
				break
			}
		}
	}
	// The swept jobs' unique keys live in the registry, another slot.
	if err := b.releaseKeys(ctx, now, keys, max(limit, maintChunk)); err != nil {
		return deleted, b.fail("sweep: release unique keys", err)
	}
	return deleted, nil
}
