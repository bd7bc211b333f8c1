package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jobrelay/engine/backend"
	"github.com/jobrelay/engine/backend/memory"
)

// tickAttempt is one engine's enqueue of one tick, as the test hook hears it.
type tickAttempt struct {
	engine string
	name   string
	tick   time.Time
	id     string
	err    error
}

// hearTicks makes e report every tick it tries to enqueue on ch.
func hearTicks(e *Engine, label string, ch chan<- tickAttempt) {
	e.periodic().attempted = func(name string, tick time.Time, id string, err error) {
		ch <- tickAttempt{engine: label, name: name, tick: tick, id: id, err: err}
	}
}

// nextAttempt waits for the next tick attempt, failing the test when none
// comes in time.
func nextAttempt(t *testing.T, ch <-chan tickAttempt) tickAttempt {
	t.Helper()
	select {
	case a := <-ch:
		return a
	case <-time.After(10 * time.Second):
		t.Fatal("no periodic enqueue within 10s")
		return tickAttempt{}
	}
}

func TestScheduleRefusesBadInput(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, sched, spec, typ string
		payload                any
		opts                   []EnqueueOption
		want                   error
	}{
		{"empty name", "", "@daily", "report", nil, nil, ErrInvalidOption},
		{"empty spec", "r", "", "report", nil, nil, ErrInvalidOption},
		{"too few fields", "r", "0 9 *", "report", nil, nil, ErrInvalidOption},
		{"seconds field", "r", "0 0 9 * * 1", "report", nil, nil, ErrInvalidOption},
		{"minute out of range", "r", "61 9 * * 1", "report", nil, nil, ErrInvalidOption},
		{"unknown descriptor", "r", "@fortnightly", "report", nil, nil, ErrInvalidOption},
		{"zone without spec", "r", "CRON_TZ=UTC", "report", nil, nil, ErrInvalidOption},
		{"unknown zone", "r", "CRON_TZ=Mars/Olympus 0 9 * * 1", "report", nil, nil, ErrInvalidOption},
		{"never fires", "r", "0 9 30 2 *", "report", nil, nil, ErrInvalidOption},
		{"empty type", "r", "@daily", "", nil, nil, ErrEmptyType},
		{"bad payload", "r", "@daily", "report", func() {}, nil, ErrInvalidPayload},
		{"bad option", "r", "@daily", "report", nil, []EnqueueOption{Queue("")}, ErrInvalidOption},
	}
	e := newEngine(t, memory.New(memory.Options{}))
	for _, c := range cases {
		err := e.Schedule(c.sched, c.spec, c.typ, c.payload, c.opts...)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: Schedule(%q, %q, %q) = %v, want an error wrapping %v", c.name, c.sched, c.spec, c.typ, err, c.want)
		}
	}
	if got := e.Schedules(); len(got) != 0 {
		t.Fatalf("Schedules after refused input: got %v, want none", got)
	}
}

