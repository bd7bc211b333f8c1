package redis

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jobrelay/engine/backend"
)

// Enqueue stores a batch of new jobs; see backend.Backend. Jobs are grouped
// by queue, one script call per queue (per enqueueChunk jobs), all in one
// pipeline: one round trip for the batch. Jobs with dependencies in other
// queues cost two more (find the parents, link the child to them). Calls of
// one job each that arrive together share script calls (group.go).
func (b *Backend) Enqueue(ctx context.Context, now time.Time, jobs []backend.NewJob) ([]backend.EnqueueResult, error) {
	if b.closed.Load() {
		return nil, errClosed
	}
	if len(jobs) == 1 && groupable(&jobs[0]) {
		return b.enqueueOne(ctx, now, &jobs[0])
	}
	results := make([]backend.EnqueueResult, len(jobs))
	var queues []string
	for i := range jobs {
		if jobs[i].ID == "" {
			results[i].Err = errors.New("redis: enqueue: job has no ID")
			continue
		}
		queues = append(queues, jobs[i].Queue)
	}
	if err := b.register(ctx, queues...); err != nil {
		return nil, b.fail("enqueue: register queues", err)
	}

	// A job that depends on a job of another queue in the same batch must
	// wait until that one is stored: the batch runs in segments cut there.
	start := 0
	segment := make(map[string]string) // job ID -> queue, in the current segment
	for i := range jobs {
		cut := false
		for _, d := range jobs[i].DependsOn {
			if q, ok := segment[d]; ok && q != jobs[i].Queue {
				cut = true
			}
		}
		if cut {
			if err := b.enqueueSegment(ctx, now, jobs[start:i], nil, results[start:i]); err != nil {
				return nil, err
			}
			start = i
			clear(segment)
		}
		segment[jobs[i].ID] = jobs[i].Queue
	}
	if err := b.enqueueSegment(ctx, now, jobs[start:], nil, results[start:]); err != nil {
		return nil, err
	}
	return results, nil
}

// depAt is where a dependency was found and in what state.
type depAt struct {
	queue string
	state string // state code
}

// enqueueSegment stores jobs that need no other job of the segment stored
// first. nows, when given, is each job's own now (jobs of several calls
// grouped into one, see group.go); now is then the latest of them.
func (b *Backend) enqueueSegment(ctx context.Context, now time.Time, jobs []backend.NewJob, nows []time.Time, results []backend.EnqueueResult) error {
	if len(jobs) == 0 {
		return nil
	}
	segment := make(map[string]string, len(jobs))
	var unknown []string
	for i := range jobs {
		segment[jobs[i].ID] = jobs[i].Queue
	}
	for i := range jobs {
		for _, d := range jobs[i].DependsOn {
			if _, ok := segment[d]; !ok {
				unknown = append(unknown, d)
			}
		}
	}
	found, err := b.locate(ctx, unknown)
	if err != nil {
		return b.fail("enqueue: find dependencies", err)
	}

	// Claim unique keys first; a job whose key is held is not stored.
	var reqs []claimReq
	var reqJob []int
	for i := range jobs {
		if results[i].Err == nil && jobs[i].UniqueKey != "" {
			reqs = append(reqs, claimReq{key: jobs[i].UniqueKey, id: jobs[i].ID, queue: jobs[i].Queue,
				until: jobs[i].UniqueUntil})
			reqJob = append(reqJob, i)
		}
	}
	claims, err := b.claimKeys(ctx, now, reqs)
	if err != nil {
		return b.fail("enqueue: claim unique keys", err)
	}
	for k, c := range claims {
		if !c.ok {
			i := reqJob[k]
			results[i] = backend.EnqueueResult{ID: c.holder, State: c.state,
				Err: fmt.Errorf("redis: enqueue %s: unique key %q held by %s: %w", jobs[i].ID, jobs[i].UniqueKey,
					c.holder, backend.ErrDuplicateJob)}
		}
	}

	type part struct {
		c   *call
		idx []int
	}
	var parts []part
	var calls []*call
	byQueue := make(map[string][]int)
	var order []string
	for i := range jobs {
		if results[i].Err != nil {
			continue
		}
		q := jobs[i].Queue
		if _, ok := byQueue[q]; !ok {
			order = append(order, q)
		}
		byQueue[q] = append(byQueue[q], i)
	}
	for _, q := range order {
		idx := byQueue[q]
		for len(idx) > 0 {
			n := min(len(idx), enqueueChunk)
			c := b.newCall(scriptEnqueue, q, now, 1+9*n)
			c.args = append(c.args, n)
			for _, i := range idx[:n] {
				at := now
				if nows != nil {
					at = nows[i]
				}
				c.args = appendJobArgs(c.args, &jobs[i], at, found)
			}
			parts = append(parts, part{c, idx[:n]})
			calls = append(calls, c)
			idx = idx[n:]
		}
	}
	if err := b.evalAll(ctx, calls); err != nil {
		// What was claimed may or may not be stored; a claim whose job is
		// missing frees itself after claimGrace.
		return b.fail("enqueue", err)
	}

	var links []link
	for _, p := range parts {
		reply, _ := p.c.cmd.Val().([]any)
		for k, i := range p.idx {
			var item any
			if k < len(reply) {
				item = reply[k]
			}
			// A stored job's reply is its state alone; the others are
			// {code, id, state}.
			if st, ok := item.(string); ok {
				results[i] = enqueueResult(&jobs[i], "ok", jobs[i].ID, st)
			} else if f := asStrings(item); len(f) >= 3 {
				results[i] = enqueueResult(&jobs[i], f[0], f[1], f[2])
			} else {
				results[i].Err = fmt.Errorf("redis: enqueue %s: unexpected reply", jobs[i].ID)
				continue
			}
			if results[i].State != backend.StateDeferred || results[i].Err != nil {
				continue
			}
			for _, d := range jobs[i].DependsOn {
				if at, ok := found[d]; ok && at.queue != jobs[i].Queue {
					links = append(links, link{childQueue: jobs[i].Queue, child: jobs[i].ID,
						parentQueue: at.queue, parent: d})
				}
			}
		}
	}

	// Claims of jobs that were not stored go; duplicates of a job of this
	// batch learn the state it was stored in.
	var dropKeys, dropIDs []string
	stored := make(map[string]backend.State)
	for i := range jobs {
		if results[i].Err == nil {
			stored[jobs[i].ID] = results[i].State
		}
	}
	for k, c := range claims {
		i := reqJob[k]
		switch {
		case c.ok && c.fresh && results[i].Err != nil:
			dropKeys, dropIDs = append(dropKeys, jobs[i].UniqueKey), append(dropIDs, jobs[i].ID)
		case !c.ok && results[i].State == "":
			results[i].State = stored[c.holder]
		}
	}
	b.dropClaims(ctx, now, dropKeys, dropIDs)
	b.linkCross(ctx, now, links)
	return nil
}

