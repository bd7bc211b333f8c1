package memory

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/jobrelay/engine/backend"
)

// idMapModel checks an idMap against a Go map of handle to hash, the
// behaviour it must have.
type idMapModel struct {
	t      *testing.T
	m      idMap
	model  map[uint32]uint64
	byFrag map[uint32][]uint32 // the model's handles by fragment
}

// candidates returns the handles that lookup offers for hash h, sorted.
func (x *idMapModel) candidates(h uint64) []uint32 {
	var got []uint32
	x.m.lookup(h, func(hd uint32) bool {
		got = append(got, hd)
		return false
	})
	slices.Sort(got)
	return got
}

// check asserts the table's invariants: it holds what the model holds, each
// handle once, in the new table or in the part of the old one not yet
// moved; each entry is reachable from its home slot without crossing an
// empty one (what backward-shift deletion keeps, and what the marks of
// entries removed from the old table keep); and the new table will be no
// fuller than its load factor once the old one has moved.
func (x *idMapModel) check(stage string) {
	x.t.Helper()
	m := &x.m
	if m.n != len(x.model) {
		x.t.Fatalf("%s: table holds %d entries, want %d", stage, m.n, len(x.model))
	}
	if len(m.slots)&(len(m.slots)-1) != 0 || len(m.old)&(len(m.old)-1) != 0 {
		x.t.Fatalf("%s: tables have %d and %d slots, want powers of two", stage, len(m.slots), len(m.old))
	}
	if m.n*idMapMaxLoadDen > len(m.slots)*idMapMaxLoadNum {
		x.t.Fatalf("%s: %d entries in %d slots, want at most %d/%d full", stage, m.n, len(m.slots), idMapMaxLoadNum, idMapMaxLoadDen)
	}
	if m.old != nil && m.moved >= len(m.old) {
		x.t.Fatalf("%s: old table of %d slots kept with %d moved", stage, len(m.old), m.moved)
	}
	seen := make(map[uint32]bool, m.n)
	table := func(name string, slots []uint64, from int) {
		for i, e := range slots[from:] {
			i += from
			if e == 0 || e == idMapGone && name == "old" {
				continue
			}
			hd := uint32(e)
			h, ok := x.model[hd]
			if !ok || uint32(e>>32) != fragment(h) {
				x.t.Fatalf("%s: %s slot %d holds handle %d fragment %#x, which the model does not have", stage, name, i, hd, e>>32)
			}
			if seen[hd] {
				x.t.Fatalf("%s: handle %d is held twice (%s slot %d)", stage, hd, name, i)
			}
			seen[hd] = true
			mask := len(slots) - 1
			for k := int(fragment(h)) & mask; k != i; k = (k + 1) & mask {
				if slots[k] == 0 {
					x.t.Fatalf("%s: handle %d in %s slot %d is cut from its home %d by an empty slot %d", stage, hd, name, i, int(fragment(h))&mask, k)
				}
			}
		}
	}
	table("new", m.slots, 0)
	if m.old != nil {
		table("old", m.old, m.moved)
	}
	if len(seen) != m.n {
		x.t.Fatalf("%s: %d slots in use, want %d", stage, len(seen), m.n)
	}
}

// TestIDMapMatchesMap runs random inserts, removes and lookups against a Go
// map, with hashes chosen to collide: equal hashes, hashes that share a home
// slot, and hashes whose fragment is the reserved 0. The table grows to
// well above the size where it shrinks, is emptied, and grows again; most
// of that time it is moving to a larger or a smaller table, and the
// invariants are checked during those moves too.
func TestIDMapMatchesMap(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed>>1))
	x := &idMapModel{t: t, model: make(map[uint32]uint64), byFrag: make(map[uint32][]uint32)}
	var held []uint32 // the handles in the model, to pick from
	var nextHD uint32
	// Most hashes are random; some repeat a held one, share its home slot,
	// or have the reserved fragment 0. Colliding hashes are kept few, as
	// real ones are, lest their runs of slots make the test quadratic.
	hash := func() uint64 {
		r := rng.IntN(1024)
		switch {
		case r < 2:
			return uint64(rng.Uint32()) // fragment 0
		case r < 3:
			return 1<<32 | uint64(rng.Uint32()) // fragment 1, which 0 is stored as
		case len(held) == 0:
		case r < 64:
			return x.model[held[rng.IntN(len(held))]] // an equal hash
		case r < 128:
			h := x.model[held[rng.IntN(len(held))]]
			return h ^ uint64(1+rng.Uint32N(1<<12-1))<<52 // the same home slot
		}
		return rng.Uint64()
	}
	insert := func() {
		h, hd := hash(), nextHD
		nextHD++
		x.m.insert(h, hd)
		x.model[hd] = h
		x.byFrag[fragment(h)] = append(x.byFrag[fragment(h)], hd)
		held = append(held, hd)
	}
	remove := func() {
		i := rng.IntN(len(held))
		hd := held[i]
		h := x.model[hd]
		if x.m.remove(h^1<<40, hd) { // another fragment
			t.Fatalf("remove(%#x, %d) under another hash: got true, want false", h^1<<40, hd)
		}
		if !x.m.remove(h, hd) {
			t.Fatalf("remove(%#x, %d): got false, want true", h, hd)
		}
		if x.m.remove(h, hd) {
			t.Fatalf("remove(%#x, %d) a second time: got true, want false", h, hd)
		}
		delete(x.model, hd)
		f := fragment(h)
		x.byFrag[f] = slices.DeleteFunc(x.byFrag[f], func(c uint32) bool { return c == hd })
		held[i] = held[len(held)-1]
		held = held[:len(held)-1]
	}
	lookup := func() {
		var h uint64
		if len(held) > 0 && rng.IntN(4) > 0 {
			hd := held[rng.IntN(len(held))]
			h = x.model[hd]
			got, ok := x.m.lookup(h, func(c uint32) bool { return c == hd })
			if !ok || got != hd {
				t.Fatalf("lookup(%#x) for handle %d: got %d, %v, want it found", h, hd, got, ok)
			}
		} else {
			h = hash()
		}
		want := slices.Sorted(slices.Values(x.byFrag[fragment(h)]))
		if got := x.candidates(h); !slices.Equal(got, want) {
			t.Fatalf("lookup(%#x) offered handles %v, want %v", h, got, want)
		}
	}
	moving := 0 // operations run while the table moves
	run := func(stage string, ops, insertPct int) {
		for i := range ops {
			switch r := rng.IntN(100); {
			case r < insertPct || len(held) == 0:
				insert()
			case r < 90:
				remove()
			default:
				lookup()
			}
			if x.m.old != nil {
				moving++
			}
			if i%50_000 == 0 || x.m.old != nil && moving%1_000 == 0 {
				x.check(stage)
			}
		}
		x.check(stage)
	}

	run("small churn", 20_000, 45)
	run("growth", 300_000, 80)
	if len(x.m.slots) <= 1<<16 {
		t.Fatalf("after growth: %d slots for %d entries, want more than %d to test shrinking", len(x.m.slots), x.m.n, 1<<16)
	}
	if moving < 10_000 {
		t.Fatalf("growth: %d operations ran while the table moved, want the growing moves to span many", moving)
	}
	moving = 0
	for len(held) > 0 {
		remove()
		if x.m.old != nil {
			moving++
			if moving%1_000 == 0 {
				x.check("emptying")
			}
			if rng.IntN(4) == 0 {
				lookup()
			}
		}
	}
	if moving < 2_000 {
		t.Fatalf("emptying: %d removes ran while the table moved, want the shrinking moves to span many", moving)
	}
	x.check("emptied")
	if len(x.m.slots) > 1<<16 {
		t.Errorf("emptied: table keeps %d slots, want at most %d", len(x.m.slots), 1<<16)
	}
	run("regrowth", 50_000, 70)
}

