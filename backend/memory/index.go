package memory

import "slices"

// chunkMax bounds a chunk of the ID index: inserting or deleting moves at
// most this many pointers, and the chunk list stays n/chunkMax long.
const chunkMax = 512

// idIndex keeps every job in ID order for List, as a list of sorted chunks.
// The engine makes IDs in creation order, so an insert is nearly always an
// append to the last chunk, and Sweep, which deletes the oldest jobs first,
// nearly always trims the front of the first chunk; an ID out of order costs
// a binary search and a move within one chunk.
type idIndex struct {
	chunks [][]*job
}

// search returns the position of the first job whose ID is >= id; ci is
// len(chunks) when there is none.
func (x *idIndex) search(id string) (ci, i int) {
	lo, hi := 0, len(x.chunks)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		c := x.chunks[m]
		if c[len(c)-1].ID < id {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == len(x.chunks) {
		return lo, 0
	}
	c := x.chunks[lo]
	l, h := 0, len(c)
	for l < h {
		m := int(uint(l+h) >> 1)
		if c[m].ID < id {
			l = m + 1
		} else {
			h = m
		}
	}
	return lo, l
}

// mayHold reports whether a job with id may be stored: false when id is
// above every stored ID.
func (x *idIndex) mayHold(id string) bool {
	return len(x.chunks) > 0 && x.last().ID >= id
}

func (x *idIndex) insert(j *job) {
	n := len(x.chunks)
	if n == 0 || x.last().ID < j.ID {
		if n == 0 || len(x.chunks[n-1]) >= chunkMax {
			x.chunks = append(x.chunks, make([]*job, 0, chunkMax))
			n++
		}
		x.chunks[n-1] = append(x.chunks[n-1], j)
		return
	}
	ci, i := x.search(j.ID)
	c := slices.Insert(x.chunks[ci], i, j)
	if len(c) <= chunkMax {
		x.chunks[ci] = c
		return
	}
	half := len(c) / 2
	right := append(make([]*job, 0, chunkMax), c[half:]...)
	clear(c[half:])
	x.chunks[ci] = c[:half]
	x.chunks = slices.Insert(x.chunks, ci+1, right)
}

func (x *idIndex) remove(j *job) {
	// Sweep mostly deletes the oldest job, which is first.
	if len(x.chunks) > 0 && x.chunks[0][0] == j {
		c := x.chunks[0]
		c[0] = nil
		if len(c) == 1 {
			x.chunks = slices.Delete(x.chunks, 0, 1)
		} else {
			x.chunks[0] = c[1:]
		}
		return
	}
	ci, i := x.search(j.ID)
	if ci == len(x.chunks) || x.chunks[ci][i] != j {
		return
	}
	c := x.chunks[ci]
	if i == 0 {
		c[0] = nil
		c = c[1:]
	} else {
		c = slices.Delete(c, i, i+1)
	}
	if len(c) == 0 {
		x.chunks = slices.Delete(x.chunks, ci, ci+1)
	} else {
		x.chunks[ci] = c
	}
}

func (x *idIndex) last() *job {
	c := x.chunks[len(x.chunks)-1]
	return c[len(c)-1]
}

// after calls yield for each job whose ID is greater than cursor, in ID
// order, until yield returns false.
func (x *idIndex) after(cursor string, yield func(*job) bool) {
	ci, i := 0, 0
	if cursor != "" {
		ci, i = x.search(cursor)
		if ci < len(x.chunks) && x.chunks[ci][i].ID == cursor {
			i++
		}
	}
	for ; ci < len(x.chunks); ci, i = ci+1, 0 {
		for _, j := range x.chunks[ci][i:] {
			if !yield(j) {
				return
			}
		}
	}
}
