package redis_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/jobrelay/engine/backend"
	"github.com/jobrelay/engine/backend/redis"
	"github.com/jobrelay/engine/internal/redistest"
)

func newJob(id, queue string) backend.NewJob {
	return backend.NewJob{ID: id, Type: "email", Queue: queue, Payload: []byte(`{"to":"a@example.com"}`),
		MaxRetries: 3, MaxStalls: 3, Timeout: time.Minute, ResultTTL: time.Hour, FailureTTL: time.Hour}
}

// faultClient is a client that gives up fast while Redis is down.
func faultClient(s *redistest.Server) *goredis.Client {
	o := s.Options()
	o.DialTimeout, o.ReadTimeout, o.WriteTimeout = 200*time.Millisecond, time.Second, time.Second
	o.MaxRetries = 1
	return goredis.NewClient(o)
}

// Redis killed with SIGKILL and restarted (appendonly, appendfsync always):
// every enqueue that was acknowledged is there afterwards, calls fail while
// Redis is down, and the same backend works again once it is back, its
// scripts loaded again (NOSCRIPT) also inside pipelines.
func TestRedisKilledAndRestartedKeepsAcknowledgedJobs(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t, redistest.Options{AppendOnly: true})
	b := open(t, faultClient(s), "kill")
	defer b.Close()
	ctx := context.Background()

	var (
		mu    sync.Mutex
		acked []string
		fails int
	)
	stop := make(chan struct{})
	done := make(chan struct{})
	killed := make(chan struct{})
	go func() {
		defer close(done)
		deadline := time.Now().Add(30 * time.Second)
		for n := 0; time.Now().Before(deadline); n++ {
			select {
			case <-stop:
				return
			default:
			}
			batch := []backend.NewJob{newJob(fmt.Sprintf("job-%05d-a", n), "default"),
				newJob(fmt.Sprintf("job-%05d-b", n), "other")}
			res, err := b.Enqueue(ctx, time.Now(), batch)
			mu.Lock()
			if err != nil {
				fails++
			} else {
				for _, r := range res {
					if r.Err == nil {
						acked = append(acked, r.ID)
					}
				}
			}
			enough := len(acked) >= 400
			mu.Unlock()
			if enough {
				select {
				case <-killed:
				default:
					close(killed)
				}
			}
		}
	}()

	<-killed
	s.Kill()
	if _, err := b.Enqueue(ctx, time.Now(), []backend.NewJob{newJob("while-down", "default")}); err == nil {
		t.Errorf("Enqueue while Redis is down: got no error, want one")
	}
	if _, err := b.Lease(ctx, backend.LeaseRequest{Queues: []string{"default"}, Max: 1, Now: time.Now(), TTL: time.Minute}); err == nil {
		t.Errorf("Lease while Redis is down: got no error, want one")
	}
	s.Restart()
	close(stop)
	<-done

	mu.Lock()
	defer mu.Unlock()
	if fails == 0 {
		t.Logf("the enqueuer saw no failed call (Redis came back between two of its calls)")
	}
	for _, id := range acked {
		if _, err := b.Job(ctx, id); err != nil {
			t.Fatalf("acknowledged job %s after the restart: got error %v, want it stored", id, err)
		}
	}

	// The same backend goes on: a pipelined batch over two queues, a
	// lease and a finish, all after the script cache was emptied.
	res, err := b.Enqueue(ctx, time.Now(), []backend.NewJob{newJob("after-a", "default"), newJob("after-b", "other")})
	if err != nil || res[0].Err != nil || res[1].Err != nil {
		t.Fatalf("Enqueue after the restart: got %v, %v, want it stored", err, res)
	}
	ls, err := b.Lease(ctx, backend.LeaseRequest{Queues: []string{"default", "other"}, Max: 3, Now: time.Now(), TTL: time.Minute})
	if err != nil || len(ls) != 3 {
		t.Fatalf("Lease after the restart: got %d leases and error %v, want 3", len(ls), err)
	}
	acks := make([]backend.Ack, len(ls))
	for i, l := range ls {
		acks[i] = backend.Ack{Lease: l.Ref(), Outcome: backend.OutcomeCompleted}
	}
	errs, err := b.Finish(ctx, time.Now(), acks)
	if err != nil {
		t.Fatalf("Finish after the restart: got error %v, want nil", err)
	}
	for i, e := range errs {
		if e != nil {
			t.Errorf("Finish %s after the restart: got error %v, want nil", acks[i].Lease.JobID, e)
		}
	}
	stats, err := b.Stats(ctx)
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	total := 0
	for _, st := range stats {
		for _, n := range st.Counts {
			total += n
		}
	}
	if want := len(acked) + 2; total < want {
		t.Errorf("Stats after the restart: got %d jobs counted, want at least %d", total, want)
	}
}

