package backendtest

import (
	"testing"
	"time"

	"github.com/jobrelay/engine/backend"
)

func testProgress(t *testing.T, h Harness) {
	t.Run("StoredWithEvent", func(t *testing.T) {
		f := newFixture(t, h)
		id := f.add(ofType("transcription"), inQueue("ai"))
		l := f.leaseID(f.t0, id, "ai")
		c := f.cursor()
		steps := []struct {
			percent int
			message string
		}{{40, "transcribing"}, {90, "almost done"}}
		for i, s := range steps {
			now := f.at(time.Duration(i+1) * time.Second)
			if err := f.b.Progress(f.ctx, now, l.Ref(), s.percent, s.message); err != nil {
				t.Fatalf("Progress %d: got error %v, want nil", s.percent, err)
			}
			j := f.job(id)
			if j.Progress != s.percent || j.ProgressMessage != s.message {
				t.Errorf("after Progress: got %d %q, want %d %q", j.Progress, j.ProgressMessage, s.percent, s.message)
			}
			c = f.wantEvents(c, backend.Event{Kind: backend.EventProgress, JobID: id, Type: "transcription", Queue: "ai",
				State: backend.StateActive, Attempt: 1, Progress: s.percent, Message: s.message, Time: now})
		}
		f.wantState(id, backend.StateActive)
	})
}
