package engine

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	redisbackend "github.com/jobrelay/engine/backend/redis"
	"github.com/jobrelay/engine/internal/redistest"
	goredis "github.com/redis/go-redis/v9"
)

// Environment of a re-executed worker process.
const (
	workerProcessEnv = "JOBRELAY_TEST_WORKER_ADDR"
	workerPrefixEnv  = "JOBRELAY_TEST_WORKER_PREFIX"
)

// runWorkerProcess is the main of a worker process in the multi-process
// tests: an engine on the given Redis whose handler records every start in a
// Redis list, as "jobID pid", and takes a few milliseconds.
func runWorkerProcess() int {
	addr, prefix := os.Getenv(workerProcessEnv), os.Getenv(workerPrefixEnv)
	client := goredis.NewClient(&goredis.Options{Addr: addr, PoolSize: 32})
	defer client.Close()
	e, err := New(WithRedisOptions(client, redisbackend.Options{Prefix: prefix}),
		WithConcurrency(8), WithLease(time.Second), WithShutdownTimeout(time.Second))
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		return 1
	}
	defer e.Close()
	pid := strconv.Itoa(os.Getpid())
	e.HandleFunc("work", func(ctx context.Context, job *Job) error {
		if err := client.RPush(ctx, prefix+":starts", job.ID+" "+pid).Err(); err != nil {
			return err
		}
		select {
		case <-time.After(time.Duration(5+rand.IntN(20)) * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
		return nil
	})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := e.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		return 1
	}
	return 0
}

func startWorkerProcess(t *testing.T, addr, prefix string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), workerProcessEnv+"="+addr, workerPrefixEnv+"="+prefix)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start worker process: %v", err)
	}
	return cmd
}

// TestRedisWorkerProcessesKilledLoseNoJob runs three worker processes on one
// redis-server, kills one with SIGKILL several times while they work and
// starts a replacement each time, and checks that every job completes and
// that only jobs that were running in a killed process ran twice.
func TestRedisWorkerProcessesKilledLoseNoJob(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test; skipped with -short")
	}
	srv := redistest.Start(t, redistest.Options{})
	const prefix, jobs, kills = "kill9", 2000, 4
	client := srv.Client()

	var completed, stalled atomic.Int64
	progress := make(chan int64, jobs)
	api, err := New(WithRedisOptions(client, redisbackend.Options{Prefix: prefix}), WithListener(Listener{
		OnCompleted: func(Event) { progress <- completed.Add(1) },
		OnStalled:   func(Event) { stalled.Add(1) },
	}))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer api.Close()

	ctx := context.Background()
	specs := make([]JobSpec, jobs)
	for i := range specs {
		specs[i] = JobSpec{Type: "work", Payload: i}
	}
	res, err := api.EnqueueMany(ctx, specs)
	if err != nil {
		t.Fatalf("EnqueueMany: %v", err)
	}
	ids := make(map[string]bool, jobs)
	for _, r := range res {
		ids[r.ID] = true
	}

	workers := []*exec.Cmd{}
	for range 3 {
		workers = append(workers, startWorkerProcess(t, srv.Addr(), prefix))
	}
	killed := map[string]bool{}
	deadline := time.After(3 * time.Minute)
	waitFor := func(n int64) {
		for {
			select {
			case c := <-progress:
				if c >= n {
					return
				}
			case <-deadline:
				t.Fatalf("got %d of %d jobs completed before the deadline", completed.Load(), jobs)
			}
		}
	}
	for k := range kills {
		waitFor(int64((k + 1) * jobs / (kills + 2)))
		victim := workers[k%len(workers)]
		killed[strconv.Itoa(victim.Process.Pid)] = true
		victim.Process.Kill()
		victim.Wait()
		workers[k%len(workers)] = startWorkerProcess(t, srv.Addr(), prefix)
	}
	waitFor(jobs)
	for _, w := range workers {
		w.Process.Signal(syscall.SIGTERM)
		w.Wait()
	}

	stats, err := api.Stats(ctx)
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	for _, s := range stats {
		if s.Queue == DefaultQueue && s.Completed != jobs {
			t.Fatalf("got %d completed in stats, want %d", s.Completed, jobs)
		}
	}
	starts, err := client.LRange(ctx, prefix+":starts", 0, -1).Result()
	if err != nil {
		t.Fatalf("read starts: %v", err)
	}
	byJob := map[string][]string{}
	for _, s := range starts {
		id, pid, _ := strings.Cut(s, " ")
		byJob[id] = append(byJob[id], pid)
	}
	twice := 0
	for id := range ids {
		pids := byJob[id]
		if len(pids) == 0 {
			t.Errorf("job %s never ran", id)
		}
		for _, pid := range pids[:max(len(pids)-1, 0)] {
			// Every start but the last must have been cut short by a kill.
			if !killed[pid] {
				t.Errorf("job %s ran more than once (%v) though process %s was not killed", id, pids, pid)
			}
		}
		if len(pids) > 1 {
			twice++
		}
	}
	if stalled.Load() == 0 || twice == 0 {
		t.Errorf("got %d stalled events and %d jobs run again, want some after %d kills", stalled.Load(), twice, kills)
	}
	t.Logf("%d jobs, %d kills: %d stalled events, %d jobs ran again", jobs, kills, stalled.Load(), twice)
}

