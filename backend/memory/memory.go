// Package memory is the in-process jobrelay backend. Every job lives in this
// process's memory behind two mutexes, so it needs no server and is the
// fastest backend: the default for unit tests, and for programs whose jobs
// may die with the process.
//
// Each transition is one section under the queues' mutex, mu, so it is
// atomic and records its event in the same step. A FIFO per
// priority in each queue makes Enqueue and Lease O(1) per job; heaps of
// scheduled and retrying jobs by RunAt, of leases by expiry and of finished
// jobs by ExpiresAt keep Finish, Promote, Reap and Sweep at O(log n). Jobs
// that a limit holds back wait parked beside their queue, in heaps by their
// place in it (see limits.go), so that they cost O(log n) each and never
// block the jobs behind them. Calls take batches, so that a mutex is taken
// once per batch, not per job.
//
// Every stored job has a handle, a number, by which the table of IDs and the
// ID order for List find it (table.go, index.go). A job that is not
// terminal lives as a *job record; a terminal one, kept for its ResultTTL or
// FailureTTL (24 h by default) and so most of the store, is packed into
// byte slabs that the structures reach only by handle (archive.go): the
// garbage collector does not scan what holds no pointers, so millions of
// finished jobs cost it nothing. A backlog of queued jobs is packed too,
// by Enqueue, and gets its records one job at a time as Lease takes them
// (queued.go), so that only the jobs in flight have records. The record of
// an archived job is reused by a later Lease or Enqueue.
//
// The store of jobs by ID (the ID table, the ID index, the archive, unique
// keys) has a mutex of its own, smu, so that archiving the jobs one call
// ended, and storing the IDs of a new batch, run beside the next Lease or
// Finish instead of after it. Lease, Finish, Heartbeat, Progress, Reap and
// Promote find their jobs by queue or by token and take mu alone; a call
// that ends jobs hands them to smu before it releases mu, and archives them
// under smu alone (see unlock): nothing under mu touches a terminal job's
// record but its gen, which archiving leaves alone. Lease hands over the
// records it made of packed jobs the same way, for smu to adopt. Enqueue
// of plain jobs stores them under smu alone and then makes them due under
// mu alone (see enqueuePacked, enqueuePlain). Job, List, Stats, Cancel,
// Requeue, Sweep, Close and other Enqueues take both, mu first, and first
// finish what those left half done (see lockBoth): so they never meet a
// job that is stored without a state, terminal and not archived, or
// leased and not adopted. Sweep then deletes under smu alone, and
// leaves the counts of the deleted jobs for the next call that holds both
// to take off. No call takes mu while it holds smu.
package memory

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"hash/maphash"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jobrelay/engine/backend"
)

// cancelLogSize is how many cancel requests the log of them keeps: a
// running engine reads them as they come, so only a reader that was away
// for long falls behind it.
const cancelLogSize = 1024

// DefaultEventLogSize is the number of events the log keeps when
// Options.EventLogSize is zero: the events of about 20,000 jobs (some 5 MB,
// and the results and errors they carry), far more than a listener that
// keeps up ever lags behind.
const DefaultEventLogSize = 1 << 16

// Options configures a memory backend.
type Options struct {
	// EventLogSize caps the event log that ReadEvents serves, so memory
	// stays bounded when nobody reads; a reader that falls further behind
	// resumes at the oldest kept event. Defaults to DefaultEventLogSize.
	EventLogSize int
}

