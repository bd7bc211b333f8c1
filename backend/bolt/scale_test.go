package bolt

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jobrelay/engine/backend"
)

// BenchmarkScale runs jobs end to end, as the engine does at concurrency 32
// (one dispatcher leasing for idle workers, one acker finishing in
// batches) while 8 producers enqueue one job per call, with a backlog of
// 1,000 or 1,000,000 queued jobs in the same queue. It is the backend half
// of the side-by-side program's scale rows; the million-job file is built
// once and kept in the temporary folder (set JOBRELAY_SCALE_DIR to choose
// where), and each run works on a copy. Besides jobs/s it reports CPU time,
// page faults and context switches per job, and pages written per commit.
//
//	go test -run '^$' -bench Scale -benchtime 20000x ./backend/bolt/
func BenchmarkScale(b *testing.B) {
	for _, queued := range []int{1000, 1_000_000} {
		b.Run(fmt.Sprintf("queued=%d", queued), func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "jobs.db")
			copyFile(b, scaleSeed(b, queued), path)
			be := openAt(b, path, Options{})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var done atomic.Int64
			all := make(chan struct{})
			stop := runEngineShape(ctx, b, be, 32, int64(b.N), &done, all)
			ru0 := rusage(b)
			tx0 := be.db.Stats().TxStats
			c0, a0, w0 := be.stats.commits.Load(), be.stats.applyNs.Load(), be.stats.writeNs.Load()
			b.ResetTimer()
			var wg sync.WaitGroup
			const producers = 8
			var next atomic.Int64
			for range producers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for next.Add(1) <= int64(b.N) {
						if _, err := be.Enqueue(ctx, time.Now(), []backend.NewJob{scaleJob()}); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			enqueued := b.Elapsed()
			<-all
			b.StopTimer()
			ru1 := rusage(b)
			tx1 := be.db.Stats().TxStats
			commits := float64(max(be.stats.commits.Load()-c0, 1))
			n := float64(b.N)
			b.ReportMetric(n/b.Elapsed().Seconds(), "jobs/s")
			b.ReportMetric(n/enqueued.Seconds(), "enq/s")
			b.ReportMetric(float64(done.Load())/b.Elapsed().Seconds(), "done/s")
			b.ReportMetric(float64(be.stats.applyNs.Load()-a0)/1e3/commits, "µs-apply/commit")
			b.ReportMetric(float64(be.stats.writeNs.Load()-w0)/1e3/commits, "µs-write/commit")
			cpu := time.Duration(ru1.Utime.Nano()+ru1.Stime.Nano()-ru0.Utime.Nano()-ru0.Stime.Nano()) / time.Duration(b.N)
			b.ReportMetric(float64(cpu.Microseconds()), "µs-CPU/job")
			b.ReportMetric(float64(ru1.Minflt+ru1.Majflt-ru0.Minflt-ru0.Majflt)/n, "faults/job")
			b.ReportMetric(float64(ru1.Nvcsw+ru1.Nivcsw-ru0.Nvcsw-ru0.Nivcsw)/n, "ctxsw/job")
			b.ReportMetric(float64(tx1.GetWrite()-tx0.GetWrite())/commits, "pages/commit")
			b.ReportMetric(n/commits, "jobs/commit")
			cancel()
			stop()
		})
	}
}

