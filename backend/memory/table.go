package memory

import (
	"hash/maphash"

	"github.com/jobrelay/engine/backend"
)

// jobTable numbers the stored jobs and finds them by ID. A stored job has a
// handle from Enqueue until Sweep deletes it: its index in live and in
// archive.recs. The maps from ID to handle hold no pointers, so the garbage
// collector does not scan them; the map keyed by the ID's 64-bit hash
// compares integers, not strings, and so stays fast when it holds millions
// of jobs whose IDs are scattered over memory. The rare ID whose hash
// another ID has taken lives in an overflow map by its string.
type jobTable struct {
	seed     maphash.Seed
	byHash   map[uint64]uint32
	overflow map[string]uint32
	peak     int         // most entries byHash held since it was made
	live     paged[*job] // by handle; nil while the job is archived or the handle free
	free     []uint32    // handles free for reuse
}

func newJobTable() jobTable {
	return jobTable{seed: maphash.MakeSeed(), byHash: make(map[uint64]uint32), overflow: make(map[string]uint32)}
}

func (t *jobTable) hash(id string) uint64 { return maphash.String(t.seed, id) }

// idOf returns the ID of the job with handle hd; for an archived job it is a
// view of the archive (see archive.id).
func (b *Backend) idOf(hd uint32) string {
	if j := *b.jobs.live.at(hd); j != nil {
		return j.ID
	}
	return b.arch.id(hd)
}

// find returns the handle of the stored job with id.
func (b *Backend) find(id string) (uint32, bool) {
	t := &b.jobs
	if hd, ok := t.byHash[t.hash(id)]; ok && b.idOf(hd) == id {
		return hd, true
	}
	if len(t.overflow) == 0 {
		return 0, false
	}
	hd, ok := t.overflow[id]
	return hd, ok
}

// lookup finds the stored job with id: live (j is set) or archived (found is
// set, hd is its handle), or neither.
func (b *Backend) lookup(id string) (j *job, hd uint32, found bool) {
	hd, found = b.find(id)
	if found {
		j = *b.jobs.live.at(hd)
	}
	return j, hd, found
}

// stateOf returns the state of the stored job with id.
func (b *Backend) stateOf(id string) (backend.State, bool) {
	j, hd, found := b.lookup(id)
	switch {
	case j != nil:
		return j.State, true
	case found:
		return b.arch.recs.at(hd).state(), true
	}
	return "", false
}

// store gives the new job j, whose ID no stored job has, a handle.
func (b *Backend) store(j *job) {
	t := &b.jobs
	if n := len(t.free); n > 0 {
		j.hd = t.free[n-1]
		t.free = t.free[:n-1]
	} else {
		j.hd = t.live.grow()
		b.arch.recs.grow()
	}
	*t.live.at(j.hd) = j
	h := t.hash(j.ID)
	if _, taken := t.byHash[h]; !taken {
		t.byHash[h] = j.hd
		t.peak = max(t.peak, len(t.byHash))
	} else {
		t.overflow[j.ID] = j.hd
	}
	b.byID.insert(j.hd)
}

// forget frees the handle of the archived job hd, which Sweep deletes.
func (b *Backend) forget(hd uint32) {
	t := &b.jobs
	id := b.arch.id(hd)
	h := t.hash(id)
	if got, ok := t.byHash[h]; ok && got == hd {
		delete(t.byHash, h)
		t.shrink()
	} else {
		delete(t.overflow, id)
	}
	b.byID.remove(hd)
	t.free = append(t.free, hd)
}

// shrink rebuilds the map once it holds a small part of its peak: a Go map
// never gives back the room a burst made it take.
func (t *jobTable) shrink() {
	if !shrinkable(len(t.byHash), t.peak) {
		return
	}
	m := make(map[uint64]uint32, 2*len(t.byHash))
	for h, hd := range t.byHash {
		m[h] = hd
	}
	t.byHash, t.peak = m, len(m)
}

// pageBits sets the size of a page of a paged table: 4096 entries.
const pageBits = 12

// paged is a table by handle that grows a page at a time, so that growing
// it never copies it.
type paged[T any] struct {
	pages [][]T
	n     int
}

func (p *paged[T]) at(i uint32) *T { return &p.pages[i>>pageBits][i&(1<<pageBits-1)] }

// grow adds an entry and returns its index.
func (p *paged[T]) grow() uint32 {
	if p.n == len(p.pages)<<pageBits {
		p.pages = append(p.pages, make([]T, 1<<pageBits))
	}
	p.n++
	return uint32(p.n - 1)
}