// A fragment of 0 would read as an empty slot; such a hash must still be
// found, and must not hide the entries after it.
func TestIDMapReservedFragment(t *testing.T) {
	var m idMap
	m.insert(0, 7)       // fragment 0, stored as 1
	m.insert(1<<32, 8)   // fragment 1: the same entry key, another handle
	m.insert(0x1234, 9)  // fragment 0 again
	m.insert(17<<32, 10) // fragment 17, home 1 with 16 slots
	for _, c := range []struct {
		h  uint64
		hd uint32
	}{{0, 7}, {1 << 32, 8}, {0x1234, 9}, {17 << 32, 10}} {
		if got, ok := m.lookup(c.h, func(hd uint32) bool { return hd == c.hd }); !ok || got != c.hd {
			t.Errorf("lookup(%#x) for %d: got %d, %v, want it found", c.h, c.hd, got, ok)
		}
	}
	if !m.remove(0, 7) || !m.remove(0x1234, 9) {
		t.Fatal("remove of a fragment-0 entry: got false, want true")
	}
	if got, ok := m.lookup(17<<32, func(hd uint32) bool { return hd == 10 }); !ok || got != 10 {
		t.Errorf("after removing fragment 0: lookup(17<<32): got %d, %v, want 10", got, ok)
	}
	if _, ok := m.lookup(0, func(uint32) bool { return true }); !ok {
		t.Errorf("lookup(0) with handle 8 of fragment 1 left: got nothing, want handle 8")
	}
	if m.n != 2 {
		t.Errorf("got %d entries, want 2", m.n)
	}
}

// Two IDs whose hashes match in the bits the table keeps share a probe
// sequence: find must read each candidate's ID and return the one asked
// for, never the first it meets. A decoy entry for "b" under the hash of
// "a", ahead of a's own entry, stands for such a collision.
func TestFindTellsCollidingHashesApart(t *testing.T) {
	ctx := context.Background()
	b := New(Options{EventLogSize: 16})
	defer b.Close()
	t0 := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	var jobs []backend.NewJob
	for _, id := range []string{"a", "b"} {
		jobs = append(jobs, backend.NewJob{ID: id, Type: "t", Queue: "default"})
	}
	if _, err := b.Enqueue(ctx, t0, jobs); err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	hdA, okA := b.find("a")
	hdB, okB := b.find("b")
	if !okA || !okB {
		b.mu.Unlock()
		t.Fatalf("find: got a %v, b %v, want both stored", okA, okB)
	}
	ids := &b.jobs.ids
	ids.remove(b.hash("a"), hdA)
	ids.insert(b.hash("a"), hdB) // the decoy, first in a's probe sequence
	ids.insert(b.hash("a"), hdA)
	b.mu.Unlock()
	for _, id := range []string{"a", "b"} {
		j, err := b.Job(ctx, id)
		if err != nil || j.ID != id {
			t.Errorf("Job(%q): got %v, %v, want the job %q", id, j, err, id)
		}
	}
	if _, err := b.Job(ctx, "c"); !errors.Is(err, backend.ErrJobNotFound) {
		t.Errorf("Job(%q): got error %v, want ErrJobNotFound", "c", err)
	}
}
