package backendtest

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jobrelay/engine/backend"
)

func testLimits(t *testing.T, h Harness) {
	if h.LimitsUnsupported != nil {
		t.Run("RefusedWhereUnsupported", func(t *testing.T) {
			f := newFixture(t, h)
			err := f.b.SetLimit(f.ctx, f.t0, backend.Limit{Key: "llm", Concurrency: 1})
			if !errors.Is(err, h.LimitsUnsupported) {
				t.Fatalf("SetLimit: got %v, want an error wrapping %v", err, h.LimitsUnsupported)
			}
		})
		return
	}

	t.Run("StoredAndListed", func(t *testing.T) {
		f := newFixture(t, h)
		if got := f.limits(); len(got) != 0 {
			t.Fatalf("Limits of a new backend: got %v, want none", got)
		}
		llm := backend.Limit{Key: "llm", Concurrency: 2, Rate: 60, Period: time.Minute}
		notion := backend.Limit{Key: "notion", Rate: 3, Period: time.Second}
		tenant := backend.Limit{Key: "tenant:acme", Concurrency: 5}
		f.setLimit(f.t0, notion)
		f.setLimit(f.t0, tenant)
		f.setLimit(f.t0, llm)
		wantLimits(t, "after three SetLimit", f.limits(), llm, notion, tenant)

		raised := backend.Limit{Key: "llm", Concurrency: 4}
		f.setLimit(f.t0, raised)
		wantLimits(t, "after replacing llm", f.limits(), raised, notion, tenant)

		// Neither cap: the limit goes, whatever its Period says.
		f.setLimit(f.t0, backend.Limit{Key: "notion", Period: time.Second})
		wantLimits(t, "after removing notion", f.limits(), raised, tenant)
		f.setLimit(f.t0, backend.Limit{Key: "never-set"})
		wantLimits(t, "after removing a key that has no limit", f.limits(), raised, tenant)
	})

	t.Run("ConcurrencyCap", func(t *testing.T) {
		f := newFixture(t, h)
		f.setLimit(f.t0, backend.Limit{Key: "llm", Concurrency: 2})
		ids := f.addN(5, limitKey("llm"))
		first := f.wantLeaseIDs(f.t0, 5, ids[0], ids[1])
		for _, id := range ids[2:] {
			f.wantState(id, backend.StateQueued)
		}
		f.wantNoLease(f.at(time.Second))

		f.complete(f.at(2*time.Second), first[0], `"ok"`)
		third := f.wantLeaseIDs(f.at(2*time.Second), 5, ids[2])
		f.complete(f.at(3*time.Second), first[1], `"ok"`)
		f.complete(f.at(3*time.Second), third[0], `"ok"`)
		f.wantLeaseIDs(f.at(3*time.Second), 5, ids[3], ids[4])
	})

	t.Run("NoHeadOfLineBlocking", func(t *testing.T) {
		f := newFixture(t, h)
		f.setLimit(f.t0, backend.Limit{Key: "llm", Concurrency: 1})
		l1 := f.add(limitKey("llm"))
		l2 := f.add(limitKey("llm"))
		l3 := f.add(limitKey("llm"))
		p1 := f.add()
		o1 := f.add(limitKey("notion"))
		l4 := f.add(limitKey("llm"))
		p2 := f.add()
		ls := f.wantLeaseIDs(f.t0, 10, l1, p1, o1, p2)

		// The held-back jobs kept their place: l2 stood before p3.
		p3 := f.addAt(f.at(time.Second))
		f.complete(f.at(2*time.Second), ls[0], `"ok"`)
		f.wantLeaseIDs(f.at(2*time.Second), 1, l2)
		f.wantLeaseIDs(f.at(2*time.Second), 10, p3)
		f.wantState(l3, backend.StateQueued)
		f.wantState(l4, backend.StateQueued)
	})

	t.Run("ReleaseAndReapFreeSlots", func(t *testing.T) {
		// Every way an attempt ends frees its slot; the job that takes it
		// is whichever stands first in line.
		ends := []struct {
			name string
			end  func(f *fixture, l *backend.Lease)
		}{
			{"Completed", func(f *fixture, l *backend.Lease) { f.complete(f.at(time.Second), l, `"ok"`) }},
			{"Retry", func(f *fixture, l *backend.Lease) { f.retry(f.at(time.Second), l, "boom", f.at(time.Hour)) }},
			{"Failed", func(f *fixture, l *backend.Lease) { f.fail(f.at(time.Second), l, "bad") }},
			{"Canceled", func(f *fixture, l *backend.Lease) {
				f.finishOK(f.at(time.Second), backend.Ack{Lease: l.Ref(), Outcome: backend.OutcomeCanceled, Error: "stopped"})
			}},
			{"Released", func(f *fixture, l *backend.Lease) { f.release(f.at(time.Second), l) }},
			{"Reaped", func(f *fixture, l *backend.Lease) {
				if n := f.reap(f.at(time.Minute)); n != 1 {
					f.t.Fatalf("Reap after the lease expired: got %d reaped, want 1", n)
				}
			}},
		}
		for _, e := range ends {
			t.Run(e.name, func(t *testing.T) {
				f := newFixture(t, h)
				f.setLimit(f.t0, backend.Limit{Key: "llm", Concurrency: 1})
				f.addN(2, limitKey("llm"))
				l := f.leaseOne(f.t0)
				f.wantNoLease(f.t0)
				e.end(f, l)
				now := f.at(time.Minute)
				if ls := f.lease(request(now, 10)); len(ls) != 1 {
					t.Fatalf("Lease once the attempt of %s ended (%s): got %v, want one job", l.Job.ID, e.name, leasedIDs(ls))
				}
				f.wantNoLease(now)
			})
		}
	})

	t.Run("FinishWakesBlockedLease", func(t *testing.T) {
		f := newFixture(t, h)
		f.setLimit(f.t0, backend.Limit{Key: "llm", Concurrency: 1})
		a := f.add(limitKey("llm"))
		b := f.add(limitKey("llm"))
		la := f.leaseID(f.t0, a)
		f.wantWoken(f.blockedLease(f.at(time.Second), 1, func() {
			f.complete(f.at(2*time.Second), la, `"ok"`)
		}), "a job of the key finished", b)
	})

	t.Run("RateSlidingWindow", func(t *testing.T) {
		f := newFixture(t, h)
		f.setLimit(f.t0, backend.Limit{Key: "notion", Rate: 3, Period: time.Second})
		ids := f.addN(8, limitKey("notion"))
		// A lease at t counts against leases at times in [t, t+Period):
		// at t+Period it no longer counts.
		steps := []struct {
			at   time.Duration
			max  int
			want []string
		}{
			{0, 1, ids[0:1]},
			{400 * time.Millisecond, 10, ids[1:3]},
			{500 * time.Millisecond, 10, nil},
			{999 * time.Millisecond, 10, nil},
			{time.Second, 10, ids[3:4]}, // the start at t0 left the window; those at 400ms did not
			{1399 * time.Millisecond, 10, nil},
			{1400 * time.Millisecond, 10, ids[4:6]},
			{2 * time.Second, 10, ids[6:7]},
			{2400 * time.Millisecond, 10, ids[7:8]},
		}
		for _, s := range steps {
			now := f.at(s.at)
			ls := f.wantLeaseIDs(now, s.max, s.want...)
			// A rate counts starts, not running jobs.
			for _, l := range ls {
				f.complete(now, l, `"ok"`)
			}
			if s.at == 500*time.Millisecond {
				_, next := f.promote(now)
				f.wantNext(next, now, f.at(time.Second), "the window opens")
			}
		}
	})

	t.Run("WindowOpensOnPromote", func(t *testing.T) {
		// A Lease that blocked while a rate window or a throttle held the
		// key back takes the job when the Promote at its end wakes it,
		// though the Lease's own now is from before.
		cases := []struct {
			name  string
			setup func(f *fixture) (opens time.Time, want string)
		}{
			{"Rate", func(f *fixture) (time.Time, string) {
				f.setLimit(f.t0, backend.Limit{Key: "notion", Rate: 2, Period: time.Second})
				ids := f.addN(3, limitKey("notion"))
				f.wantLeaseIDs(f.t0, 10, ids[0], ids[1])
				return f.at(time.Second), ids[2]
			}},
			{"Throttle", func(f *fixture) (time.Time, string) {
				a := f.add(limitKey("llm"), inQueue("other"))
				b := f.add(limitKey("llm"))
				la := f.leaseID(f.t0, a, "other")
				f.throttled(f.at(100*time.Millisecond), la, f.at(time.Second))
				return f.at(time.Second), b
			}},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				f := newFixture(t, h)
				opens, want := c.setup(f)
				before := f.at(500 * time.Millisecond)
				f.wantNoLease(before)
				_, next := f.promote(before)
				f.wantNext(next, before, opens, "the key opens")
				f.wantWoken(f.blockedLease(before, 1, func() { f.promote(opens) }), "Promote at the moment the key opens", want)
			})
		}
	})

	t.Run("Throttled", func(t *testing.T) {
		f := newFixture(t, h)
		f.setLimit(f.t0, backend.Limit{Key: "llm", Concurrency: 5})
		a := f.add(limitKey("llm"))
		b := f.add(limitKey("llm"))
		c := f.add(limitKey("notion"))
		d := f.add()
		la := f.leaseID(f.t0, a)
		cur := f.cursor()
		retryAt := f.at(10 * time.Second)
		f.throttled(f.at(time.Second), la, retryAt)

		j := f.wantState(a, backend.StateScheduled)
		if j.Attempt != 0 || j.Failures != 0 || j.Stalls != 0 || j.Error != "429 Too Many Requests" {
			t.Errorf("throttled job: got attempt %d failures %d stalls %d error %q, want 0 0 0 %q",
				j.Attempt, j.Failures, j.Stalls, j.Error, "429 Too Many Requests")
		}
		wantTime(t, "RunAt of the throttled job", j.RunAt, retryAt)
		wantNoLeaseFields(t, j)
		f.wantEvents(cur, backend.Event{Kind: backend.EventQueued, JobID: a, State: backend.StateScheduled, Attempt: 0, RunAt: retryAt})
		if s := f.stats()["default"]; s.Failed != 0 || s.Processed != 0 {
			t.Errorf("Stats after a throttle: got processed %d failed %d, want 0 0 (a throttle is no failure)", s.Processed, s.Failed)
		}

		// The key is throttled, though under its cap; other keys are not.
		f.wantLeaseIDs(f.at(2*time.Second), 10, c, d)
		f.wantState(b, backend.StateQueued)
		_, next := f.promote(f.at(2 * time.Second))
		f.wantNext(next, f.at(2*time.Second), retryAt, "the throttle ends")
		f.wantNoLease(retryAt.Add(-time.Millisecond))

		if moved, _ := f.promote(retryAt); moved != 1 {
			t.Fatalf("Promote at RetryAt: got %d moved, want 1 (the throttled job)", moved)
		}
		ls := f.lease(request(retryAt, 10))
		got := leasedIDs(ls)
		slices.Sort(got)
		if !slices.Equal(got, []string{a, b}) {
			t.Fatalf("Lease once the throttle ended: got %v, want %s and %s", leasedIDs(ls), a, b)
		}
		for _, l := range ls {
			if l.Job.ID == a && l.Job.Attempt != 1 {
				t.Errorf("lease after a throttle: got attempt %d, want 1 (the throttled run did not count)", l.Job.Attempt)
			}
		}
	})

	t.Run("ThrottledAfterCancelRequested", func(t *testing.T) {
		// As with a retry or a release, a job whose cancel was requested
		// never runs again.
		f := newFixture(t, h)
		a := f.add(limitKey("llm"))
		la := f.leaseID(f.t0, a)
		f.cancelOK(f.at(time.Second), a, "not needed", backend.StateActive)
		f.throttled(f.at(2*time.Second), la, f.at(10*time.Second))
		f.wantState(a, backend.StateCanceled)
	})

	t.Run("SetLimitRaisesCap", func(t *testing.T) {
		f := newFixture(t, h)
		f.setLimit(f.t0, backend.Limit{Key: "llm", Concurrency: 1})
		ids := f.addN(4, limitKey("llm"))
		f.wantLeaseIDs(f.t0, 10, ids[0])
		f.wantWoken(f.blockedLease(f.at(time.Second), 10, func() {
			f.setLimit(f.at(2*time.Second), backend.Limit{Key: "llm", Concurrency: 2})
		}), "SetLimit raised the cap", ids[1])
		f.wantNoLease(f.at(2 * time.Second))
		f.wantWoken(f.blockedLease(f.at(3*time.Second), 10, func() {
			f.setLimit(f.at(4*time.Second), backend.Limit{Key: "llm"})
		}), "SetLimit removed the limit", ids[2], ids[3])
	})

	t.Run("CapCountsRunningJobs", func(t *testing.T) {
		// A cap set (or lowered) while jobs of the key run counts them.
		f := newFixture(t, h)
		ids := f.addN(3, limitKey("llm"))
		ls := f.wantLeaseIDs(f.t0, 2, ids[0], ids[1])
		f.setLimit(f.at(time.Second), backend.Limit{Key: "llm", Concurrency: 1})
		f.wantNoLease(f.at(time.Second))
		f.complete(f.at(2*time.Second), ls[0], `"ok"`)
		f.wantNoLease(f.at(2 * time.Second))
		f.complete(f.at(3*time.Second), ls[1], `"ok"`)
		f.wantLeaseIDs(f.at(3*time.Second), 10, ids[2])
	})

	t.Run("KeyWithoutLimit", func(t *testing.T) {
		f := newFixture(t, h)
		f.setLimit(f.t0, backend.Limit{Key: "llm", Concurrency: 1})
		ids := f.addN(3, limitKey("tenant:acme"))
		ls := f.wantLeaseIDs(f.t0, 10, ids...)

		// A throttle holds back a key that has no Limit all the same.
		f.throttled(f.at(time.Second), ls[0], f.at(10*time.Second))
		late := f.addAt(f.at(time.Second), limitKey("tenant:acme"))
		f.wantNoLease(f.at(5 * time.Second))
		f.promote(f.at(10 * time.Second))
		got := leasedIDs(f.lease(request(f.at(10*time.Second), 10)))
		slices.Sort(got)
		if want := []string{ids[0], late}; !slices.Equal(got, want) {
			t.Fatalf("Lease once the throttle ended: got %v, want %v", got, want)
		}
	})

	t.Run("AcrossHandles", func(t *testing.T) {
		if h.NewPair == nil {
			t.Skip("the backend lives in one process: Harness.NewPair is nil")
		}
		a, b := newPairFixtures(t, h)
		lim := backend.Limit{Key: "llm", Concurrency: 1}
		a.setLimit(a.t0, lim)
		wantLimits(t, "Limits on the other handle", b.limits(), lim)
		first := a.add(limitKey("llm"))
		second := a.add(limitKey("llm"))
		lb := b.wantLeaseIDs(b.t0, 10, first)
		a.wantNoLease(a.t0)
		a.complete(a.at(time.Second), lb[0], `"ok"`)
		b.wantLeaseIDs(b.at(time.Second), 10, second)
	})

	t.Run("AfterClose", func(t *testing.T) {
		f := newFixture(t, h)
		if err := f.b.Close(); err != nil {
			t.Fatalf("Close: got error %v, want nil", err)
		}
		err := f.limiter().SetLimit(f.ctx, f.t0, backend.Limit{Key: "llm", Concurrency: 1})
		wantErrIs(t, "SetLimit after Close", err, backend.ErrClosed)
		_, err = f.limiter().Limits(f.ctx)
		wantErrIs(t, "Limits after Close", err, backend.ErrClosed)
	})

	t.Run("Stress", func(t *testing.T) {
		// Dispatchers race on a key with a cap of 3 beside unlimited
		// jobs; no more than 3 of the key may ever be active. A job
		// counts as active from its Lease until its Finish is called.
		f := newFixture(t, h)
		const capacity = 3
		f.setLimit(f.t0, backend.Limit{Key: "llm", Concurrency: capacity})
		total := 600
		if testing.Short() {
			total = 120
		}
		jobs := make([]backend.NewJob, total)
		for i := range jobs {
			jobs[i] = f.newJob()
			if i%3 != 2 {
				jobs[i].LimitKey = "llm"
			}
		}
		for start := 0; start < total; start += 100 {
			for _, r := range f.enqueue(f.t0, jobs[start:min(start+100, total)]...) {
				if r.Err != nil {
					t.Fatalf("Enqueue %s: got error %v, want nil", r.ID, r.Err)
				}
			}
		}

		ctx, cancel := context.WithTimeout(f.ctx, 60*time.Second)
		defer cancel()
		var (
			mu       sync.Mutex
			active   int
			seen     = make(map[string]int, total)
			finished atomic.Int64
			wg       sync.WaitGroup
		)
		fail := func(format string, args ...any) {
			t.Errorf(format, args...)
			cancel()
		}
		for w := range 6 {
			wg.Go(func() {
				req := backend.LeaseRequest{Queues: []string{"default"}, Worker: fmt.Sprintf("worker-%d", w),
					Max: capacity + 2, Now: f.t0, TTL: time.Hour, Block: 20 * time.Millisecond}
				for finished.Load() < int64(total) && ctx.Err() == nil {
					ls, err := f.b.Lease(ctx, req)
					if err != nil {
						if ctx.Err() == nil {
							fail("Lease: got error %v, want nil", err)
						}
						return
					}
					acks := make([]backend.Ack, len(ls))
					mu.Lock()
					for i, l := range ls {
						seen[l.Job.ID]++
						if l.Job.LimitKey == "llm" {
							if active++; active > capacity {
								fail("Lease: %d jobs of key llm active at once, want at most %d", active, capacity)
							}
						}
						acks[i] = backend.Ack{Lease: l.Ref(), Outcome: backend.OutcomeCompleted, Result: []byte(`"ok"`)}
					}
					mu.Unlock()
					// Hold the leases while other dispatchers run, then
					// uncount them before Finish is called, so that a slot
					// the backend frees is never still counted here.
					runtime.Gosched()
					mu.Lock()
					for _, l := range ls {
						if l.Job.LimitKey == "llm" {
							active--
						}
					}
					mu.Unlock()
					if len(acks) == 0 {
						continue
					}
					errs, err := f.b.Finish(ctx, f.t0, acks)
					if err != nil {
						fail("Finish: got error %v, want nil", err)
						return
					}
					for i, e := range errs {
						if e != nil {
							fail("Finish %s: got error %v, want nil", acks[i].Lease.JobID, e)
						}
					}
					finished.Add(int64(len(acks)))
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		if err := ctx.Err(); err != nil {
			t.Fatalf("dispatchers: stopped with %d of %d jobs finished: %v", finished.Load(), total, err)
		}
		if len(seen) != total {
			t.Errorf("jobs delivered: got %d distinct, want %d", len(seen), total)
		}
		for id, n := range seen {
			if n != 1 {
				t.Errorf("job %s: delivered %d times, want exactly once", id, n)
			}
		}
	})
}

func limitKey(k string) jobOption { return func(j *backend.NewJob) { j.LimitKey = k } }

// addN enqueues n new jobs at the start of the case and returns their IDs
// in order.
func (f *fixture) addN(n int, opts ...jobOption) []string {
	f.t.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = f.add(opts...)
	}
	return ids
}

func (f *fixture) limiter() backend.Limiter { return f.b }

func (f *fixture) setLimit(now time.Time, l backend.Limit) {
	f.t.Helper()
	if err := f.limiter().SetLimit(f.ctx, now, l); err != nil {
		f.t.Fatalf("SetLimit %+v: got error %v, want nil", l, err)
	}
}

func (f *fixture) limits() []backend.Limit {
	f.t.Helper()
	ls, err := f.limiter().Limits(f.ctx)
	if err != nil {
		f.t.Fatalf("Limits: got error %v, want nil", err)
	}
	return ls
}

func wantLimits(t *testing.T, when string, got []backend.Limit, want ...backend.Limit) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("Limits %s: got %+v, want %+v (ordered by key)", when, got, want)
	}
}

