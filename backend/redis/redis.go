// Package redis is the jobrelay backend for production and for many
// machines: any number of processes share queues through one Redis (single
// node, Sentinel or Cluster), using github.com/redis/go-redis/v9.
//
// Each transition is one Lua script that touches the keys of one queue only,
// all of which share the hash tag {prefix:queue}, so that every script runs
// in one Cluster slot; the script records the transition's event in the
// queue's capped stream. What crosses queues (a dependency between jobs of
// two queues, reading the events of every queue, the worker registry) is
// built from per-queue steps that may be repeated, and Promote completes
// them after a crash. Limits (backend.Limiter) need one script to reach the
// limit keys and a queue's keys together: they hold on a single Redis or
// Sentinel, and are refused on a Cluster. README.md lists the key layout and
// which guarantees hold across queues on a Cluster.
package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/jobrelay/engine/backend"
)

// DefaultPrefix starts every key the backend writes, so that several apps
// can share one Redis with different prefixes.
const DefaultPrefix = "jobrelay"

// DefaultEventStreamMaxLen is how many events each queue's stream keeps
// (approximately: Redis trims whole nodes of the stream) when
// Options.EventStreamMaxLen is zero.
const DefaultEventStreamMaxLen = 10000

// corruptTTL is how long a job whose record could not be read is kept once
// failed, so that an operator can look at it: its own FailureTTL is unknown.
const corruptTTL = 7 * 24 * time.Hour

// Batch limits: how many jobs one script call handles, so that no script
// holds Redis for long.
const (
	enqueueChunk = 500
	maintChunk   = 1000
	recheckChunk = 100
)

// Options configures a Redis backend.
type Options struct {
	// Prefix starts every key. It must not contain '{' or '}'. Defaults to
	// DefaultPrefix.
	Prefix string
	// EventStreamMaxLen caps each queue's event stream. A reader that falls
	// further behind resumes at the oldest kept event. Defaults to
	// DefaultEventStreamMaxLen.
	EventStreamMaxLen int64
	// Logger receives the backend's few warnings (a corrupt job record, a
	// failed cross-queue step). Defaults to a logger that discards.
	Logger *slog.Logger
	// CloseClient makes Close close the client too: for a client that was
	// made for the backend alone (engine.WithRedisFromEnv).
	CloseClient bool
}

// Backend stores jobs in Redis. It implements backend.Backend; make one with
// New. It is safe for concurrent use by many goroutines, and many processes
// may share the same Redis and Prefix.
type Backend struct {
	rdb     goredis.UniversalClient
	blk     *blocker
	prefix  string
	capArg  string
	log     *slog.Logger
	closeRC bool

	keysMu sync.RWMutex
	keys   map[string]*keySet

	// known caches the queue registry: the queues this process knows are
	// in {prefix}:queues. It is refreshed from Redis when a job is not
	// found in it and, for the maintenance calls, every registryRefresh.
	regMu      sync.Mutex
	known      map[string]bool
	refreshed  time.Time
	queuesKey  string
	workersKey string
	workersExp string
	uniqueKeys []string // the unique-key registry and its tombs

	// limits is on where one script may touch keys of several slots (a
	// single Redis, Sentinel): then queue scripts enforce limit keys.
	limits bool

	// group gathers single enqueues into shared calls (group.go).
	group enqueueGroup

	// functions is on while the scripts run as Redis Functions (FCALL);
	// off, they run as scripts (EVALSHA). See scripts.go.
	functions atomic.Bool

	closed atomic.Bool
}

var _ backend.Backend = (*Backend)(nil)

// registryRefresh is how often maintenance calls reread the queue registry,
// so that they see queues other processes created.
const registryRefresh = time.Second

