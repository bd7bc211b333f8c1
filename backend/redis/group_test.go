package redis_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/jobrelay/engine/backend"
	"github.com/jobrelay/engine/internal/redistest"
)

// scriptCalls returns how many FCALL and EVALSHA calls Redis has served.
func scriptCalls(t *testing.T, c *goredis.Client) int {
	t.Helper()
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatalf("INFO commandstats: %v", err)
	}
	n := 0
	for _, line := range strings.Split(info, "\n") {
		if !strings.HasPrefix(line, "cmdstat_fcall:") && !strings.HasPrefix(line, "cmdstat_evalsha:") {
			continue
		}
		_, rest, _ := strings.Cut(line, "calls=")
		v, _, _ := strings.Cut(rest, ",")
		k, _ := strconv.Atoi(v)
		n += k
	}
	return n
}

// Many goroutines that each enqueue one job at a time share script calls,
// and each still gets its own answer: its job stored, or ErrDuplicateJob for
// an ID another caller took.
func TestSingleEnqueuesShareCalls(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t, redistest.Options{})
	o := s.Options()
	o.PoolSize = 64
	b := open(t, goredis.NewClient(o), "group")
	defer b.Close()
	admin := goredis.NewClient(s.Options())
	defer admin.Close()
	ctx := context.Background()

	const goroutines, each = 16, 50
	before := scriptCalls(t, admin)
	var wg sync.WaitGroup
	errs := make(chan error, goroutines*each*2)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				id := fmt.Sprintf("job-%02d-%03d", g, i)
				q := []string{"default", "other"}[i%2]
				res, err := b.Enqueue(ctx, time.Now(), []backend.NewJob{newJob(id, q)})
				if err != nil || len(res) != 1 || res[0].Err != nil || res[0].ID != id || res[0].State != backend.StateQueued {
					errs <- fmt.Errorf("Enqueue %s: got %+v and error %v, want it queued", id, res, err)
				}
				// Every job once more, by another goroutine's call: a duplicate.
				res, err = b.Enqueue(ctx, time.Now(), []backend.NewJob{newJob(id, q)})
				if err != nil || len(res) != 1 || !errors.Is(res[0].Err, backend.ErrDuplicateJob) {
					errs <- fmt.Errorf("Enqueue %s again: got %+v and error %v, want ErrDuplicateJob", id, res, err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	calls := scriptCalls(t, admin) - before
	st, err := b.Stats(ctx)
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	total := 0
	for _, q := range st {
		total += q.Counts[backend.StateQueued]
	}
	if total != goroutines*each {
		t.Errorf("got %d jobs queued, want %d", total, goroutines*each)
	}
	t.Logf("%d single enqueues took %d script calls", 2*goroutines*each, calls)
	if calls >= 2*goroutines*each {
		t.Errorf("%d single enqueues from %d goroutines took %d script calls, want fewer (grouped)", 2*goroutines*each, goroutines, calls)
	}
}

// A caller whose context ends while its job waits for the call in flight
// gets the context's error at once; the other callers are not disturbed.
func TestSingleEnqueueContextEnds(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t, redistest.Options{})
	b := open(t, goredis.NewClient(s.Options()), "groupctx")
	defer b.Close()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				ctx, cancel := context.WithCancel(context.Background())
				if i%3 == 0 {
					cancel()
				}
				id := fmt.Sprintf("c-%d-%d", g, i)
				res, err := b.Enqueue(ctx, time.Now(), []backend.NewJob{newJob(id, "default")})
				cancel()
				if err != nil && !errors.Is(err, context.Canceled) {
					t.Errorf("Enqueue %s: got error %v, want nil or context.Canceled", id, err)
				}
				if err == nil && (len(res) != 1 || res[0].Err != nil) {
					t.Errorf("Enqueue %s: got %+v, want it stored", id, res)
				}
			}
		}()
	}
	wg.Wait()
}
