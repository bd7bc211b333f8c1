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
		batch := g.NewBatch(now, n)
		if len(batch) != Size*n {
			t.Fatalf("NewBatch(%d): got %d bytes, want %d IDs of %d", n, len(batch), n, Size)
		}
		for i := range n {
			id := batch[Size*i : Size*(i+1)]
			if id <= prev {
				t.Fatalf("NewBatch: got %q after %q, want strictly increasing", id, prev)
			}
			prev = id
		}
	}
	if id := g.New(now); id <= prev {
		t.Fatalf("New after NewBatch: got %q after %q, want it greater", id, prev)
	}
}

// A batch holds the IDs that New would have returned one by one, also
// where counting up carries across characters and wraps the 80 bits.
func TestNewBatchMatchesNewOneByOne(t *testing.T) {
	now := time.Now()
	ms := uint64(now.UnixMilli())
	for _, start := range []struct{ hi, lo uint64 }{
		{0x1234, 5},
		{0x1234, 1<<5 - 2},         // the last character carries
		{0x7, ^uint64(0) - 2},      // lo carries into hi
		{0xFFFF, ^uint64(0) - 1},   // the 80 bits wrap around
		{0xFFFF, ^uint64(0) - 100}, // a wrap in a longer batch
	} {
		one := Generator{lastMs: ms, hi: start.hi, lo: start.lo}
		batch := Generator{lastMs: ms, hi: start.hi, lo: start.lo}
		const n = 200
		ids := batch.NewBatch(now, n)
		for i := range n {
			want := one.New(now)
			if got := ids[Size*i : Size*(i+1)]; got != want {
				t.Fatalf("start %x:%x, ID %d: got %q from NewBatch, want %q as from New", start.hi, start.lo, i, got, want)
			}
		}
	}
}
