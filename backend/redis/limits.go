package redis

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/jobrelay/engine/backend"
)

var _ backend.Limiter = (*Backend)(nil)

// ErrLimitsNeedOneNode means limits were asked of a backend on Redis Cluster.
// A limit key counts the jobs of every queue, and the queues' keys live in
// different slots; the scripts that lease and finish jobs would have to
// touch the limit keys too, which a Cluster forbids. On a single Redis (or
// Sentinel) limits hold across every process.
var ErrLimitsNeedOneNode = errors.New("limits need a single Redis (or Sentinel), not Redis Cluster")

// Limits (backend.Limiter) live in keys of the {prefix} slot (see keys.go and
// base.lua). Lease parks a job whose key is held back in a list of its
// queue, and takes it back, in its place, once the key has room; every
// transition that frees room (a job of the key ending, SetLimit, the Promote
// at which a rate window or a throttle ends) wakes the queues where jobs of
// the key are parked.

// SetLimit stores the limit of l.Key; see backend.Limiter. Raising or
// removing a limit lets the jobs it held back be leased at once, and wakes
// blocked Lease calls.
func (b *Backend) SetLimit(ctx context.Context, now time.Time, l backend.Limit) error {
	if b.closed.Load() {
		return errClosed
	}
	switch {
	case !b.limits:
		return fmt.Errorf("redis: set limit %q: %w", l.Key, ErrLimitsNeedOneNode)
	case l.Key == "":
		return errors.New("redis: set limit: empty key")
	case l.Concurrency < 0 || l.Rate < 0:
		return fmt.Errorf("redis: set limit %q: negative cap", l.Key)
	case l.Rate > 0 && l.Period <= 0:
		return fmt.Errorf("redis: set limit %q: a rate needs a positive period", l.Key)
	}
	value := ""
	if l.Concurrency > 0 || l.Rate > 0 {
		value = strconv.Itoa(l.Concurrency) + "," + strconv.Itoa(l.Rate) + "," + strconv.FormatInt(int64(l.Period), 10)
	}
	err := b.run(ctx, scriptLimits, limitKeys(b.prefix), nsString(now), "set", l.Key, value).Err()
	if err != nil && !errors.Is(err, goredis.Nil) {
		return b.fail("set limit "+l.Key, err)
	}
	return nil
}

// Limits lists the stored limits ordered by key; see backend.Limiter.
func (b *Backend) Limits(ctx context.Context) ([]backend.Limit, error) {
	if b.closed.Load() {
		return nil, errClosed
	}
	if !b.limits {
		return nil, fmt.Errorf("redis: limits: %w", ErrLimitsNeedOneNode)
	}
	v, err := b.run(ctx, scriptLimits, limitKeys(b.prefix), nsString(time.Now()), "list").Result()
	if err != nil {
		return nil, b.fail("limits", err)
	}
	kv := asStrings(v)
	out := []backend.Limit{}
	for i := 0; i+1 < len(kv); i += 2 {
		parts := strings.Split(kv[i+1], ",")
		if len(parts) != 3 {
			b.log.Warn("redis: skipped an unreadable limit", "key", kv[i], "value", kv[i+1])
			continue
		}
		c, _ := strconv.Atoi(parts[0])
		r, _ := strconv.Atoi(parts[1])
		p, _ := strconv.ParseInt(parts[2], 10, 64)
		out = append(out, backend.Limit{Key: kv[i], Concurrency: c, Rate: r, Period: time.Duration(p)})
	}
	slices.SortFunc(out, func(a, b backend.Limit) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

// promoteLimits is Promote's step for limits: it records now, wakes the
// parked jobs of keys whose rate window or throttle has ended, and returns
// when the next held-back key opens (zero when none).
func (b *Backend) promoteLimits(ctx context.Context, now time.Time) (time.Time, error) {
	if !b.limits {
		return time.Time{}, nil
	}
	v, err := b.run(ctx, scriptLimits, limitKeys(b.prefix), nsString(now), "promote").Text()
	if err != nil || v == "" {
		return time.Time{}, err
	}
	return parseTime(v)
}
