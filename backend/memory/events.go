package memory

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"
	"time"

	"github.com/jobrelay/engine/backend"
)

// defaultReadMax is how many events ReadEvents returns when max is not
// positive.
const defaultReadMax = 100

// eventLog is a ring of the newest events. Event n (from 1) lives at
// recs[(n-1) % size]; its ID is n in decimal, made only when it is read.
//
// Every transition records an event, and the ring keeps tens of thousands,
// so an event is kept compact and free of pointers (see eventRec): recording
// one allocates nothing and needs no write barrier, and the garbage
// collector never scans the ring. What only some events carry (an error, a
// result, a long ID) goes to data, a ring of bytes beside it. A
// backend.Event is built only when ReadEvents reads it.
type eventLog struct {
	recs []eventRec
	size int
	last uint64 // number of the newest event; 0 before the first
	// pos is the index in recs of the event next overwrites once the ring
	// is full, (last % size) kept apart so that next needs no division.
	pos int

	// data holds the variable part of the kept events (see eventRec.off);
	// its length is zero or a power of two. head is the number of bytes
	// ever reserved in it, padding included: positions only grow, and
	// position p lives at data[p % len(data)].
	data []byte
	head uint64
	enc  []byte // reused to encode an event's data

	// wait is closed (and set to nil) by the next event; a blocked
	// ReadEvents makes it.
	wait chan struct{}
}

// idInline is the longest job ID an eventRec holds itself; the engine's IDs
// (26 bytes) fit. A longer one goes to the log's data.
const idInline = 28

// eventRec is one kept event. It holds no pointer: strings that repeat (the
// kind, state, type and queue) are numbers, the job ID is copied inline, and
// the rest is in the log's data at off.
type eventRec struct {
	sec     int64  // Time, in Unix seconds
	off     uint64 // position of the event's data; the log's head when it has none
	attempt int64
	nsec    int32  // Time's nanoseconds
	queue   uint32 // queue.num
	typ     uint32 // index in Backend.types
	size    uint32 // bytes of data at off
	kind    uint8  // index in eventKinds
	state   uint8  // stateIndex, or noState
	idLen   uint8
	flags   uint8 // which fields the data holds (dataID...)
	id      [idInline]byte
}

// The fields an event's data may hold, in this order; each is present when
// its flag is set.
const (
	dataID       = 1 << iota // the job ID, too long for eventRec.id
	dataType                 // the type, when the table of types is full
	dataProgress             // varint
	dataMessage              // uvarint length, bytes
	dataResult               // uvarint length, bytes; set for a non-nil Result
	dataError                // uvarint length, bytes
	dataRunAt                // varint seconds, uvarint nanoseconds
)

// noState is eventRec.state of an event without a state (a queue's).
const noState = 0xff

// eventKinds lists the kinds an eventRec numbers.
var eventKinds = [...]backend.EventKind{backend.EventQueued, backend.EventActive, backend.EventProgress,
	backend.EventRetrying, backend.EventCompleted, backend.EventFailed, backend.EventCanceled,
	backend.EventStalled, backend.EventCancelRequested, backend.EventPaused, backend.EventResumed}

// kindIndex returns the index of kind k in eventKinds.
func kindIndex(k backend.EventKind) uint8 {
	switch k {
	case backend.EventQueued:
		return 0
	case backend.EventActive:
		return 1
	case backend.EventProgress:
		return 2
	case backend.EventRetrying:
		return 3
	case backend.EventCompleted:
		return 4
	case backend.EventFailed:
		return 5
	case backend.EventCanceled:
		return 6
	case backend.EventStalled:
		return 7
	case backend.EventCancelRequested:
		return 8
	case backend.EventPaused:
		return 9
	}
	return 10 // EventResumed: the backend records no other kind
}

// maxTypes caps the table of job types that events name by number, so that
// a stream of made-up types cannot grow it without end; events of types
// beyond it keep the type in their data.
const maxTypes = 1 << 16

// typeTable numbers the job types that events name. Types are few, and a
// batch mostly has one, so the last one looked up is remembered.
type typeTable struct {
	names   []string // by number; names[0] is ""
	nums    map[string]uint32
	lastNum uint32
	last    string
}

// noType is the number of a type that the full table could not take.
const noType = math.MaxUint32