// Backend keeps jobs in this process's memory. It implements
// backend.Backend and backend.Limiter; make one with New. Its zero value is
// not usable.
type Backend struct {
	// mu guards the queues and what moves jobs through them: every field
	// below up to smu, and the fields of a live record but its handle and
	// ID (which do not change while the job is stored, and which smu's
	// holders read).
	mu     sync.Mutex
	closed bool          // written under both mutexes
	done   chan struct{} // closed by Close, so that blocked calls return

	queues  map[string]*queue // every queue that ever held a job or was paused
	queueAt []*queue          // the same by queue.num
	delayed timeHeap          // scheduled and retrying jobs by RunAt
	leased  timeHeap          // active jobs by LeaseExpiresAt
	workers map[string]backend.WorkerInfo
	// lastQueue is the queue that queueOf found last; Lease tries it first.
	lastQueue *queue
	// extras holds the jobExtra of the live jobs that have one.
	extras map[*job]*jobExtra
	// ended holds the jobs that became terminal and wait to be archived
	// (see unlock), and fresh the records that Lease made of packed jobs,
	// which wait to be adopted (see adopt).
	ended []endedJob
	fresh []*job
	// leaseSpare holds the spare records that Lease fills (see popReady);
	// Lease clears its dry, which holds for one call.
	leaseSpare spareTaker

	// limits holds the limit keys in use (see keyLimit); wakes those that a
	// rate window or a throttle holds back, by when it ends. promotedAt is
	// the latest now given to Promote, in nanoseconds (see limitTime).
	limits     map[string]*keyLimit
	wakes      wakeHeap
	promotedAt int64

	idSeed      maphash.Seed // see hash; never changes
	tokenPrefix string       // never changes
	tokenSeq    uint64
	// slots holds the active job of each lease by the slot number its token
	// carries, so that Heartbeat, Progress and Finish find a job without a
	// map lookup; freeSlots lists the slots free for reuse.
	slots     []*job
	freeSlots []uint32
	tokenBuf  []byte // reused by Lease to build a batch's tokens
	tokens    []byte // the block that tokens are copied into (see tokenString)
	scratch   []*job // reused by Lease to collect a batch
	fetched   uint64 // the sum of what fetchRecords read, so that its reads are kept

	// ready is closed (and set to nil) when a job becomes queued or a queue
	// resumes; a blocked Lease makes it. It stays nil while nobody waits,
	// so that the hot path pays nothing for blocking.
	ready chan struct{}

	events eventLog
	types  typeTable // the job types that events name by number
	// cancels keeps the newest cancel requests of active jobs apart, for
	// engines that read only those.
	cancels eventLog

	// The store's fields are apart from the queues' by a cache line, so
	// that the two mutexes' holders do not take the line from each other.
	_ [64]byte

	// smu guards the store of jobs by ID (see the package doc): every field
	// below, the handle of a live record, and the fields of the records
	// that wait in archiving.
	smu     sync.Mutex
	jobs    jobTable // every job by ID and by handle
	byID    idIndex  // every job in ID order, for List
	arch    archive  // the terminal jobs, packed (see archive)
	unique  map[string]uniqueHold
	tombs   tombHeap // unique keys of swept jobs still held by UniqueUntil
	pack    []byte   // reused to pack a job
	pending []*pendingBatch
	// archiving and adopting hold the jobs that unlock handed over from
	// ended and fresh, while they are archived and adopted.
	archiving []endedJob
	adopting  []*job
	// blocks holds the blocks of packed queued jobs by number, while any of
	// their jobs is packed (see queuedBlock); freeBlocks lists the numbers
	// free for reuse.
	blocks     []*queuedBlock
	freeBlocks []uint32
	// swept counts, by queue number and state index, the jobs that Sweep
	// deleted and that their queue's counts still hold (see Sweep);
	// sweptAny is set while any does.
	swept    [][numStates]int
	sweptAny bool

	// spare holds the cleared records of archived jobs, as *spareRecs
	// (see recycle); freeing is the batch that recycle fills, and
	// spareBatches holds empty ones.
	spare        sync.Pool
	freeing      *spareRecs
	spareBatches sync.Pool
}

// endedJob is a job that became terminal, with the number of its queue, so
// that archiving it needs nothing that mu guards.
type endedJob struct {
	j     *job
	queue uint32
}

// pendingBatch is a batch of jobs that Enqueue stored under smu alone and
// has yet to make due under mu (see Enqueue). A call that holds both
// mutexes makes them due first (see settle), so that it never meets a
// stored job without a state.
type pendingBatch struct {
	recs   []*job
	packed []packedRef // or the batch's jobs were packed
	now    time.Time
	// done is set, under mu, once the jobs are due; the next Enqueue reads
	// it under smu alone to drop the batch from Backend.pending.
	done atomic.Bool
}