// appendJobArgs appends one job's arguments of enqueue.lua.
func appendJobArgs(args []any, j *backend.NewJob, now time.Time, found map[string]depAt) []any {
	runAt := ""
	if !j.RunAt.IsZero() {
		runAt = nsString(j.RunAt)
	}
	args = append(args, j.ID, encodeNewJob(j, now), j.Priority, runAt, j.Type, j.LimitKey, nsString(now),
		len(j.DependsOn))
	for _, d := range j.DependsOn {
		// A dependency in this queue (or found nowhere) is read by the
		// script itself, atomically; one elsewhere comes with the state
		// it was found in.
		at, ok := found[d]
		if !ok || at.queue == j.Queue {
			args = append(args, d, j.Queue, "")
		} else {
			args = append(args, d, at.queue, at.state)
		}
	}
	return args
}

func enqueueResult(j *backend.NewJob, code, id, state string) backend.EnqueueResult {
	st := stateOfCode(state)
	switch code {
	case "ok":
		return backend.EnqueueResult{ID: id, State: st}
	case "exists":
		return backend.EnqueueResult{ID: id, State: st,
			Err: fmt.Errorf("redis: enqueue %s: ID exists: %w", j.ID, backend.ErrDuplicateJob)}
	case "nodep":
		return backend.EnqueueResult{
			Err: fmt.Errorf("redis: enqueue %s: depends on %s: %w", j.ID, id, backend.ErrDependencyNotFound)}
	}
	return backend.EnqueueResult{Err: fmt.Errorf("redis: enqueue %s: unexpected reply %q", j.ID, code)}
}

// locate finds the queue and state of each job ID, looking in every known
// queue at once (one round trip), and once more after rereading the
// registry for IDs it did not find.
func (b *Backend) locate(ctx context.Context, ids []string) (map[string]depAt, error) {
	found := make(map[string]depAt, len(ids))
	if len(ids) == 0 {
		return found, nil
	}
	searched := make(map[string]bool)
	for force := false; ; force = true {
		queues, err := b.queues(ctx, force)
		if err != nil {
			return nil, err
		}
		var calls []*call
		for _, q := range queues {
			if searched[q] {
				continue
			}
			searched[q] = true
			c := b.newCall(scriptPeek, q, time.Time{}, len(ids))
			for _, id := range ids {
				c.args = append(c.args, id)
			}
			calls = append(calls, c)
		}
		if err := b.evalAll(ctx, calls); err != nil {
			return nil, err
		}
		for _, c := range calls {
			for k, st := range asStrings(c.cmd.Val()) {
				if st != "" && k < len(ids) {
					found[ids[k]] = depAt{queue: c.queue, state: st}
				}
			}
		}
		if len(found) == len(uniq(ids)) || force {
			return found, nil
		}
	}
}

func uniq(ids []string) map[string]bool {
	m := make(map[string]bool, len(ids))
	for _, id := range ids {
		m[id] = true
	}
	return m
}
