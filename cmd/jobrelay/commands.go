package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jobrelay/engine"
	"github.com/jobrelay/engine/dashboard"
)

func (c *cli) printJSON(v any) error {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

// stats prints the queue table, or with --watch reprints it in place until
// interrupted.
func (c *cli) stats(ctx context.Context, _ []string) error {
	if !c.opts.watch {
		qs, err := c.e.Stats(ctx)
		if err != nil {
			return err
		}
		if c.opts.json {
			return c.printJSON(qs)
		}
		return writeStats(c.stdout, qs)
	}
	if c.opts.interval <= 0 {
		return usagef("--interval must be positive")
	}
	tick := time.NewTicker(c.opts.interval)
	defer tick.Stop()
	for {
		qs, err := c.e.Stats(ctx)
		if err != nil && ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		if c.opts.json {
			// One line per refresh, for a script reading a stream.
			if err := json.NewEncoder(c.stdout).Encode(qs); err != nil {
				return err
			}
		} else {
			var buf bytes.Buffer
			// Home the cursor and clear the screen, then draw: the table
			// stays in place instead of scrolling.
			buf.WriteString("\x1b[H\x1b[2J")
			fmt.Fprintf(&buf, "jobrelay stats · every %s · %s (Ctrl-C to stop)\n\n", c.opts.interval, time.Now().Format("15:04:05"))
			writeStats(&buf, qs)
			if _, err := c.stdout.Write(buf.Bytes()); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

func writeStats(w io.Writer, qs []engine.QueueStats) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "QUEUE\tSTATUS\tQUEUED\tACTIVE\tSCHEDULED\tDEFERRED\tRETRYING\tCOMPLETED\tFAILED\tCANCELED\tWORKERS\tPROCESSED\tFAILED ATTEMPTS")
	for _, q := range qs {
		status := "running"
		if q.Paused {
			status = "paused"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", q.Queue, status,
			q.Queued, q.Active, q.Scheduled, q.Deferred, q.Retrying, q.Completed, q.Failed, q.Canceled,
			q.Workers, q.Processed, q.FailedTotal)
	}
	return tw.Flush()
}

func (c *cli) jobs(ctx context.Context, _ []string) error {
	st := engine.State(c.opts.state)
	if st != "" && !st.Valid() {
		return usagef("unknown state %q; want one of %s", st, stateNames())
	}
	if c.opts.limit < 1 {
		return usagef("--limit must be at least 1")
	}
	p, err := c.e.Jobs(ctx, engine.JobFilter{Queue: c.opts.queue, State: st, Type: c.opts.typ, Cursor: c.opts.cursor, Limit: c.opts.limit})
	if err != nil {
		return err
	}
	if c.opts.json {
		if p.Jobs == nil {
			p.Jobs = []*engine.JobInfo{}
		}
		return c.printJSON(p)
	}
	if len(p.Jobs) == 0 {
		fmt.Fprintln(c.stdout, "no jobs")
		return nil
	}
	tw := newTable(c.stdout)
	fmt.Fprintln(tw, "ID\tTYPE\tQUEUE\tSTATE\tATTEMPT\tPROGRESS\tCREATED\tERROR")
	now := time.Now()
	for _, j := range p.Jobs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d%%\t%s\t%s\n", j.ID, j.Type, j.Queue, j.State, j.Attempt, j.Progress,
			ago(now, j.CreatedAt), oneLine(j.Error, 60))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if p.Next != "" {
		fmt.Fprintf(c.stdout, "\nmore: add --cursor %s\n", p.Next)
	}
	return nil
}

// status fetches a job, saying plainly when there is none.
func (c *cli) status(ctx context.Context, id string) (*engine.JobInfo, error) {
	info, err := c.e.Status(ctx, id)
	if errors.Is(err, engine.ErrJobNotFound) {
		return nil, notFound(id)
	}
	return info, err
}

func notFound(id string) error {
	return fmt.Errorf("job %s not found (never enqueued, or expired and deleted)", id)
}

func (c *cli) jobShow(ctx context.Context, args []string) error {
	info, err := c.status(ctx, args[0])
	if err != nil {
		return err
	}
	if c.opts.json {
		return c.printJSON(info)
	}
	return writeJob(c.stdout, info, time.Now())
}

func writeJob(w io.Writer, j *engine.JobInfo, now time.Time) error {
	tw := newTable(w)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	row("Job", j.ID)
	row("Type", j.Type)
	row("Queue", j.Queue)
	row("State", string(j.State))
	attempts := fmt.Sprintf("%d of up to %d", j.Attempt, j.MaxRetries+1)
	if j.Failures > 0 || j.Stalls > 0 {
		attempts += fmt.Sprintf(" (%d failed, %d stalled)", j.Failures, j.Stalls)
	}
	row("Attempt", attempts)
	row("Progress", strings.TrimSpace(progressBar(j.Progress, 30)+" "+j.ProgressMessage))
	if j.Priority != 0 {
		row("Priority", fmt.Sprint(j.Priority))
	}
	if j.Worker != "" {
		row("Worker", j.Worker)
	}
	if j.UniqueKey != "" {
		row("Unique key", j.UniqueKey)
	}
	if len(j.DependsOn) > 0 {
		row("Depends on", strings.Join(j.DependsOn, ", "))
	}
	for _, t := range []struct {
		name string
		at   time.Time
	}{{"Created", j.CreatedAt}, {"Due", j.RunAt}, {"Started", j.StartedAt}, {"Finished", j.FinishedAt}, {"Kept until", j.ExpiresAt}} {
		if !t.at.IsZero() {
			row(t.name, t.at.UTC().Format(time.RFC3339)+"  ("+ago(now, t.at)+")")
		}
	}
	for k, v := range j.Meta {
		row("Meta "+k, v)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	block := func(name, text string) {
		if text != "" {
			fmt.Fprintf(w, "\n%s:\n%s\n", name, indent(text))
		}
	}
	block("Error", j.Error)
	block("Payload", prettyJSON(j.Payload))
	block("Result", prettyJSON(j.Result))
	return nil
}

// progressBar draws percent as [#####-----]  50%.
func progressBar(percent, width int) string {
	percent = min(max(percent, 0), 100)
	filled := percent * width / 100
	return fmt.Sprintf("[%s%s] %3d%%", strings.Repeat("#", filled), strings.Repeat("-", width-filled), percent)
}

func prettyJSON(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	var out bytes.Buffer
	if json.Indent(&out, b, "", "  ") == nil {
		return out.String()
	}
	return string(b)
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n  ")
}

func oneLine(s string, n int) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i] + " …"
	}
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// ago says how long before now t was, or how long after.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	suffix := " ago"
	if d < 0 {
		d, suffix = -d, " from now"
	}
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds%s", int(d.Seconds()), suffix)
	case d < time.Hour:
		return fmt.Sprintf("%dm%s", int(d.Minutes()), suffix)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%s", int(d.Hours()), suffix)
	}
	return fmt.Sprintf("%dd%s", int(d.Hours()/24), suffix)
}

