package memory

import (
	"bytes"
	"encoding/binary"
	"math"
	"slices"
	"time"
	"unsafe"

	"github.com/jobrelay/engine/backend"
)

// archive keeps the terminal jobs, which Sweep deletes only when their
// ResultTTL or FailureTTL has passed (24 h by default): most stored jobs are
// here. Each is packed into a record in a byte slab, and every structure
// that finds one (jobTable by ID, idIndex in ID order, expiring by
// ExpiresAt) holds its handle, a number, so that nothing holds a pointer per
// archived job: the garbage collector neither scans these jobs nor marks
// them, however many there are. A job comes back out as a *job only when
// Requeue runs it again.
type archive struct {
	slabs     []slab
	freeSlabs []uint32
	cur       uint32        // the slab records are added to; len(slabs) before the first
	spare     []byte        // the buffer of the last slab dropped, for the next one
	recs      paged[record] // by handle, as long as jobTable.live
	expiring  expiryHeap
}

// record locates one archived job and keeps what Stats, List's filters and
// Sweep read without unpacking it. It is zero while the handle's job is
// live or the handle is free. It holds no pointer (the state is its
// stateIndex), so that the pages of records are not scanned either.
type record struct {
	seq    uint64 // the job's entry in expiring; 0 unless archived
	slab   uint32
	off    uint32 // of the record's header in the slab
	size   uint32 // of the record, header included
	queue  uint32 // queue.num
	st     uint8  // stateIndex of the job's state
	unique bool   // the job has a UniqueKey
	// packed marks a queued job that Enqueue packed and that is not live
	// yet: slab is then its block's number in Backend.blocks and off its
	// offset there (see queuedBlock), st is queued, the other fields unset.
	packed bool
}

// state returns the archived job's state.
func (r *record) state() backend.State { return stateAt[r.st] }

// slab is a block of packed records. Its records are never changed in
// place: one is only appended, copied elsewhere or forgotten.
type slab struct {
	buf  []byte
	live int // bytes of records still archived
}

const (
	// slabSize is the size of a slab; a record above slabSize/4 gets a
	// slab of its own, so that a large payload or result is freed with
	// its job.
	slabSize = 256 << 10
	// headerSize is a record's header: its handle and its size.
	headerSize = 8
)

// add archives, under handle hd, the job packed in rec (a record without
// its header).
func (a *archive) add(hd uint32, rec []byte, seq uint64, queue uint32, state backend.State, unique bool) {
	s, off := a.place(hd, rec)
	*a.recs.at(hd) = record{seq: seq, slab: s, off: off, size: uint32(headerSize + len(rec)), queue: queue, st: uint8(stateIndex(state)), unique: unique}
}

// addJob archives, under handle hd, the job j packed straight into the
// current slab's spare capacity, without the copy that add makes or a
// growth check per field, and returns true; it does
// nothing and returns false when j may be too large for a shared slab (see
// place). It takes a new slab when the current one may be too short for j.
func (a *archive) addJob(hd uint32, j *backend.Job, seq uint64, queue uint32, state backend.State, unique bool) bool {
	most := headerSize + packBound(j)
	if most > slabSize/4 {
		return false
	}
	if int(a.cur) >= len(a.slabs) || cap(a.slabs[a.cur].buf)-len(a.slabs[a.cur].buf) < most {
		a.cur = a.newSlab(slabSize)
	}
	sl := &a.slabs[a.cur]
	off := len(sl.buf)
	rec := sl.buf[off : off+most]
	n := headerSize + packInto(rec[headerSize:], j)
	binary.LittleEndian.PutUint32(rec, hd)
	binary.LittleEndian.PutUint32(rec[4:], uint32(n))
	sl.buf = sl.buf[:off+n]
	sl.live += n
	*a.recs.at(hd) = record{seq: seq, slab: a.cur, off: uint32(off), size: uint32(n), queue: queue, st: uint8(stateIndex(state)), unique: unique}
	return true
}