// A script cache emptied under a running backend (SCRIPT FLUSH, a failover)
// is loaded again by the calls that need it, in pipelines too.
func TestScriptCacheFlushedInsidePipelines(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t, redistest.Options{})
	b := open(t, goredis.NewClient(s.Options()), "flush")
	defer b.Close()
	ctx := context.Background()
	now := time.Now()
	if err := b.Client().ScriptFlush(ctx).Err(); err != nil {
		t.Fatalf("SCRIPT FLUSH: %v", err)
	}
	res, err := b.Enqueue(ctx, now, []backend.NewJob{newJob("a", "q1"), newJob("b", "q2"), newJob("c", "q3")})
	if err != nil {
		t.Fatalf("Enqueue over three queues after SCRIPT FLUSH: got error %v, want nil", err)
	}
	for _, r := range res {
		if r.Err != nil || r.State != backend.StateQueued {
			t.Fatalf("Enqueue after SCRIPT FLUSH: got %+v, want queued", r)
		}
	}
	if err := b.Client().ScriptFlush(ctx).Err(); err != nil {
		t.Fatalf("SCRIPT FLUSH: %v", err)
	}
	if _, _, err := b.Promote(ctx, now); err != nil {
		t.Fatalf("Promote over three queues after SCRIPT FLUSH: got error %v, want nil", err)
	}
}

// A worker whose lease expired and whose job was leased again cannot
// complete, fail, heartbeat or report progress on that job; the new
// attempt's result stands.
func TestStaleLeaseAfterReap(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t, redistest.Options{})
	b := open(t, goredis.NewClient(s.Options()), "stale")
	defer b.Close()
	ctx := context.Background()
	t0 := time.Now()
	if _, err := b.Enqueue(ctx, t0, []backend.NewJob{newJob("job", "default")}); err != nil {
		t.Fatal(err)
	}
	lease := func(now time.Time) *backend.Lease {
		t.Helper()
		ls, err := b.Lease(ctx, backend.LeaseRequest{Queues: []string{"default"}, Worker: "w", Max: 1, Now: now, TTL: time.Minute})
		if err != nil || len(ls) != 1 {
			t.Fatalf("Lease: got %d leases and error %v, want 1", len(ls), err)
		}
		return ls[0]
	}
	old := lease(t0)
	if n, err := b.Reap(ctx, t0.Add(2*time.Minute)); err != nil || n != 1 {
		t.Fatalf("Reap after the lease expired: got %d, %v, want 1", n, err)
	}
	fresh := lease(t0.Add(3 * time.Minute))
	if fresh.Job.Attempt != 2 || fresh.Job.Stalls != 1 {
		t.Errorf("new lease: got attempt %d and %d stalls, want 2 and 1", fresh.Job.Attempt, fresh.Job.Stalls)
	}

	now := t0.Add(4 * time.Minute)
	for _, o := range []backend.Outcome{backend.OutcomeCompleted, backend.OutcomeFailed, backend.OutcomeRetry} {
		errs, err := b.Finish(ctx, now, []backend.Ack{{Lease: old.Ref(), Outcome: o, Result: []byte(`"old"`), RetryAt: now}})
		if err != nil || !errors.Is(errs[0], backend.ErrLeaseLost) {
			t.Errorf("Finish (%s) with the old token: got %v, %v, want ErrLeaseLost", o, errs, err)
		}
	}
	if errs, err := b.Heartbeat(ctx, now, now.Add(time.Minute), []backend.LeaseRef{old.Ref()}); err != nil || !errors.Is(errs[0], backend.ErrLeaseLost) {
		t.Errorf("Heartbeat with the old token: got %v, %v, want ErrLeaseLost", errs, err)
	}
	if err := b.Progress(ctx, now, old.Ref(), 50, "late"); !errors.Is(err, backend.ErrLeaseLost) {
		t.Errorf("Progress with the old token: got %v, want ErrLeaseLost", err)
	}
	errs, err := b.Finish(ctx, now, []backend.Ack{{Lease: fresh.Ref(), Outcome: backend.OutcomeCompleted, Result: []byte(`"new"`)}})
	if err != nil || errs[0] != nil {
		t.Fatalf("Finish with the new token: got %v, %v, want nil", errs, err)
	}
	j, err := b.Job(ctx, "job")
	if err != nil {
		t.Fatal(err)
	}
	if j.State != backend.StateCompleted || string(j.Result) != `"new"` || j.Progress != 0 {
		t.Errorf("job: got state %q, result %s, progress %d, want completed, \"new\", 0", j.State, j.Result, j.Progress)
	}
}

