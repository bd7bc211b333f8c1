package memory_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/jobrelay/engine/backend"
	"github.com/jobrelay/engine/backend/memory"
)

// TestLimitsAgainstModel runs random calls against the backend and against
// a model that does what the contract says the slow way: Lease sorts each
// queue and takes every job whose key is not held back at that moment. The
// two must lease the same jobs in the same order, and Promote must report
// the same next time, at every step: parked jobs keep their place through
// releases, stalls, throttles, cancels and limit changes.
func TestLimitsAgainstModel(t *testing.T) {
	steps := 3000
	if testing.Short() {
		steps = 500
	}
	for seed := range uint64(8) {
		t.Run(fmt.Sprint("Seed", seed), func(t *testing.T) {
			runModel(t, rand.New(rand.NewPCG(seed, 1)), steps)
		})
	}
}

type modelJob struct {
	id, key, queue string
	prio           int
	state          backend.State
	place          int64 // in its queue, while queued
	runAt          int64 // while scheduled or retrying
	due            uint64
	expires        int64 // while active
	leased         uint64
	ref            backend.LeaseRef
}

type model struct {
	jobs      []*modelJob
	back      map[string]int64
	front     map[string]int64
	limits    map[string]backend.Limit
	active    map[string]int
	starts    map[string][]int64 // the newest Rate lease times, while a Rate is set
	throttled map[string]int64
	promoted  int64
	seq       uint64
}

func (m *model) pushBack(j *modelJob) {
	m.back[j.queue]++
	j.state, j.place = backend.StateQueued, m.back[j.queue]
}

func (m *model) pushFront(j *modelJob) {
	m.front[j.queue]--
	j.state, j.place = backend.StateQueued, m.front[j.queue]
}

func (m *model) held(key string, at int64) bool {
	if key == "" {
		return false
	}
	l := m.limits[key]
	if m.throttled[key] > at || l.Concurrency > 0 && m.active[key] >= l.Concurrency {
		return true
	}
	return l.Rate > 0 && m.inWindow(key, at) >= l.Rate
}

func (m *model) inWindow(key string, at int64) int {
	n := 0
	for _, s := range m.starts[key] {
		if s > at-int64(m.limits[key].Period) {
			n++
		}
	}
	return n
}

// opensAt is when the time-bound holds on key end, or 0.
func (m *model) opensAt(key string, at int64) int64 {
	var t int64
	if m.throttled[key] > at {
		t = m.throttled[key]
	}
	if l := m.limits[key]; l.Rate > 0 && m.inWindow(key, at) >= l.Rate {
		s := m.starts[key]
		t = max(t, s[len(s)-l.Rate]+int64(l.Period))
	}
	return t
}

func (m *model) lease(queues []string, now int64, limit int, ttl time.Duration) []string {
	at := max(now, m.promoted)
	var out []string
	for _, q := range queues {
		var queued []*modelJob
		for _, j := range m.jobs {
			if j.queue == q && j.state == backend.StateQueued {
				queued = append(queued, j)
			}
		}
		slices.SortFunc(queued, func(a, b *modelJob) int {
			if a.prio != b.prio {
				return b.prio - a.prio
			}
			return int(a.place - b.place)
		})
		for _, j := range queued {
			if len(out) == limit {
				return out
			}
			if m.held(j.key, at) {
				continue
			}
			m.seq++
			j.state, j.expires, j.leased = backend.StateActive, now+int64(ttl), m.seq
			if j.key != "" {
				m.active[j.key]++
				if r := m.limits[j.key].Rate; r > 0 {
					s := append(m.starts[j.key], at)
					m.starts[j.key] = s[max(0, len(s)-r):]
				}
			}
			out = append(out, j.id)
		}
	}
	return out
}

func (m *model) ended(j *modelJob) {
	if j.key != "" {
		m.active[j.key]--
	}
}

func (m *model) delay(j *modelJob, s backend.State, runAt int64) {
	m.seq++
	j.state, j.runAt, j.due = s, runAt, m.seq
}