// place copies rec with its header into a slab and returns where.
func (a *archive) place(hd uint32, rec []byte) (uint32, uint32) {
	n := headerSize + len(rec)
	var s uint32
	switch {
	case n > slabSize/4:
		s = a.newSlab(n)
	case int(a.cur) < len(a.slabs) && cap(a.slabs[a.cur].buf)-len(a.slabs[a.cur].buf) >= n:
		s = a.cur
	default:
		s = a.newSlab(slabSize)
		a.cur = s
	}
	sl := &a.slabs[s]
	off := len(sl.buf)
	sl.buf = binary.LittleEndian.AppendUint32(sl.buf, hd)
	sl.buf = binary.LittleEndian.AppendUint32(sl.buf, uint32(n))
	sl.buf = append(sl.buf, rec...)
	sl.live += n
	return s, uint32(off)
}

// newSlab starts a slab of size bytes. A full-size one takes the spare
// buffer when there is one: Sweep drops slabs as fast as Finish fills them,
// and a new buffer would cost an allocation, its zeroing and, in time, a
// garbage collection.
func (a *archive) newSlab(size int) uint32 {
	var buf []byte
	if size == slabSize && a.spare != nil {
		buf, a.spare = a.spare, nil
	} else {
		buf = make([]byte, 0, size)
	}
	if n := len(a.freeSlabs); n > 0 {
		s := a.freeSlabs[n-1]
		a.freeSlabs = a.freeSlabs[:n-1]
		a.slabs[s] = slab{buf: buf}
		return s
	}
	a.slabs = append(a.slabs, slab{buf: buf})
	return uint32(len(a.slabs) - 1)
}

// body returns the packed job of handle hd. It is valid until a changes.
func (a *archive) body(hd uint32) []byte {
	r := a.recs.at(hd)
	return a.slabs[r.slab].buf[r.off+headerSize : r.off+r.size]
}

// id returns the ID of handle hd without a copy: the string shares the
// slab's memory, so it is only for comparing, never for keeping.
func (a *archive) id(hd uint32) string {
	b := a.body(hd)
	h := headOf(b)
	return view(b, h.names, h.id)
}

// remove forgets the archived job hd, once Sweep popped its expiring entry.
func (a *archive) remove(hd uint32) {
	r := a.recs.at(hd)
	s, size := r.slab, int(r.size)
	*r = record{}
	a.release(s, size)
}

// take forgets the archived job hd for Requeue: its expiring entry turns
// stale.
func (a *archive) take(hd uint32) {
	a.remove(hd)
	a.expiring.stale++
	a.purgeExpiring()
}

// release frees size bytes of slab s. A slab with no record left is
// dropped; one that stays mostly empty (a long-kept job among short-kept
// ones) has its few records moved to the current slab, so that the memory
// held stays within four times the records' size. The move costs at most a
// quarter of the bytes freed before it.
func (a *archive) release(s uint32, size int) {
	sl := &a.slabs[s]
	sl.live -= size
	switch {
	case s == a.cur:
	case sl.live == 0:
		a.dropSlab(s)
	case sl.live < cap(sl.buf)/4 && cap(sl.buf) == slabSize:
		a.compact(s)
	}
}

// dropSlab frees slab s, keeping its buffer as the spare if it is
// full-size: at most one slab's memory is kept beyond the records'.
func (a *archive) dropSlab(s uint32) {
	if buf := a.slabs[s].buf; cap(buf) == slabSize {
		a.spare = buf[:0]
	}
	a.slabs[s] = slab{}
	a.freeSlabs = append(a.freeSlabs, s)
}

// compact moves the live records of slab s to the current slab and drops s.
// A record is live when its handle still points at it.
func (a *archive) compact(s uint32) {
	buf := a.slabs[s].buf
	for off := 0; off < len(buf); {
		hd := binary.LittleEndian.Uint32(buf[off:])
		n := int(binary.LittleEndian.Uint32(buf[off+4:]))
		if int(hd) < a.recs.n {
			if r := a.recs.at(hd); r.seq != 0 && r.slab == s && int(r.off) == off {
				ns, noff := a.place(hd, buf[off+headerSize:off+n])
				a.slabs[s].live -= n
				r.slab, r.off = ns, noff
			}
		}
		off += n
	}
	a.dropSlab(s)
}

// expiryEntry places an archived job in the expiring heap. It is live while
// the job's record has the same seq.
type expiryEntry struct {
	key int64 // ExpiresAt in nanoseconds
	seq uint64
	hd  uint32
}

