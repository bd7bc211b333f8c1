// Package backend defines the contract between the jobrelay engine and the
// stores that keep its jobs: memory, bbolt and Redis.
//
// A backend owns atomic state transitions and the indexes behind them, and
// nothing else: it knows no handlers, no retry policy, no hooks. The engine
// decides (when to retry, how long to keep a result, how long a lease lasts)
// and passes its decision and its clock's "now" into every call, so that a
// test can drive time on every backend alike.
//
// Every method that changes a job does so in one atomic step (one mutex
// section, one bbolt transaction, one Lua script) and records the Event of
// that transition in the same step. The conformance suite in
// backend/backendtest is the executable form of this contract: a backend is
// correct when it passes that suite.
package backend

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors that the engine and its callers branch on with errors.Is.
// Backends wrap them with context (fmt.Errorf("bolt: lease %s: %w", id, err)).
var (
	// ErrJobNotFound means no job has the given ID (or it expired and was swept).
	ErrJobNotFound = errors.New("job not found")

	// ErrLeaseLost means the caller's lease token no longer owns the job: the
	// lease expired and the job was reaped or leased again, or the job was
	// finished by someone else. A late worker must drop the job.
	ErrLeaseLost = errors.New("lease lost")

	// ErrDuplicateJob means an enqueue met a unique key that is held; the
	// EnqueueResult carries the ID of the job that holds it.
	ErrDuplicateJob = errors.New("duplicate job")

	// ErrDependencyNotFound means a job named in DependsOn does not exist.
	// Nothing of the new job is stored.
	ErrDependencyNotFound = errors.New("dependency not found")

	// ErrCancelRequested is returned per lease by Heartbeat (and by Progress)
	// when Cancel was called on the active job: the worker should cancel the
	// handler's context and finish the job with OutcomeCanceled.
	ErrCancelRequested = errors.New("cancel requested")

	// ErrInvalidState means the operation does not apply to the job's current
	// state, for example Requeue of a job that is still queued.
	ErrInvalidState = errors.New("invalid state for operation")

	// ErrClosed is returned by every call made after Close.
	ErrClosed = errors.New("backend closed")
)

// State is where a job is in its life. The string values are the ones the
// public API and its JSON show.
type State string

// The states of a job. Queued, Scheduled, Deferred, Active and Retrying are
// live; Completed, Failed and Canceled are terminal.
const (
	StateQueued    State = "queued"    // ready to be leased
	StateScheduled State = "scheduled" // waits for RunAt (Delay, At)
	StateDeferred  State = "deferred"  // waits for its dependencies to complete
	StateActive    State = "active"    // leased by a worker
	StateRetrying  State = "retrying"  // failed an attempt; waits for RunAt
	StateCompleted State = "completed"
	StateFailed    State = "failed"
	StateCanceled  State = "canceled"
)

// States lists every state in lifecycle order, for stats and listings.
var States = []State{StateQueued, StateScheduled, StateDeferred, StateActive,
	StateRetrying, StateCompleted, StateFailed, StateCanceled}

// Terminal reports whether a job in state s will never run again (unless it is
// requeued by hand).
func (s State) Terminal() bool {
	return s == StateCompleted || s == StateFailed || s == StateCanceled
}

// Valid reports whether s is one of the defined states.
func (s State) Valid() bool {
	for _, v := range States {
		if s == v {
			return true
		}
	}
	return false
}

// NewJob is what the engine asks a backend to store at enqueue. The engine
// validates it and fills every field that has a default; a backend stores it
// as given.
type NewJob struct {
	ID       string // engine-generated, unique, sortable by creation time
	Type     string
	Queue    string
	Payload  []byte // JSON or raw bytes; opaque to the backend
	Meta     map[string]string
	Priority int // higher runs first within a queue; FIFO within one priority

	// RunAt, when after now, makes the job scheduled until then.
	RunAt time.Time

	MaxRetries int           // failed attempts that may be retried
	MaxStalls  int           // the job fails at its MaxStalls-th expired lease
	Timeout    time.Duration // per-attempt deadline, enforced by the engine

	// ResultTTL is how long a completed job (and its result) is kept;
	// FailureTTL how long a failed or canceled job is kept. Sweep deletes
	// jobs whose time is up.
	ResultTTL  time.Duration
	FailureTTL time.Duration

	// UniqueKey, when set, refuses a second job with the same key while the
	// key is held. A key is held while its job is live, and also until
	// UniqueUntil (when that is after now) whatever the job's state.
	UniqueKey   string
	UniqueUntil time.Time

	// LimitKey names the Limit this job counts against (a job type, an API,
	// a tenant); empty for none. See Limit.
	LimitKey string

	// DependsOn lists jobs that must complete before this one runs. When all
	// of them have completed already the job starts queued (or scheduled);
	// when one has failed or been canceled it starts canceled, naming it in
	// Error; otherwise it starts deferred.
	DependsOn []string
}

