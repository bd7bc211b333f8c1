package backendtest

import (
	"slices"
	"testing"
	"time"

	"github.com/jobrelay/engine/backend"
)

func testStats(t *testing.T, h Harness) {
	t.Run("CountsPerQueue", func(t *testing.T) {
		f := newFixture(t, h)
		f.add(inQueue("b"))
		f.add(inQueue("a"))
		f.add(inQueue("a"))
		f.add(inQueue("a"), runAt(f.at(time.Hour)))
		f.add(inQueue("a"), dependsOn(f.add(inQueue("c"))))
		run := func(end func(l *backend.Lease)) {
			f.add(inQueue("work"))
			end(f.leaseOne(f.t0, "work"))
		}
		run(func(l *backend.Lease) {}) // stays active
		run(func(l *backend.Lease) { f.retry(f.t0, l, "boom", f.at(time.Hour)) })
		run(func(l *backend.Lease) { f.complete(f.t0, l, `"ok"`) })
		run(func(l *backend.Lease) { f.fail(f.t0, l, "no") })
		f.cancelOK(f.t0, f.add(inQueue("work")), "no", backend.StateCanceled)

		list, err := f.b.Stats(f.ctx)
		if err != nil {
			t.Fatalf("Stats: got error %v, want nil", err)
		}
		var names []string
		for _, s := range list {
			names = append(names, s.Queue)
		}
		if want := []string{"a", "b", "c", "work"}; !slices.Equal(names, want) {
			t.Fatalf("Stats queues: got %v, want %v (sorted by name)", names, want)
		}
		want := map[string]map[backend.State]int{
			"a":    {backend.StateQueued: 2, backend.StateScheduled: 1, backend.StateDeferred: 1},
			"b":    {backend.StateQueued: 1},
			"c":    {backend.StateQueued: 1},
			"work": {backend.StateActive: 1, backend.StateRetrying: 1, backend.StateCompleted: 1, backend.StateFailed: 1, backend.StateCanceled: 1},
		}
		for _, s := range list {
			for _, st := range backend.States {
				if got := s.Counts[st]; got != want[s.Queue][st] {
					t.Errorf("Stats %s: got %d %s, want %d", s.Queue, got, st, want[s.Queue][st])
				}
			}
			if s.Paused {
				t.Errorf("Stats %s: got paused, want not", s.Queue)
			}
		}
		w := f.stats()["work"]
		if w.Processed != 1 || w.Failed != 2 {
			t.Errorf("Stats work: got processed %d failed %d, want 1 2", w.Processed, w.Failed)
		}
	})

	t.Run("PausedQueueListed", func(t *testing.T) {
		f := newFixture(t, h)
		if err := f.b.Pause(f.ctx, f.t0, "quiet"); err != nil {
			t.Fatalf("Pause: got error %v, want nil", err)
		}
		s, ok := f.stats()["quiet"]
		if !ok || !s.Paused {
			t.Fatalf("Stats of a paused queue that never held a job: got %+v (listed %v), want it listed as paused", s, ok)
		}
	})

	t.Run("Empty", func(t *testing.T) {
		f := newFixture(t, h)
		if got := f.stats(); len(got) != 0 {
			t.Errorf("Stats of a fresh backend: got %d queues, want none", len(got))
		}
	})
}