// before reports whether e expires before f: by key, then seq.
func (e *expiryEntry) before(f *expiryEntry) bool {
	return e.key < f.key || e.key == f.key && e.seq < f.seq
}

// expiryHeap orders the archived jobs by (ExpiresAt, seq), for Sweep. Jobs
// with one TTL end in the order they expire, so nearly every entry comes
// after the one pushed before it: those go to a FIFO, in order, which costs
// O(1) to push and pop, and only the others to a binary min-heap; the
// smallest entry is the smaller of the FIFO's head and the heap's top. The
// FIFO holds an entry for each archived job, a million or more in a store
// that keeps a day of jobs, so it is a deque of chunks, which never copies
// its entries as it grows. A job that leaves the archive otherwise leaves a
// stale entry, which the heap skips when it meets it and purges with the
// others once they make up half of it. Its sifting is timeHeap's, over
// entries that hold no pointer; one generic heap for both would call its
// comparison through a dictionary on Lease's path, which timeHeap serves.
type expiryHeap struct {
	items []expiryEntry      // the heap of the entries pushed out of order
	fifo  deque[expiryEntry] // the entries pushed in order
	stale int
	seq   uint64
}

// next returns the seq that the next archived job's entry gets.
func (h *expiryHeap) next() uint64 {
	h.seq++
	return h.seq
}

func (h *expiryHeap) push(key int64, seq uint64, hd uint32) {
	e := expiryEntry{key: key, seq: seq, hd: hd}
	if h.fifo.len() == 0 || !e.before(h.fifo.back()) {
		h.fifo.pushBack(e)
		return
	}
	h.items = append(h.items, e)
	h.up(len(h.items) - 1)
}

// len returns the number of entries, stale ones included.
func (h *expiryHeap) len() int { return len(h.items) + h.fifo.len() }

// top returns the smallest entry, stale or not, or nil.
func (h *expiryHeap) top() *expiryEntry {
	if h.fifo.len() == 0 {
		if len(h.items) == 0 {
			return nil
		}
		return &h.items[0]
	}
	if f := h.fifo.front(); len(h.items) == 0 || f.before(&h.items[0]) {
		return f
	}
	return &h.items[0]
}

// minExpiring returns the live entry with the smallest key, or nil, dropping
// stale entries from the top on the way.
func (a *archive) minExpiring() *expiryEntry {
	h := &a.expiring
	for {
		e := h.top()
		if e == nil || a.recs.at(e.hd).seq == e.seq {
			return e
		}
		h.removeTop()
		h.stale--
	}
}

// popExpired takes the entries of the archived jobs that expire before key
// out of expiring, smallest first, and appends their handles to due until
// it is full.
func (a *archive) popExpired(key int64, due []uint32) []uint32 {
	for len(due) < cap(due) {
		e := a.minExpiring()
		if e == nil || e.key >= key {
			break
		}
		due = append(due, e.hd)
		a.expiring.removeTop()
	}
	return due
}

// purgeExpiring drops the stale entries once they are half the entries.
func (a *archive) purgeExpiring() {
	h := &a.expiring
	if h.stale < purgeMin || h.stale <= h.len()/2 {
		return
	}
	live := func(e *expiryEntry) bool { return a.recs.at(e.hd).seq == e.seq }
	h.items = slices.DeleteFunc(h.items, func(e expiryEntry) bool { return !live(&e) })
	h.fifo.filter(live) // keeps the order
	h.stale = 0
	for i := len(h.items)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
	if shrinkable(len(h.items), cap(h.items)) {
		h.items = slices.Clone(h.items)
	}
}

func (h *expiryHeap) less(i, k int) bool { return h.items[i].before(&h.items[k]) }

// removeTop removes the entry that top returns.
func (h *expiryHeap) removeTop() {
	if h.fifo.len() > 0 && (len(h.items) == 0 || h.fifo.front().before(&h.items[0])) {
		h.fifo.popFront()
		return
	}
	n := len(h.items) - 1
	h.items[0] = h.items[n]
	h.items = h.items[:n]
	if n > 0 {
		h.down(0)
	}
	if shrinkable(n, cap(h.items)) {
		h.items = slices.Clone(h.items)
	}
}

