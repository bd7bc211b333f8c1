// Package bolt is the durable, single-process jobrelay backend: every job
// lives in one go.etcd.io/bbolt file, so an application without a server
// keeps its queues across restarts and crashes.
//
// One process holds the file at a time (bbolt takes an exclusive flock);
// Open waits up to Options.OpenTimeout for it and then fails with ErrLocked.
// Because of that, events live in an in-memory ring and blocked Lease calls
// wait on an in-process signal: there is nobody else to tell.
//
// # Writes and durability
//
// Writes go through a commit loop: every call that changes jobs becomes an
// operation, and the loop runs all the operations that are waiting in one
// bbolt transaction and one commit (group commit), so the number of fsyncs
// follows the disk, not the number of callers. Each operation is still
// atomic on its own: it checks everything before it writes, and if one
// fails, the loop replays the others one by one.
//
// Enqueue, Cancel, Requeue, Pause, Resume and the worker registry return
// once their transaction is committed: an enqueued job is on disk. The
// calls of the worker's hot path (Lease, Heartbeat, Progress, Finish) and of
// maintenance (Promote, Reap, Sweep) return as soon as their change is
// applied, before its fsync: if the process dies first, the job is found as
// it was before the call (queued, or active and reaped as stalled on the
// next Open) and runs again, which at-least-once delivery allows. Lease,
// and Finish for a plain completion, do not even wait for the commit loop
// (see lease.go); a small journal next to the database
// (path+".leases-0" and path+".leases-1") keeps the stall count of such
// leases honest, so that a job that kills its process still fails after
// MaxStalls. Reads (Job, List, Stats, EventCursor) wait until the
// writes of calls that returned are committed, so a caller always reads
// its own writes.
//
// # A large backlog
//
// With a backlog, workers lease and finish jobs as fast as the CPU allows,
// and each commit carries their claims and completions: pages at the old
// end of the jobs and ready trees, besides the new jobs' pages at the
// other end. Two rules keep an Enqueue from waiting behind that work.
// While durable calls wait, Lease takes no more jobs per transaction than
// those calls bring (at least eight), and otherwise waits for the commit
// loop to take the jobs it leased so far. And a batch of plain Enqueues (no
// unique key, no dependency) commits on its own, leaving the pending
// claims to the next transaction; its events are published with that
// transaction's, in the order of the calls.
//
// # Size
//
// The file never shrinks: bbolt reuses freed pages but does not give them
// back to the file system. Sweep keeps the live data bounded; Compact copies
// the live data into a fresh, smaller file.
package bolt

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/jobrelay/engine/backend"
)

// Errors of Open, for callers to branch on with errors.Is.
var (
	// ErrLocked means another process holds the database file; bbolt's lock
	// was not granted within Options.OpenTimeout. Only one process may use a
	// file at a time.
	ErrLocked = errors.New("bolt: database file is locked by another process")

	// ErrNotJobrelay means the file exists but is not a jobrelay database
	// (not a bbolt file, or a bbolt file of some other program). Open leaves
	// such a file untouched.
	ErrNotJobrelay = errors.New("bolt: not a jobrelay database")

	// ErrFormatVersion means the file was written by a newer jobrelay whose
	// format this version cannot read. Open leaves such a file untouched.
	ErrFormatVersion = errors.New("bolt: unsupported database format version")
)

// ErrCorruptJob means a stored job record could not be decoded; errors of
// such a job wrap it, so that a caller can tell it from a missing one. Job
// returns it for such a record; the writing calls (Lease, Promote, Reap,
// Finish, ...) turn the job into a failed one whose Error says so, and go
// on with the others.
var ErrCorruptJob = errors.New("bolt: corrupt job record")

// FormatVersion is the version of the file layout this package writes. A
// file with a higher version is refused with ErrFormatVersion.
const FormatVersion = 1

// DefaultOpenTimeout is how long Open waits for another process to release
// the file before it fails with ErrLocked.
const DefaultOpenTimeout = time.Second

// DefaultEventLogSize is how many events the in-memory event log keeps.
const DefaultEventLogSize = 10000

// DefaultInitialMmapSize is how much address space Open maps up front, so
// that a growing file seldom has to be remapped (a remap waits for every
// open read transaction).
const DefaultInitialMmapSize = 256 << 20

