package engine

import (
	"runtime"
	"testing"
	"time"

	"github.com/jobrelay/engine/backend"
)

// The acker takes every queued ack in one step, in the order they came.
func TestAckQueueTakesEverythingQueued(t *testing.T) {
	q := newAckQueue(8)
	runs := []*run{{}, {}, {}}
	for i, r := range runs {
		q.put(r, backend.Ack{Lease: backend.LeaseRef{JobID: string(rune('a' + i))}})
	}
	got, acks, open := q.take(nil, nil, nil)
	if !open || len(got) != 3 || len(acks) != 3 {
		t.Fatalf("took %d runs and %d acks (open %v), want all 3", len(got), len(acks), open)
	}
	for i := range runs {
		if got[i] != runs[i] || acks[i].Lease.JobID != string(rune('a'+i)) {
			t.Fatalf("item %d out of order: got job %q", i, acks[i].Lease.JobID)
		}
	}
}

// A worker that finds the queue full waits until the acker takes from it,
// so that a stuck acker holds the pool back instead of piling up outcomes.
func TestAckQueuePutWaitsForRoom(t *testing.T) {
	q := newAckQueue(2)
	q.put(&run{}, backend.Ack{})
	q.put(&run{}, backend.Ack{})
	put := make(chan struct{})
	go func() {
		q.put(&run{}, backend.Ack{})
		close(put)
	}()
	for {
		q.mu.Lock()
		blocked := q.blocked
		q.mu.Unlock()
		if blocked == 1 {
			break
		}
		runtime.Gosched()
	}
	select {
	case <-put:
		t.Fatal("put into a full queue returned before the acker took anything")
	default:
	}
	if runs, _, _ := q.take(nil, nil, nil); len(runs) != 2 {
		t.Fatalf("took %d runs, want the 2 queued", len(runs))
	}
	<-put
	if runs, _, _ := q.take(nil, nil, nil); len(runs) != 1 {
		t.Fatalf("took %d runs, want the one that waited", len(runs))
	}
}

// take wakes for a put, returns at expire when nothing came, and after
// close reports the queue closed once it is empty.
func TestAckQueueWakesExpiresAndCloses(t *testing.T) {
	q := newAckQueue(4)
	got := make(chan int)
	go func() {
		runs, _, _ := q.take(nil, nil, nil)
		got <- len(runs)
	}()
	for {
		q.mu.Lock()
		sleeping := q.sleeping
		q.mu.Unlock()
		if sleeping {
			break
		}
		runtime.Gosched()
	}
	q.put(&run{}, backend.Ack{})
	if n := <-got; n != 1 {
		t.Fatalf("a sleeping take returned %d runs after a put, want 1", n)
	}

	expire := make(chan time.Time)
	close(expire)
	if runs, _, open := q.take(nil, nil, expire); len(runs) != 0 || open {
		t.Fatalf("take on an empty queue at expire: %d runs, open %v; want none, false", len(runs), open)
	}

	q.put(&run{}, backend.Ack{})
	q.close()
	if runs, _, open := q.take(nil, nil, nil); len(runs) != 1 || !open {
		t.Fatalf("first take after close: %d runs, open %v; want the queued one", len(runs), open)
	}
	if runs, _, open := q.take(nil, nil, nil); len(runs) != 0 || open {
		t.Fatalf("take on a closed, empty queue: %d runs, open %v; want none, false", len(runs), open)
	}
}
