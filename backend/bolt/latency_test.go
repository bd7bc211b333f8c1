package bolt

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jobrelay/engine/backend"
)

// BenchmarkIdleLatency measures, on an idle backend with fsync on, the
// time from an Enqueue call to the return of the Lease that was waiting for
// it, one job at a time, as the engine's dispatcher and acker do.
func BenchmarkIdleLatency(b *testing.B) {
	be := openAt(b, b.TempDir()+"/jobs.db", Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	leased := make(chan time.Time, 1)
	go func() {
		for ctx.Err() == nil {
			ls, err := be.Lease(ctx, backend.LeaseRequest{Queues: []string{"default"}, Worker: "w", Max: 32, Now: time.Now(), TTL: time.Minute, Block: time.Second})
			if err != nil {
				return
			}
			if len(ls) == 0 {
				continue
			}
			leased <- time.Now()
			var acks []backend.Ack
			for _, l := range ls {
				acks = append(acks, backend.Ack{Lease: l.Ref(), Outcome: backend.OutcomeCompleted})
			}
			if _, err := be.Finish(ctx, time.Now(), acks); err != nil {
				return
			}
		}
	}()
	var lat []time.Duration
	for i := range b.N {
		time.Sleep(2 * time.Millisecond)
		start := time.Now()
		if _, err := be.Enqueue(ctx, time.Now(), []backend.NewJob{newJob(fmt.Sprintf("j%08d", i))}); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, (<-leased).Sub(start))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*9/10].Microseconds()), "p90-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
