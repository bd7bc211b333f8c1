package memory

import (
	"encoding/binary"
	"math"
	"time"
	"unsafe"

	"github.com/jobrelay/engine/backend"
)

// A backlog of queued jobs is most of what a busy store holds that is not
// finished: a producer far faster than its workers queues millions. Each
// as a record (see job) would cost 512 bytes, a copy of its payload and
// the collector's marking of both. So Enqueue packs the jobs that need
// nothing of a record while they wait (see packable) into queuedBlocks,
// pointer-free bytes that the collector does not scan (see appendQueued),
// and their ready entries point into the blocks; Lease makes a record of a packed job only when it
// takes it (see popReady), so that only the leased jobs have records. A
// call under both mutexes that meets a packed job by ID makes its record at
// once, in its place in the ready queue (see liveAt).
//
// A block is reached two ways: from the ready entries of its jobs, under
// mu, and by number from Backend.blocks, under smu, for the ID table and
// index, which read a packed job's ID. A job stays packed for smu until the
// record Lease made of it is adopted (see adopt): the record then takes its
// handle, and the block is dropped from blocks once none of its jobs is
// packed; the entries that still point to it keep it in memory until they
// are popped.

// queuedBlockSize is the size of a block of packed queued jobs. A job's
// ID and payload are views of its block, which stays in memory while they
// do, so blocks are kept small; a job above queuedBlockSize/4 gets a block
// of its own.
const queuedBlockSize = 16 << 10

// queuedBlock holds packed queued jobs of one Enqueue call, each at its
// offset (see appendQueued for the layout).
type queuedBlock struct {
	// buf is never written once Enqueue stored the block, so that views of
	// it (IDs, payloads) stay valid.
	buf     []byte
	created time.Time // the CreatedAt of its jobs, which one Enqueue made
	// settings are those of the block's jobs that do not have their own.
	settings queuedSettings
	num      uint32 // its number in Backend.blocks, under smu
	left     int    // its jobs that are still packed, under smu
	// moved holds, under mu, the records made in place of packed jobs whose
	// entries are still in a ready queue, by offset (see liveAt).
	moved map[uint32]movedJob
}

// movedJob is the record made in place of a packed job, with the gen of
// the entry that it took over.
type movedJob struct {
	j   *job
	gen uint32
}

// takeMoved returns the entry of the record made in place of the packed
// job of e, forgetting it, or e when there is none.
func (blk *queuedBlock) takeMoved(e readyEntry) readyEntry {
	m, ok := blk.moved[e.off]
	if !ok {
		return e
	}
	delete(blk.moved, e.off)
	if len(blk.moved) == 0 {
		blk.moved = nil
	}
	return readyEntry{key: e.key, j: m.j, gen: m.gen}
}

// packedRef is a job that Enqueue packed: its block, its offset there and,
// once stored, its handle.
type packedRef struct {
	blk *queuedBlock
	off uint32
	hd  uint32
}

// packable reports whether the batch can be packed: a plain batch (see
// plain) of jobs that are due at now, have no limit key (which Lease would
// look up by record), and fit the packed layout.
func packable(jobs []backend.NewJob, now time.Time) bool {
	for i := range jobs {
		nj := &jobs[i]
		if nj.ID == "" || nj.UniqueKey != "" || nj.DependsOn != nil || nj.LimitKey != "" ||
			nj.RunAt.After(now) || i > 0 && jobs[i-1].ID >= nj.ID ||
			len(nj.Queue) > math.MaxUint16 || len(nj.ID) > math.MaxUint16 || len(nj.Type) > math.MaxUint16 ||
			int64(len(nj.Payload)) > math.MaxUint32 || !fitsInt32(nj.Priority) || !fitsInt32(nj.MaxRetries) ||
			!fitsInt32(nj.MaxStalls) || !nj.RunAt.IsZero() && nanos(nj.RunAt) == math.MinInt64 {
			return false
		}
	}
	return true
}

func fitsInt32(v int) bool { return v >= math.MinInt32 && v <= math.MaxInt32 }

