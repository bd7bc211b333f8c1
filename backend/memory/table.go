package memory

import "hash/maphash"

// jobTable finds jobs by ID. A map keyed by the ID's 64-bit hash compares
// integers, not strings, and so stays fast when it holds a million jobs
// whose IDs are scattered over the heap; the rare ID whose hash another ID
// has taken lives in an overflow map by its string.
type jobTable struct {
	seed     maphash.Seed
	byHash   map[uint64]*job
	overflow map[string]*job
	peak     int // most jobs held since the map was made
}

func newJobTable() jobTable {
	return jobTable{seed: maphash.MakeSeed(), byHash: make(map[uint64]*job), overflow: make(map[string]*job)}
}

func (t *jobTable) get(id string) *job {
	if j := t.byHash[maphash.String(t.seed, id)]; j != nil && j.ID == id {
		return j
	}
	if len(t.overflow) == 0 {
		return nil
	}
	return t.overflow[id]
}

// put adds j, whose ID the table must not hold.
func (t *jobTable) put(j *job) {
	h := maphash.String(t.seed, j.ID)
	if t.byHash[h] == nil {
		t.byHash[h] = j
		t.peak = max(t.peak, len(t.byHash))
		return
	}
	t.overflow[j.ID] = j
}

func (t *jobTable) delete(j *job) {
	h := maphash.String(t.seed, j.ID)
	if t.byHash[h] == j {
		delete(t.byHash, h)
		t.shrink()
		return
	}
	delete(t.overflow, j.ID)
}

// shrink rebuilds the map once it holds a small part of its peak: a Go map
// never gives back the room a burst made it take.
func (t *jobTable) shrink() {
	if !shrinkable(len(t.byHash), t.peak) {
		return
	}
	m := make(map[uint64]*job, 2*len(t.byHash))
	for h, j := range t.byHash {
		m[h] = j
	}
	t.byHash, t.peak = m, len(m)
}