var (
	_ backend.Backend = (*Backend)(nil)
	_ backend.Limiter = (*Backend)(nil)
)

// errClosed is built once: calls after Close must not allocate to say so.
var errClosed = fmt.Errorf("memory: %w", backend.ErrClosed)

// New returns an empty backend. It starts no goroutine: the engine drives
// time through the calls it makes.
func New(opts Options) *Backend {
	size := opts.EventLogSize
	if size <= 0 {
		size = DefaultEventLogSize
	}
	var r [6]byte
	_, _ = rand.Read(r[:]) // crypto/rand.Read never fails on supported platforms
	b := &Backend{
		done:        make(chan struct{}),
		idSeed:      maphash.MakeSeed(),
		queues:      make(map[string]*queue),
		extras:      make(map[*job]*jobExtra),
		unique:      make(map[string]uniqueHold),
		workers:     make(map[string]backend.WorkerInfo),
		limits:      make(map[string]*keyLimit),
		tokenPrefix: hex.EncodeToString(r[:]) + "-",
		events:      eventLog{size: size},
		cancels:     eventLog{size: cancelLogSize},
	}
	b.byID.idOf = b.idOf
	return b
}

// Close drops every job and makes later calls return ErrClosed; blocked
// Lease and ReadEvents calls return at once. Closing twice is harmless.
func (b *Backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.smu.Lock()
	defer b.smu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	close(b.done)
	b.jobs, b.queues, b.queueAt, b.unique, b.workers = jobTable{}, nil, nil, nil, nil
	b.lastQueue, b.extras = nil, nil
	b.limits, b.wakes = nil, nil
	b.byID.chunks, b.arch, b.delayed, b.leased, b.tombs = nil, archive{}, timeHeap{}, timeHeap{}, nil
	b.ended, b.archiving, b.pending, b.pack, b.freeing, b.swept = nil, nil, nil, nil, nil, nil
	b.fresh, b.adopting, b.blocks, b.freeBlocks, b.leaseSpare = nil, nil, nil, nil, spareTaker{}
	b.events = eventLog{size: b.events.size}
	b.cancels = eventLog{size: cancelLogSize}
	b.types = typeTable{}
	b.scratch, b.tokenBuf, b.tokens, b.slots, b.freeSlots = nil, nil, nil, nil, nil
	return nil
}

// job is the record of a live job (one that is not archived): the public
// fields plus the indexes' bookkeeping.
//
// It is 512 bytes, no more: the garbage collector marks objects up to that
// size span by span, several times faster than larger ones, and a store
// can hold millions of records (delayed, deferred or limited jobs, and
// queued ones that Enqueue could not pack, see queuedBlock). So a record does not point to its
// queue (see queueOf), its lease slot is read from its token (see
// tokenSlot), and what few jobs need is kept beside it (see jobExtra).
type job struct {
	backend.Job

	// gen tells the live entry of the job from stale ones (see entry); it
	// only grows, even when the record is reused (see recycle). The job's
	// state says which index holds its live entry: queued the ready queue
	// of its queue, scheduled and retrying delayed, active leased; deferred
	// has none, and a terminal job is in none until it is archived.
	// A queued job that Lease parked because its limit key was held back
	// has it in held instead of its ready queue.
	gen  uint32
	hd   uint32 // the job's handle (see jobTable)
	held *parked
}

// jobExtra holds what few jobs need, in Backend.extras, so that the record
// of every job stays small (see job).
type jobExtra struct {
	pending      int    // deferred: parents that have not completed yet
	children     []*job // deferred jobs that wait for this one
	cancelReason string // the reason given to Cancel while active
}

// extra returns the extras of j, making them on first use.
func (b *Backend) extra(j *job) *jobExtra {
	x := b.extras[j]
	if x == nil {
		x = &jobExtra{}
		b.extras[j] = x
	}
	return x
}