// A job record that is corrupt or half-written (by hand, here) fails that
// job with an error that says so when Lease meets it; the other jobs lease
// as ever.
func TestCorruptRecordFailsThatJobOnly(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t, redistest.Options{})
	cases := []struct{ name, record string }{
		{"Garbage", "this is not a record"},
		{"CutShort", "s1:qt5:emailc19:17000000000000"},
		{"NoState", "t5:emailc19:1700000000000000000"},
		{"BadNumber", "s1:qt5:emailc19:1700000000000000000a3:one"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			prefix := nextPrefix()
			b := open(t, goredis.NewClient(s.Options()), prefix)
			defer b.Close()
			ctx := context.Background()
			now := time.Now()
			jobs := []backend.NewJob{newJob("good-1", "default"), newJob("bad", "default"), newJob("good-2", "default")}
			if _, err := b.Enqueue(ctx, now, jobs); err != nil {
				t.Fatal(err)
			}
			key := "{" + prefix + ":default}:jobs"
			if err := b.Client().HSet(ctx, key, "bad", c.record).Err(); err != nil {
				t.Fatal(err)
			}
			if _, err := b.Job(ctx, "bad"); !errors.Is(err, redis.ErrCorruptJob) {
				t.Errorf("Job of a corrupt record: got error %v, want ErrCorruptJob", err)
			}

			ls, err := b.Lease(ctx, backend.LeaseRequest{Queues: []string{"default"}, Max: 10, Now: now, TTL: time.Minute})
			if err != nil {
				t.Fatalf("Lease past a corrupt record: got error %v, want nil", err)
			}
			var got []string
			for _, l := range ls {
				got = append(got, l.Job.ID)
			}
			if strings.Join(got, ",") != "good-1,good-2" {
				t.Errorf("Lease past a corrupt record: got %v, want [good-1 good-2]", got)
			}
			j, err := b.Job(ctx, "bad")
			if err != nil {
				t.Fatalf("Job after Lease failed it: got error %v, want the failed job", err)
			}
			if j.State != backend.StateFailed || !strings.Contains(j.Error, "corrupt job record") {
				t.Errorf("corrupt job: got state %q error %q, want failed with an error that says the record is corrupt", j.State, j.Error)
			}
			if _, err := b.Enqueue(ctx, now, []backend.NewJob{newJob("after", "default")}); err != nil {
				t.Fatal(err)
			}
			ls, err = b.Lease(ctx, backend.LeaseRequest{Queues: []string{"default"}, Max: 10, Now: now, TTL: time.Minute})
			if err != nil || len(ls) != 1 || ls[0].Job.ID != "after" {
				t.Errorf("Lease after that: got %d leases and error %v, want job \"after\"", len(ls), err)
			}
		})
	}
}

