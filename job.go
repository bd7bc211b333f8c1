package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jobrelay/engine/backend"
)

// State is where a job is in its life: queued, scheduled, deferred, active,
// retrying, completed, failed or canceled.
type State = backend.State

// The states a job passes through. Queued, scheduled (waits for its time),
// deferred (waits for its dependencies), active and retrying (waits for its
// next attempt) are live; completed, failed and canceled are terminal.
const (
	StateQueued    = backend.StateQueued
	StateScheduled = backend.StateScheduled
	StateDeferred  = backend.StateDeferred
	StateActive    = backend.StateActive
	StateRetrying  = backend.StateRetrying
	StateCompleted = backend.StateCompleted
	StateFailed    = backend.StateFailed
	StateCanceled  = backend.StateCanceled
)

// Job is what a handler sees of the job it runs. The handler may read every
// field; it reports progress through Progress. Payload and Meta are shared
// with the store of an in-process backend, so a handler must not modify
// them (decode the payload, or copy it first).
type Job struct {
	ID    string
	Type  string
	Queue string
	// Attempt is the number of this run, from 1. A run handed back at
	// shutdown does not count.
	Attempt int
	// Payload is the raw payload as enqueued (JSON unless bytes were given).
	Payload    []byte
	Meta       map[string]string
	Priority   int
	MaxRetries int
	CreatedAt  time.Time
	// StartedAt is when this attempt was taken from the queue (its lease
	// began), by the engine's clock; limits count starts at this time.
	StartedAt time.Time

	run *run
}

// Progress records how far the job has come (percent from 0 to 100, clamped)
// and a message, stores them with the job and emits a progress event that
// every listener hears, in this process or another. It returns ErrLeaseLost
// when the job no longer belongs to this worker; the handler should stop.
func (j *Job) Progress(ctx context.Context, percent int, message string) error {
	if j.run == nil {
		return nil
	}
	percent = min(max(percent, 0), 100)
	e := j.run.engine
	err := e.backend.Progress(ctx, e.clock.Now(), j.run.leaseRef(), percent, message)
	switch {
	case errors.Is(err, backend.ErrCancelRequested):
		j.run.cancel(errCanceledByUser)
		return nil
	case errors.Is(err, backend.ErrLeaseLost):
		j.run.cancel(errLeaseLost)
		return fmt.Errorf("progress of job %s: %w", j.ID, err)
	case err != nil:
		return fmt.Errorf("progress of job %s: %w", j.ID, err)
	}
	return nil
}

// JobInfo is what a caller sees of a job through Status, Wait and listings.
// It encodes to JSON with the keys a web API returns (job_id, type, queue,
// status, attempt, max_retries, progress, result, error, created_at,
// started_at, finished_at and more); result is the handler's result as
// nested JSON and times are RFC 3339, null when not yet reached.
type JobInfo struct {
	ID              string
	Type            string
	Queue           string
	State           State
	Priority        int
	Attempt         int
	MaxRetries      int
	Failures        int
	Stalls          int
	Progress        int
	ProgressMessage string
	Payload         json.RawMessage
	Result          json.RawMessage
	Error           string
	Meta            map[string]string
	UniqueKey       string
	LimitKey        string
	DependsOn       []string
	Worker          string
	CreatedAt       time.Time
	RunAt           time.Time // when a scheduled or retrying job is due
	StartedAt       time.Time
	FinishedAt      time.Time
	ExpiresAt       time.Time // when a terminal job will be deleted
}

type jobInfoJSON struct {
	ID              string            `json:"job_id"`
	Type            string            `json:"type"`
	Queue           string            `json:"queue"`
	State           State             `json:"status"`
	Priority        int               `json:"priority"`
	Attempt         int               `json:"attempt"`
	MaxRetries      int               `json:"max_retries"`
	Failures        int               `json:"failures"`
	Stalls          int               `json:"stalls"`
	Progress        int               `json:"progress"`
	ProgressMessage string            `json:"progress_message,omitempty"`
	Payload         json.RawMessage   `json:"payload,omitempty"`
	Result          json.RawMessage   `json:"result"`
	Error           *string           `json:"error"`
	Meta            map[string]string `json:"meta,omitempty"`
	UniqueKey       string            `json:"unique_key,omitempty"`
	LimitKey        string            `json:"limit_key,omitempty"`
	DependsOn       []string          `json:"depends_on,omitempty"`
	Worker          string            `json:"worker,omitempty"`
	CreatedAt       *time.Time        `json:"created_at"`
	RunAt           *time.Time        `json:"run_at,omitempty"`
	StartedAt       *time.Time        `json:"started_at"`
	FinishedAt      *time.Time        `json:"finished_at"`
	ExpiresAt       *time.Time        `json:"expires_at,omitempty"`
}