// EnqueueResult is the outcome of one job of an Enqueue batch.
type EnqueueResult struct {
	// ID is the new job's ID, or for ErrDuplicateJob the ID of the job that
	// holds the unique key.
	ID string
	// State is the state the job was stored in (or the holder's state for a
	// duplicate).
	State State
	// Err is nil, or wraps ErrDuplicateJob or ErrDependencyNotFound. A job
	// with an error is not stored.
	Err error
}

// Job is the stored record of a job: everything Status, listings and the
// handler see.
type Job struct {
	ID       string
	Type     string
	Queue    string
	Payload  []byte
	Meta     map[string]string
	Priority int
	State    State

	// Attempt counts the leases taken on this job: 1 during its first run.
	Attempt int
	// Failures counts failed attempts (the retry policy's "attempt"); a stall
	// or a release at shutdown is not a failure.
	Failures int
	// Stalls counts expired leases.
	Stalls     int
	MaxRetries int
	MaxStalls  int
	Timeout    time.Duration
	ResultTTL  time.Duration
	FailureTTL time.Duration

	UniqueKey   string
	UniqueUntil time.Time
	LimitKey    string
	DependsOn   []string

	Progress        int    // percent, 0..100
	ProgressMessage string // the message of the last Progress call
	Result          []byte // the handler's encoded result, kept with the job
	Error           string // last failure, or why it was canceled

	CreatedAt  time.Time
	RunAt      time.Time // when a scheduled or retrying job becomes due
	StartedAt  time.Time // start of the latest attempt
	FinishedAt time.Time // when it reached a terminal state
	ExpiresAt  time.Time // when Sweep may delete it (terminal jobs only)

	// Lease of the active attempt; empty when the job is not active.
	LeaseToken      string
	LeaseExpiresAt  time.Time
	Worker          string // the worker name that holds the lease
	CancelRequested bool   // Cancel was called while active
}

// LeaseRef names one lease: a job and the token its lease was granted with.
// Every call that acts for a worker carries it, so that a late worker whose
// lease was lost cannot touch a job that now belongs to another (fencing).
type LeaseRef struct {
	JobID string
	Token string
}

// LeaseRequest asks for up to Max due jobs.
type LeaseRequest struct {
	// Queues are tried in the given order: a job of Queues[0] is always
	// taken before one of Queues[1] (strict priority).
	Queues []string
	// Worker names the taker; stored on the job for operators.
	Worker string
	// Max is the most jobs to lease; at least 1.
	Max int
	// Now is the engine's time; Lease sets LeaseExpiresAt = Now + TTL and
	// StartedAt = Now.
	Now time.Time
	TTL time.Duration
	// Block, when positive and no job is ready, waits up to Block (wall
	// time) for a job to become ready in one of Queues, then tries once
	// more. Idle workers wait here instead of polling. A backend wakes the
	// waiter as soon as a job becomes queued (enqueue, promote, requeue,
	// release, dependency resolved, resume), in this process or, for shared
	// backends, in any process. Jobs leased after a wait are stamped with
	// Now plus the wall time waited, so that lease expiry and rate windows
	// count from when the job was really taken.
	Block time.Duration
	// Reuse holds leases of earlier calls that the caller is done with: it
	// keeps no pointer to them or to their Job. A backend may overwrite
	// Reuse[0], Reuse[1], … in that order, one per lease it returns,
	// instead of allocating new ones, or ignore them; so after the call the
	// caller must treat the first len(returned) entries as given away. A
	// busy engine leases millions of jobs, and a lease is the size of a
	// Job: reusing them spares the allocation and the garbage collector.
	Reuse []*Lease
}

// Lease is a job leased to a worker. The Job's LeaseToken is the fencing
// token that every later call for this attempt must present. The Job is
// read-only: an in-process backend may share its Payload, Meta and
// DependsOn with the stored job rather than copy them on every lease.
type Lease struct {
	Job *Job
}