func (h *expiryHeap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !h.less(i, p) {
			return
		}
		h.items[i], h.items[p] = h.items[p], h.items[i]
		i = p
	}
}

func (h *expiryHeap) down(i int) {
	n := len(h.items)
	for {
		l := 2*i + 1
		if l >= n || l < 0 {
			return
		}
		c := l
		if r := l + 1; r < n && h.less(r, l) {
			c = r
		}
		if !h.less(c, i) {
			return
		}
		h.items[i], h.items[c] = h.items[c], h.items[i]
		i = c
	}
}

// The layout of a packed finished job. Every job that ends is packed, so
// the layout is one that is written without a varint loop or a growth check
// per field: fixed-width fields first, each group in a narrow width that
// fits its common values or, when a flag says so, a wide one that fits any;
// then the bytes of the strings. In order:
//
//   - the flags, a uint32: the pack* bits below, and from packTimes on the
//     kinds of the times, two bits each;
//   - the lengths of the ID, type, payload and result: bytes, or uint32s
//     under packWideLens;
//   - the ID and type, which archive.id and typeOf find right after the
//     lengths;
//   - the counters (Priority, Attempt, Failures, Stalls, MaxRetries,
//     MaxStalls, Progress): int8s, or int64s under packWideCounters;
//   - Timeout, ResultTTL and FailureTTL: uint32 whole seconds, or int64
//     nanoseconds under packWideDurations;
//   - the times, each as its kind says (see timeZero);
//   - the payload and result;
//   - under packExtras, UniqueKey, LimitKey, ProgressMessage and Error, each
//     after its uvarint length: most finished jobs have none of them;
//   - under packMeta, the uvarint number of entries, then each key and
//     value after its length;
//   - under packDepends, the uvarint number of IDs, then each after its
//     length.
//
// Queue and State live in the record; the lease fields are empty in every
// terminal job.
const (
	packPayload        = 1 << iota // Payload is not nil
	packResult                     // Result is not nil
	packMeta                       // Meta is not nil
	packDepends                    // DependsOn is not nil
	packExtras                     // UniqueKey, LimitKey, ProgressMessage or Error is not empty
	packWideLens                   // a length does not fit a byte
	packWideCounters               // a counter does not fit an int8
	packWideDurations              // a duration is not whole seconds that fit a uint32
	packExpiresResult              // ExpiresAt is FinishedAt plus ResultTTL, and not stored
	packExpiresFailure             // ExpiresAt is FinishedAt plus FailureTTL, and not stored

	packTimes = 16 // the shift of the times' kinds in the flags
)

const (
	numCounters  = 7
	numDurations = 3
	// numTimes is the number of times in a packed job: UniqueUntil,
	// CreatedAt, RunAt, StartedAt, FinishedAt and ExpiresAt, in that order.
	numTimes = 6
)

// The kinds of a packed time. Most times are zero or within the years 1678
// to 2262 that int64 nanoseconds cover, and a job's times are close to one
// another: it starts soon after it is created, and ends soon after it
// starts. A time less than 4.29 s after the one stored before it takes
// four bytes; ExpiresAt, the time a job ends plus its TTL, takes none (see
// packExpiresResult).
const (
	timeZero  = iota // nothing follows
	timeNanos        // int64 nanoseconds since the Unix epoch follow
	timeWide         // int64 seconds since the Unix epoch and uint32 nanoseconds follow
	timeAfter        // uint32 nanoseconds after the last time stored as timeNanos or timeAfter follow
)

// maxNanoSec is the largest number of seconds from the Unix epoch, either
// way, at which a time still fits int64 nanoseconds.
const maxNanoSec = math.MaxInt64/int64(time.Second) - 1

// pack appends the packed j to buf (see packInto).
func pack(buf []byte, j *backend.Job) []byte {
	most := packBound(j)
	buf = slices.Grow(buf, most)
	n := len(buf)
	return buf[:n+packInto(buf[n:n+most], j)]
}

