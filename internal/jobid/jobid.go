// Package jobid makes job IDs: 26-character strings that sort by creation
// time (a millisecond timestamp followed by 80 more bits, in Crockford's
// base32, as in ULID), so that a listing ordered by ID is ordered by age.
package jobid

import (
	"math/rand/v2"
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

// NewBatch returns n new IDs made at t, in order, as New would return them
// one by one; they share one string, so a batch costs one allocation.
func (g *Generator) NewBatch(t time.Time, n int) []string {
	ids := make([]string, n)
	if n == 0 {
		return ids
	}
	buf := make([]byte, 0, 26*n)
	g.mu.Lock()
	for range n {
		ms := g.next(uint64(t.UnixMilli()))
		buf = appendID(buf, ms, g.hi, g.lo)
	}
	g.mu.Unlock()
	all := string(buf)
	for i := range ids {
		ids[i] = all[26*i : 26*(i+1)]
	}
	return ids
}

func format(ms, hi, lo uint64) string {
	return string(appendID(make([]byte, 0, 26), ms, hi, lo))
}

// appendID appends the 26 characters of an ID to b.
func appendID(dst []byte, ms, hi, lo uint64) []byte {
	var b [26]byte
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
	return append(dst, b[:]...)
}