// Ref returns the LeaseRef that names this lease.
func (l *Lease) Ref() LeaseRef { return LeaseRef{JobID: l.Job.ID, Token: l.Job.LeaseToken} }

// Outcome is how an attempt ended, as the engine decided it.
type Outcome int

// The outcomes of an attempt.
const (
	// OutcomeCompleted stores Result and makes the job completed; it keeps
	// the job until FinishedAt + ResultTTL and releases its dependents.
	OutcomeCompleted Outcome = iota + 1
	// OutcomeRetry counts a failure, stores Error and makes the job
	// retrying until RetryAt. A job whose cancel was requested becomes
	// canceled instead.
	OutcomeRetry
	// OutcomeFailed counts a failure, stores Error and makes the job failed
	// for good; its dependents are canceled.
	OutcomeFailed
	// OutcomeCanceled makes the job canceled (its cancel was requested and
	// the handler stopped); its dependents are canceled.
	OutcomeCanceled
	// OutcomeReleased hands the job back to its queue at once (graceful
	// shutdown): no failure and no stall is counted, and Attempt goes back
	// down by one so that the next run is numbered as this one was.
	OutcomeReleased
	// OutcomeThrottled means the handler met an API's rate limit: the job
	// becomes scheduled until RetryAt with no failure counted (Attempt back
	// down by one, as for a release), and when it has a LimitKey, that key
	// is throttled until RetryAt: no job with the key is leased before then.
	OutcomeThrottled
)

// String names the outcome for logs.
func (o Outcome) String() string {
	switch o {
	case OutcomeCompleted:
		return "completed"
	case OutcomeRetry:
		return "retry"
	case OutcomeFailed:
		return "failed"
	case OutcomeCanceled:
		return "canceled"
	case OutcomeReleased:
		return "released"
	case OutcomeThrottled:
		return "throttled"
	}
	return "unknown"
}

// Ack ends one attempt.
type Ack struct {
	Lease   LeaseRef
	Outcome Outcome
	Result  []byte    // OutcomeCompleted
	Error   string    // OutcomeRetry, OutcomeFailed, OutcomeCanceled, OutcomeThrottled
	RetryAt time.Time // OutcomeRetry, OutcomeThrottled: when the job is due again
}

// Limit caps the jobs that share a limit key (NewJob.LimitKey): how many
// run at once, and how many start in any window of Period. API quotas (an
// LLM provider's requests per minute and at once, Notion's requests per
// second) are limits. A limit is stored in the backend, so every engine that
// shares the backend obeys it: on Redis it holds across processes and
// machines.
type Limit struct {
	Key string
	// Concurrency is the most jobs with this key active at once; 0 means no
	// cap.
	Concurrency int
	// Rate is the most jobs with this key leased in any window of Period (a
	// sliding window: for every t, leases in (t-Period, t] number at most
	// Rate); 0 means no cap.
	Rate   int
	Period time.Duration
}

// Limiter is the part of the contract that enforces Limits. A deployment
// that cannot enforce them (a Redis Cluster, where a key's jobs span slots)
// refuses SetLimit with an error instead of ignoring it.
//
// Lease passes over a queued job whose key is held back — Concurrency of its
// jobs are active, or Rate of them were leased in the last Period, or the key
// is throttled (OutcomeThrottled) — and takes the next job in line instead:
// a held-back key never blocks jobs of other keys or of none (no
// head-of-line blocking), and the held-back job keeps its place. It becomes
// leasable, and a blocked Lease wakes, as soon as the limit allows: when a
// job of the key finishes, is released or is reaped; when SetLimit raises or
// removes the limit; and when the rate window or the throttle passes, which
// Promote handles: its next time includes the earliest moment a held-back
// key opens, so the engine calls Promote then, without polling.
type Limiter interface {
	// SetLimit stores the limit of l.Key, replacing the one before; a Limit
	// with neither Concurrency nor Rate removes it.
	SetLimit(ctx context.Context, now time.Time, l Limit) error
	// Limits lists the stored limits, by key.
	Limits(ctx context.Context) ([]Limit, error)
}

// Batcher is implemented by a backend whose calls cost far more per call
// than per job (a network round trip, a script's fixed cost), so that fewer,
// larger Lease and Finish calls save it work. An engine that is busy then
// gathers: after a Lease that came back with several jobs but fewer than it
// asked for (jobs arrive faster than one a call) while workers still run, it
// waits until BatchWindow has passed since that call began before it leases
// again; and it holds acknowledgements for up to BatchWindow while more of
// its jobs are still running, so that they go in one Finish call. A lone job
// never waits: it starts and is acknowledged at once. A window of 0 turns
// gathering off.
type Batcher interface {
	BatchWindow() time.Duration
}