func TestSchedulesListNextTicks(t *testing.T) {
	t.Parallel()
	// epoch is Monday 2026-03-02 09:00 UTC.
	clk := NewFakeClock(epoch.Add(30 * time.Second))
	e := newEngine(t, memory.New(memory.Options{}), WithClock(clk))
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skipf("no time zone data: %v", err)
	}
	specs := []struct {
		name, spec string
		want       time.Time
	}{
		{"weekly-report", "0 9 * * 1", time.Date(2026, 3, 9, 9, 0, 0, 0, time.UTC)},
		{"every-5m", "@every 5m", time.Date(2026, 3, 2, 9, 5, 0, 0, time.UTC)},
		{"every-7m", "@every 7m", epoch.Add(30 * time.Second).Truncate(7 * time.Minute).Add(7 * time.Minute)},
		{"daily", "@daily", time.Date(2026, 3, 3, 0, 0, 0, 0, time.UTC)},
		{"berlin", "CRON_TZ=Europe/Berlin 0 9 * * *", time.Date(2026, 3, 3, 9, 0, 0, 0, berlin)},
		{"quarter-hours", "*/15 * * * *", time.Date(2026, 3, 2, 9, 15, 0, 0, time.UTC)},
	}
	for _, s := range specs {
		if err := e.Schedule(s.name, s.spec, "tick", nil); err != nil {
			t.Fatalf("Schedule(%q, %q): %v", s.name, s.spec, err)
		}
	}
	got := e.Schedules()
	if len(got) != len(specs) {
		t.Fatalf("Schedules: got %d, want %d: %v", len(got), len(specs), got)
	}
	want := make(map[string]time.Time)
	for _, s := range specs {
		want[s.name] = s.want
	}
	for i, s := range got {
		if i > 0 && got[i-1].Name >= s.Name {
			t.Errorf("Schedules not sorted by name: %q before %q", got[i-1].Name, s.Name)
		}
		if !s.Next.Equal(want[s.Name]) {
			t.Errorf("schedule %q: got next %s, want %s", s.Name, s.Next, want[s.Name])
		}
		if s.Type != "tick" {
			t.Errorf("schedule %q: got type %q, want \"tick\"", s.Name, s.Type)
		}
	}

	if err := e.Schedule("daily", "@hourly", "other", nil); err != nil {
		t.Fatalf("Schedule again: %v", err)
	}
	if !e.Unschedule("every-7m") || e.Unschedule("every-7m") {
		t.Error("Unschedule: want true for a schedule, then false once it is gone")
	}
	got = e.Schedules()
	if len(got) != len(specs)-1 {
		t.Fatalf("Schedules after replace and remove: got %d, want %d", len(got), len(specs)-1)
	}
	for _, s := range got {
		if s.Name == "daily" && (s.Spec != "@hourly" || s.Type != "other" || !s.Next.Equal(epoch.Add(time.Hour))) {
			t.Errorf("replaced schedule: got %+v, want @hourly of type other, next %s", s, epoch.Add(time.Hour))
		}
	}
}

// Three engines on one backend run one schedule; each tick becomes one job,
// run once, however many engines try it.
func TestPeriodicEnqueuesEachTickOnceAcrossEngines(t *testing.T) {
	forEachBackend(t, testPeriodicOncePerTick)
}

func testPeriodicOncePerTick(t *testing.T, b backend.Backend) {
	const engines, ticks = 3, 4
	start0 := epoch.Add(time.Minute) // 09:01: the 09:00 tick is past the grace
	clk := NewFakeClock(start0)
	attempts := make(chan tickAttempt, engines*ticks*2)
	var mu sync.Mutex
	runs := make(map[string]int) // by tick
	es := make([]*Engine, engines)
	for i := range es {
		e := newEngine(t, b, WithClock(clk), WithLease(time.Hour), WithQueues("reports"))
		e.HandleFunc("report", func(ctx context.Context, job *Job) error {
			mu.Lock()
			runs[job.Meta[MetaScheduleTick]]++
			mu.Unlock()
			return nil
		}, Queue("reports"))
		if err := e.Schedule("five-minutes", "*/5 * * * *", "report", map[string]string{"kind": "status"}); err != nil {
			t.Fatalf("Schedule: %v", err)
		}
		hearTicks(e, string(rune('A'+i)), attempts)
		es[i] = e
		start(t, e)
	}

	var ids []string
	for k := 1; k <= ticks; k++ {
		tick := epoch.Add(time.Duration(k) * 5 * time.Minute)
		clk.Set(tick.Add(time.Duration(k) * time.Second)) // each engine sees the tick a little late
		enqueued := ""
		for range engines {
			a := nextAttempt(t, attempts)
			if !a.tick.Equal(tick) {
				t.Fatalf("engine %s tried tick %s, want %s", a.engine, a.tick, tick)
			}
			switch {
			case a.err == nil && enqueued == "":
				enqueued = a.id
			case a.err == nil:
				t.Fatalf("tick %s enqueued twice: by job %s and job %s", tick, enqueued, a.id)
			case !errors.Is(a.err, ErrDuplicateJob):
				t.Fatalf("engine %s: enqueue tick %s: %v, want nil or ErrDuplicateJob", a.engine, tick, a.err)
			}
		}
		if enqueued == "" {
			t.Fatalf("tick %s: no engine enqueued it", tick)
		}
		info := wait(t, es[0], enqueued)
		if info.State != StateCompleted || info.Queue != "reports" {
			t.Fatalf("tick %s: got job %s in queue %q, want completed in \"reports\"", tick, info.State, info.Queue)
		}
		if info.Meta[MetaSchedule] != "five-minutes" || info.Meta[MetaScheduleTick] != tick.Format(time.RFC3339) {
			t.Fatalf("tick %s: got meta %v, want the schedule's name and tick", tick, info.Meta)
		}
		if string(info.Payload) != `{"kind":"status"}` {
			t.Fatalf("tick %s: got payload %s, want the scheduled one", tick, info.Payload)
		}
		ids = append(ids, enqueued)
	}

	page, err := es[1].Jobs(context.Background(), JobFilter{Type: "report"})
	if err != nil {
		t.Fatalf("Jobs: %v", err)
	}
	if len(page.Jobs) != ticks {
		t.Fatalf("got %d report jobs, want %d (one per tick)", len(page.Jobs), ticks)
	}
	mu.Lock()
	defer mu.Unlock()
	for k := 1; k <= ticks; k++ {
		tick := epoch.Add(time.Duration(k) * 5 * time.Minute).Format(time.RFC3339)
		if runs[tick] != 1 {
			t.Errorf("tick %s ran %d times, want once", tick, runs[tick])
		}
	}
}

