package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jobrelay/engine"
	"github.com/jobrelay/engine/examples/meetings/agents"
	"github.com/jobrelay/engine/examples/meetings/pipeline"
	"github.com/jobrelay/engine/examples/meetings/samples"
)

// demoTimeout bounds the whole demo.
const demoTimeout = time.Minute

// demoConfig configures one run of the demo.
type demoConfig struct {
	// Dir holds the bbolt file and the Notion pages.
	Dir string
	// Live draws progress bars in place; otherwise progress is plain lines.
	Live bool
	// ChunkDelay slows transcription down so that progress can be watched.
	ChunkDelay time.Duration
}

func runDemoMode(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "folder for the bbolt file and the Notion pages (default: a new temporary folder, removed at the end)")
	plain := fs.Bool("plain", false, "plain progress lines even on a terminal")
	delay := fs.Duration("chunk-delay", 60*time.Millisecond, "pause after each chunk of a recording, standing in for speech recognition")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if *dir == "" {
		tmp, err := os.MkdirTemp("", "jobrelay-meetings-")
		if err != nil {
			fmt.Fprintf(stderr, "meetings demo: %v\n", err)
			return exitError
		}
		defer os.RemoveAll(tmp)
		*dir = tmp
	}
	live := !*plain
	if f, ok := stdout.(*os.File); !ok || !isTerminal(f) {
		live = false
	}
	ctx, cancel := context.WithTimeout(ctx, demoTimeout)
	defer cancel()
	if err := runDemo(ctx, stdout, demoConfig{Dir: *dir, Live: live, ChunkDelay: *delay}); err != nil {
		fmt.Fprintf(stderr, "meetings demo: %v\n", err)
		return exitError
	}
	return exitOK
}

// runDemo processes the sample meetings in one process on a bbolt file and
// prints what the pipeline found.
func runDemo(ctx context.Context, out io.Writer, cfg demoConfig) (err error) {
	view := newProgressView(out, cfg.Live)
	dbPath := filepath.Join(cfg.Dir, "jobs.db")
	e, err := engine.New(append([]engine.Option{
		engine.WithBolt(dbPath),
		engine.WithQueues(pipeline.Queues...),
		engine.WithConcurrency(4),
		engine.WithRetryPolicy(pipeline.RetryPolicy()),
		engine.WithListener(engine.Listener{OnEvent: view.event}),
	}, pipeline.LimitOptions()...)...)
	if err != nil {
		view.close()
		return err
	}
	defer func() {
		if cerr := e.Close(); err == nil {
			err = cerr
		}
	}()
	notionDir := filepath.Join(cfg.Dir, "notion")
	o, err := pipeline.New(e, pipeline.Config{
		Objects:   samples.Objects,
		NotionDir: notionDir,
		Agents:    pipeline.Agents{Transcriber: agents.TextTranscriber{ChunkSize: 256, ChunkDelay: cfg.ChunkDelay}},
	})
	if err != nil {
		view.close()
		return err
	}

	fmt.Fprintf(out, "jobrelay meeting pipeline: %d sample meetings, jobs in %s\n", len(samples.Meetings), dbPath)
	for _, s := range e.Schedules() {
		fmt.Fprintf(out, "periodic job %s (%s): next run %s\n", s.Name, s.Spec, s.Next.Format("Mon 2006-01-02 15:04 MST"))
	}
	fmt.Fprintln(out)

	runCtx, stopRun := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- e.Run(runCtx) }()
	defer func() {
		stopRun()
		if rerr := <-ran; err == nil {
			err = rerr
		}
	}()

	jobs := make([]pipeline.MeetingJobs, len(samples.Meetings))
	for i, m := range samples.Meetings {
		if jobs[i], err = o.ProcessMeeting(ctx, m.ID, m.S3Key); err != nil {
			view.close()
			return err
		}
		view.track(m.ID, jobs[i])
	}
	for i, m := range samples.Meetings {
		info, err := e.Wait(ctx, jobs[i].NotionSync)
		if err != nil {
			view.close()
			return fmt.Errorf("meeting %s: %w", m.ID, err)
		}
		if info.State != engine.StateCompleted {
			view.close()
			return fmt.Errorf("meeting %s: notion sync %s: %s", m.ID, info.State, info.Error)
		}
	}
	view.settle(2 * time.Second)
	view.close()

	for i, m := range samples.Meetings {
		if err := printMeeting(ctx, out, o, m.ID, jobs[i]); err != nil {
			return err
		}
	}

	reportID, err := o.EnqueueWeeklyReport(ctx, time.Now().Add(time.Second))
	if err != nil {
		return err
	}
	report, err := engine.Result[pipeline.WeeklyReportResult](ctx, e, reportID)
	if err != nil {
		return fmt.Errorf("weekly report: %w", err)
	}
	fmt.Fprintf(out, "\n%s\n%s\n", strings.Repeat("=", 72), report.Report.Markdown)
	fmt.Fprintf(out, "Notion pages (JSON files): %s\n", notionDir)

	st, err := o.QueueStats(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "queue %s: %d completed, %d failed, %d queued\n", st.Queue, st.Completed, st.Failed, st.Queued)
	if st.Failed > 0 {
		return errors.New("some jobs failed")
	}
	return nil
}

// printMeeting prints a meeting's summary, action items and signals, then
// asks it a question and for next steps.
func printMeeting(ctx context.Context, out io.Writer, o *pipeline.Orchestrator, id string, jobs pipeline.MeetingJobs) error {
	d, err := o.Digest(ctx, id, jobs)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\n%s\n%s (%s), %d words, health: %s\n\n", strings.Repeat("=", 72), id, d.Date.Format(time.DateOnly),
		d.Summary.Words, strings.ReplaceAll(d.Analysis.Health, "_", " "))
	fmt.Fprintln(out, "Summary:")
	for _, p := range d.Summary.Points {
		fmt.Fprintf(out, "  - %s: %s\n", p.Speaker, p.Text)
	}
	fmt.Fprintln(out, "Action items:")
	for _, t := range d.Tasks {
		owner, due := t.Owner, t.DueDate
		if owner == "" {
			owner = "(no owner)"
		}
		if due == "" {
			due = "-"
		}
		fmt.Fprintf(out, "  [ ] %-12s %-10s %s\n", owner, due, t.Text)
	}
	for _, sig := range [][]agents.Signal{d.Analysis.Decisions, d.Analysis.Risks, d.Analysis.Blockers} {
		for _, s := range sig {
			fmt.Fprintf(out, "  %-9s %s\n", s.Kind+":", s.Text)
		}
	}

	question := "What did we decide?"
	chatID, err := o.EnqueueChat(ctx, id, jobs.Transcription, question)
	if err != nil {
		return err
	}
	answer, err := engine.Result[pipeline.ChatResult](ctx, o.Engine(), chatID)
	if err != nil {
		return fmt.Errorf("chat about %s: %w", id, err)
	}
	fmt.Fprintf(out, "Q: %s\nA: %s\n", question, answer.Answer.Answer)

	sugID, err := o.EnqueueSuggestions(ctx, id, jobs)
	if err != nil {
		return err
	}
	sug, err := engine.Result[pipeline.SuggestionsResult](ctx, o.Engine(), sugID)
	if err != nil {
		return fmt.Errorf("suggestions for %s: %w", id, err)
	}
	fmt.Fprintln(out, "Suggested next steps:")
	for _, s := range sug.Suggestions[:min(3, len(sug.Suggestions))] {
		fmt.Fprintf(out, "  → %s\n", s.Text)
	}
	return nil
}
