package bolt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/jobrelay/engine/backend"
)

// recordVersion is the first byte of every stored job record. A record with
// another version is treated as corrupt, never guessed at.
const recordVersion = 1

// crcTable checksums each job record, so that a torn or damaged record is
// found on read instead of being handed to a worker as a wrong job.
var crcTable = crc32.MakeTable(crc32.Castagnoli)

// errCorruptRecord is what peekHeader returns for a record it cannot read;
// decodeRecord says what is wrong, and its callers wrap ErrCorruptJob.
var errCorruptRecord = errors.New("corrupt job record")

// record is a job as stored: the public Job plus what only the backend needs.
type record struct {
	backend.Job
	// seq is the job's place in the ready index while it is queued.
	seq uint64
	// cancelReason is the reason given to Cancel while the job was active; it
	// becomes Error when the worker finishes the job as canceled.
	cancelReason string
	// hasDependents is set once a deferred job waits on this one, so that
	// only such jobs are looked up in the dependency index when they end.
	hasDependents bool
}

// stateCode maps a State to the byte stored for it (0 is "unknown").
func stateCode(s backend.State) byte {
	for i, v := range backend.States {
		if v == s {
			return byte(i + 1)
		}
	}
	return 0
}

// stateOf is the inverse of stateCode.
func stateOf(c byte) (backend.State, bool) {
	if c == 0 || int(c) > len(backend.States) {
		return "", false
	}
	return backend.States[c-1], true
}

func appendUvarint(b []byte, v uint64) []byte { return binary.AppendUvarint(b, v) }
func appendVarint(b []byte, v int64) []byte   { return binary.AppendVarint(b, v) }

func appendString(b []byte, s string) []byte {
	b = appendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendBytes keeps nil and empty apart (length+1, 0 for nil), so a job
// reads back exactly as it was stored.
func appendBytes(b []byte, p []byte) []byte {
	if p == nil {
		return append(b, 0)
	}
	b = appendUvarint(b, uint64(len(p))+1)
	return append(b, p...)
}

// appendTime stores seconds and nanoseconds, so every time.Time survives,
// including the zero time and dates outside UnixNano's range.
func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(b, 0)
	}
	b = append(b, 1)
	b = appendVarint(b, t.Unix())
	return appendUvarint(b, uint64(t.Nanosecond()))
}

// encodeRecord returns the stored form of r: version, fields in a fixed
// order, then a CRC-32C of everything before it.
func encodeRecord(r *record) []byte {
	j := &r.Job
	n := 96 + len(j.Type) + len(j.Queue) + len(j.Payload) + len(j.Result) + len(j.Error) +
		len(j.UniqueKey) + len(j.LimitKey) + len(j.ProgressMessage) + len(j.LeaseToken) + len(j.Worker) + len(r.cancelReason)
	for k, v := range j.Meta {
		n += len(k) + len(v) + 4
	}
	for _, d := range j.DependsOn {
		n += len(d) + 2
	}
	b := make([]byte, 0, n)
	b = append(b, recordVersion, stateCode(j.State))
	b = appendString(b, j.Type)
	b = appendString(b, j.Queue)
	b = appendBytes(b, j.Payload)
	if j.Meta == nil {
		b = append(b, 0)
	} else {
		b = appendUvarint(b, uint64(len(j.Meta))+1)
		for k, v := range j.Meta {
			b = appendString(b, k)
			b = appendString(b, v)
		}
	}
	b = appendVarint(b, int64(j.Priority))
	b = appendVarint(b, int64(j.Attempt))
	b = appendVarint(b, int64(j.Failures))
	b = appendVarint(b, int64(j.Stalls))
	b = appendVarint(b, int64(j.MaxRetries))
	b = appendVarint(b, int64(j.MaxStalls))
	b = appendVarint(b, int64(j.Timeout))
	b = appendVarint(b, int64(j.ResultTTL))
	b = appendVarint(b, int64(j.FailureTTL))
	b = appendString(b, j.UniqueKey)
	b = appendTime(b, j.UniqueUntil)
	b = appendString(b, j.LimitKey)
	if j.DependsOn == nil {
		b = append(b, 0)
	} else {
		b = appendUvarint(b, uint64(len(j.DependsOn))+1)
		for _, d := range j.DependsOn {
			b = appendString(b, d)
		}
	}
	b = appendVarint(b, int64(j.Progress))
	b = appendString(b, j.ProgressMessage)
	b = appendBytes(b, j.Result)
	b = appendString(b, j.Error)
	b = appendTime(b, j.CreatedAt)
	b = appendTime(b, j.RunAt)
	b = appendTime(b, j.StartedAt)
	b = appendTime(b, j.FinishedAt)
	b = appendTime(b, j.ExpiresAt)
	b = appendString(b, j.LeaseToken)
	b = appendTime(b, j.LeaseExpiresAt)
	b = appendString(b, j.Worker)
	var flags byte
	if j.CancelRequested {
		flags |= 1
	}
	if r.hasDependents {
		flags |= 2
	}
	b = append(b, flags)
	b = appendUvarint(b, r.seq)
	b = appendString(b, r.cancelReason)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, crcTable))
}

