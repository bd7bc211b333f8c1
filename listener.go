package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/jobrelay/engine/backend"
)

// EventKind names what happened to a job.
type EventKind = backend.EventKind

// The kinds of events a Listener hears.
const (
	EventQueued          = backend.EventQueued
	EventActive          = backend.EventActive
	EventProgress        = backend.EventProgress
	EventRetrying        = backend.EventRetrying
	EventCompleted       = backend.EventCompleted
	EventFailed          = backend.EventFailed
	EventCanceled        = backend.EventCanceled
	EventStalled         = backend.EventStalled
	EventCancelRequested = backend.EventCancelRequested
	EventPaused          = backend.EventPaused
	EventResumed         = backend.EventResumed
)

// Event is one thing that happened to a job, in this process or in another
// that shares the backend.
type Event struct {
	Kind    EventKind `json:"kind"`
	JobID   string    `json:"job_id,omitempty"`
	Type    string    `json:"type,omitempty"`
	Queue   string    `json:"queue"`
	State   State     `json:"status,omitempty"`
	Attempt int       `json:"attempt,omitempty"`
	Time    time.Time `json:"time"`
	// Progress and Message come with EventProgress.
	Progress int    `json:"progress,omitempty"`
	Message  string `json:"message,omitempty"`
	// Result comes with EventCompleted: the handler's result as JSON.
	Result json.RawMessage `json:"result,omitempty"`
	// Error comes with EventRetrying, EventFailed, EventCanceled and
	// EventStalled.
	Error string `json:"error,omitempty"`
	// RetryAt and RetryDelay come with EventRetrying: when the next attempt
	// is due and how long that is after the failure.
	RetryAt    time.Time     `json:"retry_at,omitzero"`
	RetryDelay time.Duration `json:"retry_delay,omitempty"`
}

func newEvent(ev backend.Event) Event {
	out := Event{
		Kind: ev.Kind, JobID: ev.JobID, Type: ev.Type, Queue: ev.Queue, State: ev.State,
		Attempt: ev.Attempt, Time: ev.Time, Progress: ev.Progress, Message: ev.Message,
		Result: rawJSON(ev.Result), Error: ev.Error,
	}
	if ev.Kind == backend.EventRetrying && !ev.RunAt.IsZero() {
		out.RetryAt = ev.RunAt
		out.RetryDelay = max(ev.RunAt.Sub(ev.Time), 0)
	}
	return out
}

// Listener is a set of hooks, one per kind of event; nil hooks are skipped.
// Hooks run on a goroutine of the listener's own, one event at a time and in
// order for each job, after the transition was committed: a slow hook delays
// only its own listener, and a panic in a hook is logged and survived.
type Listener struct {
	OnQueued    func(Event)
	OnActive    func(Event)
	OnProgress  func(Event)
	OnRetrying  func(Event)
	OnCompleted func(Event)
	OnFailed    func(Event) // the job failed for good
	OnCanceled  func(Event)
	OnStalled   func(Event) // a lease expired and the job went back to the queue
	// OnEvent hears every event, including queue-level ones (paused,
	// resumed), after the typed hook.
	OnEvent func(Event)
}

func (l *Listener) hook(k EventKind) func(Event) {
	switch k {
	case EventQueued:
		return l.OnQueued
	case EventActive:
		return l.OnActive
	case EventProgress:
		return l.OnProgress
	case EventRetrying:
		return l.OnRetrying
	case EventCompleted:
		return l.OnCompleted
	case EventFailed:
		return l.OnFailed
	case EventCanceled:
		return l.OnCanceled
	case EventStalled:
		return l.OnStalled
	}
	return nil
}

// Listen registers l to hear every event from now on, whether or not Run is
// going, and returns a function that removes it.
func (e *Engine) Listen(l Listener) (remove func(), err error) {
	return e.hub.listen(l)
}

