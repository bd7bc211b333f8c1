package redis

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"

	goredis "github.com/redis/go-redis/v9"

	"github.com/jobrelay/engine/backend"
)

// defaultPageSize is the page size of List when the filter gives none, as
// backend.ListFilter documents.
const defaultPageSize = 100

// Job returns a copy of the stored job; see backend.Backend. Job IDs do not
// name their queue, so it asks every queue at once (one round trip).
func (b *Backend) Job(ctx context.Context, id string) (*backend.Job, error) {
	if b.closed.Load() {
		return nil, errClosed
	}
	q, rec, err := b.find(ctx, id, true)
	if err != nil {
		return nil, b.fail("job "+id, err)
	}
	if q == "" {
		return nil, notFound("job", id)
	}
	return decodeJob(id, q, rec)
}

// queueOf returns the queue that holds job id, or "" when none does.
func (b *Backend) queueOf(ctx context.Context, id string) (string, error) {
	q, _, err := b.find(ctx, id, false)
	return q, err
}

// find looks for job id in every known queue at once, and once more in the
// queues a fresh read of the registry adds. With record it returns the
// record too.
func (b *Backend) find(ctx context.Context, id string, record bool) (string, string, error) {
	searched := make(map[string]bool)
	for _, force := range []bool{false, true} {
		queues, err := b.queues(ctx, force)
		if err != nil {
			return "", "", err
		}
		pipe := b.rdb.Pipeline()
		var asked []string
		var cmds []goredis.Cmder
		for _, q := range queues {
			if searched[q] {
				continue
			}
			searched[q] = true
			asked = append(asked, q)
			key := b.queueKeys(q)[keyJobs]
			if record {
				cmds = append(cmds, pipe.HGet(ctx, key, id))
			} else {
				cmds = append(cmds, pipe.HExists(ctx, key, id))
			}
		}
		if len(cmds) == 0 {
			continue
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
			return "", "", err
		}
		for i, cmd := range cmds {
			switch cmd := cmd.(type) {
			case *goredis.StringCmd:
				if rec, err := cmd.Result(); err == nil {
					return asked[i], rec, nil
				}
			case *goredis.BoolCmd:
				if cmd.Val() {
					return asked[i], "", nil
				}
			}
		}
	}
	return "", "", nil
}

// List returns a page of jobs in ID order; see backend.Backend. It reads the
// IDs of the matching index of each queue (all the queue's jobs without a
// state filter), sorts them here and reads the records of one page: an
// operator's call, costing a pass over the IDs of the queues listed.
func (b *Backend) List(ctx context.Context, f backend.ListFilter) (backend.Page, error) {
	if b.closed.Load() {
		return backend.Page{}, errClosed
	}
	limit := f.Limit
	if limit <= 0 {
		limit = defaultPageSize
	}
	queues := []string{f.Queue}
	if f.Queue == "" {
		var err error
		if queues, err = b.queues(ctx, true); err != nil {
			return backend.Page{}, b.fail("list", err)
		}
	}

	type ref struct{ id, queue string }
	pipe := b.rdb.Pipeline()
	cmds := make([]*goredis.StringSliceCmd, len(queues))
	for i, q := range queues {
		keys := b.queueKeys(q)
		switch f.State {
		case backend.StateScheduled, backend.StateRetrying:
			cmds[i] = pipe.ZRange(ctx, keys[keyScheduled], 0, -1)
		case backend.StateActive:
			cmds[i] = pipe.ZRange(ctx, keys[keyActive], 0, -1)
		case backend.StateCompleted, backend.StateFailed, backend.StateCanceled:
			cmds[i] = pipe.ZRange(ctx, keys[keyDone], 0, -1)
		default:
			cmds[i] = pipe.HKeys(ctx, keys[keyJobs])
		}
	}
	if len(cmds) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return backend.Page{}, b.fail("list", err)
		}
	}
	var refs []ref
	for i, c := range cmds {
		for _, id := range c.Val() {
			if id > f.Cursor {
				refs = append(refs, ref{id, queues[i]})
			}
		}
	}
	slices.SortFunc(refs, func(a, b ref) int { return strings.Compare(a.id, b.id) })

	var page backend.Page
	for len(refs) > 0 && len(page.Jobs) <= limit {
		n := min(len(refs), 2*(limit+1))
		chunk := refs[:n]
		refs = refs[n:]
		pipe := b.rdb.Pipeline()
		recs := make([]*goredis.StringCmd, len(chunk))
		for i, r := range chunk {
			recs[i] = pipe.HGet(ctx, b.queueKeys(r.queue)[keyJobs], r.id)
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
			return backend.Page{}, b.fail("list", err)
		}
		for i, r := range chunk {
			rec, err := recs[i].Result()
			if err != nil {
				continue // swept since the IDs were read
			}
			j, err := decodeJob(r.id, r.queue, rec)
			if err != nil {
				b.log.Warn("redis: list: skipped a corrupt job record", "job_id", r.id, "err", err)
				continue
			}
			if f.State != "" && j.State != f.State || f.Type != "" && j.Type != f.Type {
				continue
			}
			if len(page.Jobs) == limit {
				// One more match exists: the page is not the last.
				page.Next = page.Jobs[limit-1].ID
				return page, nil
			}
			page.Jobs = append(page.Jobs, j)
		}
	}
	return page, nil
}

// Stats counts jobs per queue and state; see backend.Backend. The counts are
// kept by the scripts in each queue's meta hash, so this is one round trip.
func (b *Backend) Stats(ctx context.Context) ([]backend.QueueStats, error) {
	if b.closed.Load() {
		return nil, errClosed
	}
	queues, err := b.queues(ctx, true)
	if err != nil {
		return nil, b.fail("stats", err)
	}
	pipe := b.rdb.Pipeline()
	cmds := make([]*goredis.MapStringStringCmd, len(queues))
	for i, q := range queues {
		cmds[i] = pipe.HGetAll(ctx, b.queueKeys(q)[keyMeta])
	}
	if len(cmds) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, b.fail("stats", err)
		}
	}
	out := make([]backend.QueueStats, len(queues))
	for i, q := range queues {
		m := cmds[i].Val()
		counts := make(map[backend.State]int, len(backend.States))
		for _, s := range backend.States {
			n, _ := strconv.Atoi(m[string(s)])
			counts[s] = max(n, 0)
		}
		processed, _ := strconv.ParseInt(m["processed"], 10, 64)
		failed, _ := strconv.ParseInt(m["failures"], 10, 64)
		out[i] = backend.QueueStats{Queue: q, Counts: counts, Processed: processed, Failed: failed,
			Paused: m["paused"] == "1"}
	}
	return out, nil
}
