package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jobrelay/engine/backend"
	"github.com/robfig/cron/v3"
)

// Meta keys the engine sets on every job enqueued by a schedule, so that a
// handler knows which schedule and which tick it runs for (the weekly report
// of the week that ends at the tick, say).
const (
	// MetaSchedule is the Meta key that holds the schedule's name.
	MetaSchedule = "jobrelay.schedule"
	// MetaScheduleTick is the Meta key that holds the tick's time in RFC
	// 3339, in UTC.
	MetaScheduleTick = "jobrelay.tick"
)

// missedTickGrace is how late a tick may still be enqueued: at Run's start
// (a tick that came just before, during a deploy) and after a pause of the
// process. Older ticks are skipped, so that a machine that wakes up from a
// long sleep does not run a stale tick.
const missedTickGrace = time.Minute

// minTickHold is the shortest time a tick's unique key is held after the
// tick, whatever the schedule's period.
const minTickHold = time.Hour

// cronParser reads the five standard fields and the descriptors (@daily,
// @weekly, @every 5m), with an optional CRON_TZ= prefix.
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ScheduleInfo describes one periodic job, as listed by Schedules.
type ScheduleInfo struct {
	Name string `json:"name"`
	Spec string `json:"spec"`
	Type string `json:"type"`
	// Next is the schedule's next tick after the engine clock's now.
	Next time.Time `json:"next"`
}

// periodicJob is one registered schedule.
type periodicJob struct {
	name    string
	spec    string
	typ     string
	payload []byte
	opts    []EnqueueOption
	sched   cron.Schedule
	version uint64 // changes when the name is scheduled again
}

// next returns the first tick after t. Intervals (@every) tick at multiples
// of their period since the zero time rather than from each process's start,
// so that every process computes the same ticks.
func (p *periodicJob) next(t time.Time) time.Time {
	if every, ok := p.sched.(cron.ConstantDelaySchedule); ok {
		return t.Truncate(every.Delay).Add(every.Delay)
	}
	return p.sched.Next(t)
}

// hold returns how long after tick its unique key stays held: two periods
// and at least minTickHold, far longer than any process may still try the
// tick (missedTickGrace after it, plus clock skew between machines).
func (p *periodicJob) hold(tick time.Time) time.Duration {
	period := p.next(tick).Sub(tick)
	return max(2*period, minTickHold)
}

// periodicTable holds an engine's schedules. It refers to no engine, so that
// the registry below does not keep engines alive.
type periodicTable struct {
	mu      sync.Mutex
	jobs    map[string]*periodicJob
	version uint64
	changed chan struct{} // a token when the set of schedules changed
	// attempted, when set (by tests, before Run), hears every enqueue of a
	// tick.
	attempted func(name string, tick time.Time, id string, err error)
}

// periodic returns e's schedules.
func (e *Engine) periodic() *periodicTable { return &e.schedules }

func (t *periodicTable) notify() {
	select {
	case t.changed <- struct{}{}:
	default:
	}
}

func (t *periodicTable) snapshot() []*periodicJob {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]*periodicJob, 0, len(t.jobs))
	for _, p := range t.jobs {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b *periodicJob) int { return strings.Compare(a.name, b.name) })
	return out
}

// parseSpec reads a cron spec. The parser panics on a time zone prefix with
// nothing after it, so a panic is turned into an error here.
func parseSpec(spec string) (s cron.Schedule, err error) {
	defer func() {
		if r := recover(); r != nil {
			s, err = nil, fmt.Errorf("malformed spec %q", spec)
		}
	}()
	return cronParser.Parse(strings.TrimSpace(spec))
}

// Schedule makes a job of type typ with payload run periodically while Run
// is going: spec is a cron expression of five fields (minute hour
// day-of-month month day-of-week, such as "0 9 * * 1" for Mondays at 09:00),
// or a descriptor (@hourly, @daily, @weekly, @every 5m). Fields are read in
// the time zone of the engine's clock (the machine's local zone) unless spec
// starts with CRON_TZ=Zone; give one when processes in different zones run
// the same schedule.
//
// Each tick is enqueued exactly once however many engines on one backend
// run the same schedule: every engine enqueues it with a unique key made of
// name and tick, held for two periods (at least an hour) after the tick, so
// that a process that comes late, even after the tick's job ran and was
// swept, cannot enqueue it again. A tick that no engine enqueued on time (all
// were down) is still enqueued by an engine whose Run starts within a minute
// after it; older ticks are skipped. Jobs carry the schedule's name and tick
// in Meta under MetaSchedule and MetaScheduleTick.
//
// opts apply to every tick's job, after the handler's defaults; the engine
// sets UniqueKey and UniqueFor itself. Scheduling a name again replaces its
// schedule. Schedule checks spec, type, payload and options now and returns
// an error wrapping ErrInvalidOption (or ErrEmptyType, ErrInvalidPayload)
// when one is wrong.
func (e *Engine) Schedule(name, spec, typ string, payload any, opts ...EnqueueOption) error {
	if name == "" {
		return fmt.Errorf("schedule: %w", invalidOption("empty schedule name"))
	}
	sched, err := parseSpec(spec)
	if err != nil {
		return fmt.Errorf("schedule %q: %w", name, invalidOption("cron spec %q: %v", spec, err))
	}
	now := e.clock.Now()
	p := &periodicJob{name: name, spec: spec, typ: typ, sched: sched, opts: slices.Clone(opts)}
	if p.next(now).IsZero() {
		return fmt.Errorf("schedule %q: %w", name, invalidOption("cron spec %q never fires", spec))
	}
	if p.payload, err = encodePayload(payload); err != nil {
		return fmt.Errorf("schedule %q: %w", name, err)
	}
	var check backend.NewJob
	if err := e.fillJob(&check, now, "", typ, e.handler(typ), p.payload, p.tickOptions(now, now.Add(minTickHold), now)); err != nil {
		return fmt.Errorf("schedule %q: %w", name, err)
	}
	t := e.periodic()
	t.mu.Lock()
	t.version++
	p.version = t.version
	t.jobs[name] = p
	t.mu.Unlock()
	t.notify()
	return nil
}