// A process that comes late to a tick, whose job already ran and was swept,
// does not enqueue it again: not when its own timer fires late, and not when
// it starts just after the tick.
func TestPeriodicLateEngineDoesNotEnqueueTickAgain(t *testing.T) {
	forEachBackend(t, testPeriodicLateEngine)
}

func testPeriodicLateEngine(t *testing.T, b backend.Backend) {
	ctx := context.Background()
	tick := epoch // Monday 09:00
	schedule := func(e *Engine) {
		e.HandleFunc("weekly-report", func(ctx context.Context, job *Job) error { return nil })
		if err := e.Schedule("weekly", "0 9 * * 1", "weekly-report", nil, ResultTTL(time.Minute)); err != nil {
			t.Fatalf("Schedule: %v", err)
		}
	}

	// Engine A's clock is on time; engine B's runs behind, as on a machine
	// that was paused.
	clkA := NewFakeClock(tick.Add(-time.Minute))
	clkB := NewFakeClock(tick.Add(-time.Minute))
	a := newEngine(t, b, WithClock(clkA), WithLease(time.Hour))
	bEng := newEngine(t, b, WithClock(clkB), WithLease(time.Hour))
	heardA, heardB := make(chan tickAttempt, 4), make(chan tickAttempt, 4)
	schedule(a)
	schedule(bEng)
	hearTicks(a, "A", heardA)
	hearTicks(bEng, "B", heardB)
	start(t, a)
	start(t, bEng)

	clkA.Set(tick)
	first := nextAttempt(t, heardA)
	if first.err != nil || !first.tick.Equal(tick) {
		t.Fatalf("engine A: got tick %s with error %v, want tick %s enqueued", first.tick, first.err, tick)
	}
	if info := wait(t, a, first.id); info.State != StateCompleted {
		t.Fatalf("tick job: got %s, want completed", info.State)
	}
	// Past its ResultTTL the job is swept; the tick's key outlives it.
	clkA.Set(tick.Add(30 * time.Minute))
	if _, err := b.Sweep(ctx, clkA.Now(), 100); err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	if _, err := a.Status(ctx, first.id); !errors.Is(err, ErrJobNotFound) {
		t.Fatalf("Status of swept job: got %v, want ErrJobNotFound", err)
	}

	clkB.Set(tick.Add(20 * time.Second))
	late := nextAttempt(t, heardB)
	if !late.tick.Equal(tick) || !errors.Is(late.err, ErrDuplicateJob) || late.id != first.id {
		t.Fatalf("late engine B: got tick %s, job %s, error %v; want tick %s refused as a duplicate of %s", late.tick, late.id, late.err, tick, first.id)
	}

	// An engine that starts within the grace after the tick tries the
	// tick it may have missed, and is refused as well.
	clkC := NewFakeClock(tick.Add(40 * time.Second))
	c := newEngine(t, b, WithClock(clkC), WithLease(time.Hour))
	heardC := make(chan tickAttempt, 4)
	schedule(c)
	hearTicks(c, "C", heardC)
	start(t, c)
	fresh := nextAttempt(t, heardC)
	if !fresh.tick.Equal(tick) || !errors.Is(fresh.err, ErrDuplicateJob) {
		t.Fatalf("engine C starting late: got tick %s, error %v; want tick %s refused as a duplicate", fresh.tick, fresh.err, tick)
	}

	page, err := a.Jobs(ctx, JobFilter{Type: "weekly-report"})
	if err != nil {
		t.Fatalf("Jobs: %v", err)
	}
	if len(page.Jobs) != 0 {
		t.Fatalf("got %d weekly-report jobs after the sweep, want 0 (the tick must not run again)", len(page.Jobs))
	}
}

