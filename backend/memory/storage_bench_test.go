package memory

import (
	"context"
	"fmt"
	"hash/maphash"
	"testing"
	"time"

	"github.com/jobrelay/engine/backend"
)

// BenchmarkIDTable compares idMap with the Go map it replaced, as the store
// uses them: a table of size entries where each op stores a new job (the
// map looks its hash up before adding it), finds a stored one and forgets
// the oldest (the map looks it up before deleting it). At 2M entries every
// probe misses the cache, as in a store that keeps a day of jobs.
func BenchmarkIDTable(b *testing.B) {
	seed := maphash.MakeSeed()
	for _, size := range []int{10_000, 2_000_000} {
		// hashes[i] is the hash of the ID of job i, the ring of handles
		// reused as jobs are forgotten.
		hashes := make([]uint64, size+1<<16)
		for i := range hashes {
			hashes[i] = maphash.String(seed, fmt.Sprintf("j%013d", i))
		}
		b.Run(fmt.Sprintf("idMap/%d", size), func(b *testing.B) {
			var m idMap
			for i := range size {
				m.insert(hashes[i], uint32(i))
			}
			b.ResetTimer()
			for i := range b.N {
				add, old := (size+i)%len(hashes), i%len(hashes)
				m.insert(hashes[add], uint32(add))
				if _, ok := m.lookup(hashes[(old+size/2)%len(hashes)], func(uint32) bool { return true }); !ok {
					b.Fatal("lookup: got nothing, want a job")
				}
				if !m.remove(hashes[old], uint32(old)) {
					b.Fatal("remove: got false, want true")
				}
			}
		})
		b.Run(fmt.Sprintf("goMap/%d", size), func(b *testing.B) {
			m := make(map[uint64]uint32)
			for i := range size {
				m[hashes[i]] = uint32(i)
			}
			b.ResetTimer()
			for i := range b.N {
				add, old := (size+i)%len(hashes), i%len(hashes)
				if _, taken := m[hashes[add]]; !taken {
					m[hashes[add]] = uint32(add)
				}
				if _, ok := m[hashes[(old+size/2)%len(hashes)]]; !ok {
					b.Fatal("lookup: got nothing, want a job")
				}
				if hd, ok := m[hashes[old]]; ok && hd == uint32(old) {
					delete(m, hashes[old])
				}
			}
		})
	}
}

// BenchmarkPack measures packing a finished job for the archive and
// unpacking it.
func BenchmarkPack(b *testing.B) {
	at := time.Unix(1_900_000_000, 123456789).UTC()
	j := &job{}
	j.ID, j.Type, j.Payload = "j1000000000001", "bench", []byte(`{"meeting":"m-1"}`)
	j.MaxRetries, j.MaxStalls, j.ResultTTL, j.FailureTTL = 3, 3, time.Second, time.Second
	j.Attempt, j.Result = 1, []byte(`{"ok":true}`)
	j.CreatedAt, j.StartedAt, j.FinishedAt, j.ExpiresAt = at, at, at, at.Add(time.Second)
	var buf []byte
	b.Run("pack", func(b *testing.B) {
		for range b.N {
			buf = pack(buf[:0], &j.Job)
		}
		b.ReportMetric(float64(len(buf)), "bytes")
	})
	b.Run("unpack", func(b *testing.B) {
		buf = pack(buf[:0], &j.Job)
		for range b.N {
			var u job
			unpack(buf, &u.Job)
		}
	})
}