// extraOf returns the extras of j, or nil. Most backends never make any,
// and then it costs no lookup.
func (b *Backend) extraOf(j *job) *jobExtra {
	if len(b.extras) == 0 {
		return nil
	}
	return b.extras[j]
}

// queueOf returns the queue of the stored job j. Consecutive transitions
// mostly concern one queue, so the last one found is remembered.
func (b *Backend) queueOf(j *job) *queue { return b.queueLocked(j.Queue) }

// queue is one named queue: its ready jobs and its counters.
type queue struct {
	name  string
	num   uint32 // the queue's index in Backend.queueAt
	ready readyQueue
	// open holds the parked lists of this queue whose key may be open:
	// Lease takes their jobs in turn with the ready ones. It is empty
	// unless limits hold jobs back, so that unlimited jobs pay nothing.
	open      openLists
	paused    bool
	counts    [numStates]int
	processed int64
	failed    int64
}

// uniqueHold records who holds a unique key. While the holder is live, j
// points to it and its state and UniqueUntil decide. Once it is archived
// (archived is set) or after Sweep deleted it, id, state and until remember
// it: a terminal job holds its key for as long as UniqueUntil does.
type uniqueHold struct {
	j        *job
	id       string
	state    backend.State
	until    time.Time
	archived bool
}

const numStates = 8

// stateAt is the state of each stateIndex.
var stateAt = [...]backend.State{backend.StateQueued, backend.StateScheduled, backend.StateDeferred,
	backend.StateActive, backend.StateRetrying, backend.StateCompleted, backend.StateFailed, backend.StateCanceled}

func stateIndex(s backend.State) int {
	switch s {
	case backend.StateQueued:
		return 0
	case backend.StateScheduled:
		return 1
	case backend.StateDeferred:
		return 2
	case backend.StateActive:
		return 3
	case backend.StateRetrying:
		return 4
	case backend.StateCompleted:
		return 5
	case backend.StateFailed:
		return 6
	default:
		return 7
	}
}

// queueLocked returns the named queue, making it on first use.
func (b *Backend) queueLocked(name string) *queue {
	if q := b.lastQueue; q != nil && q.name == name {
		return q
	}
	q := b.queues[name]
	if q == nil {
		// The name may be a view of a packed job (see queuedBlock).
		q = &queue{name: strings.Clone(name), num: uint32(len(b.queueAt))}
		b.queues[q.name] = q
		b.queueAt = append(b.queueAt, q)
	}
	b.lastQueue = q
	return q
}

// setState moves j to state s and keeps its queue's counts in step; it
// returns the queue.
func (b *Backend) setState(j *job, s backend.State) *queue {
	q := b.queueOf(j)
	if j.State != "" {
		q.counts[stateIndex(j.State)]--
	}
	q.counts[stateIndex(s)]++
	j.State = s
	return q
}

// makeQueued puts j at the back of its priority in its queue and wakes
// blocked Lease calls. j must be in no index.
func (b *Backend) makeQueued(j *job) {
	b.setState(j, backend.StateQueued).ready.pushBack(j)
	b.jobReady()
}

// makeFirst puts a released or stalled job back at the front of its
// priority, where it was before it was leased.
func (b *Backend) makeFirst(j *job) {
	b.setState(j, backend.StateQueued).ready.pushFront(j)
	b.jobReady()
}

// makeDelayed makes j wait in state s (scheduled or retrying) until its RunAt.
func (b *Backend) makeDelayed(j *job, s backend.State) {
	b.setState(j, s)
	b.delayed.push(j, nanos(j.RunAt))
}

// terminate ends j in the terminal state s and keeps it for ttl. The call
// archives it when it is done (see unlock): until then it may still release
// or cancel its dependents.
func (b *Backend) terminate(j *job, s backend.State, now time.Time, ttl time.Duration) {
	q := b.setState(j, s)
	j.FinishedAt = now
	j.ExpiresAt = now.Add(ttl)
	b.ended = append(b.ended, endedJob{j: j, queue: q.num})
}

