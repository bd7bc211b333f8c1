package backendtest

import (
	"slices"
	"testing"

	"github.com/jobrelay/engine/backend"
)

func testOrder(t *testing.T, h Harness) {
	t.Run("PriorityThenFIFO", func(t *testing.T) {
		f := newFixture(t, h)
		low1 := f.add()
		high1 := f.add(withPriority(5))
		low2 := f.add()
		high2 := f.add(withPriority(5))
		mid := f.add(withPriority(1))
		neg := f.add(withPriority(-1))
		want := []string{high1, high2, mid, low1, low2, neg}
		var got []string
		for range want {
			got = append(got, f.leaseOne(f.t0).Job.ID)
		}
		if !slices.Equal(got, want) {
			t.Errorf("lease order: got %v, want %v", got, want)
		}
	})

	t.Run("BatchInOrder", func(t *testing.T) {
		f := newFixture(t, h)
		a := f.add()
		b := f.add(withPriority(3))
		c := f.add()
		d := f.add(withPriority(3))
		want := []string{b, d, a, c}
		if got := leasedIDs(f.lease(request(f.t0, 10))); !slices.Equal(got, want) {
			t.Errorf("one batch: got %v, want %v", got, want)
		}
	})

	t.Run("MaxRespected", func(t *testing.T) {
		f := newFixture(t, h)
		for range 5 {
			f.add()
		}
		for i, want := range []int{3, 2, 0} {
			if got := len(f.lease(request(f.t0, 3))); got != want {
				t.Errorf("Lease %d with Max 3: got %d jobs, want %d", i+1, got, want)
			}
		}
	})

	t.Run("QueuesInStrictOrder", func(t *testing.T) {
		f := newFixture(t, h)
		l1 := f.add(inQueue("low"), withPriority(10))
		h1 := f.add(inQueue("high"))
		l2 := f.add(inQueue("low"))
		h2 := f.add(inQueue("high"))
		got := leasedIDs(f.lease(request(f.t0, 3, "high", "low")))
		if want := []string{h1, h2, l1}; !slices.Equal(got, want) {
			t.Errorf("first batch: got %v, want %v (every job of the first queue before any of the next)", got, want)
		}
		got = leasedIDs(f.lease(request(f.t0, 3, "high", "low")))
		if want := []string{l2}; !slices.Equal(got, want) {
			t.Errorf("second batch: got %v, want %v", got, want)
		}
	})

	t.Run("OtherQueuesNeverLeased", func(t *testing.T) {
		f := newFixture(t, h)
		other := f.add(inQueue("other"))
		f.wantNoLease(f.t0, "default", "ai")
		f.wantState(other, backend.StateQueued)
		f.leaseID(f.t0, other, "other")
	})
}

func leasedIDs(ls []*backend.Lease) []string {
	ids := make([]string, len(ls))
	for i, l := range ls {
		ids[i] = l.Job.ID
	}
	return ids
}