// num returns the number of type name, numbering it on first use, or
// noType once the table is full.
func (t *typeTable) num(name string) uint32 {
	if name == t.last {
		return t.lastNum
	}
	n, ok := t.nums[name]
	if !ok {
		if name == "" {
			return 0
		}
		if len(t.names) >= maxTypes {
			return noType
		}
		if t.nums == nil {
			t.names, t.nums = []string{""}, make(map[string]uint32)
		}
		// The name may be a view of a packed job (see queuedBlock): the
		// table keeps a copy.
		n = uint32(len(t.names))
		t.names = append(t.names, strings.Clone(name))
		t.nums[t.names[n]] = n
	}
	t.last, t.lastNum = t.names[n], n
	return n
}

// canonical returns the table's copy of type name, numbering it on first
// use, or a copy of name once the table is full: never name itself, which
// may be a view.
func (t *typeTable) canonical(name string) string {
	if name == "" {
		return ""
	}
	if n := t.num(name); n != noType {
		return t.names[n]
	}
	return strings.Clone(name)
}

// details holds the fields of an event that only some kinds carry.
type details struct {
	progress int
	message  string
	result   []byte
	err      string
	runAt    time.Time
}

// next returns the slot of a new event, overwriting the oldest once full.
func (l *eventLog) next() *eventRec {
	l.last++
	if len(l.recs) < l.size {
		l.recs = append(l.recs, eventRec{})
		return &l.recs[len(l.recs)-1]
	}
	r := &l.recs[l.pos]
	if l.pos++; l.pos == l.size {
		l.pos = 0
	}
	return r
}

// oldest returns the number of the oldest kept event.
func (l *eventLog) oldest() uint64 {
	return l.last - uint64(len(l.recs)) + 1
}

// at returns the kept event number n.
func (l *eventLog) at(n uint64) *eventRec {
	return &l.recs[(n-1)%uint64(l.size)]
}

// emit records the event of a job's transition, with the job's state after
// it.
func (b *Backend) emit(kind backend.EventKind, j *job, now time.Time) {
	b.record(&b.events, kind, j.ID, j.Type, b.queueOf(j).num, j.State, j.Attempt, now, nil)
}

// emitWith records the event of a job's transition with the fields that
// its kind carries.
func (b *Backend) emitWith(kind backend.EventKind, j *job, now time.Time, d *details) {
	b.record(&b.events, kind, j.ID, j.Type, b.queueOf(j).num, j.State, j.Attempt, now, d)
}

// emitQueue records an event that concerns a whole queue.
func (b *Backend) emitQueue(kind backend.EventKind, q *queue, now time.Time) {
	b.record(&b.events, kind, "", "", q.num, "", 0, now, nil)
}

// emitCancelRequest records EventCancelRequested of an active job in the
// event log and in the log of cancel requests.
func (b *Backend) emitCancelRequest(j *job, now time.Time) {
	b.emit(backend.EventCancelRequested, j, now)
	b.record(&b.cancels, backend.EventCancelRequested, j.ID, j.Type, b.queueOf(j).num, j.State, j.Attempt, now, nil)
}

// record adds an event to l and wakes its blocked readers.
func (b *Backend) record(l *eventLog, kind backend.EventKind, id, typ string, queue uint32,
	state backend.State, attempt int, now time.Time, d *details) {
	r := l.next()
	r.sec, r.nsec = now.Unix(), int32(now.Nanosecond())
	r.attempt = int64(attempt)
	r.queue = queue
	r.kind = kindIndex(kind)
	r.state = noState
	if state != "" {
		r.state = uint8(stateIndex(state))
	}
	r.flags = 0
	r.idLen = 0
	if len(id) <= idInline {
		r.idLen = uint8(copy(r.id[:], id))
	} else {
		r.flags |= dataID
	}
	r.typ = b.types.num(typ)
	if r.typ == noType {
		r.flags |= dataType
	}
	if d != nil {
		r.flags |= d.flags()
	}
	if r.flags == 0 {
		r.off, r.size = l.head, 0
	} else {
		l.enc = encodeData(l.enc[:0], r.flags, id, typ, d)
		l.put(r, l.enc)
	}
	if l.wait != nil {
		close(l.wait)
		l.wait = nil
	}
}