func (c *cli) jobCancel(ctx context.Context, args []string) error {
	id := args[0]
	info, err := c.actOn(ctx, id, c.e.Cancel)
	if err != nil {
		return err
	}
	if c.opts.json {
		return c.printJSON(info)
	}
	if info.State == engine.StateActive {
		fmt.Fprintf(c.stdout, "cancel requested for job %s: it is running, and its worker stops it\n", id)
		return nil
	}
	fmt.Fprintf(c.stdout, "canceled job %s\n", id)
	return nil
}

// actOn runs action (Cancel, Requeue) on job id and returns the job as it is
// afterwards; an unknown job gets the same message as everywhere else.
func (c *cli) actOn(ctx context.Context, id string, action func(context.Context, string) error) (*engine.JobInfo, error) {
	if err := action(ctx, id); err != nil {
		if errors.Is(err, engine.ErrJobNotFound) {
			return nil, notFound(id)
		}
		return nil, err
	}
	return c.status(ctx, id)
}

func (c *cli) jobRetry(ctx context.Context, args []string) error {
	id := args[0]
	info, err := c.actOn(ctx, id, c.e.Requeue)
	if err != nil {
		return err
	}
	if c.opts.json {
		return c.printJSON(info)
	}
	fmt.Fprintf(c.stdout, "requeued job %s in queue %s\n", id, info.Queue)
	return nil
}

