package memory

import (
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
	// offset there (see queuedBlock); the other fields are unset.
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
// current slab, without the copy that add makes, and returns true; it does
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
	buf := binary.LittleEndian.AppendUint32(sl.buf, hd)
	buf = binary.LittleEndian.AppendUint32(buf, 0) // the size, once known
	buf = pack(buf, j)
	n := len(buf) - off
	binary.LittleEndian.PutUint32(buf[off+4:], uint32(n))
	sl.buf = buf
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
	u := unpacker{b: a.body(hd)}
	return u.view()
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

// pack appends the fields of a terminal job to buf, in the order unpack
// reads them. Queue and State live in the record; the lease fields are
// empty in every terminal job.
func pack(buf []byte, j *backend.Job) []byte {
	buf = appendString(buf, j.ID)
	buf = appendString(buf, j.Type)
	buf = appendBytes(buf, j.Payload)
	buf = appendLen(buf, len(j.Meta), j.Meta == nil)
	for k, v := range j.Meta {
		buf = appendString(buf, k)
		buf = appendString(buf, v)
	}
	for _, v := range [...]int64{int64(j.Priority), int64(j.Attempt), int64(j.Failures), int64(j.Stalls),
		int64(j.MaxRetries), int64(j.MaxStalls), int64(j.Progress),
		int64(j.Timeout), int64(j.ResultTTL), int64(j.FailureTTL)} {
		buf = binary.AppendVarint(buf, v)
	}
	buf = appendString(buf, j.UniqueKey)
	buf = appendString(buf, j.LimitKey)
	buf = appendString(buf, j.ProgressMessage)
	buf = appendString(buf, j.Error)
	buf = appendLen(buf, len(j.DependsOn), j.DependsOn == nil)
	for _, d := range j.DependsOn {
		buf = appendString(buf, d)
	}
	buf = appendBytes(buf, j.Result)
	return appendTimes(buf, &[numTimes]time.Time{j.UniqueUntil, j.CreatedAt, j.RunAt, j.StartedAt, j.FinishedAt, j.ExpiresAt})
}

// packBound returns a size that pack never exceeds for j: every length and
// number at its longest varint, every time at its widest.
func packBound(j *backend.Job) int {
	const lengths = 11 // of the strings, byte slices, Meta and DependsOn
	n := (lengths+2*len(j.Meta)+len(j.DependsOn))*binary.MaxVarintLen64 + 10*binary.MaxVarintLen64 + 2 + numTimes*12 +
		len(j.ID) + len(j.Type) + len(j.Payload) + len(j.UniqueKey) + len(j.LimitKey) + len(j.ProgressMessage) +
		len(j.Error) + len(j.Result)
	for k, v := range j.Meta {
		n += len(k) + len(v)
	}
	for _, d := range j.DependsOn {
		n += len(d)
	}
	return n
}

// numTimes is the number of times in a packed job.
const numTimes = 6

// The kinds of a packed time. Most times are zero or within the years 1678
// to 2262 that int64 nanoseconds cover, so they pack into nothing or one
// fixed-size word: no varint loop, and fewer bytes than a varint of seconds
// and one of nanoseconds.
const (
	timeZero  = iota // nothing follows
	timeNanos        // int64 nanoseconds since the Unix epoch follow
	timeWide         // int64 seconds since the Unix epoch and uint32 nanoseconds follow
)

// appendTimes packs ts: a uint16 of their kinds, two bits each, then each
// time as its kind says. The kinds are written last, into room kept for
// them, so that each time is read once.
func appendTimes(buf []byte, ts *[numTimes]time.Time) []byte {
	const maxSec = math.MaxInt64/int64(time.Second) - 1
	at := len(buf)
	buf = append(buf, 0, 0)
	var kinds uint16
	for i := range ts {
		if ts[i].IsZero() {
			continue
		}
		s, ns := ts[i].Unix(), ts[i].Nanosecond()
		if s >= -maxSec && s <= maxSec {
			kinds |= timeNanos << (2 * i)
			buf = binary.LittleEndian.AppendUint64(buf, uint64(s*int64(time.Second)+int64(ns)))
			continue
		}
		kinds |= timeWide << (2 * i)
		buf = binary.LittleEndian.AppendUint64(buf, uint64(s))
		buf = binary.LittleEndian.AppendUint32(buf, uint32(ns))
	}
	binary.LittleEndian.PutUint16(buf[at:], kinds)
	return buf
}

// appendString appends s after its length. It takes byte slices too, for
// fields where nil need not be told from empty (see appendBytes for the
// others).
func appendString[S ~string | ~[]byte](buf []byte, s S) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(s)))
	return append(buf, s...)
}