// wantLeaseIDs leases up to max jobs at now and requires exactly want, in
// that order.
func (f *fixture) wantLeaseIDs(now time.Time, max int, want ...string) []*backend.Lease {
	f.t.Helper()
	ls := f.lease(request(now, max))
	if got := leasedIDs(ls); !slices.Equal(got, want) {
		f.t.Fatalf("Lease of up to %d at %s: got %v, want %v", max, f.since(now), got, want)
	}
	return ls
}

// throttled ends l's attempt with OutcomeThrottled until retryAt.
func (f *fixture) throttled(now time.Time, l *backend.Lease, retryAt time.Time) {
	f.t.Helper()
	f.finishOK(now, backend.Ack{Lease: l.Ref(), Outcome: backend.OutcomeThrottled, Error: "429 Too Many Requests", RetryAt: retryAt})
}

// wantNext requires that Promote at now reported a next time after now and
// no later than by, when what happens.
func (f *fixture) wantNext(next, now, by time.Time, what string) {
	f.t.Helper()
	if next.IsZero() || !next.After(now) || next.After(by) {
		f.t.Errorf("Promote at %s: got next %v, want a time after it and no later than %s, when %s",
			f.since(now), next, f.since(by), what)
	}
}

// blockedLease starts a Lease of up to max at now that blocks, lets it
// reach its wait, calls act and returns what the Lease returned.
func (f *fixture) blockedLease(now time.Time, max int, act func()) leaseOutcome {
	f.t.Helper()
	req := request(now, max)
	req.Block = wakeBlock
	started, done := leaseAsync(f.ctx, f.b, req)
	<-started
	letItBlock()
	act()
	return await(f.t, done, wakeBlock+5*time.Second, "blocked Lease")
}

// wantWoken requires that a blocked Lease was woken at once by why and
// returned want.
func (f *fixture) wantWoken(r leaseOutcome, why string, want ...string) {
	f.t.Helper()
	if r.err != nil {
		f.t.Fatalf("Lease blocked until %s: got error %v, want nil", why, r.err)
	}
	if got := leasedIDs(r.leases); !slices.Equal(got, want) {
		f.t.Fatalf("Lease blocked until %s: got %v, want %v", why, got, want)
	}
	if r.took >= wakeBlock*2/3 {
		f.t.Errorf("Lease blocked until %s: returned after %v, want it woken at once, well before its Block of %v", why, r.took, wakeBlock)
	}
}