// The layout of a packed queued job, from its offset in its block: a
// header of fixed-width fields, quick to read for Lease, which reads it
// once per job; then its queue's name, ID, type, payload and, when the
// flags say so, its metadata. The settings (priority, retries, timeout,
// TTLs) follow the header only when they differ from the block's, which
// are those of its first job: the jobs of one Enqueue call mostly share
// them. The CreatedAt of every job of a block is the block's.
const (
	qQueueLen   = 0  // uint16
	qIDLen      = 2  // uint16
	qTypeLen    = 4  // uint16
	qFlags      = 6  // uint8: qHas*
	qPayloadLen = 8  // uint32
	qHeader     = 12 // then the settings, then RunAt, each if flagged

	qSettings = 36 // int32 priority, max retries, max stalls; int64 nanoseconds of timeout and TTLs
	qRunAt    = 8  // int64 nanoseconds since the Unix epoch
)

// The flags of a packed queued job.
const (
	qHasPayload  = 1 << iota // the payload is not nil
	qHasMeta                 // metadata follows the payload
	qHasRunAt                // RunAt is not the zero time
	qHasSettings             // the job's settings are not its block's
)

// queuedSettings are the fields of a new job that its block may share.
type queuedSettings struct {
	priority, maxRetries, maxStalls int32
	timeout, resultTTL, failureTTL  time.Duration
}

func settingsOf(nj *backend.NewJob) queuedSettings {
	return queuedSettings{int32(nj.Priority), int32(nj.MaxRetries), int32(nj.MaxStalls),
		nj.Timeout, nj.ResultTTL, nj.FailureTTL}
}

// appendQueued appends the packed queued job nj to buf, whose block's
// settings are bs.
func appendQueued(buf []byte, nj *backend.NewJob, bs *queuedSettings) []byte {
	var flags uint8
	if nj.Payload != nil {
		flags |= qHasPayload
	}
	if nj.Meta != nil {
		flags |= qHasMeta
	}
	if !nj.RunAt.IsZero() {
		flags |= qHasRunAt
	}
	s := settingsOf(nj)
	if s != *bs {
		flags |= qHasSettings
	}
	le := binary.LittleEndian
	buf = le.AppendUint16(buf, uint16(len(nj.Queue)))
	buf = le.AppendUint16(buf, uint16(len(nj.ID)))
	buf = le.AppendUint16(buf, uint16(len(nj.Type)))
	buf = append(buf, flags, 0)
	buf = le.AppendUint32(buf, uint32(len(nj.Payload)))
	if flags&qHasSettings != 0 {
		buf = le.AppendUint32(buf, uint32(s.priority))
		buf = le.AppendUint32(buf, uint32(s.maxRetries))
		buf = le.AppendUint32(buf, uint32(s.maxStalls))
		buf = le.AppendUint64(buf, uint64(s.timeout))
		buf = le.AppendUint64(buf, uint64(s.resultTTL))
		buf = le.AppendUint64(buf, uint64(s.failureTTL))
	}
	if flags&qHasRunAt != 0 {
		buf = le.AppendUint64(buf, uint64(nanos(nj.RunAt)))
	}
	buf = append(buf, nj.Queue...)
	buf = append(buf, nj.ID...)
	buf = append(buf, nj.Type...)
	buf = append(buf, nj.Payload...)
	if nj.Meta != nil {
		buf = binary.AppendUvarint(buf, uint64(len(nj.Meta)))
		for k, v := range nj.Meta {
			buf = appendString(buf, k)
			buf = appendString(buf, v)
		}
	}
	return buf
}

// queuedBound returns a size that appendQueued never exceeds for nj.
func queuedBound(nj *backend.NewJob) int {
	n := qHeader + qSettings + qRunAt + len(nj.Queue) + len(nj.ID) + len(nj.Type) + len(nj.Payload)
	if nj.Meta != nil {
		n += (1 + 2*len(nj.Meta)) * binary.MaxVarintLen64
		for k, v := range nj.Meta {
			n += len(k) + len(v)
		}
	}
	return n
}

// packedJob is a view of a packed queued job: its block's bytes from the
// job's offset on.
type packedJob []byte

func (p packedJob) u16(at int) int { return int(binary.LittleEndian.Uint16(p[at:])) }

