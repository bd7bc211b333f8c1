package redis

import (
	"time"

	"github.com/jobrelay/engine/backend"
)

var _ backend.Batcher = (*Backend)(nil)

// DefaultBatchWindow is how long a busy engine gathers leases and
// acknowledgements for this backend (see backend.Batcher). A call costs
// redis-server a fixed 10–20 µs beside its jobs' own cost, and without a
// window a busy engine makes many small calls: in the side-by-side
// benchmark's end-to-end run with single enqueues, script calls per job went
// from 0.76–0.79 to 0.58 with this window, and redis-server's CPU per job
// fell by about a tenth (docs/decisions/redis-speed.md). While the engine is
// busy a job may start, and its outcome be recorded, this much later; a
// lone job never waits.
const DefaultBatchWindow = time.Millisecond

// BatchWindow returns DefaultBatchWindow: Redis calls are worth gathering.
// engine.WithBatchWindow overrides it.
func (b *Backend) BatchWindow() time.Duration { return DefaultBatchWindow }
