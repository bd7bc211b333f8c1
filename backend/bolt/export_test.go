package bolt

import (
	"fmt"
	"time"
)

// CommitStats describes the commit loop's work so far, for benchmarks in
// package bolt_test.
func CommitStats(b *Backend) string {
	s := &b.stats
	c := max(s.commits.Load(), 1)
	ts := b.db.Stats().TxStats
	return fmt.Sprintf("%d commits, %.1f ops each, apply %v, write %v per commit; %d page writes per commit",
		s.commits.Load(), float64(s.ops.Load())/float64(c), time.Duration(s.applyNs.Load()/c),
		time.Duration(s.writeNs.Load()/c), ts.GetWrite()/c)
}