// Options tunes Open. The zero value is a durable backend with defaults.
type Options struct {
	// NoSync skips fsync on commit. Enqueue returns sooner, but a power
	// loss or kernel crash can lose jobs whose Enqueue had returned, and
	// can leave the file corrupt (bbolt orders its writes with fsync). A
	// process crash alone loses nothing. Use it for tests and for work
	// that can be redone from scratch.
	NoSync bool

	// OpenTimeout bounds the wait for a file that another process holds.
	// Defaults to DefaultOpenTimeout.
	OpenTimeout time.Duration

	// EventLogSize is the capacity of the in-memory event log, and of the
	// log of cancel requests beside it (ReadCancels); readers that fall
	// further behind resume at the oldest kept event. Defaults to
	// DefaultEventLogSize.
	EventLogSize int

	// InitialMmapSize is the address space mapped at Open. Defaults to
	// DefaultInitialMmapSize.
	InitialMmapSize int

	// MaxBatchOps caps how many calls share one transaction and one fsync.
	// Defaults to DefaultMaxBatchOps.
	MaxBatchOps int

	// FileMode is the permission of a newly created file. Defaults to 0o600.
	FileMode os.FileMode
}

// DefaultMaxBatchOps is the default Options.MaxBatchOps: enough for many
// concurrent workers to share each fsync, small enough that one commit
// stays short.
const DefaultMaxBatchOps = 1024

// Backend is the bbolt implementation of backend.Backend and
// backend.Limiter (see limits.go). Create it with Open and release the file
// with Close.
type Backend struct {
	db   *bbolt.DB
	path string
	opts Options

	// tokenPrefix makes lease tokens unique across opens of the file.
	tokenPrefix string
	tokenSeq    atomic.Uint64

	mu      sync.Mutex // guards pending and closed
	pending []*op
	// durableWaiting weighs the ops in pending that wait for their commit
	// (Enqueue, Cancel, ...): a job each; while there are any, Lease holds
	// back (see claimShare).
	durableWaiting atomic.Int64
	closed         bool
	kick           chan struct{} // has a value when pending may be non-empty
	closing        chan struct{} // closed by Close: blocked calls return
	loopDone       chan struct{}
	closeErr       error
	once           sync.Once

	// seq is the last ready-index sequence number; only the commit loop
	// touches it.
	seq uint64

	wakeMu sync.Mutex
	wakeCh chan struct{} // closed when a job becomes queued

	// gen numbers the commit loop's transactions. answeredGen is the last
	// one that answered early ops, committedGen the last one that is over;
	// commitCh is closed (and replaced) whenever committedGen moves.
	gen          uint64
	answeredGen  atomic.Uint64
	committedGen atomic.Uint64
	commitMu     sync.Mutex
	commitCh     chan struct{}

	// claimMu makes Lease and the commit loop's apply phase take turns; it
	// guards the fields below (see lease.go).
	claimMu      sync.Mutex
	claims       []*claim            // decided by Lease, not yet written
	completions  []*completion       // decided by Finish, not yet written
	claimed      map[string]struct{} // ready keys of claims not yet written
	repairs      map[string]string   // ready keys Lease could not use -> job ID
	overlay      overlay             // ready changes of the transaction being committed
	claimsClosed bool                // the commit loop has stopped
	claimsTaken  chan struct{}       // closed (and replaced) when the loop takes the claims
	claimNames   names               // interned names for Lease's decoding
	floor        map[string][]byte   // per queue: the last ready key Lease consumed
	journal      *journal            // see journal.go
	journalDone  uint64              // the highest journal sequence committed
	lim          limiter             // limits and what they are judged on; see limits.go

	loopNames names // interned names for the commit loop's decoding

	// owesClaims is set when the last transaction left pending claims for
	// the next one (see op.standalone); only the commit loop touches it.
	owesClaims bool
	// skippedGen is the generation of the last transaction that left
	// pending claims for the next one; settle reads it.
	skippedGen atomic.Uint64
	// held are the events of a committed transaction that left pending
	// claims for the next one; they are published with that one's, after
	// the events of the claims and completions made before them
	// (heldSplit counts those), so that the log keeps the order of the
	// calls. Only the commit loop touches them.
	held      []backend.Event
	heldSplit struct{ claims, completions int }

	// leased holds, for jobs leased through claim, the record bytes that
	// the claim writes, until the record changes otherwise; Finish
	// prepares completions from them outside the commit loop.
	leasedMu sync.Mutex
	leased   map[string][]byte

	events *eventLog
	// cancels logs the EventCancelRequested events alone, for
	// ReadCancels; it has the event log's capacity.
	cancels *eventLog
	// eventBuf is reused by the commit loop for each transaction's events.
	eventBuf []backend.Event

	stats commitStats
}

