package redis

import (
	"context"
	"fmt"
	"time"

	"github.com/jobrelay/engine/backend"
)

// Cancel cancels a live job; see backend.Backend. The job's queue is found
// first (one round trip over every queue), then one script cancels it and
// its dependents in the same queue; dependents elsewhere follow.
func (b *Backend) Cancel(ctx context.Context, now time.Time, id, reason string) (backend.State, error) {
	if b.closed.Load() {
		return "", errClosed
	}
	q, err := b.queueOf(ctx, id)
	if err != nil {
		return "", b.fail("cancel "+id, err)
	}
	if q == "" {
		return "", notFound("cancel", id)
	}
	c := b.newCall(scriptCancel, q, now, 2)
	c.args = append(c.args, id, reason)
	if err := b.evalAll(ctx, []*call{c}); err != nil {
		return "", b.fail("cancel "+id, err)
	}
	reply, _ := c.cmd.Val().([]any)
	if len(reply) < 3 {
		return "", fmt.Errorf("redis: cancel %s: unexpected reply", id)
	}
	code, _ := reply[0].(string)
	st, _ := reply[1].(string)
	switch code {
	case "notfound":
		return "", notFound("cancel", id)
	case "corrupt":
		return "", fmt.Errorf("redis: cancel %s: %w", id, ErrCorruptJob)
	case "invalid":
		state := stateOfCode(st)
		return state, fmt.Errorf("redis: cancel %s: job is %s: %w", id, state, backend.ErrInvalidState)
	}
	cross, _ := reply[2].([]any)
	b.resolveCross(ctx, now, cross)
	return stateOfCode(st), nil
}

// Requeue runs a failed or canceled job again as a fresh job; see
// backend.Backend.
func (b *Backend) Requeue(ctx context.Context, now time.Time, id string) error {
	if b.closed.Load() {
		return errClosed
	}
	q, err := b.queueOf(ctx, id)
	if err != nil {
		return b.fail("requeue "+id, err)
	}
	if q == "" {
		return notFound("requeue", id)
	}
	c := b.newCall(scriptRequeue, q, now, 1)
	c.args = append(c.args, id)
	if err := b.evalAll(ctx, []*call{c}); err != nil {
		return b.fail("requeue "+id, err)
	}
	reply := asStrings(c.cmd.Val())
	if len(reply) == 0 {
		return fmt.Errorf("redis: requeue %s: unexpected reply", id)
	}
	switch reply[0] {
	case "ok":
		// The key is taken again only if nobody else holds it now;
		// otherwise the job runs without it.
		if len(reply) == 3 && reply[1] != "" {
			until, _ := parseTime(reply[2])
			if reply[2] == "" {
				until = time.Time{}
			}
			if _, err := b.claimKeys(ctx, now, []claimReq{{key: reply[1], id: id, queue: q, until: until}}); err != nil {
				b.log.Warn("redis: requeue: take the unique key again", "job_id", id, "err", err)
			}
		}
		return nil
	case "notfound":
		return notFound("requeue", id)
	case "corrupt":
		return fmt.Errorf("redis: requeue %s: %w", id, ErrCorruptJob)
	case "invalid":
		st := backend.State("")
		if len(reply) > 1 {
			st = stateOfCode(reply[1])
		}
		return fmt.Errorf("redis: requeue %s: job is %s: %w", id, st, backend.ErrInvalidState)
	}
	return fmt.Errorf("redis: requeue %s: unexpected reply %q", id, reply[0])
}

// Pause stops Lease from taking jobs of a queue, in every process; see
// backend.Backend. Pausing a paused queue changes nothing and records no
// event.
func (b *Backend) Pause(ctx context.Context, now time.Time, queue string) error {
	if b.closed.Load() {
		return errClosed
	}
	if err := b.register(ctx, queue); err != nil {
		return b.fail("pause "+queue, err)
	}
	return b.setPaused(ctx, now, queue, true)
}

// Resume undoes Pause and wakes blocked Lease calls; see backend.Backend.
// Resuming a queue that is not paused changes nothing.
func (b *Backend) Resume(ctx context.Context, now time.Time, queue string) error {
	if b.closed.Load() {
		return errClosed
	}
	return b.setPaused(ctx, now, queue, false)
}

func (b *Backend) setPaused(ctx context.Context, now time.Time, queue string, on bool) error {
	flag, op := "0", "resume "
	if on {
		flag, op = "1", "pause "
	}
	c := b.newCall(scriptPause, queue, now, 1)
	c.args = append(c.args, flag)
	if err := b.evalAll(ctx, []*call{c}); err != nil {
		return b.fail(op+queue, err)
	}
	return nil
}

func notFound(op, id string) error {
	return fmt.Errorf("redis: %s %s: %w", op, id, backend.ErrJobNotFound)
}
