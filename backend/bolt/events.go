package bolt

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/jobrelay/engine/backend"
)

// eventLog is the capped, in-memory log behind EventCursor and ReadEvents.
// Events need not be durable: one process holds the file, so every listener
// lives in this process and hears events as they are committed.
//
// Event IDs are consecutive numbers, printed at a fixed width so that they
// also sort as strings. The first ID of a log is taken from the wall clock at
// Open, so that IDs keep growing across a Close and a reopen and a stale
// cursor never hides new events.
type eventLog struct {
	mu     sync.Mutex
	ring   []backend.Event
	start  int    // index in ring of the oldest kept event
	n      int    // number of kept events
	last   uint64 // ID of the newest event ever recorded (base when none)
	notify chan struct{}
}

func newEventLog(size int) *eventLog {
	return &eventLog{
		ring:   make([]backend.Event, size),
		last:   uint64(time.Now().UnixNano()),
		notify: make(chan struct{}),
	}
}

// formatEventID prints id in 20 digits, zero-padded, so that IDs sort as
// strings too.
func formatEventID(id uint64) string {
	var buf [20]byte
	for i := len(buf) - 1; i >= 0; i-- {
		buf[i] = byte('0' + id%10)
		id /= 10
	}
	return string(buf[:])
}

// append records committed events in order and wakes blocked readers.
func (l *eventLog) append(evs []backend.Event) {
	if len(evs) == 0 {
		return
	}
	l.mu.Lock()
	for _, ev := range evs {
		l.last++
		ev.ID = "" // numbered by its place; printed when read
		i := (l.start + l.n) % len(l.ring)
		l.ring[i] = ev
		if l.n < len(l.ring) {
			l.n++
		} else {
			l.start = (l.start + 1) % len(l.ring)
		}
	}
	close(l.notify)
	l.notify = make(chan struct{})
	l.mu.Unlock()
}

func (l *eventLog) cursor() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return formatEventID(l.last)
}

// read returns up to max events after cursor, or, when there are none yet,
// a channel that is closed when more arrive.
func (l *eventLog) read(after uint64, max int) ([]backend.Event, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	oldest := l.last - uint64(l.n) + 1 // ID of ring[start]
	if after+1 < oldest {
		after = oldest - 1 // fell behind the cap: resume at the oldest kept event
	}
	if after >= l.last {
		return nil, l.notify
	}
	skip := int(after + 1 - oldest)
	count := l.n - skip
	if count > max {
		count = max
	}
	out := make([]backend.Event, count)
	for i := range out {
		out[i] = l.ring[(l.start+skip+i)%len(l.ring)]
		out[i].ID = formatEventID(oldest + uint64(skip+i))
	}
	return out, nil
}

// parseCursor accepts "" (the start of the log) or an event ID.
func parseCursor(cursor string) (uint64, error) {
	if cursor == "" {
		return 0, nil
	}
	v, err := strconv.ParseUint(cursor, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bolt: read events: bad cursor %q", cursor)
	}
	return v, nil
}

// EventCursor returns the ID of the newest event, so that a reader starting
// there sees every event recorded after the call. It first waits for the
// commit of earlier calls, whose events are published only then.
func (b *Backend) EventCursor(ctx context.Context) (string, error) {
	return b.logCursor(ctx, b.events)
}

// ReadEvents returns up to max events recorded after cursor, oldest first,
// blocking until there is one, ctx is done or the backend is closed. An empty
// cursor reads from the oldest kept event.
func (b *Backend) ReadEvents(ctx context.Context, cursor string, max int) ([]backend.Event, error) {
	return b.readLog(ctx, b.events, cursor, max)
}

// CancelCursor returns the ID of the newest cancel request, so that a
// reader starting there sees every request made after the call. Cancel
// requests have a log of their own (see Backend.cancels), so its cursors
// mean nothing to ReadEvents, nor the event log's to ReadCancels.
func (b *Backend) CancelCursor(ctx context.Context) (string, error) {
	return b.logCursor(ctx, b.cancels)
}

// logCursor is EventCursor on log.
func (b *Backend) logCursor(ctx context.Context, log *eventLog) (string, error) {
	if err := b.check(ctx); err != nil {
		return "", err
	}
	if err := b.settle(ctx); err != nil {
		return "", err
	}
	return log.cursor(), nil
}

// ReadCancels is ReadEvents for EventCancelRequested events alone: a
// running engine reads it to stop a canceled job's handler at once, without
// reading every event of every job.
func (b *Backend) ReadCancels(ctx context.Context, cursor string, max int) ([]backend.Event, error) {
	return b.readLog(ctx, b.cancels, cursor, max)
}

// readLog is ReadEvents on log.
func (b *Backend) readLog(ctx context.Context, log *eventLog, cursor string, max int) ([]backend.Event, error) {
	if err := b.check(ctx); err != nil {
		return nil, err
	}
	after, err := parseCursor(cursor)
	if err != nil {
		return nil, err
	}
	if max <= 0 {
		max = 100
	}
	for {
		evs, wait := log.read(after, max)
		if len(evs) > 0 {
			return evs, nil
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-b.closing:
			return nil, backend.ErrClosed
		}
	}
}

// publish appends a committed transaction's events to the event log, and
// its cancel requests also to their own log.
func (b *Backend) publish(evs []backend.Event) {
	b.events.append(evs)
	first := -1
	for i := range evs {
		if evs[i].Kind == backend.EventCancelRequested {
			first = i
			break
		}
	}
	if first < 0 {
		return
	}
	var cancels []backend.Event
	for _, ev := range evs[first:] {
		if ev.Kind == backend.EventCancelRequested {
			cancels = append(cancels, ev)
		}
	}
	b.cancels.append(cancels)
}
