package redis

import (
	"context"
	"time"

	"github.com/jobrelay/engine/backend"
)

// Unique keys are unique across queues, so they live in one registry
// ({prefix}:unique) in a slot of its own, and taking one is two steps:
// unique.lua claims the key (or names its holder), then enqueue.lua stores
// the job. Whether a holder still holds its key depends on its state, which
// lives in its queue: when the registry names a holder, the caller looks at
// it (peek.lua) and, if it has ended (and its UniqueUntil has passed), takes
// the key over with a compare-and-set on the holder's ID.
//
// A claim whose job is not stored yet is held for claimGrace: another
// enqueuer that finds the holder missing within that time treats the key
// as held (the job may be on its way), later as free (its enqueuer died).

// claimGrace is how long a claim holds its key while its job is not found.
const claimGrace = time.Minute

// claimReq asks for one unique key for one job.
type claimReq struct {
	key, id, queue string
	until          time.Time
}

// claimResult says who holds the key after a claim.
type claimResult struct {
	ok     bool // the job holds the key
	fresh  bool // and took it in this call: drop it if the job is not stored
	holder string
	state  backend.State // the holder's state, when known
}

// claimKeys claims keys for jobs, in order (a later request for a key that
// an earlier one took finds it held).
func (b *Backend) claimKeys(ctx context.Context, now time.Time, reqs []claimReq) ([]claimResult, error) {
	results := make([]claimResult, len(reqs))
	steal := make([]string, len(reqs))
	pending := make([]int, len(reqs))
	for i := range reqs {
		pending[i] = i
	}
	nowArg := nsString(now)
	for round := 0; len(pending) > 0; round++ {
		args := []any{"claim", nowArg}
		for _, i := range pending {
			r := reqs[i]
			until := ""
			if !r.until.IsZero() {
				until = nsString(r.until)
			}
			args = append(args, r.key, r.id, r.queue, until, steal[i])
		}
		reply, err := b.run(ctx, scriptUnique, b.uniqueKeys, args...).Result()
		if err != nil {
			return nil, err
		}
		items, _ := reply.([]any)
		type heldBy struct {
			i                          int
			id, queue, until, at, tomb string
		}
		var held []heldBy
		for k, i := range pending {
			var f []string
			if k < len(items) {
				f = asStrings(items[k])
			}
			switch {
			case len(f) > 0 && f[0] == "ok":
				results[i] = claimResult{ok: true, fresh: true, holder: reqs[i].id}
			case len(f) > 0 && f[0] == "mine":
				results[i] = claimResult{ok: true, holder: reqs[i].id}
			case len(f) >= 6:
				held = append(held, heldBy{i, f[1], f[2], f[3], f[4], f[5]})
			default:
				results[i] = claimResult{holder: ""}
			}
		}
		pending = pending[:0]
		if len(held) == 0 {
			break
		}

		// Look at each live holder in its queue.
		var ids []string
		var queues []string
		for _, h := range held {
			if h.tomb == "" {
				ids = append(ids, h.id)
				queues = append(queues, h.queue)
			}
		}
		states, err := b.peekAt(ctx, queues, ids)
		if err != nil {
			return nil, err
		}
		for _, h := range held {
			until, _ := parseTime(h.until)
			untilAhead := h.until != "" && until.After(now)
			st := stateOfCode(h.tomb)
			found := true
			if h.tomb == "" {
				code, ok := states[h.queue+"\x00"+h.id]
				st, found = stateOfCode(code), ok && code != ""
			}
			claimed, _ := parseTime(h.at)
			var holds bool
			switch {
			case untilAhead:
				holds = true
			case h.tomb != "":
				holds = false
			case found:
				holds = !st.Terminal()
			default:
				holds = h.at != "" && now.Sub(claimed) < claimGrace
			}
			if holds || round >= 2 {
				results[h.i] = claimResult{holder: h.id, state: st}
				continue
			}
			steal[h.i] = h.id
			pending = append(pending, h.i)
		}
	}
	return results, nil
}

// peekAt returns the state codes of jobs, each looked up in its given queue,
// keyed by queue and ID ("" when not there).
func (b *Backend) peekAt(ctx context.Context, queues, ids []string) (map[string]string, error) {
	out := make(map[string]string, len(ids))
	byQueue := make(map[string]*call)
	var calls []*call
	for k, q := range queues {
		c := byQueue[q]
		if c == nil {
			c = b.newCall(scriptPeek, q, time.Time{}, 1)
			byQueue[q] = c
			calls = append(calls, c)
		}
		c.args = append(c.args, ids[k])
	}
	if err := b.evalAll(ctx, calls); err != nil {
		return nil, err
	}
	for _, c := range calls {
		asked := c.args[3:]
		for k, st := range asStrings(c.cmd.Val()) {
			if k < len(asked) {
				out[c.queue+"\x00"+asked[k].(string)] = st
			}
		}
	}
	return out, nil
}

// dropClaims forgets claims whose jobs were not stored.
func (b *Backend) dropClaims(ctx context.Context, now time.Time, keys, ids []string) {
	if len(keys) == 0 {
		return
	}
	args := []any{"drop", nsString(now)}
	for i := range keys {
		args = append(args, keys[i], ids[i])
	}
	if err := b.run(ctx, scriptUnique, b.uniqueKeys, args...).Err(); err != nil {
		b.log.Warn("redis: forget unique keys of jobs not stored; they free themselves after a while", "err", err)
	}
}

// releaseKeys frees the unique keys of swept jobs (items as sweep.lua
// returns them), keeping those that UniqueUntil still holds as tombs, and
// forgets tombs whose time has passed.
func (b *Backend) releaseKeys(ctx context.Context, now time.Time, items []any, limit int) error {
	if len(items) > 0 {
		args := []any{"release", nsString(now)}
		for _, it := range items {
			f := asStrings(it)
			if len(f) == 4 {
				args = append(args, f[0], f[1], f[2], f[3])
			}
		}
		if err := b.run(ctx, scriptUnique, b.uniqueKeys, args...).Err(); err != nil {
			return err
		}
	}
	return b.run(ctx, scriptUnique, b.uniqueKeys, "clean", nsString(now), limit).Err()
}
