// Package jobid makes job IDs: 26-character strings that sort by creation
// time (a millisecond timestamp followed by 80 more bits, in Crockford's
// base32, as in ULID), so that a listing ordered by ID is ordered by age.
package jobid

import (
	"math/rand/v2"
	"strings"
	"sync"
	"time"
)

const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// Generator makes IDs that also sort in the order they were made within one
// generator: in the same millisecond, the 80 bits after the time count up
// from a random start instead of being drawn afresh.
type Generator struct {
	mu     sync.Mutex
	lastMs uint64
	hi     uint64 // top 16 of the 80 bits
	lo     uint64
}

// New returns a fresh ID for a job created at t.
func (g *Generator) New(t time.Time) string {
	g.mu.Lock()
	ms := g.next(uint64(t.UnixMilli()))
	hi, lo := g.hi, g.lo
	g.mu.Unlock()
	return format(ms, hi, lo)
}

// next advances the generator to the ID after the last one, at ms or
// later, and returns its millisecond; g.mu is held.
func (g *Generator) next(ms uint64) uint64 {
	if ms <= g.lastMs {
		g.lo++
		if g.lo == 0 {
			g.hi = (g.hi + 1) & 0xFFFF
		}
		return g.lastMs
	}
	g.lastMs = ms
	g.hi, g.lo = rand.Uint64()&0x7FFF, rand.Uint64()
	return ms
}

// New returns an ID for something created at t, random after the time.
func New(t time.Time) string {
	return format(uint64(t.UnixMilli()), rand.Uint64()&0xFFFF, rand.Uint64())
}

// Size is the length of every ID.
const Size = 26

// NewBatch returns n new IDs made at t, in order, as New would return them
// one by one, back to back in one string: the i-th is
// ids[Size*i:Size*(i+1)]. A batch costs one allocation, where a string per
// ID and a slice of them cost two more per job; and since the IDs of one
// millisecond count up by one, each after the first is its predecessor's
// characters incremented rather than encoded afresh.
func (g *Generator) NewBatch(t time.Time, n int) string {
	if n <= 0 {
		return ""
	}
	var b strings.Builder
	b.Grow(Size * n)
	var id [Size]byte
	ms := uint64(t.UnixMilli())
	g.mu.Lock()
	for i := range n {
		counts := i > 0 && ms <= g.lastMs // next adds one to the last ID
		at := g.next(ms)
		if counts {
			increment(&id)
		} else {
			id = encode(at, g.hi, g.lo)
		}
		b.Write(id[:])
	}
	g.mu.Unlock()
	return b.String()
}

// increment adds one to the 80 bits after the time of id, as next does
// within a millisecond: the top of the 80 bits wraps around, and the time
// stays.
func increment(id *[Size]byte) {
	for i := Size - 1; i >= 10; i-- {
		if v := digit[id[i]]; v < 31 {
			id[i] = alphabet[v+1]
			return
		}
		id[i] = alphabet[0]
	}
}

// digit maps each character of the alphabet back to its value.
var digit = func() (d [256]byte) {
	for i := range len(alphabet) {
		d[alphabet[i]] = byte(i)
	}
	return d
}()

func format(ms, hi, lo uint64) string {
	b := encode(ms, hi, lo)
	return string(b[:])
}

// encode returns the characters of an ID.
func encode(ms, hi, lo uint64) [Size]byte {
	var b [Size]byte
	// 48 bits of time in 10 characters (50 bits, top two zero).
	for i := 9; i >= 0; i-- {
		b[i] = alphabet[ms&31]
		ms >>= 5
	}
	// 80 bits (hi:16, lo:64) in 16 characters.
	for i := 25; i >= 10; i-- {
		b[i] = alphabet[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return b
}
