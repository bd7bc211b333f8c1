package engine

import (
	"github.com/jobrelay/engine/backend"
	"github.com/jobrelay/engine/backend/bolt"
)

// WithBolt keeps jobs in a bbolt file at path, created with its folder when
// missing: durable jobs for one process with no server. Only one process can
// hold the file; New fails within a second with an error wrapping
// bolt.ErrLocked when another does. Close closes the file.
func WithBolt(path string) Option {
	return WithBoltOptions(path, bolt.Options{})
}

// WithBoltOptions is WithBolt with the backend's options, such as NoSync,
// which trades durability for speed.
func WithBoltOptions(path string, opts bolt.Options) Option {
	return func(c *config) {
		c.backend = nil
		c.openBackend = func(*config) (backend.Backend, error) {
			return bolt.Open(path, opts)
		}
	}
}
