package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/jobrelay/engine"
	"github.com/jobrelay/engine/examples/meetings/pipeline"
)

// steps are the columns of the progress view, in workflow order.
var steps = []struct{ typ, label string }{
	{pipeline.Transcription, "transcription"},
	{pipeline.Summarization, "summary"},
	{pipeline.TaskExtraction, "tasks"},
	{pipeline.AIPMAnalysis, "analysis"},
	{pipeline.NotionSync, "notion"},
}

// step is one job of a meeting as the view knows it.
type step struct {
	state   engine.State
	percent int
	message string
}

type row struct {
	meeting string
	steps   []step
}

// progressView shows the meetings' jobs as they run: live bars redrawn in
// place on a terminal, or one plain line per change otherwise (a pipe, a
// file, CI logs).
type progressView struct {
	out  io.Writer
	live bool

	mu     sync.Mutex
	rows   []*row
	byJob  map[string]*step
	labels map[string]string // job ID → "meeting step", for plain lines
	early  map[string][]engine.Event
	drawn  int // lines of the last live frame
	dirty  bool
	closed bool
	// open counts tracked jobs not yet ended; settled is closed when it
	// reaches zero.
	open    int
	settled chan struct{}
	stop    chan struct{}
	done    chan struct{}
}

// isTerminal reports whether f is a terminal that understands cursor
// movement.
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0 && os.Getenv("TERM") != "dumb"
}

func newProgressView(out io.Writer, live bool) *progressView {
	v := &progressView{out: out, live: live, byJob: make(map[string]*step), labels: make(map[string]string),
		early: make(map[string][]engine.Event), settled: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	if live {
		go v.redraw()
	} else {
		close(v.done)
	}
	return v
}

// track adds a meeting's jobs to the view. Events that came before it
// (a fast job) are applied now.
func (v *progressView) track(meeting string, jobs pipeline.MeetingJobs) {
	ids := []string{jobs.Transcription, jobs.Summarization, jobs.TaskExtraction, jobs.AIPMAnalysis, jobs.NotionSync}
	v.mu.Lock()
	defer v.mu.Unlock()
	r := &row{meeting: meeting, steps: make([]step, len(steps))}
	v.rows = append(v.rows, r)
	for i, id := range ids {
		r.steps[i].state = engine.StateQueued
		v.byJob[id] = &r.steps[i]
		v.open++
		v.labels[id] = meeting + " " + steps[i].label
		for _, ev := range v.early[id] {
			v.applyLocked(ev)
		}
		delete(v.early, id)
	}
	v.dirty = true
}

// event is the engine listener's hook.
func (v *progressView) event(ev engine.Event) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return
	}
	if _, ok := v.byJob[ev.JobID]; !ok {
		if ev.JobID != "" {
			v.early[ev.JobID] = append(v.early[ev.JobID], ev)
		}
		return
	}
	v.applyLocked(ev)
}

func (v *progressView) applyLocked(ev engine.Event) {
	s := v.byJob[ev.JobID]
	if s.state.Terminal() {
		return
	}
	switch ev.Kind {
	case engine.EventActive:
		s.state = engine.StateActive
	case engine.EventProgress:
		s.state, s.percent, s.message = engine.StateActive, ev.Progress, ev.Message
	case engine.EventCompleted:
		s.state, s.percent, s.message = engine.StateCompleted, 100, ""
	case engine.EventFailed, engine.EventCanceled, engine.EventRetrying:
		s.state, s.message = ev.State, ev.Error
	default:
		return
	}
	v.dirty = true
	if s.state.Terminal() {
		if v.open--; v.open == 0 {
			close(v.settled)
		}
	}
	if v.live {
		return
	}
	label := v.labels[ev.JobID]
	switch ev.Kind {
	case engine.EventProgress:
		fmt.Fprintf(v.out, "  %-28s %3d%%  %s\n", label, ev.Progress, ev.Message)
	case engine.EventActive:
		fmt.Fprintf(v.out, "  %-28s started (attempt %d)\n", label, ev.Attempt)
	case engine.EventCompleted:
		fmt.Fprintf(v.out, "  %-28s done\n", label)
	default:
		fmt.Fprintf(v.out, "  %-28s %s: %s\n", label, ev.Kind, ev.Error)
	}
}

// redraw repaints the live view ten times a second while something changed.
func (v *progressView) redraw() {
	defer close(v.done)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-v.stop:
			v.paint()
			return
		case <-t.C:
			v.paint()
		}
	}
}

func (v *progressView) paint() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.dirty {
		return
	}
	v.dirty = false
	var b strings.Builder
	if v.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", v.drawn) // back to the frame's first line
	}
	for _, r := range v.rows {
		b.WriteString("\x1b[2K")
		b.WriteString(r.line())
		b.WriteByte('\n')
	}
	v.drawn = len(v.rows)
	io.WriteString(v.out, b.String())
}

// settle waits until every tracked job has ended in the view, or for at
// most wait: the engine may report a job's end to a waiter a moment before
// its listeners hear it.
func (v *progressView) settle(wait time.Duration) {
	v.mu.Lock()
	settled := v.open == 0
	v.mu.Unlock()
	if settled {
		return
	}
	select {
	case <-v.settled:
	case <-time.After(wait):
	}
}

// close draws the last frame, stops redrawing, and ignores later events,
// so that nothing writes while the caller prints.
func (v *progressView) close() {
	v.mu.Lock()
	v.closed = true
	v.early = nil
	v.mu.Unlock()
	select {
	case <-v.stop:
	default:
		close(v.stop)
	}
	<-v.done
}

// line draws a meeting: a bar over the whole workflow (transcription counts
// for 60%, each later step 10%), then each step's state.
func (r *row) line() string {
	total := float64(r.steps[0].percent) * 0.6
	for _, s := range r.steps[1:] {
		if s.state == engine.StateCompleted {
			total += 10
		}
	}
	const width = 24
	filled := int(total * width / 100)
	var b strings.Builder
	fmt.Fprintf(&b, "%-15s [%s%s] %3.0f%% ", r.meeting, strings.Repeat("█", filled), strings.Repeat("░", width-filled), total)
	for i, s := range r.steps {
		mark := "·"
		switch s.state {
		case engine.StateActive:
			mark = "…"
			if i == 0 {
				mark = fmt.Sprintf("%d%%", s.percent)
			}
		case engine.StateCompleted:
			mark = "✓"
		case engine.StateFailed, engine.StateCanceled:
			mark = "✗"
		case engine.StateRetrying:
			mark = "↻"
		}
		fmt.Fprintf(&b, " %s %s", steps[i].label, mark)
	}
	return b.String()
}