// flags returns the data flags of the fields that d sets.
func (d *details) flags() uint8 {
	var f uint8
	if d.progress != 0 {
		f |= dataProgress
	}
	if d.message != "" {
		f |= dataMessage
	}
	if d.result != nil {
		f |= dataResult
	}
	if d.err != "" {
		f |= dataError
	}
	if !d.runAt.IsZero() {
		f |= dataRunAt
	}
	return f
}

// encodeData appends the fields that flags names to buf.
func encodeData(buf []byte, flags uint8, id, typ string, d *details) []byte {
	if flags&dataID != 0 {
		buf = appendString(buf, id)
	}
	if flags&dataType != 0 {
		buf = appendString(buf, typ)
	}
	if flags&dataProgress != 0 {
		buf = binary.AppendVarint(buf, int64(d.progress))
	}
	if flags&dataMessage != 0 {
		buf = appendString(buf, d.message)
	}
	if flags&dataResult != 0 {
		buf = appendString(buf, d.result)
	}
	if flags&dataError != 0 {
		buf = appendString(buf, d.err)
	}
	if flags&dataRunAt != 0 {
		buf = binary.AppendVarint(buf, d.runAt.Unix())
		buf = binary.AppendUvarint(buf, uint64(d.runAt.Nanosecond()))
	}
	return buf
}

// minData is the smallest size of a log's data ring.
const minData = 4 << 10

// put copies p, the data of the newest event r, into the data ring in one
// piece. The ring keeps the data of every kept event: it grows when that
// would not fit, and shrinks when it is mostly empty as the next event with
// data comes, so that a burst of large results does not pin its memory for
// good.
func (l *eventLog) put(r *eventRec, p []byte) {
	n := uint64(len(p))
	tail := l.head // where the data of the other kept events begins
	if len(l.recs) > 1 {
		tail = l.at(l.oldest()).off
	}
	size := uint64(len(l.data))
	pos := l.head
	if size > 0 && pos%size+n > size {
		pos += size - pos%size // skip to the start, so that p stays in one piece
	}
	live := l.head - tail
	if pos+n-tail > size || size > minData && live+n < size/8 {
		l.relayout(max(minData, uint64(1)<<bits.Len64(4*(live+n)-1)))
		pos, size = l.head, uint64(len(l.data))
	}
	copy(l.data[pos%size:], p)
	r.off, r.size = pos, uint32(n)
	l.head = pos + n
}

// relayout moves the data of the kept events but the newest (which has
// none yet) into a new ring of size bytes, from its start.
func (l *eventLog) relayout(size uint64) {
	data := make([]byte, size)
	var pos uint64
	for n := l.oldest(); n < l.last; n++ {
		r := l.at(n)
		if r.size > 0 {
			copy(data[pos:], l.dataOf(r))
		}
		r.off = pos
		pos += uint64(r.size)
	}
	l.data, l.head = data, pos
}

// dataOf returns the data of the kept event r. It is valid until the next
// event.
func (l *eventLog) dataOf(r *eventRec) []byte {
	if r.size == 0 {
		return nil
	}
	at := r.off % uint64(len(l.data))
	return l.data[at : at+uint64(r.size)]
}

// EventCursor returns the cursor of the newest event ("0" before the first);
// see backend.Backend.
func (b *Backend) EventCursor(ctx context.Context) (string, error) {
	return b.logCursor(&b.events)
}

// ReadEvents returns events after cursor, blocking until there is one; see
// backend.Backend. An empty cursor reads from the oldest kept event. When
// limit is not positive it returns up to 100.
func (b *Backend) ReadEvents(ctx context.Context, cursor string, limit int) ([]backend.Event, error) {
	return b.readLog(ctx, &b.events, "read events", cursor, limit)
}

// CancelCursor returns the cursor of the newest cancel request ("0" before
// the first); see backend.Backend.
func (b *Backend) CancelCursor(ctx context.Context) (string, error) {
	return b.logCursor(&b.cancels)
}

// logCursor returns the number of the newest entry of log l.
func (b *Backend) logCursor(l *eventLog) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return "", errClosed
	}
	return strconv.FormatUint(l.last, 10), nil
}

// ReadCancels returns cancel requests after cursor, blocking until there is
// one; see backend.Backend. Cursors number the requests alone.
func (b *Backend) ReadCancels(ctx context.Context, cursor string, limit int) ([]backend.Event, error) {
	return b.readLog(ctx, &b.cancels, "read cancels", cursor, limit)
}