// packBound returns a size that packInto never exceeds for j: every group
// at its wide width.
func packBound(j *backend.Job) int {
	const fixed = 4 + 4*4 + numCounters*8 + numDurations*8 + numTimes*12
	n := fixed + len(j.ID) + len(j.Type) + len(j.Payload) + len(j.Result)
	if j.UniqueKey != "" || j.LimitKey != "" || j.ProgressMessage != "" || j.Error != "" {
		n += 4*binary.MaxVarintLen64 + len(j.UniqueKey) + len(j.LimitKey) + len(j.ProgressMessage) + len(j.Error)
	}
	if j.Meta != nil {
		n += (1 + 2*len(j.Meta)) * binary.MaxVarintLen64
		for k, v := range j.Meta {
			n += len(k) + len(v)
		}
	}
	if j.DependsOn != nil {
		n += (1 + len(j.DependsOn)) * binary.MaxVarintLen64
		for _, d := range j.DependsOn {
			n += len(d)
		}
	}
	return n
}

// packInto writes the terminal job j, packed, at the start of dst, which
// has room for packBound(j) bytes, and returns how many it wrote.
func packInto(dst []byte, j *backend.Job) int {
	le := binary.LittleEndian
	var flags uint32
	if j.Payload != nil {
		flags |= packPayload
	}
	if j.Result != nil {
		flags |= packResult
	}
	if j.Meta != nil {
		flags |= packMeta
	}
	if j.DependsOn != nil {
		flags |= packDepends
	}
	if j.UniqueKey != "" || j.LimitKey != "" || j.ProgressMessage != "" || j.Error != "" {
		flags |= packExtras
	}

	at := 4
	if uint(len(j.ID)|len(j.Type)|len(j.Payload)|len(j.Result)) <= math.MaxUint8 {
		dst[4], dst[5], dst[6], dst[7] = byte(len(j.ID)), byte(len(j.Type)), byte(len(j.Payload)), byte(len(j.Result))
		at += 4
	} else {
		flags |= packWideLens
		le.PutUint32(dst[4:], uint32(len(j.ID)))
		le.PutUint32(dst[8:], uint32(len(j.Type)))
		le.PutUint32(dst[12:], uint32(len(j.Payload)))
		le.PutUint32(dst[16:], uint32(len(j.Result)))
		at += 16
	}
	at += copy(dst[at:], j.ID)
	at += copy(dst[at:], j.Type)

	// Each counter plus 128 is below 256 when it fits an int8; unrolled,
	// the test costs a few instructions.
	if uint((j.Priority+128)|(j.Attempt+128)|(j.Failures+128)|(j.Stalls+128)|
		(j.MaxRetries+128)|(j.MaxStalls+128)|(j.Progress+128)) <= math.MaxUint8 {
		c := dst[at : at+numCounters]
		c[0], c[1], c[2], c[3] = byte(j.Priority), byte(j.Attempt), byte(j.Failures), byte(j.Stalls)
		c[4], c[5], c[6] = byte(j.MaxRetries), byte(j.MaxStalls), byte(j.Progress)
		at += numCounters
	} else {
		flags |= packWideCounters
		for _, v := range [numCounters]int{j.Priority, j.Attempt, j.Failures, j.Stalls, j.MaxRetries, j.MaxStalls, j.Progress} {
			le.PutUint64(dst[at:], uint64(v))
			at += 8
		}
	}

	if wholeSeconds(j.Timeout) && wholeSeconds(j.ResultTTL) && wholeSeconds(j.FailureTTL) {
		le.PutUint32(dst[at:], uint32(j.Timeout/time.Second))
		le.PutUint32(dst[at+4:], uint32(j.ResultTTL/time.Second))
		le.PutUint32(dst[at+8:], uint32(j.FailureTTL/time.Second))
		at += 4 * numDurations
	} else {
		flags |= packWideDurations
		le.PutUint64(dst[at:], uint64(j.Timeout))
		le.PutUint64(dst[at+8:], uint64(j.ResultTTL))
		le.PutUint64(dst[at+16:], uint64(j.FailureTTL))
		at += 8 * numDurations
	}

	times := [numTimes]*time.Time{&j.UniqueUntil, &j.CreatedAt, &j.RunAt, &j.StartedAt, &j.FinishedAt, &j.ExpiresAt}
	var last int64 // the last time stored in nanoseconds
	haveLast := false
	for i := range numTimes {
		t := times[i]
		if t.IsZero() {
			continue
		}
		s, ns := t.Unix(), int64(t.Nanosecond())
		if s < -maxNanoSec || s > maxNanoSec {
			flags |= timeWide << (packTimes + 2*i)
			le.PutUint64(dst[at:], uint64(s))
			le.PutUint32(dst[at+8:], uint32(ns))
			at += 12
			continue
		}
		v := s*int64(time.Second) + ns
		// FinishedAt's kind has its low bit set when it was stored in
		// nanoseconds, which last then holds. The difference wraps around
		// as unpack's sum does, so that unpack restores v whenever it
		// matches a TTL.
		finished := i == numTimes-1 && flags>>(packTimes+2*(numTimes-2))&1 != 0
		switch {
		case finished && v-last == int64(j.ResultTTL):
			flags |= packExpiresResult
		case finished && v-last == int64(j.FailureTTL):
			flags |= packExpiresFailure
		case haveLast && v >= last && uint64(v-last) <= math.MaxUint32:
			flags |= timeAfter << (packTimes + 2*i)
			le.PutUint32(dst[at:], uint32(v-last))
			at += 4
		default:
			flags |= timeNanos << (packTimes + 2*i)
			le.PutUint64(dst[at:], uint64(v))
			at += 8
		}
		last, haveLast = v, true
	}

	at += copy(dst[at:], j.Payload)
	at += copy(dst[at:], j.Result)
	if flags&packExtras != 0 {
		at = putString(dst, at, j.UniqueKey)
		at = putString(dst, at, j.LimitKey)
		at = putString(dst, at, j.ProgressMessage)
		at = putString(dst, at, j.Error)
	}
	if j.Meta != nil {
		at += binary.PutUvarint(dst[at:], uint64(len(j.Meta)))
		for k, v := range j.Meta {
			at = putString(dst, at, k)
			at = putString(dst, at, v)
		}
	}
	if j.DependsOn != nil {
		at += binary.PutUvarint(dst[at:], uint64(len(j.DependsOn)))
		for _, d := range j.DependsOn {
			at = putString(dst, at, d)
		}
	}
	le.PutUint32(dst, flags)
	return at
}

