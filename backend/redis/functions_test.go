package redis_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	goredis "github.com/redis/go-redis/v9"

	"github.com/jobrelay/engine/backend"
	"github.com/jobrelay/engine/internal/redistest"
)

// libraries returns the names of the jobrelay libraries loaded in Redis.
func libraries(t *testing.T, c goredis.UniversalClient) []string {
	t.Helper()
	libs, err := c.FunctionList(context.Background(), goredis.FunctionListQuery{}).Result()
	if err != nil {
		t.Fatalf("FUNCTION LIST: %v", err)
	}
	var out []string
	for _, l := range libs {
		if strings.HasPrefix(l.Name, "jobrelay_") {
			out = append(out, l.Name)
		}
	}
	return out
}

// On Redis 7 the scripts run as a Functions library; a Redis that lost it
// (FUNCTION FLUSH here; a restart without persistence, a new master) gets it
// again on the next call, single calls and pipelines alike, and no call
// fails or runs twice.
func TestFunctionsLoadedAgainWhenMissing(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t, redistest.Options{})
	b := open(t, goredis.NewClient(s.Options()), "fn")
	defer b.Close()
	ctx := context.Background()
	admin := goredis.NewClient(s.Options())
	defer admin.Close()

	if got := libraries(t, admin); len(got) != 1 {
		t.Fatalf("after New: got libraries %v, want one jobrelay library", got)
	}
	enqueue := func(jobs ...backend.NewJob) {
		t.Helper()
		res, err := b.Enqueue(ctx, time.Now(), jobs)
		if err != nil {
			t.Fatalf("Enqueue: got error %v, want nil", err)
		}
		for _, r := range res {
			if r.Err != nil {
				t.Fatalf("Enqueue: got job error %v, want nil", r.Err)
			}
		}
	}
	enqueue(newJob("a1", "default"))

	if err := admin.FunctionFlush(ctx).Err(); err != nil {
		t.Fatalf("FUNCTION FLUSH: %v", err)
	}
	enqueue(newJob("a2", "default"))
	if got := libraries(t, admin); len(got) != 1 {
		t.Fatalf("after a call that found the library missing: got libraries %v, want it loaded again", got)
	}

	// Two queues are two calls in one pipeline.
	if err := admin.FunctionFlush(ctx).Err(); err != nil {
		t.Fatalf("FUNCTION FLUSH: %v", err)
	}
	enqueue(newJob("b1", "default"), newJob("b2", "other"))

	st, err := b.Stats(ctx)
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	want := map[string]int{"default": 3, "other": 1}
	for _, s := range st {
		if s.Counts[backend.StateQueued] != want[s.Queue] {
			t.Errorf("queue %s: got %d queued, want %d (each enqueue stored once)", s.Queue, s.Counts[backend.StateQueued], want[s.Queue])
		}
	}
}

// Where Redis has no Functions (miniredis here, Redis 6.2) the scripts run
// with EVALSHA, and a flushed script cache is filled again.
func TestScriptsWithoutFunctions(t *testing.T) {
	t.Parallel()
	m := miniredis.RunT(t)
	b := open(t, goredis.NewClient(&goredis.Options{Addr: m.Addr()}), "sc")
	defer b.Close()
	ctx := context.Background()
	admin := goredis.NewClient(&goredis.Options{Addr: m.Addr()})
	defer admin.Close()
	if err := admin.ScriptFlush(ctx).Err(); err != nil {
		t.Fatalf("SCRIPT FLUSH: %v", err)
	}
	res, err := b.Enqueue(ctx, time.Now(), []backend.NewJob{newJob("a", "default"), newJob("b", "other")})
	if err != nil || res[0].Err != nil || res[1].Err != nil {
		t.Fatalf("Enqueue after SCRIPT FLUSH: got %v and error %v, want both stored", res, err)
	}
	ls, err := b.Lease(ctx, backend.LeaseRequest{Queues: []string{"default", "other"}, Max: 2, Now: time.Now(), TTL: time.Minute})
	if err != nil || len(ls) != 2 {
		t.Fatalf("Lease: got %d leases and error %v, want 2", len(ls), err)
	}
}

// A new backend deletes the libraries of other jobrelay builds, so that a
// Redis that outlives many deployments keeps one library per build in use;
// libraries of others stay.
func TestNewDeletesOtherBuildsLibraries(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t, redistest.Options{})
	admin := goredis.NewClient(s.Options())
	defer admin.Close()
	ctx := context.Background()
	for _, lib := range []string{"jobrelay_000000000000", "someone_else"} {
		code := "#!lua name=" + lib + "\nredis.register_function('" + lib + "_f', function() return 1 end)"
		if err := admin.FunctionLoad(ctx, code).Err(); err != nil {
			t.Fatalf("FUNCTION LOAD %s: %v", lib, err)
		}
	}
	b := open(t, goredis.NewClient(s.Options()), "prune")
	defer b.Close()
	if got := libraries(t, admin); len(got) != 1 || got[0] == "jobrelay_000000000000" {
		t.Errorf("after New: got jobrelay libraries %v, want this build's alone", got)
	}
	libs, err := admin.FunctionList(ctx, goredis.FunctionListQuery{LibraryNamePattern: "someone_else"}).Result()
	if err != nil || len(libs) != 1 {
		t.Errorf("after New: got %d libraries named someone_else and error %v, want it kept", len(libs), err)
	}
}

// A Redis out of memory (maxmemory reached, noeviction) refuses writes, but
// Sweep, which frees memory, still runs, and reads still answer.
func TestSweepRunsWhenRedisIsOutOfMemory(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t, redistest.Options{})
	b := open(t, goredis.NewClient(s.Options()), "oom")
	defer b.Close()
	admin := goredis.NewClient(s.Options())
	defer admin.Close()
	ctx := context.Background()
	now := time.Now()
	if _, err := b.Enqueue(ctx, now, []backend.NewJob{newJob("done", "default"), newJob("waiting", "default")}); err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	ls, err := b.Lease(ctx, backend.LeaseRequest{Queues: []string{"default"}, Max: 1, Now: now, TTL: time.Minute})
	if err != nil || len(ls) != 1 {
		t.Fatalf("Lease: got %d leases and error %v, want 1", len(ls), err)
	}
	if _, err := b.Finish(ctx, now, []backend.Ack{{Lease: ls[0].Ref(), Outcome: backend.OutcomeCompleted}}); err != nil {
		t.Fatalf("Finish: %v", err)
	}

	if err := admin.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err(); err != nil {
		t.Fatalf("CONFIG SET: %v", err)
	}
	if err := admin.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
		t.Fatalf("CONFIG SET: %v", err)
	}
	defer admin.ConfigSet(ctx, "maxmemory", "0")
	if _, err := b.Enqueue(ctx, now, []backend.NewJob{newJob("more", "default")}); err == nil {
		t.Errorf("Enqueue with Redis out of memory: got no error, want Redis's OOM error")
	}
	n, err := b.Sweep(ctx, now.Add(2*time.Hour), 0)
	if err != nil || n != 1 {
		t.Errorf("Sweep with Redis out of memory: got %d deleted and error %v, want the completed job deleted", n, err)
	}
	if _, err := b.Job(ctx, "waiting"); err != nil {
		t.Errorf("Job with Redis out of memory: got error %v, want the job", err)
	}
}