func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

func timeOrZero(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}

// rawJSON returns b if it is valid JSON, or b as a JSON string otherwise, so
// that a payload of raw bytes never breaks the encoding of a JobInfo.
func rawJSON(b []byte) json.RawMessage {
	if len(b) == 0 {
		return nil
	}
	if json.Valid(b) {
		return b
	}
	s, _ := json.Marshal(string(b))
	return s
}

// MarshalJSON encodes the job with the web API's keys.
func (i JobInfo) MarshalJSON() ([]byte, error) {
	v := jobInfoJSON{
		ID: i.ID, Type: i.Type, Queue: i.Queue, State: i.State, Priority: i.Priority,
		Attempt: i.Attempt, MaxRetries: i.MaxRetries, Failures: i.Failures, Stalls: i.Stalls,
		Progress: i.Progress, ProgressMessage: i.ProgressMessage,
		Payload: rawJSON(i.Payload), Result: rawJSON(i.Result),
		Meta: i.Meta, UniqueKey: i.UniqueKey, LimitKey: i.LimitKey, DependsOn: i.DependsOn, Worker: i.Worker,
		CreatedAt: timeOrNil(i.CreatedAt), RunAt: timeOrNil(i.RunAt),
		StartedAt: timeOrNil(i.StartedAt), FinishedAt: timeOrNil(i.FinishedAt),
		ExpiresAt: timeOrNil(i.ExpiresAt),
	}
	if i.Error != "" {
		v.Error = &i.Error
	}
	return json.Marshal(v)
}

// UnmarshalJSON decodes what MarshalJSON wrote, so that API clients in Go can
// read a JobInfo back.
func (i *JobInfo) UnmarshalJSON(b []byte) error {
	var v jobInfoJSON
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*i = JobInfo{
		ID: v.ID, Type: v.Type, Queue: v.Queue, State: v.State, Priority: v.Priority,
		Attempt: v.Attempt, MaxRetries: v.MaxRetries, Failures: v.Failures, Stalls: v.Stalls,
		Progress: v.Progress, ProgressMessage: v.ProgressMessage,
		Payload: v.Payload, Result: v.Result, Meta: v.Meta, UniqueKey: v.UniqueKey, LimitKey: v.LimitKey,
		DependsOn: v.DependsOn, Worker: v.Worker,
		CreatedAt: timeOrZero(v.CreatedAt), RunAt: timeOrZero(v.RunAt),
		StartedAt: timeOrZero(v.StartedAt), FinishedAt: timeOrZero(v.FinishedAt),
		ExpiresAt: timeOrZero(v.ExpiresAt),
	}
	if string(i.Result) == "null" {
		i.Result = nil
	}
	if v.Error != nil {
		i.Error = *v.Error
	}
	return nil
}

func newJobInfo(j *backend.Job) *JobInfo {
	return &JobInfo{
		ID: j.ID, Type: j.Type, Queue: j.Queue, State: j.State, Priority: j.Priority,
		Attempt: j.Attempt, MaxRetries: j.MaxRetries, Failures: j.Failures, Stalls: j.Stalls,
		Progress: j.Progress, ProgressMessage: j.ProgressMessage,
		Payload: j.Payload, Result: j.Result, Error: j.Error, Meta: j.Meta,
		UniqueKey: j.UniqueKey, LimitKey: j.LimitKey, DependsOn: j.DependsOn, Worker: j.Worker,
		CreatedAt: j.CreatedAt, RunAt: j.RunAt, StartedAt: j.StartedAt,
		FinishedAt: j.FinishedAt, ExpiresAt: j.ExpiresAt,
	}
}