// wholeSeconds reports whether d packs as a uint32 of seconds.
func wholeSeconds(d time.Duration) bool {
	return d%time.Second == 0 && uint64(d/time.Second) <= math.MaxUint32
}

// putString writes s after its uvarint length at dst[at:] and returns where
// it ends.
func putString(dst []byte, at int, s string) int {
	at += binary.PutUvarint(dst[at:], uint64(len(s)))
	return at + copy(dst[at:], s)
}

// appendString appends s after its length. It takes byte slices too, for
// fields where nil need not be told from empty.
func appendString[S ~string | ~[]byte](buf []byte, s S) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(s)))
	return append(buf, s...)
}

// packedHead is what the start of a packed finished job says: its flags,
// the lengths of its ID, type, payload and result, and where its ID
// starts, the type right after it.
type packedHead struct {
	flags                    uint32
	id, typ, payload, result int
	names                    int
}

func headOf(b []byte) packedHead {
	le := binary.LittleEndian
	h := packedHead{flags: le.Uint32(b)}
	if h.flags&packWideLens == 0 {
		h.id, h.typ, h.payload, h.result = int(b[4]), int(b[5]), int(b[6]), int(b[7])
		h.names = 8
	} else {
		h.id, h.typ = int(le.Uint32(b[4:])), int(le.Uint32(b[8:]))
		h.payload, h.result = int(le.Uint32(b[12:])), int(le.Uint32(b[16:]))
		h.names = 20
	}
	return h
}

// view returns the n bytes of b at at as a string that shares b's memory
// (see archive.id).
func view(b []byte, at, n int) string {
	if n == 0 {
		return ""
	}
	return unsafe.String(&b[at], n)
}

// unpacker reads varints and strings; what it reads was written by this
// package, so it does not check for a short buffer.
type unpacker struct{ b []byte }

func (u *unpacker) uvarint() uint64 {
	v, n := binary.Uvarint(u.b)
	u.b = u.b[n:]
	return v
}

