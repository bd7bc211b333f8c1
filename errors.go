package engine

import (
	"errors"
	"fmt"

	"github.com/jobrelay/engine/backend"
)

// Sentinel errors callers branch on with errors.Is. Every error the engine
// returns wraps one of these (or a context error) with the details.
var (
	// ErrJobNotFound means no job has the given ID, or it expired and was
	// swept.
	ErrJobNotFound = backend.ErrJobNotFound
	// ErrDuplicateJob means a job with the same UniqueKey holds the key;
	// Enqueue returns that job's ID beside this error.
	ErrDuplicateJob = backend.ErrDuplicateJob
	// ErrLeaseLost means a worker no longer owns the job it is running: its
	// lease expired and the job went to another worker, or it was finished
	// elsewhere. Progress returns it; the attempt's outcome is dropped.
	ErrLeaseLost = backend.ErrLeaseLost
	// ErrUnknownDependency means DependsOn named a job that does not exist.
	ErrUnknownDependency = backend.ErrDependencyNotFound
	// ErrInvalidState means the call does not apply to the job's state, such
	// as Requeue of a job that is still queued.
	ErrInvalidState = backend.ErrInvalidState
	// ErrClosed means the engine (and its backend) was closed.
	ErrClosed = backend.ErrClosed

	// ErrEmptyType means a job type or handler type was empty.
	ErrEmptyType = errors.New("empty job type")
	// ErrInvalidPayload means the payload could not be encoded as JSON.
	ErrInvalidPayload = errors.New("invalid payload")
	// ErrPayloadTooLarge means the encoded payload is over the engine's
	// limit (WithMaxPayloadSize).
	ErrPayloadTooLarge = errors.New("payload too large")
	// ErrInvalidOption means an option was given a value it cannot take: a
	// negative delay or retry count, an empty queue name, a zero timeout.
	ErrInvalidOption = errors.New("invalid option")
	// ErrJobFailed is wrapped by the error Result returns for a job that
	// ended failed.
	ErrJobFailed = errors.New("job failed")
	// ErrJobCanceled is wrapped by the error Result returns for a job that
	// ended canceled.
	ErrJobCanceled = errors.New("job canceled")
	// ErrRunning means Run was called while the engine was already running.
	ErrRunning = errors.New("engine already running")
)

// JobError is the error Result returns when the job did not complete. It
// wraps ErrJobFailed or ErrJobCanceled.
type JobError struct {
	ID      string
	State   State
	Message string // the job's recorded error
}

// Error describes the job's end.
func (e *JobError) Error() string {
	return fmt.Sprintf("job %s %s: %s", e.ID, e.State, e.Message)
}

// Unwrap lets errors.Is match ErrJobFailed or ErrJobCanceled.
func (e *JobError) Unwrap() error {
	if e.State == StateCanceled {
		return ErrJobCanceled
	}
	return ErrJobFailed
}

func invalidOption(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidOption, fmt.Sprintf(format, args...))
}
