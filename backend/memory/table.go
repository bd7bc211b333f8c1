package memory

import (
	"hash/maphash"

	"github.com/jobrelay/engine/backend"
)

// jobTable numbers the stored jobs and finds them by ID. A stored job has a
// handle from Enqueue until Sweep deletes it: its index in live and in
// archive.recs. The table from ID to handle (see idMap) holds no pointers,
// so the garbage collector does not scan it, and compares integers, not
// strings, so that it stays fast when it holds millions of jobs whose IDs
// are scattered over memory: only an entry whose hash matches, in the bits
// the table keeps, has its ID read, to tell it from another ID with them.
type jobTable struct {
	ids  idMap       // handles by the hash of their ID
	live paged[*job] // by handle; nil while the job is archived or the handle free
	free []uint32    // handles free for reuse
}

// hash returns the hash of a job ID that the ID table is keyed by. Its seed
// is set by New and never changes (Close keeps it), so that Enqueue hashes
// a batch's IDs before it takes a mutex.
func (b *Backend) hash(id string) uint64 { return maphash.String(b.idSeed, id) }

// idOf returns the ID of the job with handle hd; for an archived job it is a
// view of the archive (see archive.id).
func (b *Backend) idOf(hd uint32) string {
	if j := *b.jobs.live.at(hd); j != nil {
		return j.ID
	}
	if r := b.arch.recs.at(hd); r.packed {
		return b.packedID(r)
	}
	return b.arch.id(hd)
}

// find returns the handle of the stored job with id.
func (b *Backend) find(id string) (uint32, bool) {
	return b.jobs.ids.lookup(b.hash(id), func(hd uint32) bool { return b.idOf(hd) == id })
}

// lookup finds the stored job with id: live (j is set) or archived (found is
// set, hd is its handle), or neither. A packed job gets its record (see
// liveAt), so the caller holds both mutexes.
func (b *Backend) lookup(id string) (j *job, hd uint32, found bool) {
	hd, found = b.find(id)
	if found {
		j = b.liveAt(hd)
	}
	return j, hd, found
}

// stateOf returns the state of the stored job with id. A packed job is
// queued (its record's st is), and keeps no record for being asked.
func (b *Backend) stateOf(id string) (backend.State, bool) {
	hd, found := b.find(id)
	switch {
	case !found:
		return "", false
	case *b.jobs.live.at(hd) != nil:
		return (*b.jobs.live.at(hd)).State, true
	}
	return b.arch.recs.at(hd).state(), true
}

// store gives the new job j, whose ID no stored job has and hashes to h, a
// handle. The ID table would hold a second entry for an ID already stored,
// so Enqueue refuses duplicates before it stores. above says that j's ID is
// above every stored one, as enqueuePlain checked, so that it goes last in
// the ID index without a comparison.
func (b *Backend) store(j *job, h uint64, above bool) {
	t := &b.jobs
	j.hd = b.newHandle()
	*t.live.at(j.hd) = j
	t.ids.insert(h, j.hd)
	if above {
		b.byID.push(j.hd)
	} else {
		b.byID.insert(j.hd)
	}
}

// newHandle returns a free handle; the caller holds smu.
func (b *Backend) newHandle() uint32 {
	t := &b.jobs
	if n := len(t.free); n > 0 {
		hd := t.free[n-1]
		t.free = t.free[:n-1]
		return hd
	}
	b.arch.recs.grow()
	return t.live.grow()
}

// forget frees the handle of the archived job hd, whose ID hashes to h,
// which Sweep deletes.
func (b *Backend) forget(hd uint32, h uint64) {
	t := &b.jobs
	t.ids.remove(h, hd)
	b.byID.remove(hd)
	t.free = append(t.free, hd)
}

// prefetchArchived reads the records, IDs and ID-table slots of the
// archived jobs hds, which Sweep is about to delete, and appends the
// hashes of their IDs to hashes for the deletes. Deleting a job waits for
// each of them to come from memory in turn; read here, in loops whose reads
// do not wait for one another, they come many at once, and the deletes find
// them in the cache.
func (b *Backend) prefetchArchived(hds []uint32, hashes []uint64) []uint64 {
	var sum uint64
	for _, hd := range hds {
		sum += uint64(b.arch.recs.at(hd).off)
	}
	t := &b.jobs
	for _, hd := range hds {
		hashes = append(hashes, b.hash(b.arch.id(hd)))
	}
	t.ids.prefetch(hashes[len(hashes)-len(hds):])
	t.ids.fetched += sum
	return hashes
}

// prefetchMinSlots is the smallest ID table that prefetchNew reads ahead
// in: a smaller one (512 KiB) stays in the cache, where reading ahead would
// only cost the hashing twice.
const prefetchMinSlots = 1 << 16

// prefetchNew reads the ID-table slots where new jobs whose IDs hash to
// hashes will go, for Enqueue to call before it stores them, as
// prefetchArchived does for Sweep: in a large table each slot is a cache
// miss that store would wait for. It reads the table, so it is called
// under smu, as store is.
func (b *Backend) prefetchNew(hashes []uint64) {
	if len(b.jobs.ids.slots) >= prefetchMinSlots {
		b.jobs.ids.prefetch(hashes)
	}
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