// commitStats counts the commit loop's work, for benchmarks and tests.
type commitStats struct {
	commits, ops     atomic.Int64
	applyNs, writeNs atomic.Int64
}

var (
	_ backend.Backend = (*Backend)(nil)
	_ backend.Limiter = (*Backend)(nil)
)

// Top-level buckets. All are flat: each index is one bucket whose keys sort
// in the order the index is walked.
var (
	bucketMeta     = []byte("meta")    // format version, magic, sequence
	bucketJobs     = []byte("jobs")    // job ID -> record
	bucketReady    = []byte("ready")   // queue, inverted priority, seq -> job ID
	bucketSched    = []byte("sched")   // RunAt, job ID -> state, queue (scheduled and retrying)
	bucketLeases   = []byte("leases")  // LeaseExpiresAt, job ID -> queue (active)
	bucketExpiry   = []byte("expiry")  // ExpiresAt, job ID -> state, queue (terminal)
	bucketUnique   = []byte("unique")  // unique key -> until, state, holder ID
	bucketUExpiry  = []byte("uexpiry") // until, unique key -> "" (keys kept only by UniqueUntil)
	bucketDeps     = []byte("deps")    // dependency ID, dependent ID -> ""
	bucketQueues   = []byte("queues")  // 'q'+queue -> counters
	bucketPaused   = []byte("paused")  // 'q'+queue -> ""
	bucketWorkers  = []byte("workers") // 'w'+worker ID -> JSON WorkerInfo
	bucketLimits   = []byte("limits")  // limit key -> Limit (see encodeLimit)
	allBuckets     = [][]byte{bucketMeta, bucketJobs, bucketReady, bucketSched, bucketLeases, bucketExpiry, bucketUnique, bucketUExpiry, bucketDeps, bucketQueues, bucketPaused, bucketWorkers, bucketLimits}
	metaMagicKey   = []byte("magic")
	metaMagic      = []byte("jobrelay")
	metaFormatKey  = []byte("format")
	metaSeqKey     = []byte("seq")
	metaCreatedKey = []byte("created")
	metaJournalKey = []byte("journal") // highest lease-journal sequence written
)