// After a long pause only the latest tick, if it is recent, is enqueued;
// a schedule added while Run is going is picked up at once.
func TestPeriodicSkipsStaleTicksAndHearsNewSchedules(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend.Backend) {
		clk := NewFakeClock(epoch.Add(time.Minute))
		e := newEngine(t, b, WithClock(clk), WithLease(24*time.Hour))
		heard := make(chan tickAttempt, 16)
		hearTicks(e, "A", heard)
		start(t, e)
		if err := e.Schedule("five", "*/5 * * * *", "tick", nil); err != nil {
			t.Fatalf("Schedule: %v", err)
		}

		// Three hours pass at once: 36 ticks went by, only 12:00 is recent.
		clk.Set(epoch.Add(3*time.Hour + 30*time.Second))
		a := nextAttempt(t, heard)
		if want := epoch.Add(3 * time.Hour); !a.tick.Equal(want) || a.err != nil {
			t.Fatalf("after a pause: got tick %s (error %v), want only %s", a.tick, a.err, want)
		}
		clk.Set(epoch.Add(3*time.Hour + 5*time.Minute))
		a = nextAttempt(t, heard)
		if want := epoch.Add(3*time.Hour + 5*time.Minute); !a.tick.Equal(want) || a.err != nil {
			t.Fatalf("next tick: got %s (error %v), want %s", a.tick, a.err, want)
		}
		page, err := e.Jobs(context.Background(), JobFilter{Type: "tick"})
		if err != nil {
			t.Fatalf("Jobs: %v", err)
		}
		if len(page.Jobs) != 2 {
			t.Fatalf("got %d tick jobs, want 2", len(page.Jobs))
		}
	})
}

// Periodic jobs are scheduled by a cron spec or an interval and listed with
// their next tick; while Run is going each tick becomes one job, however
// many engines share the backend.
func ExampleEngine_Schedule() {
	clock := NewFakeClock(time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC)) // a Wednesday
	e, _ := New(WithClock(clock))
	defer e.Close()
	e.Schedule("weekly-report", "0 9 * * 1", "weekly_report", nil, Queue("ai"))
	e.Schedule("cleanup", "@every 15m", "cleanup", nil)
	for _, s := range e.Schedules() {
		fmt.Println(s.Name, "|", s.Spec, "|", s.Next.Format(time.RFC3339))
	}
	// Output:
	// cleanup | @every 15m | 2026-03-04T12:15:00Z
	// weekly-report | 0 9 * * 1 | 2026-03-09T09:00:00Z
}
