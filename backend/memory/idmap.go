package memory

// idMap finds the handles of stored jobs by the hash of their ID. It is an
// open-addressing table with linear probing, made for this one use rather
// than a Go map: every job adds a hash when it is stored and deletes it
// when it is swept, and under that churn a Go map's groups fill with
// tombstones, so that probing for an absent hash (every new job) walks far.
// Here an insert is one probe sequence, a delete shifts the entries behind
// it back instead of leaving a tombstone, and the table shrinks once a
// burst of jobs has been swept.
//
// Each slot is one uint64, so that a cache line holds eight and the garbage
// collector has nothing to scan: the hash's upper 32 bits (its fragment)
// above the handle, or 0 for an empty slot. A fragment of 0 is stored as 1,
// so that no entry is 0; the low bits of the fragment choose the home slot,
// so that a delete can tell where an entry it shifts belongs. Two IDs may
// share a fragment, so the table holds several entries with one fragment and
// the caller tells them apart by ID (see lookup): colliding hashes need no
// overflow table.
type idMap struct {
	slots   []uint64 // a power of two long, or empty
	n       int      // entries held
	fetched uint64   // the sum of the slots that the prefetches read, so that their reads are kept
}

const (
	// idMapMinSlots is the smallest table, which the first insert makes.
	idMapMinSlots = 16
	// An insert grows the table, doubling it, when it would leave it more
	// than idMapMaxLoadNum/idMapMaxLoadDen full: linear probing stays short
	// below three quarters.
	idMapMaxLoadNum, idMapMaxLoadDen = 3, 4
)

// fragment returns the part of hash h that the table keeps, never 0.
func fragment(h uint64) uint32 {
	f := uint32(h >> 32)
	if f == 0 {
		f = 1
	}
	return f
}

// home returns the slot where probing for an entry of fragment f starts.
func (m *idMap) home(f uint32) int { return int(f) & (len(m.slots) - 1) }

// insert adds handle hd under hash h. The handle must not be in the table;
// an ID may be in it only once, which the caller ensures (see store).
func (m *idMap) insert(h uint64, hd uint32) {
	if (m.n+1)*idMapMaxLoadDen > len(m.slots)*idMapMaxLoadNum {
		m.resize(max(idMapMinSlots, 2*len(m.slots)))
	}
	m.put(uint64(fragment(h))<<32 | uint64(hd))
	m.n++
}

// put stores entry e in the first empty slot from its home; the table has
// one.
func (m *idMap) put(e uint64) {
	mask := len(m.slots) - 1
	for i := m.home(uint32(e >> 32)); ; i = (i + 1) & mask {
		if m.slots[i] == 0 {
			m.slots[i] = e
			return
		}
	}
}

// lookup returns the first handle under hash h for which is returns true.
// It calls is for each handle that shares h's fragment, which is nearly
// always only the one sought.
func (m *idMap) lookup(h uint64, is func(hd uint32) bool) (uint32, bool) {
	if m.n == 0 {
		return 0, false
	}
	f := fragment(h)
	mask := len(m.slots) - 1
	for i := m.home(f); ; i = (i + 1) & mask {
		e := m.slots[i]
		if e == 0 {
			return 0, false
		}
		if uint32(e>>32) == f && is(uint32(e)) {
			return uint32(e), true
		}
	}
}

// slot returns the home slot of hash h, so that a caller can have it
// fetched into the cache before it needs it (see Backend.prefetchArchived).
func (m *idMap) slot(h uint64) uint64 {
	if m.n == 0 {
		return 0
	}
	return m.slots[m.home(fragment(h))]
}

// remove deletes handle hd, stored under hash h, and reports whether it was
// there. A table that a burst left mostly empty is rebuilt smaller.
func (m *idMap) remove(h uint64, hd uint32) bool {
	if m.n == 0 {
		return false
	}
	e := uint64(fragment(h))<<32 | uint64(hd)
	mask := len(m.slots) - 1
	i := m.home(fragment(h))
	for m.slots[i] != e {
		if m.slots[i] == 0 {
			return false
		}
		i = (i + 1) & mask
	}
	// Backward shift: every entry after the hole, up to the next empty
	// slot, that may sit in the hole (its home is not after the hole,
	// cyclically) moves into it, and its slot becomes the hole. A lookup
	// then never meets an empty slot before the entry it seeks.
	for j := (i + 1) & mask; m.slots[j] != 0; j = (j + 1) & mask {
		k := m.home(uint32(m.slots[j] >> 32))
		if (j-k)&mask >= (j-i)&mask {
			m.slots[i] = m.slots[j]
			i = j
		}
	}
	m.slots[i] = 0
	m.n--
	if shrinkable(m.n, len(m.slots)) {
		m.resize(idMapSlotsFor(m.n))
	}
	return true
}

// idMapSlotsFor returns the table size for n entries: at most half full, so
// that it takes many inserts before it grows again.
func idMapSlotsFor(n int) int {
	s := idMapMinSlots
	for s < 2*n {
		s *= 2
	}
	return s
}

// resize moves every entry into a new table of size slots.
func (m *idMap) resize(slots int) {
	old := m.slots
	m.slots = make([]uint64, slots)
	for _, e := range old {
		if e != 0 {
			m.put(e)
		}
	}
}
