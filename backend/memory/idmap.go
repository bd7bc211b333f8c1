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
//
// A table that fills up moves to one twice its size, and one that a burst
// left mostly empty to a smaller one, a few slots at a time (as Redis
// rehashes): at four million entries moving them all at once would hold
// the backend's store mutex for a hundred milliseconds, a pause that every caller
// would wait out. While it moves, inserts go to the new table, lookups and
// removes try the new table and then the old one, and each insert or remove
// moves the next step slots of the old one across.
type idMap struct {
	slots   []uint64 // a power of two long, or empty; the table inserts go to
	n       int      // entries held, in both tables
	old     []uint64 // the table being moved from, or nil
	moved   int      // the slots of old below moved are in slots now
	step    int      // slots of old that each insert or remove moves
	fetched uint64   // the sum of the slots that the prefetches read, so that their reads are kept
}

const (
	// idMapMinSlots is the smallest table, which the first insert makes.
	idMapMinSlots = 16
	// An insert grows the table, doubling it, when it would leave it more
	// than idMapMaxLoadNum/idMapMaxLoadDen full: linear probing stays short
	// below three quarters.
	idMapMaxLoadNum, idMapMaxLoadDen = 3, 4
	// idMapMinStep is the fewest slots of the old table that an insert or
	// remove moves; each costs a few nanoseconds.
	idMapMinStep = 32
	// idMapMoveAll is the size up to which a table moves at once: moving
	// it costs less than the bookkeeping of a gradual move.
	idMapMoveAll = 1 << 12
	// idMapGone marks a slot of the old table whose entry was removed while
	// the table moved. It keeps the probe sequences through the slot intact,
	// as an empty slot would not, and no entry equals it: its fragment is 0.
	idMapGone = 1
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
	if m.old != nil {
		m.move()
	}
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
			break
		}
		if uint32(e>>32) == f && is(uint32(e)) {
			return uint32(e), true
		}
	}
	if m.old == nil {
		return 0, false
	}
	// The slots of old below moved still hold the entries they had, so
	// that no probe sequence is cut, but those entries are in slots now.
	mask = len(m.old) - 1
	for i := int(f) & mask; ; i = (i + 1) & mask {
		e := m.old[i]
		if e == 0 {
			return 0, false
		}
		if i >= m.moved && uint32(e>>32) == f && is(uint32(e)) {
			return uint32(e), true
		}
	}
}

// prefetch reads the home slots of hashes, in a loop whose reads do not
// wait for one another, so that the inserts or removes that follow find
// them in the cache (see Backend.prefetchNew).
func (m *idMap) prefetch(hashes []uint64) {
	if m.n == 0 {
		return
	}
	var sum uint64
	for _, h := range hashes {
		sum += m.slots[m.home(fragment(h))]
	}
	m.fetched = sum
}

// remove deletes handle hd, stored under hash h, and reports whether it was
// there. A table that a burst left mostly empty moves to a smaller one.
func (m *idMap) remove(h uint64, hd uint32) bool {
	if m.n == 0 {
		return false
	}
	if m.old != nil {
		m.move()
	}
	e := uint64(fragment(h))<<32 | uint64(hd)
	mask := len(m.slots) - 1
	i := m.home(fragment(h))
	for m.slots[i] != e && m.slots[i] != 0 {
		i = (i + 1) & mask
	}
	switch {
	case m.slots[i] == e:
		// Backward shift: every entry after the hole, up to the next
		// empty slot, that may sit in the hole (its home is not after
		// the hole, cyclically) moves into it, and its slot becomes the
		// hole. A lookup then never meets an empty slot before the entry
		// it seeks.
		for j := (i + 1) & mask; m.slots[j] != 0; j = (j + 1) & mask {
			k := m.home(uint32(m.slots[j] >> 32))
			if (j-k)&mask >= (j-i)&mask {
				m.slots[i] = m.slots[j]
				i = j
			}
		}
		m.slots[i] = 0
	case !m.removeOld(e):
		return false
	}
	m.n--
	switch {
	case m.n == 0:
		m.old = nil // what it holds is moved or gone
	case m.old == nil && shrinkable(m.n, len(m.slots)):
		m.resize(idMapSlotsFor(m.n))
	}
	return true
}

// removeOld deletes entry e from the part of old not yet moved and reports
// whether it was there. Its slot is marked idMapGone rather than emptied:
// shifting entries back, as removeNew does, could shift one below moved,
// where it would never be moved.
func (m *idMap) removeOld(e uint64) bool {
	if m.old == nil {
		return false
	}
	mask := len(m.old) - 1
	for i := int(e>>32) & mask; m.old[i] != 0; i = (i + 1) & mask {
		if m.old[i] == e && i >= m.moved {
			m.old[i] = idMapGone
			return true
		}
	}
	return false
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

// resize starts moving the entries into a new table of size slots,
// finishing any move under way first. The move takes step slots per insert
// or remove, enough that it ends before the inserts meanwhile could fill
// half the new table's room: the new table never needs to grow while the old
// one is still moving, which would stall a call on moving all of it.
func (m *idMap) resize(slots int) {
	m.moveAll()
	m.old, m.slots, m.moved = m.slots, make([]uint64, slots), 0
	if len(m.old) <= idMapMoveAll {
		m.moveAll()
		return
	}
	room := max(1, (slots*idMapMaxLoadNum/idMapMaxLoadDen-m.n)/2)
	m.step = max(idMapMinStep, (len(m.old)+room-1)/room)
}

// move moves the next step slots of old, whose move is under way.
func (m *idMap) move() {
	end := min(len(m.old), m.moved+m.step)
	for _, e := range m.old[m.moved:end] {
		if e > idMapGone {
			m.put(e)
		}
	}
	m.moved = end
	if end == len(m.old) {
		m.old = nil
	}
}

// moveAll finishes the move under way, if any.
func (m *idMap) moveAll() {
	if m.old != nil {
		m.step = len(m.old)
		m.move()
	}
}