// Open opens the jobrelay database at path, creating the file and its
// folder when missing. It fails with ErrLocked when another process holds
// the file for longer than Options.OpenTimeout, and with ErrNotJobrelay or
// ErrFormatVersion (leaving the file as it was) when the file is not one it
// can use. Leases left by a process that crashed are expired at once: their
// jobs go back to the queue as stalled.
func Open(path string, opts Options) (*Backend, error) {
	if path == "" {
		return nil, errors.New("bolt: open: empty path")
	}
	if opts.OpenTimeout <= 0 {
		opts.OpenTimeout = DefaultOpenTimeout
	}
	if opts.EventLogSize <= 0 {
		opts.EventLogSize = DefaultEventLogSize
	}
	if opts.InitialMmapSize <= 0 {
		opts.InitialMmapSize = DefaultInitialMmapSize
	}
	if opts.MaxBatchOps <= 0 {
		opts.MaxBatchOps = DefaultMaxBatchOps
	}
	if opts.FileMode == 0 {
		opts.FileMode = 0o600
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("bolt: open %s: %w", path, err)
		}
	}
	// bbolt writes nothing to an existing file when it opens it (the
	// freelist is not synced, so there is no freelist to rewrite); the
	// checks below run in a transaction that rolls back, so a foreign or
	// newer file stays byte for byte as it was.
	db, err := bbolt.Open(path, opts.FileMode, &bbolt.Options{
		Timeout:         opts.OpenTimeout,
		NoSync:          opts.NoSync,
		NoGrowSync:      opts.NoSync,
		NoFreelistSync:  true,
		FreelistType:    bbolt.FreelistMapType,
		InitialMmapSize: opts.InitialMmapSize,
	})
	if err != nil {
		switch {
		case errors.Is(err, berrors.ErrTimeout):
			return nil, fmt.Errorf("%w: %s (waited %v): %w", ErrLocked, path, opts.OpenTimeout, err)
		case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrVersionMismatch),
			errors.Is(err, berrors.ErrChecksum):
			return nil, fmt.Errorf("%w: %s: %w", ErrNotJobrelay, path, err)
		}
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
	b := &Backend{
		db:          db,
		path:        path,
		opts:        opts,
		kick:        make(chan struct{}, 1),
		closing:     make(chan struct{}),
		loopDone:    make(chan struct{}),
		wakeCh:      make(chan struct{}),
		commitCh:    make(chan struct{}),
		claimed:     make(map[string]struct{}),
		claimsTaken: make(chan struct{}),
		repairs:     make(map[string]string),
		claimNames:  make(names),
		floor:       make(map[string][]byte),
		loopNames:   make(names),
		leased:      make(map[string][]byte),
		lim:         newLimiter(),
		events:      newEventLog(opts.EventLogSize),
		cancels:     newEventLog(opts.EventLogSize),
	}
	var tok [8]byte
	if _, err := rand.Read(tok[:]); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
	b.tokenPrefix = hex.EncodeToString(tok[:])
	if err := b.checkFormat(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("%w: %s", err, path)
	}
	if err := b.init(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
	jr, entries, err := openJournal(path, opts.FileMode)
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
	b.journal = jr
	go b.loop()
	if err := b.recoverClaims(entries, time.Now()); err != nil {
		_ = b.Close()
		return nil, fmt.Errorf("bolt: open %s: count the stalls of unwritten leases: %w", path, err)
	}
	if _, err := b.reapAll(time.Now()); err != nil {
		_ = b.Close()
		return nil, fmt.Errorf("bolt: open %s: expire leases of a previous process: %w", path, err)
	}
	return b, nil
}

// checkFormat refuses files this package must not touch: a bbolt file that
// has buckets but no jobrelay meta, or a jobrelay file of a newer format. A
// bbolt file with no buckets at all (new, or created by an Open that crashed
// before its first commit) is taken as empty.
func (b *Backend) checkFormat() error {
	return b.db.View(func(tx *bbolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			empty := true
			_ = tx.ForEach(func([]byte, *bbolt.Bucket) error { empty = false; return nil })
			if !empty {
				return fmt.Errorf("%w: bbolt file without jobrelay metadata", ErrNotJobrelay)
			}
			return nil
		}
		if string(meta.Get(metaMagicKey)) != string(metaMagic) {
			return fmt.Errorf("%w: bbolt file without the jobrelay mark", ErrNotJobrelay)
		}
		v := meta.Get(metaFormatKey)
		if len(v) != 4 {
			return fmt.Errorf("%w: bad format version record", ErrNotJobrelay)
		}
		if n := binary.BigEndian.Uint32(v); n > FormatVersion {
			return fmt.Errorf("%w: file has format %d, this build reads up to %d", ErrFormatVersion, n, FormatVersion)
		} else if n == 0 {
			return fmt.Errorf("%w: format version 0", ErrNotJobrelay)
		}
		return nil
	})
}

// init creates the buckets and meta of a new file and loads the sequence.
func (b *Backend) init() error {
	return b.db.Update(func(tx *bbolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		if meta.Get(metaMagicKey) == nil {
			if err := meta.Put(metaMagicKey, metaMagic); err != nil {
				return err
			}
			if err := meta.Put(metaFormatKey, binary.BigEndian.AppendUint32(nil, FormatVersion)); err != nil {
				return err
			}
			if err := meta.Put(metaCreatedKey, []byte(time.Now().UTC().Format(time.RFC3339Nano))); err != nil {
				return err
			}
		}
		if v := meta.Get(metaSeqKey); len(v) == 8 {
			b.seq = binary.BigEndian.Uint64(v)
		}
		return b.loadLimits(tx)
	})
}

// Path returns the file the backend was opened on.
func (b *Backend) Path() string { return b.path }