// endedMax is how many ended jobs may wait for smu (see unlock) before a
// call waits for it to archive them.
const endedMax = 4096

// unlock releases mu, and archives the jobs that ended if smu is free: it
// takes smu before it releases mu, so that no call that holds both ever
// meets them half archived, and archives them under smu alone, while the
// next call holds mu. When another call holds smu (an archiver, an
// Enqueue, a Sweep), the jobs wait in ended for the next call, unless more
// than endedMax wait: a busy backend then waits for its archiver, as it
// should. Every call that may end jobs unlocks with it.
func (b *Backend) unlock() {
	if len(b.ended) == 0 && len(b.fresh) == 0 {
		b.mu.Unlock()
		return
	}
	if !b.smu.TryLock() {
		if len(b.ended)+len(b.fresh) < endedMax {
			b.mu.Unlock()
			return
		}
		b.smu.Lock()
	}
	b.handOver()
	b.mu.Unlock()
	b.archiveHanded()
	b.smu.Unlock()
}

// lockBoth takes both mutexes, mu first, for the calls that find jobs by ID
// and look at their state. It settles what calls under one of them left
// half done: the jobs that ended and wait to be archived are archived, the
// batches that Enqueue stored but did not make due yet are made due, and
// the jobs that Sweep deleted are taken off their queues' counts. So every
// stored job is then archived or live in a state that is not terminal, and
// the counts are those of the stored jobs.
func (b *Backend) lockBoth() {
	b.mu.Lock()
	b.smu.Lock()
	if len(b.pending) > 0 {
		b.settle()
	}
	if b.sweptAny {
		b.takeSwept()
	}
	b.handOver()
	b.archiveHanded()
}

// unlockBoth releases what lockBoth took, archiving the jobs that ended
// meanwhile under smu alone, as unlock does.
func (b *Backend) unlockBoth() {
	b.unlockMu()
	b.smu.Unlock()
}

// unlockMu releases mu and keeps smu, for a call that took both and goes on
// under smu alone: the jobs that ended meanwhile are archived as
// unlockBoth does.
func (b *Backend) unlockMu() {
	b.handOver()
	b.mu.Unlock()
	b.archiveHanded()
}

// takeSwept takes the jobs that Sweep deleted off their queues' counts; the
// caller holds both mutexes.
func (b *Backend) takeSwept() {
	for n, c := range b.swept {
		q := b.queueAt[n]
		for s := range c {
			q.counts[s] -= c[s]
		}
	}
	clear(b.swept)
	b.sweptAny = false
}

// handOver moves the jobs in ended to archiving and those in fresh to
// adopting, for archiveHanded; the caller holds both mutexes. Their extras
// go first: nothing reads them once their call is over, and the archiver
// needs no map that mu guards.
func (b *Backend) handOver() {
	if len(b.fresh) > 0 {
		b.fresh, b.adopting = b.adopting[:0], b.fresh
	}
	if len(b.ended) == 0 {
		return
	}
	if len(b.extras) > 0 {
		for _, e := range b.ended {
			delete(b.extras, e.j)
		}
	}
	b.ended, b.archiving = b.archiving[:0], b.ended
}

// archiveHanded adopts the records in adopting, then archives the jobs in
// archiving, some of which may be among them; the caller holds smu.
func (b *Backend) archiveHanded() {
	for i, j := range b.adopting {
		b.adopt(j)
		b.adopting[i] = nil
	}
	b.adopting = b.adopting[:0]
	for i, e := range b.archiving {
		b.archive(e.j, e.queue)
		b.archiving[i] = endedJob{}
	}
	b.archiving = b.archiving[:0]
}

// settle makes due the jobs of the batches that Enqueue stored and has not
// made due yet; the caller holds both mutexes. Their Enqueue then finds
// its batch done.
func (b *Backend) settle() {
	for _, p := range b.pending {
		if !p.done.Load() {
			b.makeDue(p)
		}
	}
	clear(b.pending)
	b.pending = b.pending[:0]
}