// BenchmarkIDTablePrefetch measures what reading a batch's slots first (see
// Backend.prefetchNew and prefetchArchived) saves in a table of 2M entries,
// where every slot is a cache miss: per op, a batch of 512 new jobs is
// stored and the 512 oldest are forgotten.
func BenchmarkIDTablePrefetch(b *testing.B) {
	const size, batch = 2_000_000, 512
	seed := maphash.MakeSeed()
	hashes := make([]uint64, size+1<<20)
	for i := range hashes {
		hashes[i] = maphash.String(seed, fmt.Sprintf("j%013d", i))
	}
	for _, prefetch := range []bool{false, true} {
		b.Run(fmt.Sprintf("prefetch=%v", prefetch), func(b *testing.B) {
			var m idMap
			for i := range size {
				m.insert(hashes[i], uint32(i))
			}
			b.ResetTimer()
			old, add := 0, size
			for range b.N {
				if add+batch > len(hashes) {
					b.StopTimer()
					for ; old < add; old++ {
						m.remove(hashes[old], uint32(old))
					}
					old, add = 0, 0
					for ; add < size; add++ {
						m.insert(hashes[add], uint32(add))
					}
					b.StartTimer()
				}
				if prefetch {
					m.prefetch(hashes[add : add+batch])
				}
				for i := add; i < add+batch; i++ {
					m.insert(hashes[i], uint32(i))
				}
				add += batch
				if prefetch {
					m.prefetch(hashes[old : old+batch])
				}
				for i := old; i < old+batch; i++ {
					m.remove(hashes[i], uint32(i))
				}
				old += batch
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/job")
		})
	}
}

// BenchmarkEnqueueLargeStore measures Enqueue of batches of 512 jobs into a
// store that keeps a million finished jobs, as one does with the default
// ResultTTL of a day: there every ID-table slot is a cache miss.
func BenchmarkEnqueueLargeStore(b *testing.B) {
	const kept, batch = 1_000_000, 512
	ctx := context.Background()
	m := New(Options{})
	defer m.Close()
	now := time.Unix(1_900_000_000, 0)
	jobs := func(from int) []backend.NewJob {
		js := make([]backend.NewJob, batch)
		for i := range js {
			js[i] = backend.NewJob{ID: fmt.Sprintf("j%013d", from+i), Type: "bench", Queue: "default",
				Payload: []byte(`{"meeting":"m-1"}`)}
		}
		return js
	}
	complete := func() {
		req := backend.LeaseRequest{Queues: []string{"default"}, Worker: "w", Max: batch, Now: now, TTL: time.Minute}
		for {
			ls, err := m.Lease(ctx, req)
			if err != nil {
				b.Fatal(err)
			}
			if len(ls) == 0 {
				return
			}
			acks := make([]backend.Ack, len(ls))
			for i, l := range ls {
				acks[i] = backend.Ack{Lease: l.Ref(), Outcome: backend.OutcomeCompleted}
			}
			if _, err := m.Finish(ctx, now, acks); err != nil {
				b.Fatal(err)
			}
		}
	}
	for i := 0; i < kept; i += batch {
		if _, err := m.Enqueue(ctx, now, jobs(i)); err != nil {
			b.Fatal(err)
		}
		complete()
	}
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		js := jobs(kept + i*batch)
		b.StartTimer()
		if _, err := m.Enqueue(ctx, now, js); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		complete()
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/job")
}

// BenchmarkReadyQueue measures a priority's FIFO (see level) as Enqueue and
// Lease use it, per job pushed and popped: kept at a steady length, where a
// short queue must stay as fast as a plain ring, and filled with a burst of
// jobs and drained, where growing must not copy the queue.
func BenchmarkReadyQueue(b *testing.B) {
	for _, c := range []struct {
		name   string
		steady int // jobs kept queued, or 0
		burst  int // jobs pushed, then popped
	}{
		{"steady=1", 1, 0}, {"steady=100", 100, 0}, {"steady=10000", 10_000, 0},
		{"burst=512", 0, 512}, {"burst=1000000", 0, 1_000_000},
	} {
		b.Run(c.name, func(b *testing.B) {
			jobs := make([]job, max(c.steady, c.burst)+1)
			var r readyQueue
			for i := range c.steady {
				r.pushBack(&jobs[i])
			}
			b.ResetTimer()
			if c.burst == 0 {
				for i := range b.N {
					r.pushBack(&jobs[(c.steady+i)%len(jobs)])
					if e := r.pop(); e.j == nil {
						b.Fatal("pop: got nothing, want a job")
					}
				}
				return
			}
			for i := 0; i < b.N; i += c.burst {
				for k := range c.burst {
					r.pushBack(&jobs[k])
				}
				for range c.burst {
					if e := r.pop(); e.j == nil {
						b.Fatal("pop: got nothing, want a job")
					}
				}
			}
		})
	}
}

// BenchmarkIDTableGrowth fills an idMap with 4M entries, as a store that
// keeps a day of jobs does, then empties it, and reports the longest single
// insert and remove and how many took over a millisecond: one that moved
// the whole table as it grew or shrank would hold the backend's mutex for
// that long. On a busy machine a call that the scheduler suspends also
// counts, so compare the counts more than the maxima.
func BenchmarkIDTableGrowth(b *testing.B) {
	const size = 4_000_000
	seed := maphash.MakeSeed()
	hashes := make([]uint64, size)
	for i := range hashes {
		hashes[i] = maphash.String(seed, fmt.Sprintf("j%013d", i))
	}
	var maxInsert, maxRemove time.Duration
	var slowInserts, slowRemoves int
	b.ResetTimer()
	for range b.N {
		var m idMap
		for i, h := range hashes {
			t0 := time.Now()
			m.insert(h, uint32(i))
			d := time.Since(t0)
			maxInsert = max(maxInsert, d)
			if d > time.Millisecond {
				slowInserts++
			}
		}
		for i, h := range hashes {
			t0 := time.Now()
			m.remove(h, uint32(i))
			d := time.Since(t0)
			maxRemove = max(maxRemove, d)
			if d > time.Millisecond {
				slowRemoves++
			}
		}
	}
	b.ReportMetric(float64(maxInsert.Nanoseconds()), "max-insert-ns")
	b.ReportMetric(float64(slowInserts)/float64(b.N), "inserts>1ms")
	b.ReportMetric(float64(maxRemove.Nanoseconds()), "max-remove-ns")
	b.ReportMetric(float64(slowRemoves)/float64(b.N), "removes>1ms")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(2*b.N*size), "ns/op-each")
}