// TestRedisCrashLosesNoAcknowledgedEnqueue kills redis-server with SIGKILL
// while an engine enqueues and works, restarts it with appendfsync always,
// and checks that every enqueue that returned without error completes,
// without restarting the engine.
func TestRedisCrashLosesNoAcknowledgedEnqueue(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{AppendOnly: true})
	client := goredis.NewClient(&goredis.Options{Addr: srv.Addr(), DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
	defer client.Close()
	e, err := New(WithRedisOptions(client, redisbackend.Options{Prefix: "crash"}), WithConcurrency(4), WithLease(2*time.Second))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer e.Close()
	e.HandleFunc("work", func(ctx context.Context, job *Job) error { return nil })
	start(t, e)

	var mu sync.Mutex
	var acked []string
	var failed atomic.Int64
	stop := make(chan struct{})
	enqueued := make(chan int, 1000)
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			id, err := e.Enqueue(ctx, "work", i)
			cancel()
			if err != nil {
				failed.Add(1)
				time.Sleep(10 * time.Millisecond) // the enqueuer backs off while Redis is down
				continue
			}
			mu.Lock()
			acked = append(acked, id)
			n := len(acked)
			mu.Unlock()
			select {
			case enqueued <- n:
			default:
			}
		}
	})
	waitCount := func(n int) {
		for c := range enqueued {
			if c >= n {
				return
			}
		}
	}
	waitCount(200)
	srv.Kill()
	srv.Restart()
	mu.Lock()
	base := len(acked)
	mu.Unlock()
	waitCount(base + 200)
	close(stop)
	wg.Wait()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	mu.Lock()
	defer mu.Unlock()
	for _, id := range acked {
		info, err := e.Wait(ctx, id)
		if err != nil {
			t.Fatalf("acknowledged job %s: %v", id, err)
		}
		if info.State != StateCompleted {
			t.Fatalf("acknowledged job %s ended %s, want completed", id, info.State)
		}
	}
	t.Logf("%d acknowledged enqueues all completed; %d enqueues failed while Redis was down", len(acked), failed.Load())
}

// TestRedisUnreachableFailsNew checks that New says clearly when Redis
// cannot be reached.
func TestRedisUnreachableFailsNew(t *testing.T) {
	client := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:1", DialTimeout: 100 * time.Millisecond, MaxRetries: -1})
	defer client.Close()
	_, err := New(WithRedis(client))
	if err == nil {
		t.Fatal("got nil error for an unreachable Redis")
	}
	var netErr interface{ Timeout() bool }
	if !strings.Contains(err.Error(), "redis") && !errors.As(err, &netErr) {
		t.Fatalf("got %v, want an error that names Redis", err)
	}
}