// decoder reads a record field by field; the first error sticks and every
// later read returns zero values, so decodeRecord checks once at the end.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("bad %s", what)
	}
}

func (d *decoder) byte(what string) byte {
	if d.err != nil || len(d.b) < 1 {
		d.fail(what)
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint(what string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) int(what string) int { return int(d.varint(what)) }

func (d *decoder) raw(n uint64, what string) []byte {
	if d.err != nil || n > uint64(len(d.b)) {
		d.fail(what)
		return nil
	}
	p := d.b[:n]
	d.b = d.b[n:]
	return p
}

func (d *decoder) string(what string) string {
	n := d.uvarint(what)
	return string(d.raw(n, what))
}

// bytes copies, because bbolt's memory is only valid inside its transaction.
func (d *decoder) bytes(what string) []byte {
	n := d.uvarint(what)
	if n == 0 || d.err != nil {
		return nil
	}
	p := d.raw(n-1, what)
	if d.err != nil {
		return nil
	}
	return append(make([]byte, 0, len(p)), p...)
}

func (d *decoder) time(what string) time.Time {
	if d.byte(what) == 0 {
		return time.Time{}
	}
	sec := d.varint(what)
	nsec := d.uvarint(what)
	if d.err != nil || nsec >= 1e9 {
		d.fail(what)
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec))
}

// decodeRecord parses a stored record of the job with the given id. Any
// damage (bad checksum, unknown version or state, truncation, trailing
// bytes) gives an error that says what is wrong. names, when not nil,
// shares the strings of types and queues between records (the commit loop
// decodes thousands of jobs a second with a handful of names).
func decodeRecord(id string, v []byte, names names) (*record, error) {
	if len(v) < 6 {
		return nil, fmt.Errorf("record of %d bytes is too short", len(v))
	}
	body, sum := v[:len(v)-4], binary.BigEndian.Uint32(v[len(v)-4:])
	if crc32.Checksum(body, crcTable) != sum {
		return nil, errors.New("checksum mismatch")
	}
	if body[0] != recordVersion {
		return nil, fmt.Errorf("record version %d, want %d", body[0], recordVersion)
	}
	st, ok := stateOf(body[1])
	if !ok {
		return nil, fmt.Errorf("unknown state code %d", body[1])
	}
	d := &decoder{b: body[2:]}
	r := &record{}
	j := &r.Job
	j.ID = id
	j.State = st
	j.Type = names.get(d.raw(d.uvarint("type"), "type"))
	j.Queue = names.get(d.raw(d.uvarint("queue"), "queue"))
	j.Payload = d.bytes("payload")
	if n := d.uvarint("meta"); n > 0 && d.err == nil {
		if n-1 > uint64(len(d.b)) {
			d.fail("meta")
		} else {
			j.Meta = make(map[string]string, n-1)
			for i := uint64(1); i < n && d.err == nil; i++ {
				k := d.string("meta key")
				j.Meta[k] = d.string("meta value")
			}
		}
	}
	j.Priority = d.int("priority")
	j.Attempt = d.int("attempt")
	j.Failures = d.int("failures")
	j.Stalls = d.int("stalls")
	j.MaxRetries = d.int("max retries")
	j.MaxStalls = d.int("max stalls")
	j.Timeout = time.Duration(d.varint("timeout"))
	j.ResultTTL = time.Duration(d.varint("result ttl"))
	j.FailureTTL = time.Duration(d.varint("failure ttl"))
	j.UniqueKey = d.string("unique key")
	j.UniqueUntil = d.time("unique until")
	j.LimitKey = names.get(d.raw(d.uvarint("limit key"), "limit key"))
	if n := d.uvarint("depends on"); n > 0 && d.err == nil {
		if n-1 > uint64(len(d.b)) {
			d.fail("depends on")
		} else {
			j.DependsOn = make([]string, 0, n-1)
			for i := uint64(1); i < n && d.err == nil; i++ {
				j.DependsOn = append(j.DependsOn, d.string("dependency"))
			}
		}
	}
	j.Progress = d.int("progress")
	j.ProgressMessage = d.string("progress message")
	j.Result = d.bytes("result")
	j.Error = d.string("error")
	j.CreatedAt = d.time("created at")
	j.RunAt = d.time("run at")
	j.StartedAt = d.time("started at")
	j.FinishedAt = d.time("finished at")
	j.ExpiresAt = d.time("expires at")
	j.LeaseToken = d.string("lease token")
	j.LeaseExpiresAt = d.time("lease expires at")
	j.Worker = d.string("worker")
	flags := d.byte("flags")
	j.CancelRequested = flags&1 != 0
	r.hasDependents = flags&2 != 0
	r.seq = d.uvarint("seq")
	r.cancelReason = d.string("cancel reason")
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return nil, d.err
	}
	return r, nil
}

// names interns short strings that many records share.
type names map[string]string

// maxNames bounds a names table, so that a stream of distinct types cannot
// grow it without end.
const maxNames = 4096

func (n names) get(b []byte) string {
	if s, ok := n[string(b)]; ok {
		return s
	}
	s := string(b)
	if n != nil && len(n) < maxNames {
		n[s] = s
	}
	return s
}

