// Command meetings is the meeting assistant's background work (the old
// Python module on RQ) rebuilt on jobrelay: transcription, summarization,
// task extraction, AIPM analysis, chat, Notion sync, suggestions and the
// weekly report, with the old web API. It has three modes:
//
//	go run ./examples/meetings demo      # everything in one process, on a bbolt file, with sample meetings
//	go run ./examples/meetings api       # the HTTP API (-addr, default :8080); needs Redis
//	go run ./examples/meetings worker    # a worker (-name, -concurrency, -queues); needs Redis
//
// api and worker share their queues through Redis, named by REDIS_URL or
// REDIS_HOST (with REDIS_PORT, REDIS_DB, REDIS_PASSWORD). Workers read
// recordings from OBJECT_STORE_DIR (s3://bucket/key is
// $OBJECT_STORE_DIR/bucket/key) and write Notion pages as JSON files to
// NOTION_DIR. See README.md beside this file.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jobrelay/engine"
	"github.com/jobrelay/engine/examples/meetings/httpapi"
	"github.com/jobrelay/engine/examples/meetings/pipeline"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2 // bad arguments, or Redis not configured
)

const usage = `usage: meetings <mode> [flags]

modes:
  demo     process the built-in sample meetings in one process, on a bbolt file
  api      serve the HTTP API (needs Redis)
  worker   run the pipeline's jobs (needs Redis)

Run "meetings <mode> -h" for the flags of a mode.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run runs one mode and returns the process's exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	mode, args := args[0], args[1:]
	switch mode {
	case "demo":
		return runDemoMode(ctx, args, stdout, stderr)
	case "api":
		return runAPI(ctx, args, stdout, stderr)
	case "worker":
		return runWorker(ctx, args, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "meetings: unknown mode %q\n\n%s", mode, usage)
	return exitUsage
}

// parseFlags parses a mode's flags; ok is false with the exit code when
// the mode should not run.
func parseFlags(fs *flag.FlagSet, args []string) (code int, ok bool) {
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return exitOK, false
	case err != nil:
		return exitUsage, false
	case fs.NArg() > 0:
		fmt.Fprintf(fs.Output(), "meetings %s: unexpected arguments %q\n", fs.Name(), fs.Args())
		return exitUsage, false
	}
	return 0, true
}

// redisConfigured reports whether the environment names a Redis server.
func redisConfigured() bool {
	return os.Getenv("REDIS_URL") != "" || os.Getenv("REDIS_HOST") != ""
}

// needRedis explains, when Redis is not configured, why the mode needs it
// and what to do.
func needRedis(mode string, stderr io.Writer) bool {
	if redisConfigured() {
		return true
	}
	fmt.Fprintf(stderr, `meetings %s: needs Redis, where the API and the workers share their queues.
Set REDIS_URL (for example redis://localhost:6379/0) or REDIS_HOST (with REDIS_PORT,
REDIS_DB and REDIS_PASSWORD as needed), for example:

    REDIS_URL=redis://localhost:6379/0 go run ./examples/meetings %s

To try the whole pipeline in one process without Redis, run:

    go run ./examples/meetings demo
