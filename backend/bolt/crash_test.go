package bolt

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jobrelay/engine/backend"
)

// crashChildEnv names the database file when the test binary runs as the
// crash test's child process (see TestMain).
const crashChildEnv = "JOBRELAY_BOLT_CRASH_CHILD"

// crashChild enqueues and works jobs until it is killed. It prints
// "enqueued ID" once Enqueue has returned for a job, and "held ID" once it
// holds a lease that it will never finish: those jobs are active when the
// parent kills it (or still queued in the file, when the kill came before
// the lease's commit: Lease does not wait for it). Every other leased job
// is completed.
func crashChild() int {
	b, err := Open(os.Getenv(crashChildEnv), Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	ctx := context.Background()
	if os.Getenv(poisonChildEnv) != "" {
		return poisonChild(ctx, b)
	}
	var out sync.Mutex
	say := func(format string, args ...any) {
		out.Lock()
		fmt.Fprintf(os.Stdout, format+"\n", args...)
		out.Unlock()
	}
	for w := range 4 {
		go func() {
			for n := 0; ; n++ {
				ls, err := b.Lease(ctx, backend.LeaseRequest{Queues: []string{"default"}, Worker: fmt.Sprint("child-", w),
					Max: 8, Now: time.Now(), TTL: time.Hour, Block: time.Second})
				if err != nil {
					return
				}
				var acks []backend.Ack
				for i, l := range ls {
					if (n+i)%5 == 0 {
						say("held %s", l.Job.ID)
						continue
					}
					acks = append(acks, backend.Ack{Lease: l.Ref(), Outcome: backend.OutcomeCompleted})
				}
				if _, err := b.Finish(ctx, time.Now(), acks); err != nil {
					return
				}
			}
		}()
	}
	for i := 0; ; i++ {
		batch := make([]backend.NewJob, 1+i%7)
		for k := range batch {
			batch[k] = newJob(fmt.Sprintf("c%06d-%d", i, k))
		}
		res, err := b.Enqueue(ctx, time.Now(), batch)
		if err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			return 2
		}
		for _, r := range res {
			say("enqueued %s", r.ID)
		}
	}
}

// poisonChildEnv makes the crash child play a job that kills its process:
// it leases one job and dies at once, before the lease can be committed.
const poisonChildEnv = "JOBRELAY_BOLT_POISON_CHILD"

func poisonChild(ctx context.Context, b *Backend) int {
	ls, err := b.Lease(ctx, backend.LeaseRequest{Queues: []string{"default"}, Worker: "poison", Max: 1,
		Now: time.Now(), TTL: time.Hour, Block: time.Second})
	if err != nil || len(ls) == 0 {
		fmt.Fprintln(os.Stderr, "child: nothing leased", err)
		return 2
	}
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}

// TestPoisonJobFailsAfterMaxStalls runs a job whose handler kills its
// process the moment it starts, restart after restart: each death counts
// as a stall, even when it comes before the lease was committed (the lease
// journal sees to it), and after MaxStalls the job fails instead of
// looping forever.
func TestPoisonJobFailsAfterMaxStalls(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	path := filepath.Join(t.TempDir(), "jobs.db")
	b := openAt(t, path, Options{})
	// A job that runs fine first: its lease's journal sequence is in the
	// database, and the clean Close empties the journal.
	enqueue(t, b, time.Now(), newJob("fine"))
	ls := lease(t, b, time.Now(), 1)
	finish(t, b, time.Now(), backend.Ack{Lease: ls[0].Ref(), Outcome: backend.OutcomeCompleted})
	nj := newJob("poison")
	nj.MaxStalls = 3
	enqueue(t, b, time.Now(), nj)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	for run := 1; run <= 3; run++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+path, poisonChildEnv+"=1")
		cmd.Stderr = os.Stderr
		err := cmd.Run()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("run %d: child ended with %v, want killed by SIGKILL", run, err)
		}
	}
	b = openAt(t, path, Options{})
	j := wantState(t, b, "poison", backend.StateFailed)
	if j.Stalls != 3 || j.Attempt != 3 || j.Failures != 0 {
		t.Fatalf("poison job: got stalls %d attempt %d failures %d, want 3, 3, 0", j.Stalls, j.Attempt, j.Failures)
	}
}

// TestCrashLosesNothing kills a process that enqueues and works jobs with
// SIGKILL, then reopens its file: every job whose Enqueue returned is there,
// the jobs it held are back in the queue as stalled, and all of them run to
// completion.
func TestCrashLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	path := filepath.Join(t.TempDir(), "jobs.db")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	enqueued, held := map[string]bool{}, map[string]bool{}
	r := bufio.NewReader(stdout)
	killed := false
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			break // a line cut by the kill has no newline and is not counted
		}
		kind, id, _ := strings.Cut(strings.TrimSpace(line), " ")
		switch kind {
		case "enqueued":
			enqueued[id] = true
		case "held":
			held[id] = true
		}
		if !killed && len(enqueued) >= 2000 && len(held) >= 20 {
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killed = true
		}
	}
	_ = cmd.Wait()
	if !killed {
		t.Fatalf("child exited before the kill, after %d jobs", len(enqueued))
	}
	t.Logf("child killed after %d acknowledged enqueues, %d held leases", len(enqueued), len(held))

	ctx := context.Background()
	b := openAt(t, path, Options{NoSync: true})
	stalled := 0
	for id := range enqueued {
		j, err := b.Job(ctx, id)
		if err != nil {
			t.Fatalf("job %s, acknowledged before the crash: %v", id, err)
		}
		switch {
		case held[id]:
			// Reaped on open: back in the queue as stalled, no failure. A
			// lease taken just before the kill may not have been written:
			// then the job is queued as if never leased.
			reaped := j.Stalls == 1 && j.Attempt == 1
			unwritten := j.Stalls == 0 && j.Attempt == 0
			if j.State != backend.StateQueued || j.Failures != 0 || !(reaped || unwritten) {
				t.Fatalf("held job %s after reopen: got state %q stalls %d failures %d attempt %d, want queued and stalled once (or never leased)",
					id, j.State, j.Stalls, j.Failures, j.Attempt)
			}
			if reaped {
				stalled++
			}
		case j.State != backend.StateQueued && j.State != backend.StateCompleted:
			t.Fatalf("job %s after reopen: got state %q, want queued or completed", id, j.State)
		}
	}
	if stalled == 0 {
		t.Fatalf("none of the %d held jobs came back stalled, want most of them", len(held))
	}
	for {
		ls := lease(t, b, time.Now(), 256)
		if len(ls) == 0 {
			break
		}
		acks := make([]backend.Ack, len(ls))
		for i, l := range ls {
			acks[i] = backend.Ack{Lease: l.Ref(), Outcome: backend.OutcomeCompleted}
		}
		for _, err := range finish(t, b, time.Now(), acks...) {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	for id := range enqueued {
		wantState(t, b, id, backend.StateCompleted)
	}
	stats, _ := b.Stats(ctx)
	for _, s := range backend.States {
		if s != backend.StateCompleted && stats[0].Counts[s] != 0 {
			t.Fatalf("after working everything: %d jobs %s", stats[0].Counts[s], s)
		}
	}
}