// view returns n bytes at at as a string that shares the block's memory.
func (p packedJob) view(at, n int) string {
	if n == 0 {
		return ""
	}
	return unsafe.String(&p[at], n)
}

// names returns the job's queue name, ID and type, views of its block,
// and where the bytes after them start.
func (p packedJob) names() (queue, id, typ string, end int) {
	at := qHeader
	if p[qFlags]&qHasSettings != 0 {
		at += qSettings
	}
	if p[qFlags]&qHasRunAt != 0 {
		at += qRunAt
	}
	nq, ni, nt := p.u16(qQueueLen), p.u16(qIDLen), p.u16(qTypeLen)
	queue = p.view(at, nq)
	at += nq
	id = p.view(at, ni)
	at += ni
	return queue, id, p.view(at, nt), at + nt
}

// settings returns the job's settings: its own, or its block's, bs.
func (p packedJob) settings(bs *queuedSettings) queuedSettings {
	if p[qFlags]&qHasSettings == 0 {
		return *bs
	}
	le := binary.LittleEndian
	s := p[qHeader:]
	return queuedSettings{int32(le.Uint32(s)), int32(le.Uint32(s[4:])), int32(le.Uint32(s[8:])),
		time.Duration(le.Uint64(s[12:])), time.Duration(le.Uint64(s[20:])), time.Duration(le.Uint64(s[28:]))}
}

// fill sets the fields of the cleared j that a queued job has, from p and
// its block blk: ID and payload are views of the block, Type too (the
// caller replaces it); Queue and State are the caller's.
func (p packedJob) fill(j *backend.Job, blk *queuedBlock) {
	flags := p[qFlags]
	s := p.settings(&blk.settings)
	j.Priority, j.MaxRetries, j.MaxStalls = int(s.priority), int(s.maxRetries), int(s.maxStalls)
	j.Timeout, j.ResultTTL, j.FailureTTL = s.timeout, s.resultTTL, s.failureTTL
	if flags&qHasRunAt != 0 {
		at := qHeader
		if flags&qHasSettings != 0 {
			at += qSettings
		}
		j.RunAt = time.Unix(0, int64(binary.LittleEndian.Uint64(p[at:]))).UTC()
	}
	_, id, typ, at := p.names()
	j.ID, j.Type = id, typ
	if flags&qHasPayload != 0 {
		n := int(binary.LittleEndian.Uint32(p[qPayloadLen:]))
		j.Payload = p[at : at+n : at+n]
		at += n
	}
	if flags&qHasMeta != 0 {
		u := unpacker{b: p[at:]}
		m := int(u.uvarint())
		j.Meta = make(map[string]string, m)
		for range m {
			k := u.string()
			j.Meta[k] = u.string()
		}
	}
	j.CreatedAt = blk.created
}

// packJobs packs jobs, as created at now, into blocks and returns where
// each went. It takes no mutex.
func packJobs(jobs []backend.NewJob, now time.Time) []packedRef {
	refs := make([]packedRef, len(jobs))
	left := 0 // the bound of the jobs not yet packed
	for i := range jobs {
		left += queuedBound(&jobs[i])
	}
	var blk *queuedBlock
	for i := range jobs {
		nj := &jobs[i]
		most := queuedBound(nj)
		if blk == nil || cap(blk.buf)-len(blk.buf) < most {
			// A block as large as the jobs left need, up to the size of a
			// block, so that a small batch takes no more than it needs.
			size := min(left, queuedBlockSize)
			if most > queuedBlockSize/4 {
				size = most
			}
			blk = &queuedBlock{buf: make([]byte, 0, size), created: now, settings: settingsOf(nj)}
		}
		off := len(blk.buf)
		blk.buf = appendQueued(blk.buf, nj, &blk.settings)
		refs[i] = packedRef{blk: blk, off: uint32(off)}
		left -= most
	}
	return refs
}