// makeDue makes the jobs of the stored batch p due, and marks it done; the
// caller holds mu.
func (b *Backend) makeDue(p *pendingBatch) {
	for _, j := range p.recs {
		b.becomeDue(j, p.now)
	}
	for i := range p.packed {
		b.becomeDuePacked(&p.packed[i], p.now)
	}
	p.done.Store(true)
}

// archive moves the terminal job j of queue number queue out of the live
// indexes into b.arch; it keeps its handle. It runs under smu alone, so it
// reads nothing that mu guards: the job's record is no longer written once
// it is in archiving, and its extras are gone.
func (b *Backend) archive(j *job, queue uint32) {
	seq := b.arch.expiring.next()
	if !b.arch.addJob(j.hd, &j.Job, seq, queue, j.State, j.UniqueKey != "") {
		b.pack = pack(b.pack[:0], &j.Job)
		b.arch.add(j.hd, b.pack, seq, queue, j.State, j.UniqueKey != "")
	}
	b.arch.expiring.push(nanos(j.ExpiresAt), seq, j.hd)
	*b.jobs.live.at(j.hd) = nil
	if j.UniqueKey != "" {
		if u, ok := b.unique[j.UniqueKey]; ok && u.j == j {
			b.unique[j.UniqueKey] = uniqueHold{id: j.ID, state: j.State, until: j.UniqueUntil, archived: true}
		}
	}
	if len(j.DependsOn) == 0 {
		b.recycle(j)
	}
}

// spareBatch is how many spare records travel together through the pool,
// so that its cost per record is small next to the record's own.
const spareBatch = 64

// spareRecs is a batch of cleared records (see recycle).
type spareRecs struct {
	recs [spareBatch]*job
	n    int
}

// spareTaker hands out the spare records of one Enqueue call, which fills
// them outside the mutexes.
type spareTaker struct {
	batch *spareRecs
	dry   bool // the pool had none: the rest of the call allocates
}

// spareJob returns a cleared record: an archived job's (see recycle), which
// it takes from the pool a batch at a time, or a new one.
func (b *Backend) spareJob(t *spareTaker) *job {
	for t.batch == nil || t.batch.n == 0 {
		if t.dry {
			return new(job)
		}
		if t.batch != nil {
			b.spareBatches.Put(t.batch)
		}
		t.batch, _ = b.spare.Get().(*spareRecs)
		t.dry = t.batch == nil
	}
	sp := t.batch
	sp.n--
	j := sp.recs[sp.n]
	sp.recs[sp.n] = nil
	return j
}

// keepSpare gives back the records that t did not hand out, and its batch.
func (b *Backend) keepSpare(t *spareTaker) {
	switch {
	case t.batch == nil:
	case t.batch.n > 0:
		b.spare.Put(t.batch)
	default:
		b.spareBatches.Put(t.batch)
	}
}

// recycle clears the record of an archived job and offers it for reuse by
// this backend's Enqueue, so that a busy backend does not allocate one per
// job; records that no Enqueue takes (after a burst) go at the second
// garbage collection, as sync.Pool does. Stale entries that point to it stay
// stale, since its gen only grows, and read nothing else; no other pointer
// to it is left, but in the dependents lists of a child's parents, which is
// why a job with dependencies is not recycled. It is cleared here, so that
// a spare record keeps nothing else in memory. gen is neither written here
// (under smu, while stale entries read it under mu) nor by Enqueue, which
// fills the record outside both mutexes: only the indexes write it, under
// mu. The pool is the backend's own: a stale entry reads gen under this
// backend's mutex, which would not order the writes of another backend
// that took the record. Records go to the pool by batches of spareBatch.
//
// gen has 32 bits (see job): a record whose gen passed half its range is
// left to the garbage collector, so that no gen wraps around to match a
// stale entry; one job would need 2^31 index moves to get there.
func (b *Backend) recycle(j *job) {
	j.Job = backend.Job{}
	j.hd = 0 // j.held is nil already: a terminal job is in no index
	if j.gen >= 1<<31 {
		return
	}
	sp := b.freeing
	if sp == nil {
		sp, _ = b.spareBatches.Get().(*spareRecs)
		if sp == nil {
			sp = new(spareRecs)
		}
		b.freeing = sp
	}
	sp.recs[sp.n] = j
	if sp.n++; sp.n == spareBatch {
		b.spare.Put(sp)
		b.freeing = nil
	}
}