// Close stops the commit loop after it has committed every call already
// made, wakes blocked Lease and ReadEvents calls (they return ErrClosed) and
// closes the file, releasing its lock. Calls after Close return ErrClosed;
// closing twice is harmless.
func (b *Backend) Close() error {
	b.once.Do(func() {
		b.mu.Lock()
		b.closed = true
		b.mu.Unlock()
		close(b.closing)
		b.signal()
		<-b.loopDone
		// Every claim is written now, unless the last commit failed; then
		// the journal must stay for the next Open.
		var jerr error
		if b.journalDone >= b.journal.seq {
			jerr = b.journal.reset()
		}
		b.closeErr = errors.Join(jerr, b.journal.close(), b.db.Close())
	})
	return b.closeErr
}

// check refuses calls after Close and calls whose ctx is done.
func (b *Backend) check(ctx context.Context) error {
	select {
	case <-b.closing:
		return backend.ErrClosed
	default:
	}
	return ctx.Err()
}

// view runs a read transaction once the writes of earlier calls are
// committed, mapping a closed database to ErrClosed.
func (b *Backend) view(ctx context.Context, fn func(*bbolt.Tx) error) error {
	if err := b.check(ctx); err != nil {
		return err
	}
	if err := b.settle(ctx); err != nil {
		return err
	}
	return mapClosed(b.db.View(fn))
}

// mapClosed turns bbolt's "database not open" into ErrClosed.
func mapClosed(err error) error {
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return backend.ErrClosed
	}
	return err
}

// newToken returns a lease token no other lease of this file has had.
func (b *Backend) newToken() string {
	return b.tokenPrefix + "-" + strconv.FormatUint(b.tokenSeq.Add(1), 36)
}

// wakeChan returns the channel that the next job becoming queued closes. A
// Lease takes it before it looks for jobs, so a job queued in between is
// never missed.
func (b *Backend) wakeChan() <-chan struct{} {
	b.wakeMu.Lock()
	defer b.wakeMu.Unlock()
	return b.wakeCh
}

func (b *Backend) wake() {
	b.wakeMu.Lock()
	close(b.wakeCh)
	b.wakeCh = make(chan struct{})
	b.wakeMu.Unlock()
}

// op is one call's work for the commit loop. fn checks before it writes,
// reports its own outcome through its closure, and returns an error only
// when the transaction cannot go on (storage failure). It must reset its
// outcome when it starts, because a failed batch is replayed op by op.
type op struct {
	ctx  context.Context
	fn   func(*txn) error
	done chan error
	// early ops are answered once their transaction is applied, before its
	// commit and fsync; see doEarly.
	early bool
	// standalone ops touch no job that a pending claim may hold (an
	// Enqueue of new jobs with no unique key and no dependency), so they
	// may commit before the claims are written; see apply.
	standalone bool
	// weight is the number of jobs a durable op waits for (see claimShare).
	weight  int
	replied bool
}

// do submits fn to the commit loop and waits until its transaction is
// committed, and so on disk (unless Options.NoSync). Once submitted, the
// wait ignores ctx: the caller must learn whether its writes happened.
func (b *Backend) do(ctx context.Context, fn func(*txn) error) error {
	return b.submit(ctx, &op{ctx: ctx, fn: fn, done: make(chan error, 1)})
}

// doEarly submits fn and returns as soon as its transaction has been
// applied, without waiting for the commit and its fsync. It is for the
// calls a worker makes on the hot path (Lease, Heartbeat, Progress, Finish)
// and for maintenance (Promote, Reap, Sweep), whose writes need no
// durability of their own: if the process dies before the commit, the job
// is as it was before the call (still queued, or still active and reaped
// on the next Open), which at-least-once delivery allows. Everything else
// still sees these writes only once committed: their events are published
// after the commit, and reads wait for it (settle). Only a failed commit
// (an I/O error) can undo an answered op; a worker then finds its lease
// lost.
func (b *Backend) doEarly(ctx context.Context, fn func(*txn) error) error {
	return b.submit(ctx, &op{ctx: ctx, fn: fn, done: make(chan error, 1), early: true})
}

func (b *Backend) submit(ctx context.Context, o *op) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return backend.ErrClosed
	}
	b.pending = append(b.pending, o)
	if !o.early {
		b.durableWaiting.Add(int64(max(o.weight, 1)))
	}
	b.mu.Unlock()
	b.signal()
	return <-o.done
}

