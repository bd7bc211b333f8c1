package engine

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// RetryPolicy decides whether a failed attempt runs again and after how long.
// Attempts are counted as failures so far, from 0: after the first failure
// the engine asks ShouldRetry(0) and Delay(0).
type RetryPolicy struct {
	// MaxRetries is how many failed attempts are retried. A job's own
	// MaxRetries option overrides it.
	MaxRetries int
	// BackoffFactor multiplies the delay after each failure; below 1 it is
	// read as 1 (a constant delay).
	BackoffFactor float64
	// InitialDelay is the delay after the first failure.
	InitialDelay time.Duration
	// MaxDelay caps a delay; 0 means no cap.
	MaxDelay time.Duration
	// Jitter spreads each delay at random by up to this fraction either way
	// (0.1 means ±10%), so that jobs that failed together do not retry
	// together; 0 means none.
	Jitter float64
}

// DefaultRetryPolicy returns the original service's policy: 3 retries after
// the first failure with delays of 1 s, 2 s and 4 s, no jitter; four runs in
// all.
func DefaultRetryPolicy() RetryPolicy {
	return RetryPolicy{MaxRetries: 3, BackoffFactor: 2, InitialDelay: time.Second}
}

// ShouldRetry reports whether a job that has failed attempt+1 times runs
// again.
func (p RetryPolicy) ShouldRetry(attempt int) bool {
	return attempt >= 0 && attempt < p.MaxRetries
}

// Delay returns how long to wait after failure number attempt (from 0):
// InitialDelay × BackoffFactor^attempt, capped by MaxDelay, with jitter.
func (p RetryPolicy) Delay(attempt int) time.Duration {
	if attempt < 0 {
		attempt = 0
	}
	factor := p.BackoffFactor
	if factor < 1 {
		factor = 1
	}
	d := float64(p.InitialDelay) * math.Pow(factor, float64(attempt))
	if p.MaxDelay > 0 && d > float64(p.MaxDelay) {
		d = float64(p.MaxDelay)
	}
	if p.Jitter > 0 {
		d += d * p.Jitter * (2*rand.Float64() - 1)
	}
	if d > math.MaxInt64 {
		return time.Duration(math.MaxInt64)
	}
	if d < 0 {
		return 0
	}
	return time.Duration(d)
}

func (p RetryPolicy) validate() error {
	switch {
	case p.MaxRetries < 0:
		return invalidOption("retry policy: negative MaxRetries %d", p.MaxRetries)
	case p.InitialDelay < 0 || p.MaxDelay < 0:
		return invalidOption("retry policy: negative delay")
	case p.Jitter < 0 || p.Jitter > 1:
		return invalidOption("retry policy: jitter %v outside [0, 1]", p.Jitter)
	}
	return nil
}

// skipRetryError marks an error that fails the job without retries.
type skipRetryError struct{ err error }

func (e *skipRetryError) Error() string { return e.err.Error() }
func (e *skipRetryError) Unwrap() error { return e.err }

// SkipRetry wraps err so that the job fails now, whatever retries are left:
// for errors that another attempt cannot fix, such as bad input.
func SkipRetry(err error) error {
	if err == nil {
		err = errors.New("skip retry")
	}
	return &skipRetryError{err: err}
}

// retryAfterError asks for the next attempt after a given delay.
type retryAfterError struct {
	delay time.Duration
	err   error
}

func (e *retryAfterError) Error() string {
	return fmt.Sprintf("retry after %s: %v", e.delay, e.err)
}
func (e *retryAfterError) Unwrap() error { return e.err }

// RetryAfter wraps err so that, if the job has retries left, the next
// attempt comes after d instead of the policy's delay: for an API that said
// when to come back. It still uses a retry.
func RetryAfter(d time.Duration, err error) error {
	if err == nil {
		err = errors.New("retry requested")
	}
	if d < 0 {
		d = 0
	}
	return &retryAfterError{delay: d, err: err}
}