func (c *cli) queuePause(ctx context.Context, args []string) error {
	return c.setPaused(ctx, args[0], true)
}

func (c *cli) queueResume(ctx context.Context, args []string) error {
	return c.setPaused(ctx, args[0], false)
}

func (c *cli) setPaused(ctx context.Context, queue string, paused bool) error {
	do, verb := c.e.Resume, "resumed"
	if paused {
		do, verb = c.e.Pause, "paused"
	}
	if err := do(ctx, queue); err != nil {
		return err
	}
	if c.opts.json {
		return c.printJSON(map[string]any{"queue_name": queue, "paused": paused})
	}
	fmt.Fprintf(c.stdout, "%s queue %s\n", verb, queue)
	return nil
}

func (c *cli) workers(ctx context.Context, _ []string) error {
	ws, err := c.e.Workers(ctx)
	if err != nil {
		return err
	}
	if c.opts.json {
		if ws == nil {
			ws = []engine.WorkerInfo{}
		}
		return c.printJSON(ws)
	}
	if len(ws) == 0 {
		fmt.Fprintln(c.stdout, "no workers running")
		return nil
	}
	tw := newTable(c.stdout)
	fmt.Fprintln(tw, "NAME\tHOST\tPID\tQUEUES\tCONCURRENCY\tSTARTED\tLAST HEARTBEAT")
	now := time.Now()
	for _, w := range ws {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%s\t%s\n", w.Name, w.Host, w.PID, strings.Join(w.Queues, ","),
			w.Concurrency, ago(now, w.StartedAt), ago(now, w.LastHeartbeat))
	}
	return tw.Flush()
}

func (c *cli) enqueue(ctx context.Context, args []string) error {
	typ := args[0]
	var payload json.RawMessage
	if len(args) == 2 {
		if !json.Valid([]byte(args[1])) {
			return usagef("payload %q is not valid JSON (quote it for the shell: '{\"meeting_id\": \"m-1\"}')", oneLine(args[1], 40))
		}
		payload = json.RawMessage(args[1])
	}
	opts := []engine.EnqueueOption{engine.Queue(c.opts.queue), engine.Priority(c.opts.priority)}
	if c.opts.delay < 0 {
		return usagef("--delay must not be negative")
	}
	if c.opts.delay > 0 {
		opts = append(opts, engine.Delay(c.opts.delay))
	}
	if c.opts.retries >= 0 {
		opts = append(opts, engine.MaxRetries(c.opts.retries))
	}
	id, err := c.e.Enqueue(ctx, typ, payload, opts...)
	if errors.Is(err, engine.ErrInvalidOption) || errors.Is(err, engine.ErrEmptyType) {
		return usagef("%v", err)
	}
	if err != nil {
		return err
	}
	if !c.opts.json {
		fmt.Fprintln(c.stdout, id)
		return nil
	}
	info, err := c.status(ctx, id)
	if err != nil {
		return err
	}
	return c.printJSON(info)
}

// dashboard serves the web dashboard until interrupted.
func (c *cli) dashboard(ctx context.Context, _ []string) error {
	if (c.opts.user == "") != (c.opts.password == "") {
		return usagef("--user and --password go together")
	}
	d, err := dashboard.New(c.e, dashboard.Options{
		Token: c.opts.token, BasicAuthUser: c.opts.user, BasicAuthPassword: c.opts.password, ReadOnly: c.opts.readOnly,
	})
	if err != nil {
		return err
	}
	defer d.Close()
	ln, err := net.Listen("tcp", c.opts.addr)
	if err != nil {
		return fmt.Errorf("dashboard: %w", err)
	}
	guarded := c.opts.token != "" || c.opts.user != ""
	if host, _, _ := net.SplitHostPort(ln.Addr().String()); !isLoopback(host) && !guarded {
		fmt.Fprintf(c.stderr, "jobrelay: warning: the dashboard listens on %s with no --token or --user: anyone who reaches it can cancel and retry jobs\n", ln.Addr())
	}
	srv := &http.Server{Handler: d, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(c.stderr, "jobrelay: dashboard on http://%s/ (Ctrl-C to stop)\n", ln.Addr())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("dashboard: %w", err)
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		return fmt.Errorf("dashboard: shut down: %w", err)
	}
	<-served
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
