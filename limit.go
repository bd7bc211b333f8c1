package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jobrelay/engine/backend"
)

// Limit caps the jobs that share a limit key: at most Concurrency of them
// run at once, and at most Rate of them start in any window of Period (a
// sliding window). It is how an app keeps to an API's quota: an LLM
// provider's requests per minute and at once, Notion's few requests a
// second. Limits are kept in the backend, so on Redis they hold across every
// process and machine, and on memory and bbolt across the process. A job
// held back by a limit waits without using a retry and without blocking
// jobs of other keys in its queue, and starts as soon as the limit allows.
type Limit = backend.Limit

// WithLimit declares a limit when the engine starts; give it once per key.
// Jobs count against it through LimitKey.
func WithLimit(l Limit) Option {
	return func(c *config) {
		if err := validateLimit(l); err != nil {
			c.errs = append(c.errs, err)
			return
		}
		c.limits = append(c.limits, l)
	}
}

func validateLimit(l Limit) error {
	switch {
	case l.Key == "":
		return invalidOption("limit with an empty key")
	case l.Concurrency < 0 || l.Rate < 0:
		return invalidOption("limit %q: negative cap", l.Key)
	case l.Rate > 0 && l.Period <= 0:
		return invalidOption("limit %q: a rate needs a positive period", l.Key)
	}
	return nil
}

// LimitKey makes the job count against the Limit of key. As a handler option
// it puts every job of that type under the limit (LLM-backed types sharing
// one key); at enqueue it can name a key taken from the job, such as a
// tenant ("tenant:acme") or an API key.
func LimitKey(key string) JobOption {
	return jobOption(func(c *jobConfig) {
		if key == "" {
			c.fail("empty limit key")
			return
		}
		c.limitKey = key
	})
}

// SetLimit stores or replaces the limit of l.Key for every engine sharing
// the backend, at once: for limits known only at run time (a new tenant).
// A Limit with neither Concurrency nor Rate removes it.
func (e *Engine) SetLimit(ctx context.Context, l Limit) error {
	if err := validateLimit(l); err != nil {
		return fmt.Errorf("set limit: %w", err)
	}
	if err := e.backend.SetLimit(ctx, e.clock.Now(), l); err != nil {
		return fmt.Errorf("set limit %q: %w", l.Key, err)
	}
	return nil
}

// Limits lists the limits stored in the backend.
func (e *Engine) Limits(ctx context.Context) ([]Limit, error) {
	ls, err := e.backend.Limits(ctx)
	if err != nil {
		return nil, fmt.Errorf("list limits: %w", err)
	}
	return ls, nil
}

// rateLimitedError asks to put the job back and slow its limiter.
type rateLimitedError struct{ after time.Duration }

func (e *rateLimitedError) Error() string {
	return fmt.Sprintf("rate limited; retry after %s", e.after)
}

// RateLimited is the error a handler returns when an API answered 429 (too
// many requests): the job goes back to wait for retryAfter without using a
// retry, and its limit key is held for that long, so that no other job of
// the key starts before then either.
func RateLimited(retryAfter time.Duration) error {
	return &rateLimitedError{after: max(retryAfter, 0)}
}

// throttle returns the acknowledgement of a rate-limited attempt, if err is
// one.
func (e *Engine) throttle(r *run, err error) (backend.Ack, bool) {
	var rl *rateLimitedError
	if !errors.As(err, &rl) {
		return backend.Ack{}, false
	}
	return backend.Ack{Lease: r.leaseRef(), Outcome: backend.OutcomeThrottled, Error: rl.Error(),
		RetryAt: e.clock.Now().Add(rl.after)}, true
}

// applyLimits stores the limits declared with WithLimit.
func (e *Engine) applyLimits() error {
	if len(e.cfg.limits) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, l := range e.cfg.limits {
		if err := e.SetLimit(ctx, l); err != nil {
			return err
		}
	}
	return nil
}