// readLog returns entries of log l after cursor, blocking until there is
// one, ctx ends or the backend closes.
func (b *Backend) readLog(ctx context.Context, l *eventLog, op, cursor string, limit int) ([]backend.Event, error) {
	var after uint64
	if cursor != "" {
		n, err := strconv.ParseUint(cursor, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("memory: %s: bad cursor %q: %w", op, cursor, err)
		}
		after = n
	}
	if limit <= 0 {
		limit = defaultReadMax
	}
	for {
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			return nil, errClosed
		}
		if l.last > after {
			out := b.read(l, after, limit)
			b.mu.Unlock()
			return out, nil
		}
		if l.wait == nil {
			l.wait = make(chan struct{})
		}
		wait := l.wait
		b.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-b.done:
			return nil, errClosed
		}
	}
}

// span locates a string of a batch of events in the batch's text.
type span struct{ from, to int }

// eventSpans locates the strings of one event that read builds.
type eventSpans struct {
	id, jobID, typ, message, err span
	result                       span // in the batch's results
	hasResult                    bool
}

// read builds up to limit events of l after number after; a reader behind
// the oldest kept event resumes there. The strings of the batch share one
// allocation and its results another.
func (b *Backend) read(l *eventLog, after uint64, limit int) []backend.Event {
	from := max(after+1, l.oldest())
	n := int(min(uint64(limit), l.last-from+1))
	out := make([]backend.Event, n)
	spans := make([]eventSpans, n)
	var text, results []byte
	str := func(p []byte) span {
		s := span{from: len(text)}
		text = append(text, p...)
		s.to = len(text)
		return s
	}
	for i := range n {
		seq := from + uint64(i)
		r := l.at(seq)
		sp := &spans[i]
		sp.id.from = len(text)
		text = strconv.AppendUint(text, seq, 10)
		sp.id.to = len(text)
		sp.jobID = str(r.id[:r.idLen])
		e := &out[i]
		e.Kind = eventKinds[r.kind]
		if r.state != noState {
			e.State = stateAt[r.state]
		}
		e.Queue = b.queueAt[r.queue].name
		if r.typ != 0 && r.typ != noType {
			e.Type = b.types.names[r.typ]
		}
		e.Attempt = int(r.attempt)
		e.Time = time.Unix(r.sec, int64(r.nsec)).UTC()
		if r.flags == 0 {
			continue
		}
		d := dataReader{unpacker{b: l.dataOf(r)}}
		if r.flags&dataID != 0 {
			sp.jobID = str(d.bytes())
		}
		if r.flags&dataType != 0 {
			sp.typ = str(d.bytes())
		}
		if r.flags&dataProgress != 0 {
			e.Progress = int(d.varint())
		}
		if r.flags&dataMessage != 0 {
			sp.message = str(d.bytes())
		}
		if r.flags&dataResult != 0 {
			if results == nil {
				results = make([]byte, 0, 64) // not nil: an empty result is not a nil one
			}
			p := d.bytes()
			sp.result = span{from: len(results), to: len(results) + len(p)}
			sp.hasResult = true
			results = append(results, p...)
		}
		if r.flags&dataError != 0 {
			sp.err = str(d.bytes())
		}
		if r.flags&dataRunAt != 0 {
			sec := d.varint()
			e.RunAt = time.Unix(sec, int64(d.uvarint())).UTC()
		}
	}
	all := string(text)
	for i := range out {
		e, sp := &out[i], &spans[i]
		e.ID = all[sp.id.from:sp.id.to]
		e.JobID = all[sp.jobID.from:sp.jobID.to]
		if sp.typ.to > sp.typ.from {
			e.Type = all[sp.typ.from:sp.typ.to]
		}
		e.Message = all[sp.message.from:sp.message.to]
		e.Error = all[sp.err.from:sp.err.to]
		if sp.hasResult {
			e.Result = results[sp.result.from:sp.result.to:sp.result.to]
		}
	}
	return out
}

// dataReader decodes the data of an event (see encodeData): varints as a
// packed job's, and byte strings as views of the log's data.
type dataReader struct{ unpacker }

func (d *dataReader) bytes() []byte {
	n := d.uvarint()
	p := d.b[:n]
	d.b = d.b[n:]
	return p
}