func (m *model) promote(now int64) (int, int64) {
	m.promoted = max(m.promoted, now)
	var due []*modelJob
	for _, j := range m.jobs {
		if (j.state == backend.StateScheduled || j.state == backend.StateRetrying) && j.runAt <= now {
			due = append(due, j)
		}
	}
	slices.SortFunc(due, func(a, b *modelJob) int {
		if a.runAt != b.runAt {
			return int(a.runAt - b.runAt)
		}
		return int(a.due) - int(b.due)
	})
	for _, j := range due {
		m.pushBack(j)
	}
	var next int64
	for _, j := range m.jobs {
		if (j.state == backend.StateScheduled || j.state == backend.StateRetrying) && (next == 0 || j.runAt < next) {
			next = j.runAt
		}
	}
	for _, key := range []string{"a", "b", "c"} {
		if t := m.opensAt(key, m.promoted); t != 0 && (next == 0 || t < next) {
			next = t
		}
	}
	return len(due), next
}

func (m *model) reap(now int64) {
	var expired []*modelJob
	for _, j := range m.jobs {
		if j.state == backend.StateActive && j.expires < now {
			expired = append(expired, j)
		}
	}
	slices.SortFunc(expired, func(a, b *modelJob) int {
		if a.expires != b.expires {
			return int(a.expires - b.expires)
		}
		return int(a.leased) - int(b.leased)
	})
	for _, j := range expired {
		m.ended(j)
		m.pushFront(j)
	}
}