func (b *Backend) signal() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// settle waits until every op answered early so far is committed, so that
// a read sees what the caller's earlier calls wrote.
//
// Claims are promised to the next transaction (answered(gen+1)); when that
// transaction is one that leaves them pending (see apply), they are written
// by the one after it, which settle then waits for as well.
func (b *Backend) settle(ctx context.Context) error {
	target := b.answeredGen.Load()
	if err := b.awaitCommit(ctx, target); err != nil {
		return err
	}
	if target > 0 && b.skippedGen.Load() >= target {
		return b.awaitCommit(ctx, target+1)
	}
	return nil
}

// awaitCommit waits until the transaction of generation target is over.
func (b *Backend) awaitCommit(ctx context.Context, target uint64) error {
	for {
		b.commitMu.Lock()
		ch := b.commitCh
		b.commitMu.Unlock()
		if b.committedGen.Load() >= target {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-b.closing:
			return backend.ErrClosed
		}
	}
}

// loop is the commit loop. Operations that arrive while a commit (and its
// fsync) is under way wait in pending and go together into the next
// transaction, so the number of fsyncs follows the disk, not the callers.
func (b *Backend) loop() {
	defer close(b.loopDone)
	for {
		<-b.kick
		for {
			b.claimMu.Lock()
			owed := b.owesClaims && b.claimsPending()
			b.claimMu.Unlock()
			b.mu.Lock()
			batch := b.takePending(owed)
			closed := b.closed
			b.mu.Unlock()
			if len(batch) == 0 {
				b.claimMu.Lock()
				idle := !b.claimsPending()
				if idle && closed {
					b.claimsClosed = true
				}
				b.claimMu.Unlock()
				if idle {
					if closed {
						return
					}
					break
				}
			}
			b.commit(batch)
		}
	}
}

// takePending takes the next batch out of pending: up to MaxBatchOps ops in
// the order they came, but none that is standalone when the claims are
// owed, so that the claims left pending by the last transaction are
// written by this one. b.mu must be held.
func (b *Backend) takePending(owed bool) []*op {
	var batch []*op
	if owed {
		keep := b.pending[:0]
		for _, o := range b.pending {
			if o.standalone || len(batch) == b.opts.MaxBatchOps {
				keep = append(keep, o)
			} else {
				batch = append(batch, o)
			}
		}
		clear(b.pending[len(keep):])
		b.pending = keep
	} else {
		n := min(len(b.pending), b.opts.MaxBatchOps)
		batch = slices.Clone(b.pending[:n])
		b.pending = b.pending[n:]
	}
	if len(b.pending) == 0 {
		b.pending = nil
	}
	var durable int64
	for _, o := range batch {
		if !o.early {
			durable += int64(max(o.weight, 1))
		}
	}
	b.durableWaiting.Add(-durable)
	return batch
}

// commit runs batch in one transaction, after the claims of Lease calls.
// If an op fails while it is applied, nothing was answered yet, and every
// op is replayed in a transaction of its own, so that one op's failure is
// not another's.
func (b *Backend) commit(batch []*op) {
	live := batch[:0:0]
	for _, o := range batch {
		if err := o.ctx.Err(); err != nil {
			o.done <- err
			continue
		}
		live = append(live, o)
	}
	live, applied, err := b.apply(live)
	if err == nil || applied || len(live) <= 1 {
		for _, o := range live {
			if !o.replied {
				o.done <- err
			}
		}
		return
	}
	for _, o := range live {
		_, _, err := b.apply([]*op{o})
		if !o.replied {
			o.done <- err
		}
	}
}