// After jobs end and their TTL passes, Sweep brings the number of keys back
// to what it was before them: nothing grows without bound.
func TestSweepReturnsKeyCountToBaseline(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t, redistest.Options{})
	client := goredis.NewClient(s.Options())
	b := open(t, client, "sweep")
	defer b.Close()
	ctx := context.Background()
	t0 := time.Now()
	queues := []string{"default", "ai"}

	// runAll leases and ends every due job of queues at now, some
	// completed, some failed, some canceled while active.
	runAll := func(now time.Time) int {
		ran := 0
		for {
			ls, err := b.Lease(ctx, backend.LeaseRequest{Queues: queues, Max: 50, Now: now, TTL: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			if len(ls) == 0 {
				return ran
			}
			acks := make([]backend.Ack, len(ls))
			for i, l := range ls {
				acks[i] = backend.Ack{Lease: l.Ref(), Outcome: backend.OutcomeCompleted, Result: []byte(`"ok"`)}
				switch i % 3 {
				case 1:
					acks[i].Outcome, acks[i].Error = backend.OutcomeFailed, "boom"
				case 2:
					if _, err := b.Cancel(ctx, now, l.Job.ID, "no longer needed"); err != nil {
						t.Fatal(err)
					}
					acks[i].Outcome = backend.OutcomeCanceled
				}
			}
			if _, err := b.Finish(ctx, now, acks); err != nil {
				t.Fatal(err)
			}
			ran += len(ls)
		}
	}
	batch := func(tag string, n int, now time.Time) {
		var jobs []backend.NewJob
		for i := range n {
			j := newJob(fmt.Sprintf("%s-%03d", tag, i), queues[i%2])
			if i%5 == 4 {
				j.LimitKey = "llm"
			}
			switch i % 4 {
			case 1:
				j.UniqueKey = fmt.Sprintf("%s-key-%d", tag, i)
			case 2:
				j.RunAt = now.Add(time.Minute)
			case 3:
				j.DependsOn = []string{jobs[i-3].ID, jobs[i-2].ID} // in both queues
			}
			jobs = append(jobs, j)
		}
		res, err := b.Enqueue(ctx, now, jobs)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			if r.Err != nil {
				t.Fatalf("Enqueue: %v", r.Err)
			}
		}
	}
	cycle := func(tag string, n int, start time.Time) time.Time {
		batch(tag, n, start)
		ran := runAll(start)
		later := start.Add(2 * time.Minute)
		if _, _, err := b.Promote(ctx, later); err != nil {
			t.Fatal(err)
		}
		ran += runAll(later)
		end := later.Add(2 * time.Hour)
		if _, err := b.Sweep(ctx, end, 0); err != nil {
			t.Fatal(err)
		}
		if err := b.RegisterWorker(ctx, end, backend.WorkerInfo{ID: tag}, time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := b.RemoveWorker(ctx, tag); err != nil {
			t.Fatal(err)
		}
		return end
	}

	// A first cycle makes what stays for good (the queue registry, each
	// queue's counts and event stream, the limit and its rate window).
	if err := b.SetLimit(ctx, t0, backend.Limit{Key: "llm", Concurrency: 2, Rate: 20, Period: time.Second}); err != nil {
		t.Fatal(err)
	}
	end := cycle("warm", 20, t0)
	baseline, err := client.DBSize(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	cycle("load", 200, end)
	got, err := client.DBSize(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	if got != baseline {
		keys, _ := client.Keys(ctx, "*").Result()
		t.Errorf("keys after 200 jobs ended and were swept: got %d, want the baseline %d: %v", got, baseline, keys)
	}
	for _, k := range []string{"{sweep}:unique", "{sweep:default}:jobs", "{sweep:ai}:jobs"} {
		if n, _ := client.Exists(ctx, k).Result(); n != 0 {
			t.Errorf("key %s after the sweep: got it, want it gone", k)
		}
	}
}

// An idle Lease blocks on a connection of its own: a client whose pool has a
// single connection still serves other calls while a Lease waits.
func TestBlockedLeaseLeavesThePoolFree(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t, redistest.Options{})
	o := s.Options()
	o.PoolSize = 1
	b := open(t, goredis.NewClient(o), "pool")
	defer b.Close()
	ctx := context.Background()
	done := make(chan error, 1)
	go func() {
		_, err := b.Lease(ctx, backend.LeaseRequest{Queues: []string{"empty"}, Max: 1, Now: time.Now(),
			TTL: time.Minute, Block: 3 * time.Second})
		done <- err
	}()
	time.Sleep(100 * time.Millisecond) // let it reach its wait
	begin := time.Now()
	if _, err := b.Enqueue(ctx, time.Now(), []backend.NewJob{newJob("x", "default")}); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(begin); took > time.Second {
		t.Errorf("Enqueue while a Lease blocks: took %v, want it not to wait for the Lease", took)
	}
	if err := <-done; err != nil {
		t.Errorf("blocked Lease: got error %v, want nil", err)
	}
}

func TestNewFailsClearlyWhenRedisIsUnreachable(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t, redistest.Options{})
	addr := s.Addr()
	s.Kill()
	c := goredis.NewClient(&goredis.Options{Addr: addr, DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
	defer c.Close()
	_, err := redis.New(context.Background(), c, redis.Options{})
	if err == nil || !strings.Contains(err.Error(), "cannot reach Redis at "+addr) {
		t.Fatalf("New on a Redis that is down: got error %v, want one that says Redis at %s cannot be reached", err, addr)
	}
}
