package jobid

import (
	"testing"
	"time"
)

func TestNewSortsByTime(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	a, b := New(t0), New(t0.Add(time.Millisecond))
	if len(a) != 26 || len(b) != 26 {
		t.Fatalf("got lengths %d and %d, want 26", len(a), len(b))
	}
	if a >= b {
		t.Fatalf("got %q >= %q, want IDs ordered by creation time", a, b)
	}
}

func TestGeneratorSortsWithinAMillisecond(t *testing.T) {
	var g Generator
	now := time.Now()
	prev := g.New(now)
	seen := map[string]bool{prev: true}
	for i := range 10000 {
		at := now
		if i%1000 == 999 {
			at = now.Add(-time.Second) // a clock that steps back must not break the order
		}
		id := g.New(at)
		if id <= prev || seen[id] {
			t.Fatalf("got %q after %q, want strictly increasing IDs", id, prev)
		}
		seen[id], prev = true, id
	}
}

func TestNewBatchContinuesTheSequence(t *testing.T) {
	var g Generator
	now := time.Now()
	prev := g.New(now)
	for _, n := range []int{0, 1, 5, 300} {
		ids := g.NewBatch(now, n)
		if len(ids) != n {
			t.Fatalf("NewBatch(%d): got %d IDs", n, len(ids))
		}
		for _, id := range ids {
			if len(id) != 26 || id <= prev {
				t.Fatalf("NewBatch: got %q after %q, want 26 characters, strictly increasing", id, prev)
			}
			prev = id
		}
	}
	if id := g.New(now); id <= prev {
		t.Fatalf("New after NewBatch: got %q after %q, want it greater", id, prev)
	}
}
