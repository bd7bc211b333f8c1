package redis

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jobrelay/engine/backend"
)

// The worker registry is one hash of entries and one sorted set of their
// expiry, both under the tag {prefix}: workers.lua keeps them in step and
// drops expired entries on every call, so that dead processes drop out and
// the registry stays bounded. Expiry follows the engine's clock, not Redis
// key TTLs, so that tests drive it like everything else.

// RegisterWorker adds or refreshes a worker entry; see backend.Backend.
// LastHeartbeat becomes now and ExpiresAt now+ttl, whatever w says.
func (b *Backend) RegisterWorker(ctx context.Context, now time.Time, w backend.WorkerInfo, ttl time.Duration) error {
	if b.closed.Load() {
		return errClosed
	}
	if w.ID == "" {
		return errors.New("redis: register worker: empty ID")
	}
	w.LastHeartbeat = now
	w.ExpiresAt = now.Add(ttl)
	entry, err := json.Marshal(w)
	if err != nil {
		return b.fail("register worker "+w.ID, err)
	}
	err = b.run(ctx, scriptWorkers, []string{b.workersKey, b.workersExp},
		"register", usString(now), w.ID, entry, usString(w.ExpiresAt)).Err()
	if err != nil {
		return b.fail("register worker "+w.ID, err)
	}
	return nil
}

// RemoveWorker deletes a worker entry; see backend.Backend. An unknown id is
// not an error: the entry may have expired already.
func (b *Backend) RemoveWorker(ctx context.Context, id string) error {
	if b.closed.Load() {
		return errClosed
	}
	err := b.run(ctx, scriptWorkers, []string{b.workersKey, b.workersExp}, "remove", id).Err()
	if err != nil {
		return b.fail("remove worker "+id, err)
	}
	return nil
}

// Workers lists the workers of every process whose entry has not expired at
// now, ordered by ID; see backend.Backend.
func (b *Backend) Workers(ctx context.Context, now time.Time) ([]backend.WorkerInfo, error) {
	if b.closed.Load() {
		return nil, errClosed
	}
	v, err := b.run(ctx, scriptWorkers, []string{b.workersKey, b.workersExp}, "list", usString(now)).Result()
	if err != nil {
		return nil, b.fail("workers", err)
	}
	var out []backend.WorkerInfo
	for _, raw := range asStrings(v) {
		if raw == "" {
			continue
		}
		var w backend.WorkerInfo
		if err := json.Unmarshal([]byte(raw), &w); err != nil {
			b.log.Warn("redis: skipped an unreadable worker entry", "err", err)
			continue
		}
		out = append(out, w)
	}
	slices.SortFunc(out, func(a, b backend.WorkerInfo) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// usString is t in Unix microseconds, the unit of sorted-set scores.
func usString(t time.Time) string { return strconv.FormatInt(nanos(t)/1000, 10) }