// appendLen stores the length of a slice or map so that unpack tells nil
// from empty: 0 for nil, else the length plus one.
func appendLen(buf []byte, n int, isNil bool) []byte {
	if isNil {
		return binary.AppendUvarint(buf, 0)
	}
	return binary.AppendUvarint(buf, uint64(n)+1)
}

func appendBytes(buf, b []byte) []byte {
	return append(appendLen(buf, len(b), b == nil), b...)
}

// unpacker reads a packed job; the record was made by pack, so it does not
// check for a short buffer.
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

// view passes over a string and returns a view of it (see archive.id).
func (u *unpacker) view() string {
	n := int(u.uvarint())
	if n == 0 {
		return ""
	}
	s := unsafe.String(&u.b[0], n)
	u.b = u.b[n:]
	return s
}

func (u *unpacker) bytes() []byte {
	n := u.uvarint()
	if n == 0 {
		return nil
	}
	b := make([]byte, n-1)
	u.b = u.b[copy(b, u.b):]
	return b
}

// times reads what appendTimes packed.
func (u *unpacker) times(ts *[numTimes]time.Time) {
	kinds := binary.LittleEndian.Uint16(u.b)
	u.b = u.b[2:]
	for i := range ts {
		switch kinds >> (2 * i) & 3 {
		case timeZero:
			ts[i] = time.Time{}
		case timeNanos:
			ts[i] = time.Unix(0, int64(binary.LittleEndian.Uint64(u.b))).UTC()
			u.b = u.b[8:]
		default:
			ts[i] = time.Unix(int64(binary.LittleEndian.Uint64(u.b)), int64(binary.LittleEndian.Uint32(u.b[8:]))).UTC()
			u.b = u.b[12:]
		}
	}
}

// unpack fills j with the packed job in b; every string and slice is a copy.
func unpack(b []byte, j *backend.Job) {
	u := unpacker{b: b}
	j.ID = u.string()
	j.Type = u.string()
	j.Payload = u.bytes()
	if n := u.uvarint(); n > 0 {
		j.Meta = make(map[string]string, n-1)
		for range n - 1 {
			k := u.string()
			j.Meta[k] = u.string()
		}
	}
	j.Priority = int(u.varint())
	j.Attempt = int(u.varint())
	j.Failures = int(u.varint())
	j.Stalls = int(u.varint())
	j.MaxRetries = int(u.varint())
	j.MaxStalls = int(u.varint())
	j.Progress = int(u.varint())
	j.Timeout = time.Duration(u.varint())
	j.ResultTTL = time.Duration(u.varint())
	j.FailureTTL = time.Duration(u.varint())
	j.UniqueKey = u.string()
	j.LimitKey = u.string()
	j.ProgressMessage = u.string()
	j.Error = u.string()
	if n := u.uvarint(); n > 0 {
		j.DependsOn = make([]string, n-1)
		for i := range j.DependsOn {
			j.DependsOn[i] = u.string()
		}
	}
	j.Result = u.bytes()
	var ts [numTimes]time.Time
	u.times(&ts)
	j.UniqueUntil, j.CreatedAt, j.RunAt, j.StartedAt, j.FinishedAt, j.ExpiresAt = ts[0], ts[1], ts[2], ts[3], ts[4], ts[5]
}

// typeOf returns the Type of a packed job as a view (see archive.id).
func typeOf(b []byte) string {
	u := unpacker{b: b}
	u.view()
	return u.view()
}

// uniqueOf returns the UniqueKey (a copy) and UniqueUntil of a packed job.
func uniqueOf(b []byte) (string, time.Time) {
	var j backend.Job
	unpack(b, &j)
	return j.UniqueKey, j.UniqueUntil
}