// ListFilter selects jobs for List. Empty fields match everything.
type ListFilter struct {
	Queue string
	State State
	Type  string
	// Cursor is the Next of the previous page; empty for the first page.
	Cursor string
	// Limit is the page size; 0 means 100.
	Limit int
}

// Page is one page of a listing, ordered by job ID (creation order).
type Page struct {
	Jobs []*Job
	// Next is the cursor of the following page, empty on the last page.
	Next string
}

// QueueStats counts the jobs of one queue by state.
type QueueStats struct {
	Queue  string
	Counts map[State]int
	// Processed and Failed are totals since the queue was first used:
	// attempts that completed and attempts that failed (retried or not).
	Processed int64
	Failed    int64
	Paused    bool
}

// WorkerInfo describes one running engine, as shown by Workers.
type WorkerInfo struct {
	ID            string // unique per engine instance
	Name          string
	Host          string
	PID           int
	Queues        []string
	Concurrency   int
	StartedAt     time.Time
	LastHeartbeat time.Time
	// ExpiresAt is LastHeartbeat plus the TTL given at registration; after
	// it the worker is gone from Workers.
	ExpiresAt time.Time
}

// EventKind names the transition an Event records.
type EventKind string

// The kinds of events. Each job transition records exactly one event.
const (
	EventQueued    EventKind = "queued"    // stored queued, scheduled or deferred; or promoted, released, requeued
	EventActive    EventKind = "active"    // leased
	EventProgress  EventKind = "progress"  // Progress called
	EventRetrying  EventKind = "retrying"  // an attempt failed; it will run again at RetryAt
	EventCompleted EventKind = "completed" // terminal
	EventFailed    EventKind = "failed"    // terminal
	EventCanceled  EventKind = "canceled"  // terminal
	EventStalled   EventKind = "stalled"   // lease expired; back in the queue (or failed past MaxStalls: then EventFailed follows)
	// EventCancelRequested tells the engine that holds an active job to
	// cancel its handler's context now rather than at the next heartbeat.
	EventCancelRequested EventKind = "cancel_requested"
	// EventPaused and EventResumed concern a whole queue; JobID is empty.
	EventPaused  EventKind = "paused"
	EventResumed EventKind = "resumed"
)

// Event is one recorded transition.
type Event struct {
	// ID orders events; a cursor for ReadEvents.
	ID      string
	Kind    EventKind
	JobID   string
	Type    string
	Queue   string
	State   State // the job's state after the transition
	Attempt int
	Time    time.Time

	Progress int    // EventProgress
	Message  string // EventProgress
	Result   []byte // EventCompleted
	Error    string // EventRetrying, EventFailed, EventCanceled, EventStalled
	RunAt    time.Time
}