`, mode, mode)
	return false
}

func newLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func runAPI(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("api", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", ":8080", "address to serve HTTP on")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if !needRedis("api", stderr) {
		return exitUsage
	}
	log := newLogger(stderr)
	e, err := engine.New(append([]engine.Option{engine.WithRedisFromEnv(), engine.WithQueues(pipeline.Queues...),
		engine.WithRetryPolicy(pipeline.RetryPolicy()), engine.WithLogger(log)}, pipeline.LimitOptions()...)...)
	if err != nil {
		fmt.Fprintf(stderr, "meetings api: %v\n", err)
		return exitError
	}
	defer e.Close()
	o, err := pipeline.New(e, pipeline.Config{})
	if err != nil {
		fmt.Fprintf(stderr, "meetings api: %v\n", err)
		return exitError
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintf(stderr, "meetings api: %v\n", err)
		return exitError
	}
	srv := &http.Server{
		Handler:           httpapi.New(o, log),
		ReadHeaderTimeout: 10 * time.Second,
		// Requests end with the process's context, so that event streams
		// do not hold up shutdown.
		BaseContext: func(net.Listener) context.Context { return ctx },
	}
	fmt.Fprintf(stdout, "meetings api: listening on http://%s\n", ln.Addr())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		fmt.Fprintf(stderr, "meetings api: %v\n", err)
		return exitError
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		fmt.Fprintf(stderr, "meetings api: shutdown: %v\n", err)
		return exitError
	}
	return exitOK
}

// DefaultMonitorInterval is how often a worker logs its queue's state, as
// the old worker manager's monitoring loop did.
const DefaultMonitorInterval = 30 * time.Second

func runWorker(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("name", "", "worker name shown in stats and on jobs (default host:pid)")
	concurrency := fs.Int("concurrency", 4, "jobs run at once")
	queues := fs.String("queues", strings.Join(pipeline.Queues, ","), "comma-separated queues to work, first first")
	objects := fs.String("objects", os.Getenv("OBJECT_STORE_DIR"), "object store folder: s3://bucket/key is <folder>/bucket/key (default $OBJECT_STORE_DIR)")
	notionDir := fs.String("notion-dir", envOr("NOTION_DIR", "notion-pages"), "folder the Notion client writes pages to (default $NOTION_DIR or notion-pages)")
	weekly := fs.String("weekly-report", envOr("WEEKLY_REPORT_SPEC", pipeline.DefaultWeeklyReportSpec), `cron spec of the weekly report, or "off" (default $WEEKLY_REPORT_SPEC or Mondays 09:00)`)
	monitor := fs.Duration("monitor", DefaultMonitorInterval, "how often to log queue stats and live workers; 0 turns it off")
	shutdown := fs.Duration("shutdown-timeout", engine.DefaultShutdownTimeout, "how long running jobs may finish on SIGTERM before they go back to the queue")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if !needRedis("worker", stderr) {
		return exitUsage
	}
	log := newLogger(stderr)
	var counts runCounts
	opts := []engine.Option{
		engine.WithRedisFromEnv(), engine.WithQueues(splitList(*queues)...), engine.WithConcurrency(*concurrency),
		engine.WithRetryPolicy(pipeline.RetryPolicy()), engine.WithShutdownTimeout(*shutdown), engine.WithLogger(log),
		engine.WithMiddleware(counts.middleware),
	}
	opts = append(opts, pipeline.LimitOptions()...)
	if *name != "" {
		opts = append(opts, engine.WithWorkerName(*name))
	}
	e, err := engine.New(opts...)
	if err != nil {
		fmt.Fprintf(stderr, "meetings worker: %v\n", err)
		return exitError
	}
	defer e.Close()
	cfg := pipeline.Config{NotionDir: *notionDir, WeeklyReportSpec: *weekly}
	if *objects != "" {
		cfg.Objects = os.DirFS(*objects)
	} else {
		log.Warn("OBJECT_STORE_DIR is not set: transcription jobs will fail until it is")
	}
	o, err := pipeline.New(e, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "meetings worker: %v\n", err)
		return exitError
	}
	for _, s := range e.Schedules() {
		log.Info("periodic job", "schedule", s.Name, "spec", s.Spec, "type", s.Type, "next", s.Next.Format(time.RFC3339))
	}
	if *monitor > 0 {
		go monitorQueue(ctx, o, &counts, log, *monitor)
	}
	err = e.Run(ctx)
	log.Info("worker stopped", "jobs_ran", counts.ran.Load(), "jobs_failed", counts.failed.Load())
	if err != nil {
		fmt.Fprintf(stderr, "meetings worker: %v\n", err)
		return exitError
	}
	return exitOK
}

// runCounts counts the attempts this worker ran, by how they ended.
type runCounts struct {
	ran, failed atomic.Int64
}

func (c *runCounts) middleware(next engine.Handler) engine.Handler {
	return engine.HandlerFunc(func(ctx context.Context, job *engine.Job) error {
		err := next.Handle(ctx, job)
		if err != nil {
			c.failed.Add(1)
		} else {
			c.ran.Add(1)
		}
		return err
	})
}

// monitorQueue logs the queue's counts and this worker's every interval.
func monitorQueue(ctx context.Context, o *pipeline.Orchestrator, counts *runCounts, log *slog.Logger, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st, err := o.QueueStats(ctx)
		if err != nil {
			log.Warn("monitor: queue stats", "err", err)
			continue
		}
		log.Info("monitor", "queue", st.Queue, "queued", st.Queued, "active", st.Active, "deferred", st.Deferred,
			"retrying", st.Retrying, "completed", st.Completed, "failed", st.Failed, "workers", st.Workers,
			"jobs_ran", counts.ran.Load(), "jobs_failed", counts.failed.Load())
	}
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