// unarchive brings the archived job hd back as a live job, in its terminal
// state and in no index but the ID ones.
func (b *Backend) unarchive(hd uint32) *job {
	r := *b.arch.recs.at(hd)
	j := &job{hd: hd}
	unpack(b.arch.body(hd), &j.Job)
	j.State = r.state()
	j.Queue = b.queueAt[r.queue].name
	b.arch.take(hd)
	*b.jobs.live.at(hd) = j
	return j
}

// archivedJob returns a copy of the archived job hd.
func (b *Backend) archivedJob(hd uint32) *backend.Job {
	r := b.arch.recs.at(hd)
	j := &backend.Job{Queue: b.queueAt[r.queue].name, State: r.state()}
	unpack(b.arch.body(hd), j)
	return j
}

// unindex takes a waiting job (queued, scheduled or retrying) out of its
// index; a deferred job is in none.
func (b *Backend) unindex(j *job, now time.Time) {
	switch {
	case j.held != nil:
		b.unpark(j, now)
	case j.State == backend.StateQueued:
		b.queueOf(j).ready.drop(j)
	case j.State == backend.StateScheduled || j.State == backend.StateRetrying:
		b.delayed.drop(j)
	}
}

// endLease frees j's lease slot and clears the lease fields, which are empty
// whenever a job is not active. A job with a limit key frees its key's slot.
func (b *Backend) endLease(j *job, now time.Time) {
	if j.LimitKey != "" {
		b.leaseEnded(j, now)
	}
	slot, _ := b.tokenSlot(j.LeaseToken)
	b.slots[slot] = nil
	b.freeSlots = append(b.freeSlots, uint32(slot))
	j.LeaseToken = ""
	j.LeaseExpiresAt = time.Time{}
	j.Worker = ""
	j.CancelRequested = false
}

// jobReady wakes every blocked Lease call.
func (b *Backend) jobReady() {
	if b.ready != nil {
		close(b.ready)
		b.ready = nil
	}
}

// snapshot returns a deep copy of the stored job, so that a caller cannot
// change the store through it.
func (j *job) snapshot() *backend.Job {
	c := j.Job
	c.Payload = bytes.Clone(j.Payload)
	c.Meta = maps.Clone(j.Meta)
	c.DependsOn = slices.Clone(j.DependsOn)
	c.Result = bytes.Clone(j.Result)
	return &c
}

// stamp normalizes a time the backend stores: UTC, whose location pointer is
// nil and costs the GC nothing, and without the monotonic reading, which
// means nothing once stored.
func stamp(t time.Time) time.Time { return t.UTC().Round(0) }

// nanos turns t into a heap key, saturating outside the years 1678 to 2262
// that int64 nanoseconds cover (the zero time sorts first).
func nanos(t time.Time) int64 {
	const maxSec = math.MaxInt64/int64(time.Second) - 1
	s := t.Unix()
	switch {
	case s > maxSec:
		return math.MaxInt64
	case s < -maxSec:
		return math.MinInt64
	}
	return s*int64(time.Second) + int64(t.Nanosecond())
}

func leaseLost(op, id string) error {
	return fmt.Errorf("memory: %s %s: %w", op, id, backend.ErrLeaseLost)
}

func cancelRequested(op, id string) error {
	return fmt.Errorf("memory: %s %s: %w", op, id, backend.ErrCancelRequested)
}

func notFound(op, id string) error {
	return fmt.Errorf("memory: %s %s: %w", op, id, backend.ErrJobNotFound)
}
