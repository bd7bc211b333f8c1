package dashboard

import (
	"container/list"
	"sync"
	"time"

	"github.com/jobrelay/engine"
)

// chartMinutes is how many minutes the throughput chart shows.
const chartMinutes = 60

// recorder keeps what the dashboard heard since it started: the recent
// events of each job (bounded per job and in the number of jobs) and the
// completed and failed jobs per minute for the chart. The backend keeps
// only a job's current state, so this is the only place its history is.
type recorder struct {
	maxEvents int
	maxJobs   int
	since     time.Time

	mu      sync.Mutex
	jobs    map[string]*list.Element // job ID → element of order holding *jobHistory
	order   *list.List               // oldest job first, for eviction
	minutes map[int64]*minuteCount   // Unix minute → counts
}

type jobHistory struct {
	id     string
	events []engine.Event
	// dropped counts events that fell off the front of events.
	dropped int
}

type minuteCount struct {
	completed, failed int
}

func newRecorder(maxEvents, maxJobs int, since time.Time) *recorder {
	return &recorder{
		maxEvents: maxEvents,
		maxJobs:   maxJobs,
		since:     since,
		jobs:      make(map[string]*list.Element),
		order:     list.New(),
		minutes:   make(map[int64]*minuteCount),
	}
}

// record takes one event from the engine's listener.
func (r *recorder) record(ev engine.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch ev.Kind {
	case engine.EventCompleted, engine.EventFailed:
		m := ev.Time.Unix() / 60
		c := r.minutes[m]
		if c == nil {
			c = &minuteCount{}
			r.minutes[m] = c
			for k := range r.minutes {
				if k <= m-2*chartMinutes {
					delete(r.minutes, k)
				}
			}
		}
		if ev.Kind == engine.EventCompleted {
			c.completed++
		} else {
			c.failed++
		}
	}
	if ev.JobID == "" {
		return
	}
	el, ok := r.jobs[ev.JobID]
	if !ok {
		el = r.order.PushBack(&jobHistory{id: ev.JobID})
		r.jobs[ev.JobID] = el
		for r.order.Len() > r.maxJobs {
			oldest := r.order.Front()
			delete(r.jobs, oldest.Value.(*jobHistory).id)
			r.order.Remove(oldest)
		}
	}
	h := el.Value.(*jobHistory)
	if len(h.events) >= r.maxEvents {
		// Keep the first event (how the job came to be) and the latest.
		copy(h.events[1:], h.events[2:])
		h.events = h.events[:len(h.events)-1]
		h.dropped++
	}
	h.events = append(h.events, ev)
}

// history returns a copy of the events heard for job id, and how many were
// dropped from the middle.
func (r *recorder) history(id string) ([]engine.Event, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	el, ok := r.jobs[id]
	if !ok {
		return nil, 0
	}
	h := el.Value.(*jobHistory)
	return append([]engine.Event(nil), h.events...), h.dropped
}

// minute is one slot of the chart.
type minute struct {
	Start     time.Time
	Completed int
	Failed    int
}

// throughput returns the counts of the chartMinutes minutes up to now,
// oldest first.
func (r *recorder) throughput(now time.Time) []minute {
	r.mu.Lock()
	defer r.mu.Unlock()
	last := now.Unix() / 60
	out := make([]minute, chartMinutes)
	for i := range out {
		m := last - int64(chartMinutes-1-i)
		out[i].Start = time.Unix(m*60, 0).UTC()
		if c := r.minutes[m]; c != nil {
			out[i].Completed, out[i].Failed = c.completed, c.failed
		}
	}
	return out
}
