package bolt

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/jobrelay/engine/backend"
)

// The lease journal keeps the stall count honest for leases that Lease
// handed out before they were committed (see lease.go). A job that kills
// its process within the few milliseconds between its Lease and the commit
// of its claim would otherwise leave no trace in the database, be leased
// again after every restart, and loop forever instead of failing after
// MaxStalls stalls.
//
// So before Lease returns, it appends each claim (sequence number, the
// attempt it starts, job ID) to the journal with one write(2), without
// fsync: the kernel keeps the bytes when the process dies, which is the
// crash that matters here (a power loss loses the unsynced claim and the
// process with it, and the job runs again as at-least-once allows). The
// transaction that writes claims stores the highest sequence it wrote in
// the meta bucket. On Open, a journaled claim above that sequence whose job
// is still queued at the attempt before it was never written: the job
// stalled, and is counted so.
//
// Two files take turns, so that the journal stays small without ever
// losing an uncommitted claim: when the one being written grows past
// journalRotateBytes and every claim in the other one is committed, the
// other one is emptied and written from then on.
type journal struct {
	files [2]*os.File
	cur   int       // the file appends go to
	last  [2]uint64 // the last sequence appended to each file
	size  int64     // bytes in files[cur]
	seq   uint64    // the last sequence handed out
	buf   []byte
}

// journalRotateBytes is the size past which the journal switches files.
const journalRotateBytes = 1 << 20

// journalPaths names the journal files of the database at path.
func journalPaths(path string) [2]string {
	return [2]string{path + ".leases-0", path + ".leases-1"}
}

// journalEntry is one journaled claim.
type journalEntry struct {
	seq     uint64
	attempt int
	id      string
}

// openJournal opens (creating) both files and returns the claims they hold.
func openJournal(path string, mode os.FileMode) (*journal, []journalEntry, error) {
	j := &journal{}
	var entries []journalEntry
	for i, p := range journalPaths(path) {
		f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, mode)
		if err != nil {
			j.close()
			return nil, nil, fmt.Errorf("lease journal: %w", err)
		}
		j.files[i] = f
		es, err := readJournal(f)
		if err != nil {
			j.close()
			return nil, nil, fmt.Errorf("lease journal %s: %w", p, err)
		}
		for _, e := range es {
			j.seq = max(j.seq, e.seq)
		}
		entries = append(entries, es...)
	}
	return j, entries, nil
}

// readJournal reads entries up to the end of f or to a torn last entry.
func readJournal(f *os.File) ([]journalEntry, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	r := bufio.NewReader(f)
	var out []journalEntry
	var head [14]byte
	for {
		if _, err := io.ReadFull(r, head[:]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return out, nil
			}
			return nil, err
		}
		id := make([]byte, binary.BigEndian.Uint16(head[12:]))
		if _, err := io.ReadFull(r, id); err != nil {
			return out, nil // torn by the crash: that claim's Lease never returned
		}
		out = append(out, journalEntry{seq: binary.BigEndian.Uint64(head[:]),
			attempt: int(binary.BigEndian.Uint32(head[8:])), id: string(id)})
	}
}

// add queues one claim's entry; write appends the queued entries.
func (j *journal) add(attempt int, id string) uint64 {
	j.seq++
	j.buf = binary.BigEndian.AppendUint64(j.buf, j.seq)
	j.buf = binary.BigEndian.AppendUint32(j.buf, uint32(attempt))
	j.buf = binary.BigEndian.AppendUint16(j.buf, uint16(len(id)))
	j.buf = append(j.buf, id...)
	return j.seq
}

func (j *journal) write() error {
	if len(j.buf) == 0 {
		return nil
	}
	n, err := j.files[j.cur].WriteAt(j.buf, j.size)
	j.size += int64(n)
	j.last[j.cur] = j.seq
	j.buf = j.buf[:0]
	if err != nil {
		return fmt.Errorf("lease journal: %w", err)
	}
	return nil
}

// committed learns that every claim up to seq is in the database, and
// switches files when the current one is large and the other one holds
// only committed claims.
func (j *journal) committed(seq uint64) error {
	other := 1 - j.cur
	if j.size < journalRotateBytes || j.last[other] > seq {
		return nil
	}
	if err := j.files[other].Truncate(0); err != nil {
		return fmt.Errorf("lease journal: %w", err)
	}
	j.cur, j.size, j.last[other] = other, 0, 0
	return nil
}

// reset empties both files; every claim in them has been dealt with.
func (j *journal) reset() error {
	for _, f := range j.files {
		if err := f.Truncate(0); err != nil {
			return fmt.Errorf("lease journal: %w", err)
		}
	}
	j.cur, j.size, j.last = 0, 0, [2]uint64{}
	return nil
}

func (j *journal) close() error {
	var first error
	for i, f := range j.files {
		if f != nil {
			if err := f.Close(); err != nil && first == nil {
				first = err
			}
			j.files[i] = nil
		}
	}
	return first
}

// recoverClaims counts a stall for every journaled claim that never reached
// the database: its job is still queued at the attempt before the claim.
// Open calls it before it reaps the leases that did reach the database.
func (b *Backend) recoverClaims(entries []journalEntry, now time.Time) error {
	err := b.do(context.Background(), func(t *txn) error {
		written := t.journalSeq()
		// New claims must number above every claim the database has
		// seen, or a crash would hide them below its sequence.
		b.journal.seq = max(b.journal.seq, written)
		for _, e := range entries {
			if e.seq <= written {
				continue
			}
			r, err := t.load(e.id)
			if err != nil || r == nil || r.State != backend.StateQueued || r.Attempt != e.attempt-1 {
				continue
			}
			// Make it the active job it was when the process died, then
			// stall it like any expired lease.
			if err := t.move(r, func(r *record) {
				r.State = backend.StateActive
				r.Attempt = e.attempt
				r.StartedAt = now
				r.LeaseExpiresAt = now
			}); err != nil {
				return err
			}
			if err := t.stall(r, now); err != nil {
				return err
			}
		}
		t.setJournalSeq(b.journal.seq)
		return nil
	})
	if err != nil {
		return err
	}
	return b.journal.reset()
}