// storePacked gives the packed jobs refs, whose IDs hash to hashes and rise
// above every stored one, their handles and blocks their numbers; the
// caller holds smu.
func (b *Backend) storePacked(refs []packedRef, hashes []uint64) {
	var last *queuedBlock
	for i := range refs {
		ref := &refs[i]
		if ref.blk != last {
			last = ref.blk
			if n := len(b.freeBlocks); n > 0 {
				last.num = b.freeBlocks[n-1]
				b.freeBlocks = b.freeBlocks[:n-1]
				b.blocks[last.num] = last
			} else {
				last.num = uint32(len(b.blocks))
				b.blocks = append(b.blocks, last)
			}
		}
		last.left++
		ref.hd = b.newHandle()
		*b.arch.recs.at(ref.hd) = record{slab: last.num, off: ref.off, st: uint8(stateIndex(backend.StateQueued)), packed: true}
		b.jobs.ids.insert(hashes[i], ref.hd)
		b.byID.push(ref.hd)
	}
}

// packedID returns the ID of the packed job of record r, as a view of its
// block (see archive.id); the caller holds smu.
func (b *Backend) packedID(r *record) string {
	_, id, _, _ := packedJob(b.blocks[r.slab].buf[r.off:]).names()
	return id
}

// becomeDuePacked queues the packed job ref, created at now, at the back of
// its queue; the caller holds mu. It reads what it needs from the block:
// the queue, the ID and type for the event, the priority.
func (b *Backend) becomeDuePacked(ref *packedRef, now time.Time) {
	p := packedJob(ref.blk.buf[ref.off:])
	name, id, typ, _ := p.names()
	q := b.queueLocked(name)
	q.counts[stateIndex(backend.StateQueued)]++
	q.ready.pushPacked(int(p.settings(&ref.blk.settings).priority), ref.blk, ref.off, ref.hd)
	b.jobReady()
	b.record(&b.events, backend.EventQueued, id, typ, q.num, backend.StateQueued, 0, now, nil)
}

// popReady takes the next job of q's ready queue and returns its record
// and place, or nil. A packed job gets its record here, which smu adopts
// when this call hands its jobs over (see adopt); the caller holds mu.
func (b *Backend) popReady(q *queue) (*job, int64) {
	e := q.ready.pop()
	if e.j != nil || e.blk == nil {
		return e.j, e.key
	}
	j := b.spareJob(&b.leaseSpare)
	b.fillPacked(j, e.blk, e.off, e.gen, q)
	b.fresh = append(b.fresh, j)
	return j, e.key
}

// fillPacked fills the cleared record j with the packed job at off in blk,
// whose handle is hd and queue q: its ID and payload are views of the
// block, its type the type table's copy.
func (b *Backend) fillPacked(j *job, blk *queuedBlock, off, hd uint32, q *queue) {
	packedJob(blk.buf[off:]).fill(&j.Job, blk)
	j.Type = b.types.canonical(j.Type)
	j.Queue = q.name
	j.State = backend.StateQueued
	j.hd = hd
}

// adopt makes j, the record made of a packed job, the job's live record:
// it takes the job's handle from its block. The caller holds smu, and j's
// fields that smu reads (hd, ID) are set.
func (b *Backend) adopt(j *job) {
	r := b.arch.recs.at(j.hd)
	blk := b.blocks[r.slab]
	*r = record{}
	*b.jobs.live.at(j.hd) = j
	if blk.left--; blk.left == 0 {
		b.blocks[blk.num] = nil
		b.freeBlocks = append(b.freeBlocks, blk.num)
	}
}

// liveAt returns the live record of the stored job hd, or nil when it is
// archived. A packed job gets its record here, in its place in its ready
// queue; the caller holds both mutexes (see lockBoth: no record made by
// Lease then waits for adoption).
func (b *Backend) liveAt(hd uint32) *job {
	if j := *b.jobs.live.at(hd); j != nil {
		return j
	}
	r := b.arch.recs.at(hd)
	if !r.packed {
		return nil
	}
	blk, off := b.blocks[r.slab], r.off
	name, _, _, _ := packedJob(blk.buf[off:]).names()
	q := b.queueLocked(name)
	j := b.spareJob(&b.leaseSpare)
	b.fillPacked(j, blk, off, hd, q)
	j.gen++
	if blk.moved == nil {
		blk.moved = make(map[uint32]movedJob)
	}
	blk.moved[off] = movedJob{j: j, gen: j.gen}
	b.adopt(j)
	return j
}
