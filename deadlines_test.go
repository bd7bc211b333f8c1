package engine

import (
	"math/rand/v2"
	"testing"
	"time"
)

// The deadline heap keeps the earliest deadline at its root and every run's
// index right through any mix of adds and early removals.
func TestRunHeapKeepsOrderAndIndexes(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	base := time.Now()
	var h runHeap
	var in []*run
	check := func(step int) {
		t.Helper()
		if len(h) != len(in) {
			t.Fatalf("step %d: heap holds %d runs, want %d", step, len(h), len(in))
		}
		for i, r := range h {
			if int(r.heapIndex) != i {
				t.Fatalf("step %d: run at %d says its index is %d", step, i, r.heapIndex)
			}
			if i > 0 && r.ctx.deadline.Before(h[(i-1)/2].ctx.deadline) {
				t.Fatalf("step %d: run at %d is due before its parent", step, i)
			}
		}
	}
	for step := range 5000 {
		if len(in) == 0 || rng.IntN(3) > 0 {
			r := &run{heapIndex: -1}
			r.ctx.deadline = base.Add(time.Duration(rng.IntN(1000)) * time.Millisecond)
			h.push(r)
			in = append(in, r)
		} else {
			k := rng.IntN(len(in))
			r := in[k]
			in[k] = in[len(in)-1]
			in = in[:len(in)-1]
			if got := h.remove(int(r.heapIndex)); got != r || r.heapIndex != -1 {
				t.Fatalf("step %d: remove returned another run or left its index at %d", step, r.heapIndex)
			}
		}
		check(step)
	}
	for prev := base; len(h) > 0; {
		r := h.remove(0)
		if r.ctx.deadline.Before(prev) {
			t.Fatalf("runs left the root out of order: %s after %s", r.ctx.deadline, prev)
		}
		prev = r.ctx.deadline
	}
}