// New returns a backend on client. It pings Redis, failing with a clear error
// when Redis cannot be reached, and loads the scripts. Idle Lease and
// ReadEvents calls block on connections of their own (a small second pool
// with the client's options), never on the client's pool.
func New(ctx context.Context, client goredis.UniversalClient, opts Options) (*Backend, error) {
	if client == nil {
		return nil, errors.New("redis: new backend: nil client")
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if strings.ContainsAny(opts.Prefix, "{}") {
		return nil, fmt.Errorf("redis: new backend: prefix %q must not contain '{' or '}'", opts.Prefix)
	}
	if opts.EventStreamMaxLen <= 0 {
		opts.EventStreamMaxLen = DefaultEventStreamMaxLen
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if err := client.Ping(ctx).Err(); err != nil {
		return nil, fmt.Errorf("redis: cannot reach Redis at %s: %w", describe(client), err)
	}
	// Functions where Redis has them (7.0 and later); scripts elsewhere.
	fnErr := loadLibrary(ctx, client)
	functions := fnErr == nil
	if !functions {
		if err := loadScripts(ctx, client); err != nil {
			return nil, fmt.Errorf("redis: load scripts: %w", err)
		}
	}
	b := &Backend{
		rdb:        client,
		prefix:     opts.Prefix,
		capArg:     strconv.FormatInt(opts.EventStreamMaxLen, 10),
		log:        opts.Logger,
		closeRC:    opts.CloseClient,
		keys:       make(map[string]*keySet),
		known:      make(map[string]bool),
		queuesKey:  globalKey(opts.Prefix, "queues"),
		workersKey: globalKey(opts.Prefix, "workers"),
		workersExp: globalKey(opts.Prefix, "workers:expiry"),
		uniqueKeys: []string{globalKey(opts.Prefix, "unique"), globalKey(opts.Prefix, "unique:tombs")},
	}
	b.functions.Store(functions)
	if !functions {
		b.log.Info("redis: no Functions here; the scripts run with EVALSHA", "reason", fnErr)
	} else {
		if err := pruneLibraries(ctx, client); err != nil {
			b.log.Warn("redis: could not delete the functions of other builds", "err", err)
		}
	}
	_, b.limits = client.(*goredis.Client)
	b.blk = newBlocker(client)
	return b, nil
}

// describe names the Redis a client talks to, for error messages.
func describe(c goredis.UniversalClient) string {
	switch c := c.(type) {
	case *goredis.Client:
		return c.Options().Addr
	case *goredis.ClusterClient:
		return "cluster " + strings.Join(c.Options().Addrs, ",")
	}
	return fmt.Sprintf("%T", c)
}

// Close releases the backend: blocked Lease and ReadEvents calls return at
// once with ErrClosed, and with Options.CloseClient the client is closed.
// Closing twice is harmless.
func (b *Backend) Close() error {
	if b.closed.Swap(true) {
		return nil
	}
	b.blk.close()
	if b.closeRC {
		if err := b.rdb.Close(); err != nil {
			return fmt.Errorf("redis: close client: %w", err)
		}
	}
	return nil
}

// Client returns the client the backend uses, for tests and tools.
func (b *Backend) Client() goredis.UniversalClient { return b.rdb }

// Prefix returns the key prefix.
func (b *Backend) Prefix() string { return b.prefix }

var errClosed = fmt.Errorf("redis: %w", backend.ErrClosed)

// fail wraps an error of a call; after Close every error is ErrClosed.
func (b *Backend) fail(op string, err error) error {
	if b.closed.Load() || errors.Is(err, goredis.ErrClosed) {
		return errClosed
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("redis: %s: %w", op, err)
}

// queueKeys returns the keys of a queue (keys.go), indexed by keyJobs...,
// cached.
func (b *Backend) queueKeys(queue string) []string {
	return b.cachedKeys(queue).all
}

// scriptKeys returns the KEYS of a queue's scripts, cached: the queue's jobs
// key, then, where limits are on, the limits key. The scripts make the
// other names from these (lib.lua), which spares every call a dozen
// arguments.
func (b *Backend) scriptKeys(queue string) []string {
	return b.cachedKeys(queue).script
}

// keySet is what the keys cache holds per queue.
type keySet struct {
	all    []string // queueKeys
	script []string // scriptKeys
}

func (b *Backend) cachedKeys(queue string) *keySet {
	b.keysMu.RLock()
	k := b.keys[queue]
	b.keysMu.RUnlock()
	if k != nil {
		return k
	}
	all := queueKeys(b.prefix, queue, b.limits)
	k = &keySet{all: all[:numKeys:numKeys], script: []string{all[keyJobs]}}
	if b.limits {
		k.script = append(k.script, all[numKeys])
	}
	b.keysMu.Lock()
	if len(b.keys) > 10000 {
		clear(b.keys) // queue names are few; this bounds a pathological caller
	}
	b.keys[queue] = k
	b.keysMu.Unlock()
	return k
}

// newCall prepares a queue script call with the arguments every queue
// script takes first: now, the event stream cap and the queue's name.
func (b *Backend) newCall(s *script, queue string, now time.Time, extra int) *call {
	args := make([]any, 3, 3+extra)
	args[0], args[1], args[2] = nsString(now), b.capArg, queue
	return &call{script: s, queue: queue, keys: b.scriptKeys(queue), args: args}
}

// register makes sure the registry lists queues, so that every process
// finds their jobs. It costs a round trip only for a queue this process has
// not registered before.
func (b *Backend) register(ctx context.Context, queues ...string) error {
	b.regMu.Lock()
	var missing []any
	for _, q := range queues {
		if !b.known[q] && !slices.Contains(missing, any(q)) {
			missing = append(missing, q)
		}
	}
	b.regMu.Unlock()
	if len(missing) == 0 {
		return nil
	}
	if err := b.rdb.SAdd(ctx, b.queuesKey, missing...).Err(); err != nil {
		return err
	}
	b.regMu.Lock()
	for _, q := range missing {
		b.known[q.(string)] = true
	}
	b.regMu.Unlock()
	return nil
}

// queues returns every registered queue, sorted. It rereads the registry
// when force is set or the cached copy is older than registryRefresh.
func (b *Backend) queues(ctx context.Context, force bool) ([]string, error) {
	b.regMu.Lock()
	fresh := !force && time.Since(b.refreshed) < registryRefresh
	b.regMu.Unlock()
	if !fresh {
		names, err := b.rdb.SMembers(ctx, b.queuesKey).Result()
		if err != nil {
			return nil, err
		}
		b.regMu.Lock()
		for _, q := range names {
			b.known[q] = true
		}
		b.refreshed = time.Now()
		b.regMu.Unlock()
	}
	b.regMu.Lock()
	out := make([]string, 0, len(b.known))
	for q := range b.known {
		out = append(out, q)
	}
	b.regMu.Unlock()
	slices.Sort(out)
	return out, nil
}

// Token layout: a random part, a sequence within the lease call, '@' and the
// queue. The queue in the token lets Heartbeat, Progress and Finish find the
// job's keys without a lookup.
func queueOfToken(token string) (string, bool) {
	at := strings.IndexByte(token, '@')
	if at < 0 {
		return "", false
	}
	return token[at+1:], true
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// asStrings reads a script's array reply of strings (nil items become "").
func asStrings(v any) []string {
	items, _ := v.([]any)
	out := make([]string, len(items))
	for i, it := range items {
		out[i], _ = it.(string)
	}
	return out
}

func asInt(v any) int {
	switch v := v.(type) {
	case int64:
		return int(v)
	case string:
		n, _ := strconv.Atoi(v)
		return n
	}
	return 0
}
