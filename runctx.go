package engine

import (
	"context"
	"sync"
	"time"
)

// runContext is the context a handler gets. Its deadline is the job's
// timeout and the engine cancels it for a reason (cancel, shutdown, lost
// lease). It is one small object per run with no goroutine and no timer of
// its own, where context.WithDeadline plus context.AfterFunc cost several
// allocations on the hot path; its AfterFunc method lets contexts derived
// from it by a handler follow it without a goroutine.
type runContext struct {
	parent   context.Context // for values only
	deadline time.Time

	done   chan struct{} // made on first use: most handlers never ask
	afters map[*afterFunc]struct{}
	mu     sync.Mutex
	// end is why the context ended, as a byte rather than an error: the
	// only reasons are context.Canceled and context.DeadlineExceeded, and
	// the eight bytes saved are eight bytes less on every job.
	end ending
}

// ending is why a runContext ended.
type ending uint8

const (
	notEnded ending = iota
	endedCanceled
	endedDeadline
)

func (end ending) err() error {
	switch end {
	case endedCanceled:
		return context.Canceled
	case endedDeadline:
		return context.DeadlineExceeded
	}
	return nil
}

type afterFunc struct{ f func() }

// closedDone is the Done channel of a context cancelled before anyone asked
// for its channel.
var closedDone = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (c *runContext) Deadline() (time.Time, bool) { return c.deadline, true }

func (c *runContext) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		if c.end != notEnded {
			return closedDone
		}
		c.done = make(chan struct{})
	}
	return c.done
}

func (c *runContext) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.end.err()
}

func (c *runContext) Value(key any) any { return c.parent.Value(key) }

// AfterFunc runs f in a goroutine of its own once c is cancelled, as
// context.AfterFunc does; the context package uses it for children.
func (c *runContext) AfterFunc(f func()) (stop func() bool) {
	a := &afterFunc{f: f}
	c.mu.Lock()
	if c.end != notEnded {
		c.mu.Unlock()
		go f()
		return func() bool { return false }
	}
	if c.afters == nil {
		c.afters = make(map[*afterFunc]struct{})
	}
	c.afters[a] = struct{}{}
	c.mu.Unlock()
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		if _, ok := c.afters[a]; !ok {
			return false
		}
		delete(c.afters, a)
		return true
	}
}

// cancel ends the context for the given reason (endedCanceled or
// endedDeadline) and reports whether this call ended it.
func (c *runContext) cancel(end ending) bool {
	c.mu.Lock()
	if c.end != notEnded {
		c.mu.Unlock()
		return false
	}
	c.end = end
	if c.done != nil {
		close(c.done)
	}
	afters := c.afters
	c.afters = nil
	c.mu.Unlock()
	for a := range afters {
		go a.f()
	}
	return true
}