// peekHeader reads what a listing filters on (state, type, queue) without
// decoding the rest. It checks the checksum, so a damaged record never
// passes a filter by accident.
func peekHeader(v []byte) (st backend.State, typ, queue []byte, err error) {
	if len(v) < 6 {
		return "", nil, nil, errCorruptRecord
	}
	body, sum := v[:len(v)-4], binary.BigEndian.Uint32(v[len(v)-4:])
	if crc32.Checksum(body, crcTable) != sum || body[0] != recordVersion {
		return "", nil, nil, errCorruptRecord
	}
	st, ok := stateOf(body[1])
	if !ok {
		return "", nil, nil, errCorruptRecord
	}
	d := &decoder{b: body[2:]}
	typ = d.raw(d.uvarint("type"), "type")
	queue = d.raw(d.uvarint("queue"), "queue")
	return st, typ, queue, d.err
}

// Index keys. Every key sorts the way its index is walked: big-endian
// numbers, sign bits flipped so negative values sort first.

// timeKey is 12 bytes that sort like t (seconds, then nanoseconds),
// followed by suffix so that equal times still give distinct keys.
func timeKey(t time.Time, suffix string) []byte {
	return appendTimeKey(make([]byte, 0, 12+len(suffix)), t, suffix)
}

// appendTimeKey appends timeKey(t, suffix) to dst.
func appendTimeKey(dst []byte, t time.Time, suffix string) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(t.Unix())^(1<<63))
	dst = binary.BigEndian.AppendUint32(dst, uint32(t.Nanosecond()))
	return append(dst, suffix...)
}

// keyTime is the inverse of the first 12 bytes of timeKey.
func keyTime(k []byte) time.Time {
	if len(k) < 12 {
		return time.Time{}
	}
	sec := int64(binary.BigEndian.Uint64(k) ^ (1 << 63))
	return time.Unix(sec, int64(binary.BigEndian.Uint32(k[8:])))
}

// queuePrefix is a queue name with its length in front, so that one queue's
// keys never run into another's whose name it is a prefix of (and so that an
// empty queue name is still a valid key).
func queuePrefix(queue string) []byte {
	k := make([]byte, 2, 2+len(queue)+16)
	binary.BigEndian.PutUint16(k, uint16(len(queue)))
	return append(k, queue...)
}

// readyKey orders the ready index: queue, then priority high to low, then
// the sequence in which jobs became queued (FIFO).
func readyKey(queue string, priority int, seq uint64) []byte {
	return appendReadyKey(make([]byte, 0, 18+len(queue)), queue, priority, seq)
}

// appendReadyKey appends readyKey(queue, priority, seq) to dst.
func appendReadyKey(dst []byte, queue string, priority int, seq uint64) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(queue)))
	dst = append(dst, queue...)
	dst = binary.BigEndian.AppendUint64(dst, ^(uint64(priority) ^ (1 << 63)))
	return binary.BigEndian.AppendUint64(dst, seq)
}

// depKey is a dependency index key: the job waited on, then the waiter.
func depKey(dep, dependent string) []byte {
	return append(queuePrefix(dep), dependent...)
}

// queueKey is the key of a queue in the queues and paused buckets; the
// leading byte keeps the empty queue name a valid bbolt key.
func queueKey(queue string) []byte { return append([]byte{'q'}, queue...) }

// counters is a queue's stored tally: jobs by state and totals.
type counters struct {
	states    [8]int64
	processed int64
	failed    int64
}

const countersSize = 10 * 8

func (c *counters) encode() []byte {
	b := make([]byte, 0, countersSize)
	for _, v := range c.states {
		b = binary.BigEndian.AppendUint64(b, uint64(v))
	}
	b = binary.BigEndian.AppendUint64(b, uint64(c.processed))
	return binary.BigEndian.AppendUint64(b, uint64(c.failed))
}

func decodeCounters(v []byte) counters {
	var c counters
	if len(v) != countersSize {
		return c
	}
	for i := range c.states {
		c.states[i] = int64(binary.BigEndian.Uint64(v[i*8:]))
	}
	c.processed = int64(binary.BigEndian.Uint64(v[64:]))
	c.failed = int64(binary.BigEndian.Uint64(v[72:]))
	return c
}

// uniqueValue is what the unique index keeps for a key: the holder's id, the
// time until which the key is held whatever the holder's state, and (once
// the holder was swept) its last state.
func uniqueValue(until time.Time, state backend.State, id string) []byte {
	k := timeKey(until, "")
	if until.IsZero() {
		k = make([]byte, 12, 13+len(id))
	}
	k = append(k, stateCode(state))
	return append(k, id...)
}

func decodeUniqueValue(v []byte) (until time.Time, state backend.State, id string) {
	if len(v) < 13 {
		return time.Time{}, "", ""
	}
	allZero := true
	for _, c := range v[:12] {
		if c != 0 {
			allZero = false
			break
		}
	}
	if !allZero {
		until = keyTime(v)
	}
	state, _ = stateOf(v[12])
	return until, state, string(v[13:])
}