func runModel(t *testing.T, rng *rand.Rand, steps int) {
	ctx := context.Background()
	b := memory.New(memory.Options{EventLogSize: 64})
	defer b.Close()
	m := &model{back: map[string]int64{}, front: map[string]int64{}, limits: map[string]backend.Limit{},
		active: map[string]int{}, starts: map[string][]int64{}, throttled: map[string]int64{}}
	base := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	now := base
	ns := func(t time.Time) int64 { return t.UnixNano() }
	keys := []string{"", "", "a", "b", "c"}
	pick := func(state backend.State) *modelJob {
		var c []*modelJob
		for _, j := range m.jobs {
			if j.state == state {
				c = append(c, j)
			}
		}
		if len(c) == 0 {
			return nil
		}
		return c[rng.IntN(len(c))]
	}
	finish := func(j *modelJob, a backend.Ack) {
		t.Helper()
		a.Lease = j.ref
		errs, err := b.Finish(ctx, now, []backend.Ack{a})
		if err != nil || errs[0] != nil {
			t.Fatalf("Finish %s (%s): got %v, %v, want nil", j.id, a.Outcome, errs, err)
		}
		m.ended(j)
	}

	for step := range steps {
		if rng.IntN(3) == 0 {
			now = now.Add(time.Duration(rng.IntN(1500)) * time.Millisecond)
		}
		switch op := rng.IntN(100); {
		case op < 25: // enqueue
			n := len(m.jobs)
			j := &modelJob{id: fmt.Sprintf("job-%06d", n), key: keys[rng.IntN(len(keys))],
				queue: []string{"q1", "q2"}[rng.IntN(2)], prio: []int{0, 0, 1}[rng.IntN(3)]}
			m.jobs = append(m.jobs, j)
			m.pushBack(j)
			_, err := b.Enqueue(ctx, now, []backend.NewJob{{ID: j.id, Type: "t", Queue: j.queue, Priority: j.prio,
				LimitKey: j.key, MaxStalls: 1000, ResultTTL: time.Hour, FailureTTL: time.Hour}})
			if err != nil {
				t.Fatal(err)
			}
		case op < 50: // lease
			queues := [][]string{{"q1"}, {"q2"}, {"q1", "q2"}, {"q2", "q1"}}[rng.IntN(4)]
			limit := 1 + rng.IntN(4)
			ttl := []time.Duration{2 * time.Second, 10 * time.Second}[rng.IntN(2)]
			want := m.lease(queues, ns(now), limit, ttl)
			ls, err := b.Lease(ctx, backend.LeaseRequest{Queues: queues, Max: limit, Now: now, TTL: ttl})
			if err != nil {
				t.Fatal(err)
			}
			got := make([]string, len(ls))
			for i, l := range ls {
				got[i] = l.Job.ID
				for _, j := range m.jobs {
					if j.id == l.Job.ID {
						j.ref = l.Ref()
					}
				}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("step %d: Lease %v max %d at +%v: got %v, want %v", step, queues, limit, now.Sub(base), got, want)
			}
		case op < 65: // end an attempt
			j := pick(backend.StateActive)
			if j == nil {
				continue
			}
			switch rng.IntN(4) {
			case 0:
				finish(j, backend.Ack{Outcome: backend.OutcomeCompleted})
				j.state = backend.StateCompleted
			case 1:
				finish(j, backend.Ack{Outcome: backend.OutcomeReleased})
				m.pushFront(j)
			case 2:
				retryAt := now.Add(time.Duration(rng.IntN(3000)) * time.Millisecond)
				finish(j, backend.Ack{Outcome: backend.OutcomeRetry, RetryAt: retryAt})
				m.delay(j, backend.StateRetrying, ns(retryAt))
			case 3:
				retryAt := now.Add(time.Duration(rng.IntN(3000)) * time.Millisecond)
				if j.key != "" {
					m.throttled[j.key] = max(m.throttled[j.key], ns(retryAt))
				}
				finish(j, backend.Ack{Outcome: backend.OutcomeThrottled, RetryAt: retryAt})
				m.delay(j, backend.StateScheduled, ns(retryAt))
			}
		case op < 72: // cancel a queued job (parked or not)
			j := pick(backend.StateQueued)
			if j == nil {
				continue
			}
			if _, err := b.Cancel(ctx, now, j.id, "no"); err != nil {
				t.Fatal(err)
			}
			j.state = backend.StateCanceled
		case op < 80: // set or remove a limit
			key := keys[2+rng.IntN(3)]
			l := backend.Limit{Key: key, Concurrency: rng.IntN(4), Rate: rng.IntN(4)}
			if l.Rate > 0 {
				l.Period = time.Duration(1+rng.IntN(5)) * time.Second
			}
			if err := b.SetLimit(ctx, now, l); err != nil {
				t.Fatal(err)
			}
			if l.Rate == 0 {
				delete(m.starts, key)
			} else if s := m.starts[key]; len(s) > l.Rate {
				m.starts[key] = s[len(s)-l.Rate:]
			}
			m.limits[key] = l
		case op < 93: // promote
			wantMoved, wantNext := m.promote(ns(now))
			moved, next, err := b.Promote(ctx, now)
			if err != nil {
				t.Fatal(err)
			}
			var gotNext int64
			if !next.IsZero() {
				gotNext = ns(next)
			}
			if moved != wantMoved || gotNext != wantNext {
				t.Fatalf("step %d: Promote at +%v: got %d moved, next +%v, want %d, +%v", step, now.Sub(base),
					moved, time.Duration(gotNext-ns(base)), wantMoved, time.Duration(wantNext-ns(base)))
			}
		default: // reap
			m.reap(ns(now))
			if _, err := b.Reap(ctx, now); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, j := range m.jobs {
		got, err := b.Job(ctx, j.id)
		if err != nil {
			t.Fatal(err)
		}
		if got.State != j.state {
			t.Errorf("job %s: got state %q, want %q", j.id, got.State, j.state)
		}
	}
}

// Many held-back jobs, most of them canceled while parked: the rest still
// lease in order once the key opens, and the jobs behind them were never
// blocked.
func TestParkedCancelAndPurge(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{EventLogSize: 64})
	defer b.Close()
	if err := b.SetLimit(ctx, t0, backend.Limit{Key: "llm", Concurrency: 1}); err != nil {
		t.Fatal(err)
	}
	var jobs []backend.NewJob
	for i := range 1000 {
		nj := newJob(i)
		nj.LimitKey = "llm"
		jobs = append(jobs, nj)
	}
	jobs = append(jobs, newJob(1000), newJob(1001))
	enqueue(t, b, jobs...)
	req := backend.LeaseRequest{Queues: []string{"default"}, Max: 10, Now: t0, TTL: time.Hour}
	ls, err := b.Lease(ctx, req)
	if err != nil || len(ls) != 3 || ls[0].Job.ID != "job-000000" || ls[1].Job.ID != "job-001000" || ls[2].Job.ID != "job-001001" {
		t.Fatalf("Lease: got %v, %v, want job-000000 and the two unlimited jobs", leaseIDs(ls), err)
	}
	// Cancel every parked job but each hundredth, the first in line too.
	for i := 1; i < 1000; i++ {
		if i%100 != 0 {
			if _, err := b.Cancel(ctx, t0, fmt.Sprintf("job-%06d", i), "no"); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := 100; i < 1000; i += 100 {
		if _, err := b.Finish(ctx, t0, []backend.Ack{{Lease: ls[0].Ref(), Outcome: backend.OutcomeCompleted}}); err != nil {
			t.Fatal(err)
		}
		ls, err = b.Lease(ctx, req)
		if want := fmt.Sprintf("job-%06d", i); err != nil || len(ls) != 1 || ls[0].Job.ID != want {
			t.Fatalf("Lease after a finish: got %v, %v, want %s", leaseIDs(ls), err, want)
		}
	}
}

// Keys taken from jobs, one per tenant, are forgotten once nothing holds
// them: no limit, no job active or parked, no throttle.
func TestIdleKeysForgotten(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{EventLogSize: 64})
	defer b.Close()
	var jobs []backend.NewJob
	for i := range 200 {
		nj := newJob(i)
		nj.LimitKey = fmt.Sprintf("tenant:%d", i%50)
		jobs = append(jobs, nj)
	}
	enqueue(t, b, jobs...)
	if err := b.SetLimit(ctx, t0, backend.Limit{Key: "tenant:7", Concurrency: 1}); err != nil {
		t.Fatal(err)
	}
	req := backend.LeaseRequest{Queues: []string{"default"}, Max: 1000, Now: t0, TTL: time.Hour}
	ls, _ := b.Lease(ctx, req)
	if len(ls) != 197 { // tenant:7 has 4 jobs and a cap of 1
		t.Fatalf("Lease: got %d jobs, want 197", len(ls))
	}
	throttled := ls[0] // tenant:0
	var acks []backend.Ack
	for _, l := range ls[1:] {
		acks = append(acks, backend.Ack{Lease: l.Ref(), Outcome: backend.OutcomeCompleted})
	}
	acks = append(acks, backend.Ack{Lease: throttled.Ref(), Outcome: backend.OutcomeThrottled, RetryAt: t0.Add(time.Minute)})
	if _, err := b.Finish(ctx, t0, acks); err != nil {
		t.Fatal(err)
	}
	if n := b.LimitKeysInUse(); n != 2 {
		t.Errorf("keys in use with one limit (its jobs parked) and one throttle: got %d, want 2", n)
	}
	if err := b.SetLimit(ctx, t0, backend.Limit{Key: "tenant:7"}); err != nil {
		t.Fatal(err)
	}
	ls, _ = b.Lease(ctx, req)
	acks = acks[:0]
	for _, l := range ls {
		acks = append(acks, backend.Ack{Lease: l.Ref(), Outcome: backend.OutcomeCompleted})
	}
	if _, err := b.Finish(ctx, t0, acks); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Promote(ctx, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if n := b.LimitKeysInUse(); n != 0 {
		t.Errorf("keys in use once every job finished and the throttle passed: got %d, want 0", n)
	}
}

func leaseIDs(ls []*backend.Lease) []string {
	ids := make([]string, len(ls))
	for i, l := range ls {
		ids[i] = l.Job.ID
	}
	return ids
}
