package backendtest

import (
	"slices"
	"testing"
	"time"

	"github.com/jobrelay/engine/backend"
)

func (f *fixture) workers(now time.Time) map[string]backend.WorkerInfo {
	f.t.Helper()
	list, err := f.b.Workers(f.ctx, now)
	if err != nil {
		f.t.Fatalf("Workers: got error %v, want nil", err)
	}
	m := make(map[string]backend.WorkerInfo, len(list))
	for _, w := range list {
		m[w.ID] = w
	}
	return m
}

func (f *fixture) register(now time.Time, w backend.WorkerInfo, ttl time.Duration) {
	f.t.Helper()
	if err := f.b.RegisterWorker(f.ctx, now, w, ttl); err != nil {
		f.t.Fatalf("RegisterWorker %s: got error %v, want nil", w.ID, err)
	}
}

func testWorkers(t *testing.T, h Harness) {
	info := func(f *fixture, id string) backend.WorkerInfo {
		return backend.WorkerInfo{ID: id, Name: "worker-" + id, Host: "host-1", PID: 4242,
			Queues: []string{"ai", "default"}, Concurrency: 20, StartedAt: f.t0}
	}

	t.Run("RoundTrip", func(t *testing.T) {
		f := newFixture(t, h)
		w := info(f, "w1")
		f.register(f.t0, w, 30*time.Second)
		f.register(f.t0, info(f, "w2"), 30*time.Second)
		got := f.workers(f.at(time.Second))
		if len(got) != 2 {
			t.Fatalf("Workers: got %d entries, want 2", len(got))
		}
		g := got["w1"]
		if g.Name != w.Name || g.Host != w.Host || g.PID != w.PID || g.Concurrency != w.Concurrency || !slices.Equal(g.Queues, w.Queues) {
			t.Errorf("Workers: got %+v, want %+v", g, w)
		}
		wantTime(t, "StartedAt", g.StartedAt, f.t0)
		wantTime(t, "LastHeartbeat", g.LastHeartbeat, f.t0)
		wantTime(t, "ExpiresAt", g.ExpiresAt, f.at(30*time.Second))
	})

	t.Run("RefreshAndExpiry", func(t *testing.T) {
		f := newFixture(t, h)
		f.register(f.t0, info(f, "w1"), 30*time.Second)
		f.register(f.t0, info(f, "w2"), 30*time.Second)
		f.register(f.at(20*time.Second), info(f, "w1"), 30*time.Second)
		got := f.workers(f.at(21 * time.Second))
		wantTime(t, "LastHeartbeat after a refresh", got["w1"].LastHeartbeat, f.at(20*time.Second))
		wantTime(t, "ExpiresAt after a refresh", got["w1"].ExpiresAt, f.at(50*time.Second))

		got = f.workers(f.at(40 * time.Second))
		if _, ok := got["w2"]; ok {
			t.Errorf("Workers past w2's expiry: got w2 listed, want it gone")
		}
		if _, ok := got["w1"]; !ok {
			t.Errorf("Workers before w1's renewed expiry: got w1 missing, want it listed")
		}
		if got := f.workers(f.at(51 * time.Second)); len(got) != 0 {
			t.Errorf("Workers past every expiry: got %d entries, want none", len(got))
		}
	})

	t.Run("Remove", func(t *testing.T) {
		f := newFixture(t, h)
		f.register(f.t0, info(f, "w1"), time.Minute)
		f.register(f.t0, info(f, "w2"), time.Minute)
		if err := f.b.RemoveWorker(f.ctx, "w1"); err != nil {
			t.Fatalf("RemoveWorker: got error %v, want nil", err)
		}
		got := f.workers(f.t0)
		if _, ok := got["w1"]; ok || len(got) != 1 {
			t.Errorf("Workers after removing w1: got %d entries (w1 listed: %v), want only w2", len(got), ok)
		}
	})
}