// Backend is the store behind an engine. Every method is safe for concurrent
// use, takes the engine's time where time matters, and after Close returns
// ErrClosed.
type Backend interface {
	// Enqueue stores a batch of new jobs, each in one atomic step, and
	// returns one result per job in order. A job whose unique key is held or
	// whose dependency is unknown is not stored; its result says why, and the
	// others are stored all the same. The error is for the whole call
	// (storage unreachable); then nothing may be assumed stored. Enqueue
	// keeps nothing of jobs (the slice, payloads, maps, slices) once it
	// returns, so that the caller may reuse them for its next batch.
	Enqueue(ctx context.Context, now time.Time, jobs []NewJob) ([]EnqueueResult, error)

	// Lease takes up to req.Max queued jobs, highest priority first and FIFO
	// within one priority, from the first of req.Queues that has any and is
	// not paused, then the next. Each leased job becomes active with a new
	// token, Attempt+1, StartedAt and LeaseExpiresAt set. With req.Block it
	// waits for work when none is ready; it returns an empty slice when none
	// came.
	Lease(ctx context.Context, req LeaseRequest) ([]*Lease, error)

	// Heartbeat extends the leases to until. It returns one error per lease:
	// nil, ErrLeaseLost (the worker must drop the job) or ErrCancelRequested
	// (the lease is extended, but the job should stop).
	Heartbeat(ctx context.Context, now, until time.Time, leases []LeaseRef) ([]error, error)

	// Finish ends attempts: one error per ack, nil or ErrLeaseLost.
	Finish(ctx context.Context, now time.Time, acks []Ack) ([]error, error)

	// Progress stores percent and message on an active job and records
	// EventProgress. It fails with ErrLeaseLost for a stale token and
	// returns ErrCancelRequested (after storing) when a cancel is pending.
	Progress(ctx context.Context, now time.Time, lease LeaseRef, percent int, message string) error

	// Promote makes due scheduled and retrying jobs (RunAt <= now) queued,
	// and returns how many it moved and the earliest RunAt still waiting (zero
	// when none). Every engine calls it; it is safe to run concurrently.
	Promote(ctx context.Context, now time.Time) (moved int, next time.Time, err error)

	// Reap handles active jobs whose lease expired before now: Stalls+1 and
	// back to queued with EventStalled, or, once Stalls reaches MaxStalls,
	// failed (EventStalled then EventFailed) with an error that says so. No
	// failure is counted for the retry policy.
	Reap(ctx context.Context, now time.Time) (reaped int, err error)

	// Sweep deletes up to limit terminal jobs whose ExpiresAt is before now,
	// with their indexes and unique keys (unless held by UniqueUntil), so
	// storage stays bounded. It returns how many it deleted.
	Sweep(ctx context.Context, now time.Time, limit int) (deleted int, err error)

	// Cancel cancels a live job. Queued, scheduled, deferred and retrying
	// jobs become canceled at once (with reason as Error, dependents
	// canceled) and Cancel returns StateCanceled. An active job is only
	// marked CancelRequested (recording EventCancelRequested) and Cancel
	// returns StateActive: the worker finishes it. A completed or failed job
	// is left as it is, and Cancel returns its state with an error wrapping
	// ErrInvalidState; canceling a canceled job returns StateCanceled and no
	// error. An unknown id gives ErrJobNotFound.
	Cancel(ctx context.Context, now time.Time, id, reason string) (State, error)

	// Requeue puts a failed or canceled job back in its queue as a fresh
	// job: Failures, Stalls, Error, Progress and Result reset, the unique key
	// taken again if free. Other states give ErrInvalidState.
	Requeue(ctx context.Context, now time.Time, id string) error

	// Job returns a copy of the stored job, or ErrJobNotFound.
	Job(ctx context.Context, id string) (*Job, error)

	// List returns a page of jobs that match filter, ordered by ID.
	List(ctx context.Context, filter ListFilter) (Page, error)

	// Stats returns counts for every queue that has ever held a job or been
	// paused, ordered by queue name.
	Stats(ctx context.Context) ([]QueueStats, error)

	// Pause stops Lease from taking jobs of queue, for every engine that
	// shares this backend, until Resume. Jobs keep arriving and waiting.
	Pause(ctx context.Context, now time.Time, queue string) error
	// Resume undoes Pause and wakes blocked Lease calls.
	Resume(ctx context.Context, now time.Time, queue string) error

	// RegisterWorker adds or refreshes a worker entry until now+ttl; an
	// engine calls it at start and on each heartbeat.
	RegisterWorker(ctx context.Context, now time.Time, w WorkerInfo, ttl time.Duration) error
	// RemoveWorker deletes a worker entry at shutdown.
	RemoveWorker(ctx context.Context, id string) error
	// Workers lists the workers whose entry has not expired at now.
	Workers(ctx context.Context, now time.Time) ([]WorkerInfo, error)

	// EventCursor returns the cursor of the newest event, so that a reader
	// that starts there sees every event recorded after the call.
	EventCursor(ctx context.Context) (string, error)
	// ReadEvents returns up to max events recorded after cursor, oldest
	// first, blocking until there is at least one or ctx is done. Events are
	// kept in a capped log: a reader that falls further behind than the cap
	// resumes at the oldest kept event. The next cursor is the last event's
	// ID.
	ReadEvents(ctx context.Context, cursor string, max int) ([]Event, error)

	// CancelCursor and ReadCancels are EventCursor and ReadEvents for
	// EventCancelRequested events alone. Every running engine reads them, so
	// that a cancel asked in one process stops the job's handler in another
	// at once, without reading every event of every job when nobody
	// listens. Their cursors are their own (a cursor of one means nothing to
	// the other); the log of cancel requests is capped like the event log.
	CancelCursor(ctx context.Context) (string, error)
	ReadCancels(ctx context.Context, cursor string, max int) ([]Event, error)

	// Limiter stores and enforces Limits.
	Limiter

	// Close releases what the backend opened. Blocked calls return.
	Close() error
}
