package redis

import (
	"context"
	"errors"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// blockPoolSize bounds the blocking connections per Redis node: one per idle
// Lease or ReadEvents call in flight (per queue on a Cluster).
const blockPoolSize = 64

// blockChunk is the longest single blocking command. A wait longer than
// that is several commands, so that a command left behind by a caller that
// stopped waiting (its context ended) holds its connection for at most this
// long. BZPOPMIN counts in whole seconds.
const blockChunk = time.Second

// blocker runs blocking commands (BZPOPMIN, XREAD BLOCK) on a client of its
// own, so that idle waiters never starve the shared pool, and so that Close
// can end them all at once by closing that client.
type blocker struct {
	c       goredis.UniversalClient
	own     bool // c was made here and is closed by close
	cluster bool

	mu     sync.Mutex
	closed bool
	done   chan struct{}
	wg     sync.WaitGroup
}

// newBlocker makes a client with the same options as c and a pool of its
// own. A client of another kind (a Ring, a wrapper) is used as it is.
func newBlocker(c goredis.UniversalClient) *blocker {
	b := &blocker{c: c, done: make(chan struct{})}
	switch c := c.(type) {
	case *goredis.Client:
		opt := *c.Options()
		opt.PoolSize, opt.MinIdleConns, opt.MaxIdleConns = blockPoolSize, 0, 4
		b.c, b.own = goredis.NewClient(&opt), true
	case *goredis.ClusterClient:
		opt := *c.Options()
		opt.PoolSize, opt.MinIdleConns, opt.MaxIdleConns = blockPoolSize, 0, 4
		b.c, b.own, b.cluster = goredis.NewClusterClient(&opt), true, true
	}
	return b
}

func (b *blocker) close() {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.closed = true
	close(b.done)
	b.mu.Unlock()
	if b.own {
		// Closing the pool closes connections in use too, which ends the
		// blocked commands.
		_ = b.c.Close()
	}
	b.wg.Wait()
}

func (b *blocker) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// goBlock runs fn in a goroutine that Close waits for; false when closed.
func (b *blocker) goBlock(fn func()) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		fn()
	}()
	return true
}

// errStopped means the wait ended because the backend was closed.
var errStopped = errors.New("blocker closed")

// waitGroup is one wait over several blocking commands: the first that
// brings something ends it. Commands that finish after the waiter left hand
// what they took to orphan (a woken marker must be put back for others).
type waitGroup[T any] struct {
	mu      sync.Mutex
	left    bool
	got     []T
	pending int
	signal  chan struct{}
}

func newWaitGroup[T any](n int) *waitGroup[T] {
	return &waitGroup[T]{pending: n, signal: make(chan struct{}, 1)}
}

// deliver hands over one command's result (ok false: it brought nothing).
// It returns false when the waiter has left.
func (w *waitGroup[T]) deliver(v T, ok bool) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.pending--
	if w.left {
		return false
	}
	if ok {
		w.got = append(w.got, v)
	}
	select {
	case w.signal <- struct{}{}:
	default:
	}
	return true
}

// wait returns what came, once something came or every command finished
// empty, or when ctx ends, the backend closes, or timeout passes. It leaves
// the group: later results go to their orphan handling. What came is
// returned with an error too, so that the caller can put it back.
func (w *waitGroup[T]) wait(ctx context.Context, done <-chan struct{}, timeout time.Duration) ([]T, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var err error
wait:
	for {
		select {
		case <-w.signal:
			w.mu.Lock()
			finished := len(w.got) > 0 || w.pending == 0
			w.mu.Unlock()
			if finished {
				break wait
			}
		case <-timer.C:
			break wait
		case <-ctx.Done():
			err = ctx.Err()
			break wait
		case <-done:
			err = errStopped
			break wait
		}
	}
	w.mu.Lock()
	w.left = true
	got := w.got
	w.mu.Unlock()
	return got, err
}