// hub reads the backend's event log once for the engine and hands each event
// to the listeners and to Wait calls watching the job. It reads only while
// someone listens or waits: a pump starts with the first of them and stops
// a linger after the last, so that an engine that only runs jobs never
// reads the events of every job (cancel requests reach it by their own log,
// see watchCancels), while a burst of Wait calls shares one reader.
type hub struct {
	e      *Engine
	linger time.Duration // how long the pump outlives its last reader
	idle   *time.Timer   // stops the pump once the linger has passed

	mu        sync.Mutex
	started   bool
	closed    bool
	gen       int // the running pump's generation; a stopped pump's reads are dropped
	stop      context.CancelFunc
	pumps     sync.WaitGroup
	nextID    int
	listeners map[int]*listenerQueue
	watchers  map[string]map[int]chan struct{}
}

// pumpLinger is how long the event reader goes on after the last listener
// or Wait left: a reader started for every Wait of a busy API would make a
// backend call and a blocking read each time.
const pumpLinger = 5 * time.Second

func newHub(e *Engine) *hub {
	return &hub{e: e, linger: pumpLinger, listeners: make(map[int]*listenerQueue), watchers: make(map[string]map[int]chan struct{})}
}

// startLocked begins reading the event log at its current end.
func (h *hub) startLocked() error {
	if h.started {
		return nil
	}
	if h.closed {
		return ErrClosed
	}
	cursor, err := h.e.backend.EventCursor(context.Background())
	if err != nil {
		return fmt.Errorf("read event cursor: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.gen++
	h.started, h.stop = true, cancel
	gen := h.gen
	h.pumps.Go(func() { h.pump(ctx, gen, cursor) })
	return nil
}

// stopIfIdleLocked stops the pump a linger after nobody listens or waits
// any more, unless someone came back meanwhile.
func (h *hub) stopIfIdleLocked() {
	if !h.idleLocked() {
		return
	}
	if h.linger <= 0 {
		h.stopLocked()
		return
	}
	if h.idle == nil {
		h.idle = time.AfterFunc(h.linger, func() {
			h.mu.Lock()
			defer h.mu.Unlock()
			if h.idleLocked() {
				h.stopLocked()
			}
		})
	} else {
		h.idle.Reset(h.linger)
	}
}

func (h *hub) idleLocked() bool {
	return h.started && len(h.listeners) == 0 && len(h.watchers) == 0
}

// stopLocked ends the pump; its generation ends with it, so that whatever
// it read after that is dropped.
func (h *hub) stopLocked() {
	h.stop()
	h.gen++
	h.started, h.stop = false, nil
}

func (h *hub) listen(l Listener) (func(), error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.startLocked(); err != nil {
		return nil, err
	}
	id := h.nextID
	h.nextID++
	q := newListenerQueue(l, h.e)
	h.listeners[id] = q
	var once sync.Once
	return func() {
		once.Do(func() {
			h.mu.Lock()
			delete(h.listeners, id)
			h.stopIfIdleLocked()
			h.mu.Unlock()
			q.close()
		})
	}, nil
}

// watch returns a channel closed when the next terminal event of job id
// arrives, and a function that stops watching.
func (h *hub) watch(id string) (<-chan struct{}, func(), error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.startLocked(); err != nil {
		return nil, nil, err
	}
	ch := make(chan struct{})
	n := h.nextID
	h.nextID++
	if h.watchers[id] == nil {
		h.watchers[id] = make(map[int]chan struct{})
	}
	h.watchers[id][n] = ch
	return ch, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if ws := h.watchers[id]; ws != nil {
			delete(ws, n)
			if len(ws) == 0 {
				delete(h.watchers, id)
			}
		}
		h.stopIfIdleLocked()
	}, nil
}

func (h *hub) pump(ctx context.Context, gen int, cursor string) {
	h.e.readLog(ctx, "events", cursor, h.e.backend.ReadEvents, func(evs []backend.Event) {
		h.dispatch(gen, evs)
	})
}

// readLog reads a log of events from cursor with read until ctx ends,
// handing each batch to handle, and backs off while the backend fails.
func (e *Engine) readLog(ctx context.Context, what, cursor string,
	read func(context.Context, string, int) ([]backend.Event, error), handle func([]backend.Event)) {
	failing := false
	backoff := 50 * time.Millisecond
	for {
		evs, err := read(ctx, cursor, 512)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if !failing {
				e.log.Warn("jobrelay: reading "+what+" failed; retrying", "err", err)
				failing = true
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 5*time.Second)
			continue
		}
		if failing {
			e.log.Info("jobrelay: reading " + what + " again")
			failing, backoff = false, 50*time.Millisecond
		}
		if len(evs) == 0 {
			continue
		}
		cursor = evs[len(evs)-1].ID
		handle(evs)
	}
}

