package engine

import (
	"testing"
)

// The table finds every run it holds, by job ID too, reuses the slots of
// runs removed, and ignores a second removal of a run, so that a slot
// freed and given to another run is not freed again.
func TestRunTableHoldsFindsAndReusesSlots(t *testing.T) {
	var table runTable
	newRun := func(id string) *run {
		return &run{view: Job{ID: id}, slot: -1, heapIndex: -1}
	}
	a, b, c := newRun("a"), newRun("b"), newRun("c")
	table.add(a, b, c)
	if got := table.len(); got != 3 {
		t.Fatalf("got %d runs held, want 3", got)
	}
	table.remove(b)
	table.remove(b) // a second removal changes nothing
	if got := table.len(); got != 2 {
		t.Fatalf("got %d runs held after removing one, want 2", got)
	}
	d := newRun("a") // the job taken again while its first run still goes on
	table.add(d)
	if d.slot != 1 {
		t.Errorf("got slot %d for a run added after a removal, want the freed slot 1", d.slot)
	}
	table.remove(b) // b's old slot now holds d: still nothing to remove
	if got := table.find("a", nil); len(got) != 2 || got[0] != a || got[1] != d {
		t.Errorf("got %v for job a, want both of its runs", got)
	}
	if got := table.find("b", nil); len(got) != 0 {
		t.Errorf("got %v for job b, removed, want none", got)
	}
	if got := table.appendAll(nil); len(got) != 3 {
		t.Errorf("got %d runs from appendAll, want 3", len(got))
	}
	table.remove(a, c, d)
	if got := table.len(); got != 0 || len(table.appendAll(nil)) != 0 {
		t.Errorf("got %d runs held after removing all, want 0", got)
	}
}