// apply runs ops in one write transaction (first the pending claims of
// Lease calls), answers the early ones, commits, and then
// publishes the events and wakes blocked Lease calls. It returns the ops it
// ran; applied reports that every one ran (the error, if any, is the
// commit's). Lease calls wait while ops run (claimMu), and see the
// transaction's ready changes through the overlay while it commits.
//
// A batch of standalone ops alone (plain Enqueues) leaves the pending
// claims to the next transaction, which takes them whatever comes: with a
// backlog, workers claim and finish jobs as fast as the CPU allows, and
// writing their claims and completions in the same commit made every
// Enqueue wait for their pages and their fsync too. So Enqueue commits
// stay as small as they are without a backlog, and the claims follow one
// commit later (reads settle on that commit, see settle; the events wait
// for it, see Backend.held).
func (b *Backend) apply(ops []*op) (ran []*op, applied bool, err error) {
	b.claimMu.Lock()
	locked := true
	defer func() {
		if locked {
			b.claimMu.Unlock()
		}
	}()
	skip := !b.owesClaims && len(ops) > 0
	for _, o := range ops {
		skip = skip && o.standalone
	}
	skip = skip && b.claimsPending()
	if skip {
		b.heldSplit.claims, b.heldSplit.completions = len(b.claims), len(b.completions)
	} else if c := b.takeClaims(); c != nil {
		ops = append([]*op{c}, ops...)
	}
	b.owesClaims = skip
	if len(ops) == 0 {
		return nil, true, nil
	}
	b.gen++
	gen := b.gen
	if skip {
		// Claims promised to this transaction go to the next one.
		b.skippedGen.Store(gen)
		b.answered(gen + 1)
	}
	defer b.committed(gen)
	tx, err := b.db.Begin(true)
	if err != nil {
		return ops, false, fmt.Errorf("bolt: begin: %w", mapClosed(err))
	}
	t := newTxn(b, tx)
	defer func() {
		// When this transaction took the claims but does not publish its
		// events (it wrote nothing, or failed), the held events, which
		// are committed, still are.
		if t.heldAt >= 0 && len(b.held) > 0 {
			b.publish(slices.Clone(b.held))
			clear(b.held)
			b.held = b.held[:0]
		}
	}()
	start := time.Now()
	for _, o := range ops {
		if err := o.fn(t); err != nil {
			_ = tx.Rollback()
			return ops, false, err
		}
	}
	if err := t.flush(); err != nil {
		_ = tx.Rollback()
		return ops, false, err
	}
	for _, k := range t.claimsDone {
		delete(b.claimed, string(k))
	}
	limitsOpened := len(t.limitChanges) > 0 && t.applyLimits()
	if !t.dirty {
		// Nothing was written (an idle Promote, say): no commit, no fsync.
		return ops, true, tx.Rollback()
	}
	b.overlay = t.overlay()
	locked = false
	b.claimMu.Unlock()
	if len(b.overlay.added) > 0 || limitsOpened {
		b.wake()
	}
	for _, o := range ops {
		if o.early {
			o.replied = true
			b.answered(gen)
			o.done <- nil
		}
	}
	mid := time.Now()
	err = tx.Commit()
	b.claimMu.Lock()
	b.overlay = overlay{}
	var jerr error
	if err != nil {
		// The transaction's deletions are undone: Lease must look at
		// every key again.
		clear(b.floor)
	} else if t.jseq > 0 {
		b.journalDone = max(b.journalDone, t.jseq)
		jerr = b.journal.committed(b.journalDone)
	}
	b.claimMu.Unlock()
	if err != nil {
		return ops, true, fmt.Errorf("bolt: commit: %w", err)
	}
	if jerr != nil {
		return ops, true, fmt.Errorf("bolt: %w", jerr)
	}
	b.stats.commits.Add(1)
	b.stats.ops.Add(int64(len(ops)))
	b.stats.applyNs.Add(int64(mid.Sub(start)))
	b.stats.writeNs.Add(int64(time.Since(mid)))
	b.seq = t.seq
	switch {
	case skip:
		b.held = append(b.held, t.events...)
	case t.heldAt >= 0 && len(b.held) > 0:
		b.publish(slices.Concat(t.events[:t.heldAt], b.held, t.events[t.heldAt:]))
		clear(b.held)
		b.held = b.held[:0]
	default:
		b.publish(t.events)
	}
	clear(t.events)
	b.eventBuf = t.events[:0]
	if t.wake {
		b.wake()
	}
	return ops, true, nil
}

// answered records that ops have been answered whose writes the
// transaction of generation gen commits; reads settle on it.
func (b *Backend) answered(gen uint64) {
	for {
		old := b.answeredGen.Load()
		if old >= gen || b.answeredGen.CompareAndSwap(old, gen) {
			return
		}
	}
}

// committed records that the transaction of generation gen is over
// (committed or failed) and wakes the reads that settle waits for.
func (b *Backend) committed(gen uint64) {
	b.committedGen.Store(gen)
	b.commitMu.Lock()
	close(b.commitCh)
	b.commitCh = make(chan struct{})
	b.commitMu.Unlock()
}
