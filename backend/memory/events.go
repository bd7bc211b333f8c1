package memory

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/jobrelay/engine/backend"
)

// defaultReadMax is how many events ReadEvents returns when max is not
// positive.
const defaultReadMax = 100

// eventLog is a ring of the newest events. Event n (from 1) lives at
// buf[(n-1) % size]; its ID is n in decimal, made only when it is read, so
// that recording an event allocates nothing.
type eventLog struct {
	buf  []backend.Event
	size int
	last uint64 // number of the newest event; 0 before the first

	// wait is closed (and set to nil) by the next event; a blocked
	// ReadEvents makes it.
	wait chan struct{}
}

// oldest returns the number of the oldest kept event.
func (l *eventLog) oldest() uint64 {
	return l.last - uint64(len(l.buf)) + 1
}

// next returns the slot of a new event, overwriting the oldest once full.
func (l *eventLog) next() *backend.Event {
	l.last++
	if len(l.buf) < l.size {
		l.buf = append(l.buf, backend.Event{})
		return &l.buf[len(l.buf)-1]
	}
	return &l.buf[(l.last-1)%uint64(l.size)]
}

// emit records the event of a job's transition, with the job's state after
// it, and returns it so that the caller can fill in what fits its kind.
func (b *Backend) emit(kind backend.EventKind, j *job, now time.Time) *backend.Event {
	e := b.events.next()
	*e = backend.Event{Kind: kind, JobID: j.ID, Type: j.Type, Queue: j.Queue,
		State: j.State, Attempt: j.Attempt, Time: now}
	b.events.recorded()
	return e
}

// emitQueue records an event that concerns a whole queue.
func (b *Backend) emitQueue(kind backend.EventKind, queue string, now time.Time) {
	e := b.events.next()
	*e = backend.Event{Kind: kind, Queue: queue, Time: now}
	b.events.recorded()
}

// emitCancelRequest records EventCancelRequested of an active job in the
// event log and in the log of cancel requests.
func (b *Backend) emitCancelRequest(j *job, now time.Time) {
	*b.cancels.next() = *b.emit(backend.EventCancelRequested, j, now)
	b.cancels.recorded()
}

// recorded wakes the readers blocked on the log.
func (l *eventLog) recorded() {
	if l.wait != nil {
		close(l.wait)
		l.wait = nil
	}
}

// EventCursor returns the cursor of the newest event ("0" before the first);
// see backend.Backend.
func (b *Backend) EventCursor(ctx context.Context) (string, error) {
	return b.logCursor(&b.events)
}

// ReadEvents returns events after cursor, blocking until there is one; see
// backend.Backend. An empty cursor reads from the oldest kept event. When
// limit is not positive it returns up to 100.
func (b *Backend) ReadEvents(ctx context.Context, cursor string, limit int) ([]backend.Event, error) {
	return b.readLog(ctx, &b.events, "read events", cursor, limit)
}

// CancelCursor returns the cursor of the newest cancel request ("0" before
// the first); see backend.Backend.
func (b *Backend) CancelCursor(ctx context.Context) (string, error) {
	return b.logCursor(&b.cancels)
}

// logCursor returns the number of the newest entry of log l.
func (b *Backend) logCursor(l *eventLog) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return "", errClosed
	}
	return strconv.FormatUint(l.last, 10), nil
}

// ReadCancels returns cancel requests after cursor, blocking until there is
// one; see backend.Backend. Cursors number the requests alone.
func (b *Backend) ReadCancels(ctx context.Context, cursor string, limit int) ([]backend.Event, error) {
	return b.readLog(ctx, &b.cancels, "read cancels", cursor, limit)
}

// readLog returns entries of log l after cursor, blocking until there is
// one, ctx ends or the backend closes.
func (b *Backend) readLog(ctx context.Context, l *eventLog, op, cursor string, limit int) ([]backend.Event, error) {
	var after uint64
	if cursor != "" {
		n, err := strconv.ParseUint(cursor, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("memory: %s: bad cursor %q", op, cursor)
		}
		after = n
	}
	if limit <= 0 {
		limit = defaultReadMax
	}
	for {
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			return nil, errClosed
		}
		if l.last > after {
			out := l.read(after, limit)
			b.mu.Unlock()
			return out, nil
		}
		if l.wait == nil {
			l.wait = make(chan struct{})
		}
		wait := l.wait
		b.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-b.done:
			return nil, errClosed
		}
	}
}

// read copies up to limit events after number after; a reader behind the
// oldest kept event resumes there. The IDs of the batch share one string.
func (l *eventLog) read(after uint64, limit int) []backend.Event {
	from := max(after+1, l.oldest())
	n := int(min(uint64(limit), l.last-from+1))
	out := make([]backend.Event, n)
	ends := make([]int, n)
	var ids []byte
	for i := range n {
		ids = strconv.AppendUint(ids, from+uint64(i), 10)
		ends[i] = len(ids)
	}
	all := string(ids)
	start := 0
	for i := range n {
		seq := from + uint64(i)
		out[i] = l.buf[(seq-1)%uint64(l.size)]
		out[i].ID = all[start:ends[i]]
		out[i].Result = bytes.Clone(out[i].Result)
		start = ends[i]
	}
	return out
}