// Unschedule removes the schedule called name and reports whether there was
// one. Ticks already enqueued stay.
func (e *Engine) Unschedule(name string) bool {
	t := e.periodic()
	t.mu.Lock()
	_, ok := t.jobs[name]
	delete(t.jobs, name)
	t.mu.Unlock()
	if ok {
		t.notify()
	}
	return ok
}

// Schedules lists this engine's periodic jobs by name, each with its next
// tick, for dashboards and start-up logs.
func (e *Engine) Schedules() []ScheduleInfo {
	now := e.clock.Now()
	jobs := e.periodic().snapshot()
	out := make([]ScheduleInfo, len(jobs))
	for i, p := range jobs {
		out[i] = ScheduleInfo{Name: p.name, Spec: p.spec, Type: p.typ, Next: p.next(now)}
	}
	return out
}

// tickOptions are the options of one tick's job: the caller's, then the
// tick's unique key, held until tick plus hold.
func (p *periodicJob) tickOptions(tick, until, now time.Time) []EnqueueOption {
	opts := slices.Clone(p.opts)
	return append(opts,
		UniqueKey("periodic/"+p.name+"/"+tick.UTC().Format(time.RFC3339)),
		UniqueFor(max(until.Sub(now), time.Second)),
		Meta(MetaSchedule, p.name),
		Meta(MetaScheduleTick, tick.UTC().Format(time.RFC3339)),
	)
}

// periodicRetry is how soon a tick whose enqueue failed (the backend was
// unreachable) is tried again, within missedTickGrace.
const periodicRetry = time.Second

// runPeriodic enqueues the ticks of periodic jobs while Run is going. Each
// schedule keeps a cursor: ticks after it have not been handled yet. A new
// schedule's cursor starts missedTickGrace in the past, so a tick that came
// just before the start is enqueued (or found enqueued by another engine).
func (e *Engine) runPeriodic(ctx context.Context) {
	t := e.periodic()
	type cursor struct {
		version uint64
		after   time.Time
	}
	cursors := make(map[string]*cursor)
	for {
		now := e.clock.Now()
		var wake time.Time
		jobs := t.snapshot()
		seen := make(map[string]bool, len(jobs))
		for _, p := range jobs {
			seen[p.name] = true
			c := cursors[p.name]
			if c == nil || c.version != p.version {
				c = &cursor{version: p.version, after: now.Add(-missedTickGrace)}
				cursors[p.name] = c
			}
			if skipTo := now.Add(-missedTickGrace); c.after.Before(skipTo) {
				if tick := p.next(c.after); !tick.IsZero() && !tick.After(skipTo) {
					e.log.Warn("jobrelay: periodic ticks missed; skipping them", "schedule", p.name, "from", tick, "to", skipTo)
				}
				c.after = skipTo
			}
			for tick := p.next(c.after); !tick.IsZero() && !tick.After(now); tick = p.next(c.after) {
				if !e.enqueueTick(ctx, t, p, tick) {
					break
				}
				c.after = tick
			}
			next := p.next(c.after)
			switch {
			case next.IsZero():
				continue // the spec fires no more
			case !next.After(now):
				next = now.Add(periodicRetry) // an enqueue failed: try again soon
			}
			if wake.IsZero() || next.Before(wake) {
				wake = next
			}
		}
		for name := range cursors {
			if !seen[name] {
				delete(cursors, name)
			}
		}
		var timer <-chan time.Time
		if !wake.IsZero() {
			timer = e.clock.After(wake.Sub(now))
			// The clock may have moved between Now and After (a fake
			// clock in a test, or a slow machine); a tick already due
			// must not wait for the timer set from the older now.
			if !e.clock.Now().Before(wake) {
				continue
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.changed:
		case <-timer:
		}
	}
}

// enqueueTick enqueues one tick's job and reports whether the tick is
// handled: enqueued here, or already by another engine. It is not handled
// when the backend failed, so that the tick is tried again.
func (e *Engine) enqueueTick(ctx context.Context, t *periodicTable, p *periodicJob, tick time.Time) bool {
	now := e.clock.Now()
	id, err := e.Enqueue(ctx, p.typ, p.payload, p.tickOptions(tick, tick.Add(p.hold(tick)), now)...)
	if t.attempted != nil {
		t.attempted(p.name, tick, id, err)
	}
	switch {
	case err == nil:
		e.log.Info("jobrelay: periodic job enqueued", "schedule", p.name, "tick", tick, "job_id", id)
		return true
	case errors.Is(err, ErrDuplicateJob):
		return true
	case ctx.Err() != nil:
		return false
	}
	e.log.Warn("jobrelay: enqueue periodic job failed; retrying", "schedule", p.name, "tick", tick, "err", err)
	return false
}