// watchCancels stops the handlers of jobs running here whose cancel was
// asked in another process, reading the backend's log of cancel requests
// from cursor until ctx ends. (A cancel asked in this process reaches its
// job directly; a missed request still arrives with the next heartbeat.)
func (e *Engine) watchCancels(ctx context.Context, cursor string) {
	e.readLog(ctx, "cancel requests", cursor, e.backend.ReadCancels, func(evs []backend.Event) {
		for _, ev := range evs {
			e.cancelLocal(ev.JobID)
		}
	})
}

func (h *hub) dispatch(gen int, evs []backend.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if gen != h.gen {
		return
	}
	for i := range evs {
		ev := &evs[i]
		if ev.State.Terminal() {
			for n, ch := range h.watchers[ev.JobID] {
				close(ch)
				delete(h.watchers[ev.JobID], n)
			}
			delete(h.watchers, ev.JobID)
		}
	}
	if len(h.listeners) == 0 {
		return
	}
	out := make([]Event, len(evs))
	for i := range evs {
		out[i] = newEvent(evs[i])
	}
	for _, q := range h.listeners {
		q.push(out)
	}
}

func (h *hub) close() {
	h.mu.Lock()
	h.closed = true
	if h.idle != nil {
		h.idle.Stop()
	}
	if h.started {
		h.stopLocked()
	}
	qs := make([]*listenerQueue, 0, len(h.listeners))
	for _, q := range h.listeners {
		qs = append(qs, q)
	}
	h.mu.Unlock()
	h.pumps.Wait()
	for _, q := range qs {
		q.close()
	}
}

// listenerQueue feeds one listener on a goroutine of its own, so that a slow
// listener holds up nobody else. Its queue is unbounded: events a slow hook
// has not taken yet wait in memory.
type listenerQueue struct {
	l      Listener
	e      *Engine
	mu     sync.Mutex
	events []Event
	closed bool
	signal chan struct{}
	done   chan struct{}
}

func newListenerQueue(l Listener, e *Engine) *listenerQueue {
	q := &listenerQueue{l: l, e: e, signal: make(chan struct{}, 1), done: make(chan struct{})}
	go q.loop()
	return q
}

func (q *listenerQueue) push(evs []Event) {
	q.mu.Lock()
	q.events = append(q.events, evs...)
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

// close delivers what is queued already, then stops the goroutine.
func (q *listenerQueue) close() {
	q.mu.Lock()
	already := q.closed
	q.closed = true
	q.mu.Unlock()
	if !already {
		select {
		case q.signal <- struct{}{}:
		default:
		}
	}
	<-q.done
}

func (q *listenerQueue) loop() {
	defer close(q.done)
	for range q.signal {
		for {
			q.mu.Lock()
			evs, closed := q.events, q.closed
			q.events = nil
			q.mu.Unlock()
			for _, ev := range evs {
				q.deliver(ev)
			}
			if len(evs) == 0 {
				if closed {
					return
				}
				break
			}
		}
	}
}

func (q *listenerQueue) deliver(ev Event) {
	call := func(f func(Event)) {
		if f == nil {
			return
		}
		defer func() {
			if r := recover(); r != nil {
				q.e.log.Error("jobrelay: listener panicked", "event", ev.Kind, "job_id", ev.JobID, "panic", r, "stack", string(debug.Stack()))
			}
		}()
		f(ev)
	}
	call(q.l.hook(ev.Kind))
	call(q.l.OnEvent)
}
