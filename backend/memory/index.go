package memory

import "slices"

// chunkMax bounds a chunk of the ID index: inserting or deleting moves at
// most this many entries, and the chunk list stays n/chunkMax long.
const chunkMax = 512

// idIndex keeps the handles of the stored jobs in ID order for List, as a
// list of sorted chunks; it holds no pointer per job (see archive). The
// engine makes IDs in creation order, so an insert is nearly always an
// append to the last chunk, and Sweep, which deletes the oldest jobs first,
// nearly always trims the front of the first chunk; an ID out of order
// costs a binary search and a move within one chunk.
type idIndex struct {
	chunks [][]uint32
	idOf   func(uint32) string // Backend.idOf
}

// search returns the position of the first entry whose ID is >= id; ci is
// len(chunks) when there is none.
func (x *idIndex) search(id string) (ci, i int) {
	lo, hi := 0, len(x.chunks)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		c := x.chunks[m]
		if x.idOf(c[len(c)-1]) < id {
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
		if x.idOf(c[m]) < id {
			l = m + 1
		} else {
			h = m
		}
	}
	return lo, l
}

// mayHold reports whether an entry with id may be here: false when id is
// above every ID here.
func (x *idIndex) mayHold(id string) bool {
	return len(x.chunks) > 0 && x.idOf(x.last()) >= id
}

func (x *idIndex) insert(v uint32) {
	id := x.idOf(v)
	if len(x.chunks) == 0 || x.idOf(x.last()) < id {
		x.push(v)
		return
	}
	ci, i := x.search(id)
	c := slices.Insert(x.chunks[ci], i, v)
	if len(c) <= chunkMax {
		x.chunks[ci] = c
		return
	}
	half := len(c) / 2
	right := append(make([]uint32, 0, chunkMax), c[half:]...)
	clear(c[half:])
	x.chunks[ci] = c[:half]
	x.chunks = slices.Insert(x.chunks, ci+1, right)
}

// push adds v, whose ID is above every ID here, last.
func (x *idIndex) push(v uint32) {
	n := len(x.chunks)
	if n == 0 || len(x.chunks[n-1]) >= chunkMax {
		x.chunks = append(x.chunks, make([]uint32, 0, chunkMax))
		n++
	}
	x.chunks[n-1] = append(x.chunks[n-1], v)
}

func (x *idIndex) remove(v uint32) {
	// Sweep mostly deletes the oldest job, which is first.
	if len(x.chunks) > 0 && x.chunks[0][0] == v {
		c := x.chunks[0]
		c[0] = 0
		if len(c) == 1 {
			x.chunks = slices.Delete(x.chunks, 0, 1)
		} else {
			x.chunks[0] = c[1:]
		}
		return
	}
	ci, i := x.search(x.idOf(v))
	if ci == len(x.chunks) || x.chunks[ci][i] != v {
		return
	}
	c := x.chunks[ci]
	if i == 0 {
		c[0] = 0
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

func (x *idIndex) last() uint32 {
	c := x.chunks[len(x.chunks)-1]
	return c[len(c)-1]
}

// idCursor walks an idIndex in ID order.
type idCursor struct {
	x     *idIndex
	ci, i int
}

// after returns a cursor at the first entry whose ID is greater than
// cursor.
func (x *idIndex) after(cursor string) idCursor {
	c := idCursor{x: x}
	if cursor != "" {
		c.ci, c.i = x.search(cursor)
		if c.ci < len(x.chunks) && x.idOf(x.chunks[c.ci][c.i]) == cursor {
			c.next()
		}
	}
	return c
}

// entry returns the entry at the cursor, or false at the end.
func (c *idCursor) entry() (uint32, bool) {
	if c.ci == len(c.x.chunks) {
		return 0, false
	}
	return c.x.chunks[c.ci][c.i], true
}

func (c *idCursor) next() {
	if c.i++; c.i == len(c.x.chunks[c.ci]) {
		c.ci, c.i = c.ci+1, 0
	}
}
