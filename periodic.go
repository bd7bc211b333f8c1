package engine

import "context"

// runPeriodic enqueues the ticks of periodic jobs while Run is going.
func (e *Engine) runPeriodic(ctx context.Context) {}
