package memory

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// TestDequeMatchesSlice runs random pushes at both ends, pops and filters
// against a slice, through growth to many chunks and back down, and checks
// that the deque never holds more than its entries and three chunks, or
// the chunks it keeps for reuse.
func TestDequeMatchesSlice(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed>>1))
	var d deque[int]
	var model []int
	next := 1
	check := func(stage string) {
		t.Helper()
		if d.len() != len(model) {
			t.Fatalf("%s: len %d, want %d", stage, d.len(), len(model))
		}
		for i, v := range model {
			if got := *d.at(i); got != v {
				t.Fatalf("%s: entry %d is %d, want %d", stage, i, got, v)
			}
		}
		if len(model) > 0 && (*d.front() != model[0] || *d.back() != model[len(model)-1]) {
			t.Fatalf("%s: front %d, back %d, want %d, %d", stage, *d.front(), *d.back(), model[0], model[len(model)-1])
		}
		held := d.used + len(d.spares)
		if size := 1 << d.shift; held*size > max(len(model)+3*size, dequeKeep+size) {
			t.Fatalf("%s: %d chunks of %d for %d entries, want at most the entries and 3 chunks, or %d entries' worth", stage, held, size, len(model), dequeKeep)
		}
		for c := range len(d.chunks) - d.used {
			if d.chunks[(d.c0+d.used+c)&(len(d.chunks)-1)] != nil {
				t.Fatalf("%s: ring keeps a chunk outside the %d in use", stage, d.used)
			}
		}
	}
	run := func(stage string, ops, pushPct int) {
		for i := range ops {
			switch r := rng.IntN(100); {
			case r < pushPct*3/4 || len(model) == 0 && r < pushPct:
				d.pushBack(next)
				model = append(model, next)
				next++
			case r < pushPct:
				d.pushFront(next)
				model = slices.Insert(model, 0, next)
				next++
			case r < 99 && len(model) > 0:
				d.popFront()
				model = model[1:]
			case r == 99:
				m := rng.IntN(4) + 2
				if pushPct <= 50 && rng.IntN(8) == 0 {
					m = 1 // drops every entry
				}
				d.filter(func(v *int) bool { return *v%m != 0 })
				model = slices.DeleteFunc(model, func(v int) bool { return v%m == 0 })
			}
			if i%1000 == 0 {
				check(stage)
			}
		}
		check(stage)
	}
	run("short", 20_000, 50)
	run("growth", 120_000, 90)
	if d.shift != dequeMaxShift || d.used < 4 {
		t.Fatalf("after growth: %d chunks of %d, want several of %d", d.used, 1<<d.shift, 1<<dequeMaxShift)
	}
	run("shrink", 80_000, 10)
	for len(model) > 0 {
		d.popFront()
		model = model[1:]
	}
	check("drained")
	run("churn", 20_000, 50)
}

// The slots that popFront and filter leave must be zeroed, lest a queue of
// pointers keep swept jobs alive.
func TestDequeZeroesFreedSlots(t *testing.T) {
	var d deque[*job]
	for range 100 {
		d.pushBack(&job{})
	}
	d.pushFront(&job{})
	for range 40 {
		d.popFront()
	}
	d.filter(func(j **job) bool { return false })
	for c, chunk := range d.chunks {
		for i, j := range chunk {
			if j != nil {
				t.Fatalf("chunk %d slot %d still points to a job after every entry left", c, i)
			}
		}
	}
	for _, c := range d.spares {
		if slices.ContainsFunc(c, func(j *job) bool { return j != nil }) {
			t.Fatal("a spare chunk points to a job")
		}
	}
}