func (u *unpacker) varint() int64 {
	v, n := binary.Varint(u.b)
	u.b = u.b[n:]
	return v
}

func (u *unpacker) string() string {
	n := u.uvarint()
	s := string(u.b[:n])
	u.b = u.b[n:]
	return s
}

// unpack fills j with the packed job in b; every string and slice is a copy.
func unpack(b []byte, j *backend.Job) {
	le := binary.LittleEndian
	h := headOf(b)
	at := h.names
	j.ID = string(b[at : at+h.id])
	at += h.id
	j.Type = string(b[at : at+h.typ])
	at += h.typ

	var counters [numCounters]int
	if h.flags&packWideCounters == 0 {
		for i, c := range b[at : at+numCounters] {
			counters[i] = int(int8(c))
		}
		at += numCounters
	} else {
		for i := range counters {
			counters[i] = int(int64(le.Uint64(b[at:])))
			at += 8
		}
	}
	j.Priority, j.Attempt, j.Failures, j.Stalls = counters[0], counters[1], counters[2], counters[3]
	j.MaxRetries, j.MaxStalls, j.Progress = counters[4], counters[5], counters[6]

	var durations [numDurations]time.Duration
	if h.flags&packWideDurations == 0 {
		for i := range durations {
			durations[i] = time.Duration(le.Uint32(b[at:])) * time.Second
			at += 4
		}
	} else {
		for i := range durations {
			durations[i] = time.Duration(le.Uint64(b[at:]))
			at += 8
		}
	}
	j.Timeout, j.ResultTTL, j.FailureTTL = durations[0], durations[1], durations[2]

	var times [numTimes]time.Time
	var last int64
	for i := range times {
		switch h.flags >> (packTimes + 2*i) & 3 {
		case timeNanos:
			last = int64(le.Uint64(b[at:]))
			times[i] = time.Unix(0, last).UTC()
			at += 8
		case timeAfter:
			last += int64(le.Uint32(b[at:]))
			times[i] = time.Unix(0, last).UTC()
			at += 4
		case timeWide:
			times[i] = time.Unix(int64(le.Uint64(b[at:])), int64(le.Uint32(b[at+8:]))).UTC()
			at += 12
		}
	}
	// A derived ExpiresAt is stored as zero, so last holds FinishedAt; the
	// sum wraps as packInto's difference did.
	switch {
	case h.flags&packExpiresResult != 0:
		times[numTimes-1] = time.Unix(0, last+int64(j.ResultTTL)).UTC()
	case h.flags&packExpiresFailure != 0:
		times[numTimes-1] = time.Unix(0, last+int64(j.FailureTTL)).UTC()
	}
	j.UniqueUntil, j.CreatedAt, j.RunAt, j.StartedAt, j.FinishedAt, j.ExpiresAt = times[0], times[1], times[2], times[3], times[4], times[5]

	if h.flags&packPayload != 0 {
		j.Payload = bytes.Clone(b[at : at+h.payload])
	}
	at += h.payload
	if h.flags&packResult != 0 {
		j.Result = bytes.Clone(b[at : at+h.result])
	}
	at += h.result
	u := unpacker{b: b[at:]}
	if h.flags&packExtras != 0 {
		j.UniqueKey = u.string()
		j.LimitKey = u.string()
		j.ProgressMessage = u.string()
		j.Error = u.string()
	}
	if h.flags&packMeta != 0 {
		n := int(u.uvarint())
		j.Meta = make(map[string]string, n)
		for range n {
			k := u.string()
			j.Meta[k] = u.string()
		}
	}
	if h.flags&packDepends != 0 {
		j.DependsOn = make([]string, u.uvarint())
		for i := range j.DependsOn {
			j.DependsOn[i] = u.string()
		}
	}
}

// typeOf returns the Type of a packed job as a view (see archive.id).
func typeOf(b []byte) string {
	h := headOf(b)
	return view(b, h.names+h.id, h.typ)
}

// uniqueOf returns the UniqueKey (a copy) and UniqueUntil of a packed job.
func uniqueOf(b []byte) (string, time.Time) {
	var j backend.Job
	unpack(b, &j)
	return j.UniqueKey, j.UniqueUntil
}
