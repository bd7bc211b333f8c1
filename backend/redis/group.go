package redis

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/jobrelay/engine/backend"
)

// Group commit of single enqueues. A script call costs Redis far more than
// one more job in it, and many goroutines that each enqueue one job (an API
// under load) would make one call per job. So while groupCalls such calls
// are in flight, the single enqueues that arrive wait and then go together,
// in one call, as soon as one returns: its caller hands the lead to the
// first of them. A lone caller never waits (there is no timer), every caller
// gets its own result and error, and a job is acknowledged only once the
// call that stored it has returned. Jobs with a unique key or dependencies
// take the ordinary path: their steps outside the script do not group.

// groupMax is how many waiting enqueues one grouped call takes at most.
const groupMax = enqueueChunk

// groupCalls is how many calls of single enqueues may be in flight at
// once. One makes the largest groups, but then enqueues get one turn in
// Redis for the many that workers take, and slow down behind a deep backlog
// whose workers never wait; four took 20% fewer jobs per call than one. Two
// keeps most of the gain and most of the flow.
const groupCalls = 2

// enqueueReq is one caller's job in the group.
type enqueueReq struct {
	now  time.Time
	job  backend.NewJob
	res  backend.EnqueueResult
	err  error
	done chan struct{}      // closed once res and err are set
	lead chan []*enqueueReq // hands this caller a batch to store (itself first)
}

// enqueueGroup gathers the single enqueues that wait for the call in flight.
type enqueueGroup struct {
	mu      sync.Mutex
	calls   int // grouped calls in flight
	pending []*enqueueReq
}

// groupable says whether job may share a call with jobs of other callers.
func groupable(j *backend.NewJob) bool {
	return j.ID != "" && j.UniqueKey == "" && len(j.DependsOn) == 0
}

// enqueueOne stores one job, in a call of its own when none is in flight,
// else in the next grouped call.
func (b *Backend) enqueueOne(ctx context.Context, now time.Time, j *backend.NewJob) ([]backend.EnqueueResult, error) {
	r := &enqueueReq{now: now, job: *j, done: make(chan struct{}), lead: make(chan []*enqueueReq, 1)}
	g := &b.group
	g.mu.Lock()
	if g.calls < groupCalls {
		g.calls++
		g.mu.Unlock()
		b.storeGroup(ctx, []*enqueueReq{r})
		return r.result()
	}
	g.pending = append(g.pending, r)
	g.mu.Unlock()

	select {
	case batch := <-r.lead:
		b.storeGroup(groupContext(ctx, batch), batch)
		return r.result()
	case <-r.done:
		return r.result()
	case <-ctx.Done():
	}
	// The caller gives up. A job still waiting leaves the group; one already
	// taken may be stored or not, as with any call cut short. A caller
	// handed the lead must still store the batch for the others.
	g.mu.Lock()
	if i := slices.Index(g.pending, r); i >= 0 {
		g.pending = slices.Delete(g.pending, i, i+1)
		g.mu.Unlock()
		return nil, ctx.Err()
	}
	g.mu.Unlock()
	go func() {
		select {
		case batch := <-r.lead:
			b.storeGroup(context.WithoutCancel(ctx), batch)
		case <-r.done:
		}
	}()
	return nil, ctx.Err()
}

// groupContext is the context of a grouped call led by the caller of ctx:
// its own when the call carries its job alone, else one that the leader
// giving up does not end, since the others' jobs ride on it.
func groupContext(ctx context.Context, batch []*enqueueReq) context.Context {
	if len(batch) == 1 {
		return ctx
	}
	return context.WithoutCancel(ctx)
}

func (r *enqueueReq) result() ([]backend.EnqueueResult, error) {
	if r.err != nil {
		return nil, r.err
	}
	return []backend.EnqueueResult{r.res}, nil
}

// storeGroup stores the jobs of batch in one call per queue (one pipeline),
// hands each caller its result, then hands the lead to the first caller
// that waits, or ends the group's call.
func (b *Backend) storeGroup(ctx context.Context, batch []*enqueueReq) {
	jobs := make([]backend.NewJob, len(batch))
	nows := make([]time.Time, len(batch))
	queues := make([]string, 0, 1)
	latest := batch[0].now
	for i, r := range batch {
		jobs[i], nows[i] = r.job, r.now
		if r.now.After(latest) {
			latest = r.now
		}
		if !slices.Contains(queues, r.job.Queue) {
			queues = append(queues, r.job.Queue)
		}
	}
	results := make([]backend.EnqueueResult, len(batch))
	err := b.register(ctx, queues...)
	if err != nil {
		err = b.fail("enqueue: register queues", err)
	} else {
		err = b.enqueueSegment(ctx, latest, jobs, nows, results)
	}
	for i, r := range batch {
		r.res, r.err = results[i], err
		close(r.done)
	}

	g := &b.group
	g.mu.Lock()
	if len(g.pending) == 0 {
		g.calls--
		g.mu.Unlock()
		return
	}
	n := min(len(g.pending), groupMax)
	next := slices.Clone(g.pending[:n])
	g.pending = slices.Delete(g.pending, 0, n)
	g.mu.Unlock()
	next[0].lead <- next
}