// runEngineShape starts the dispatcher, workers and acker of
// BenchmarkEngineShape; all is closed once total jobs are finished. stop
// waits for them to end after ctx is canceled.
func runEngineShape(ctx context.Context, b *testing.B, be *Backend, concurrency int, total int64, done *atomic.Int64, all chan struct{}) (stop func()) {
	slots := make(chan struct{}, concurrency)
	for range concurrency {
		slots <- struct{}{}
	}
	work := make(chan *backend.Lease, concurrency)
	acks := make(chan backend.Ack, concurrency)
	var wg sync.WaitGroup
	wg.Add(2 + concurrency)
	go func() { // dispatcher
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case <-slots:
			}
			free := 1
		fill:
			for free < concurrency {
				select {
				case <-slots:
					free++
				default:
					break fill
				}
			}
			ls, err := be.Lease(ctx, backend.LeaseRequest{Queues: []string{"default"}, Worker: "w", Max: free,
				Now: time.Now(), TTL: time.Minute, Block: time.Second})
			if err != nil && ctx.Err() == nil {
				b.Error(err)
			}
			for range free - len(ls) {
				slots <- struct{}{}
			}
			for _, l := range ls {
				select {
				case work <- l:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	for range concurrency { // workers
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case l := <-work:
					select {
					case acks <- backend.Ack{Lease: l.Ref(), Outcome: backend.OutcomeCompleted, Result: []byte(`{"ok":true}`)}:
					case <-ctx.Done():
						return
					}
					slots <- struct{}{}
				}
			}
		}()
	}
	go func() { // acker
		defer wg.Done()
		batch := make([]backend.Ack, 0, 256)
		for {
			select {
			case <-ctx.Done():
				return
			case a := <-acks:
				batch = append(batch[:0], a)
			}
		more:
			for len(batch) < cap(batch) {
				select {
				case a := <-acks:
					batch = append(batch, a)
				default:
					break more
				}
			}
			if _, err := be.Finish(context.Background(), time.Now(), batch); err != nil {
				if ctx.Err() == nil {
					b.Error(err)
				}
				return
			}
			if n := done.Add(int64(len(batch))); n >= total && n-int64(len(batch)) < total {
				close(all)
			}
		}
	}()
	return wg.Wait
}

var scaleSeq atomic.Uint64

// scaleJob is a job as the engine enqueues it: a time-ordered ID of 26
// characters, a 100-byte JSON payload and the engine's defaults.
func scaleJob() backend.NewJob {
	id := fmt.Sprintf("%016x%010d", time.Now().UnixNano(), scaleSeq.Add(1)%1e10)
	return backend.NewJob{ID: id, Type: "bench", Queue: "default",
		Payload:    []byte(`{"meeting_id":"m-0123456789","language":"en","text":"lorem ipsum dolor sit amet, consectetur adipis"}`),
		MaxRetries: 3, MaxStalls: 3, ResultTTL: 24 * time.Hour, FailureTTL: 7 * 24 * time.Hour}
}

// scaleSeed returns a database file with queued jobs in the default queue,
// built on first use and kept for later runs (it is never opened for
// writing again: runs work on a copy).
func scaleSeed(b *testing.B, queued int) string {
	b.Helper()
	dir := os.Getenv("JOBRELAY_SCALE_DIR")
	if dir == "" {
		dir = os.TempDir()
	}
	path := filepath.Join(dir, "jobrelay-bolt-scale-v"+strconv.Itoa(FormatVersion)+"-"+strconv.Itoa(queued)+".db")
	if _, err := os.Stat(path); err == nil {
		return path
	}
	tmp := path + ".tmp"
	_ = os.Remove(tmp)
	be, err := Open(tmp, Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	start := time.Now()
	for done := 0; done < queued; {
		batch := make([]backend.NewJob, min(1000, queued-done))
		for i := range batch {
			batch[i] = scaleJob()
		}
		if _, err := be.Enqueue(ctx, time.Now(), batch); err != nil {
			b.Fatal(err)
		}
		done += len(batch)
	}
	if err := be.Close(); err != nil {
		b.Fatal(err)
	}
	for _, p := range journalPaths(tmp) {
		_ = os.Remove(p)
	}
	if err := os.Rename(tmp, path); err != nil {
		b.Fatal(err)
	}
	b.Logf("built %s (%d jobs) in %v", path, queued, time.Since(start).Round(time.Millisecond))
	return path
}

func copyFile(b *testing.B, src, dst string) {
	b.Helper()
	in, err := os.Open(src)
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		b.Fatal(err)
	}
	if err := out.Close(); err != nil {
		b.Fatal(err)
	}
}

func rusage(b *testing.B) syscall.Rusage {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return ru
}
