package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/jobrelay/engine"
	"github.com/jobrelay/engine/internal/redistest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// seeded is a bbolt file with a failed, a completed and a queued job.
type seeded struct {
	path                      string
	failed, completed, queued string
}

func seed(t *testing.T) seeded {
	t.Helper()
	ctx := context.Background()
	s := seeded{path: filepath.Join(t.TempDir(), "jobs.db")}
	e, err := engine.New(engine.WithBolt(s.path))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	engine.Handle(e, "summarize", func(ctx context.Context, job *engine.Job, in map[string]string) (map[string]int, error) {
		job.Progress(ctx, 50, "half way")
		if in["fail"] != "" {
			return nil, errors.New("llm: context window exceeded")
		}
		return map[string]int{"sentences": 3}, nil
	})
	s.failed, _ = e.Enqueue(ctx, "summarize", map[string]string{"fail": "yes"}, engine.Queue("ai"), engine.MaxRetries(0))
	s.completed, _ = e.Enqueue(ctx, "summarize", map[string]string{"meeting": "m-1"}, engine.Queue("ai"))
	if _, err := e.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	s.queued, _ = e.Enqueue(ctx, "notion-sync", map[string]string{"page": "p-9"})
	return s
}

// syncBuffer is a bytes.Buffer that a running command may write while the
// test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type result struct {
	code           int
	stdout, stderr string
}

func jobrelay(t *testing.T, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, &out, &errOut)
	return result{code, out.String(), errOut.String()}
}

func (r result) want(t *testing.T, code int, stdout ...string) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit code %d, want %d (stderr %q)", r.code, code, r.stderr)
	}
	for _, s := range stdout {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("stdout has no %q:\n%s", s, r.stdout)
		}
	}
}

// wantLine checks for a line of stdout that matches re, and exit code 0.
func (r result) wantLine(t *testing.T, re string) {
	t.Helper()
	r.want(t, 0)
	if !regexp.MustCompile(`(?m)^` + re + `\s*$`).MatchString(r.stdout) {
		t.Errorf("stdout has no line matching %q:\n%s", re, r.stdout)
	}
}

// Flags work before and after the arguments, as people type them.
func TestFlagsBeforeOrAfterArguments(t *testing.T) {
	t.Parallel()
	s := seed(t)
	for _, args := range [][]string{
		{"job", "show", s.failed, "--json", "--bolt", s.path},
		{"--json", "--bolt", s.path, "job", "show", s.failed},
		{"--bolt=" + s.path, "job", "--json", "show", s.failed},
		{"job", "show", "--bolt", s.path, "-json", "--", s.failed},
	} {
		r := jobrelay(t, args...)
		var info engine.JobInfo
		if err := json.Unmarshal([]byte(r.stdout), &info); err != nil || info.ID != s.failed {
			t.Errorf("%q: got %q (%v), want the failed job as JSON", args, r.stdout, err)
		}
	}
}

func TestFlagsFirst(t *testing.T) {
	t.Parallel()
	kinds := flagKinds()
	flags, words := flagsFirst([]string{"jobs", "--state", "failed", "--json", "x", "--limit=3", "-unknown", "y", "--", "--z"}, kinds)
	if strings.Join(flags, " ") != "--state failed --json --limit=3 -unknown" || strings.Join(words, " ") != "jobs x y --z" {
		t.Errorf("got flags %q and words %q", flags, words)
	}
}

func TestStats(t *testing.T) {
	t.Parallel()
	s := seed(t)
	r := jobrelay(t, "--bolt", s.path, "stats")
	r.want(t, 0, "QUEUE", "FAILED ATTEMPTS")
	if !regexp.MustCompile(`(?m)^ai\s+running\s+0\s+0\s+0\s+0\s+0\s+1\s+1\s+0\s+0\s+1\s+1\s*$`).MatchString(r.stdout) {
		t.Errorf("stats table has no row for ai with 1 completed and 1 failed:\n%s", r.stdout)
	}
	r = jobrelay(t, "--bolt", s.path, "stats", "--json")
	var qs []engine.QueueStats
	if err := json.Unmarshal([]byte(r.stdout), &qs); err != nil || len(qs) != 2 || qs[0].Queue != "ai" || qs[0].Failed != 1 || qs[1].Queued != 1 {
		t.Errorf("stats --json: got %+v (%v)", qs, err)
	}
	if !strings.Contains(r.stdout, `"failed_job_registry_count": 1`) {
		t.Errorf("stats --json lacks the original service's keys:\n%s", r.stdout)
	}
}

// --watch redraws the table in place until interrupted, then exits 0.
func TestStatsWatch(t *testing.T) {
	t.Parallel()
	s := seed(t)
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut syncBuffer
	done := make(chan int)
	go func() {
		done <- run(ctx, []string{"stats", "--watch", "--interval", "10ms", "--bolt", s.path}, &out, &errOut)
	}()
	deadline := time.After(10 * time.Second)
	for strings.Count(out.String(), "\x1b[H\x1b[2J") < 2 {
		select {
		case <-deadline:
			t.Fatalf("no second refresh within 10s:\n%q", out.String())
		case <-time.After(5 * time.Millisecond):
		}
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("interrupted --watch: exit %d, want 0 (stderr %q)", code, errOut.String())
	}
	if !strings.Contains(out.String(), "jobrelay stats · every 10ms") {
		t.Errorf("watch output has no header:\n%s", out.String())
	}
}

func TestJobsFiltersAndPages(t *testing.T) {
	t.Parallel()
	s := seed(t)
	r := jobrelay(t, "--bolt", s.path, "jobs", "--state", "failed")
	r.want(t, 0, s.failed, "llm: context window exceeded")
	if strings.Contains(r.stdout, s.completed) {
		t.Error("failed list shows the completed job")
	}
	jobrelay(t, "--bolt", s.path, "jobs", "--type", "notion-sync").want(t, 0, s.queued)

	r = jobrelay(t, "--bolt", s.path, "jobs", "--queue", "ai", "--limit", "1", "--json")
	var p engine.JobPage
	if err := json.Unmarshal([]byte(r.stdout), &p); err != nil || len(p.Jobs) != 1 || p.Jobs[0].ID != s.failed || p.Next == "" {
		t.Fatalf("first page: got %+v (%v), want the failed job and a cursor", p, err)
	}
	r = jobrelay(t, "--bolt", s.path, "jobs", "--queue", "ai", "--limit", "1", "--cursor", p.Next)
	r.want(t, 0, s.completed)
	r = jobrelay(t, "--bolt", s.path, "jobs", "--limit", "1")
	r.want(t, 0, "more: add --cursor ")

	jobrelay(t, "--bolt", s.path, "jobs", "--state", "bogus").want(t, 2)
}

func TestJobShow(t *testing.T) {
	t.Parallel()
	s := seed(t)
	r := jobrelay(t, "--bolt", s.path, "job", "show", s.failed)
	r.wantLine(t, `State\s+failed`)
	r.wantLine(t, `Attempt\s+1 of up to 1 \(1 failed, 0 stalled\)`)
	r.want(t, 0, "[###############---------------]  50% half way",
		"Error:\n  llm: context window exceeded", "Payload:\n  {\n    \"fail\": \"yes\"\n  }", "Created", "Finished")
	jobrelay(t, "--bolt", s.path, "job", "show", s.completed).want(t, 0, "Result:\n  {\n    \"sentences\": 3\n  }")

	r = jobrelay(t, "--bolt", s.path, "job", "show", "no-such-job")
	r.want(t, 1)
	if !strings.Contains(r.stderr, "job no-such-job not found") {
		t.Errorf("unknown job: stderr %q, want it to say the job was not found", r.stderr)
	}
}

func TestJobRetryAndCancel(t *testing.T) {
	t.Parallel()
	s := seed(t)
	jobrelay(t, "--bolt", s.path, "job", "retry", s.failed).want(t, 0, "requeued job "+s.failed+" in queue ai")
	r := jobrelay(t, "--bolt", s.path, "job", "show", s.failed, "--json")
	if !strings.Contains(r.stdout, `"status": "queued"`) {
		t.Errorf("after retry: %s", r.stdout)
	}
	r = jobrelay(t, "--bolt", s.path, "job", "retry", s.completed)
	r.want(t, 1)
	if !strings.Contains(r.stderr, "invalid") && !strings.Contains(r.stderr, "state") {
		t.Errorf("retry of a completed job: stderr %q, want it to name the state problem", r.stderr)
	}
	jobrelay(t, "--bolt", s.path, "job", "cancel", s.queued).want(t, 0, "canceled job "+s.queued)
	r = jobrelay(t, "--bolt", s.path, "--json", "job", "cancel", s.queued)
	r.want(t, 0, `"status": "canceled"`)
	jobrelay(t, "--bolt", s.path, "job", "cancel", "no-such-job").want(t, 1)
}

func TestQueuePauseResume(t *testing.T) {
	t.Parallel()
	s := seed(t)
	jobrelay(t, "--bolt", s.path, "queue", "pause", "ai").want(t, 0, "paused queue ai")
	r := jobrelay(t, "--bolt", s.path, "stats")
	if !regexp.MustCompile(`(?m)^ai\s+paused\s`).MatchString(r.stdout) {
		t.Errorf("after pause, stats:\n%s", r.stdout)
	}
	jobrelay(t, "--bolt", s.path, "queue", "resume", "ai", "--json").want(t, 0, `"paused": false`)
	if r := jobrelay(t, "--bolt", s.path, "stats"); !regexp.MustCompile(`(?m)^ai\s+running\s`).MatchString(r.stdout) {
		t.Errorf("after resume, stats:\n%s", r.stdout)
	}
}

func TestEnqueue(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "new.db")
	r := jobrelay(t, "enqueue", "weekly-report", `{"team":"core"}`, "--bolt", path, "--queue", "reports", "--delay", "1h", "--retries", "0", "--priority", "3", "--json")
	r.want(t, 0)
	var info engine.JobInfo
	if err := json.Unmarshal([]byte(r.stdout), &info); err != nil {
		t.Fatalf("enqueue --json: %v\n%s", err, r.stdout)
	}
	if info.Type != "weekly-report" || info.Queue != "reports" || info.State != engine.StateScheduled ||
		info.MaxRetries != 0 || info.Priority != 3 || compact(info.Payload) != `{"team":"core"}` ||
		info.RunAt.Sub(info.CreatedAt) != time.Hour {
		t.Errorf("enqueued %+v, want a scheduled weekly-report in reports, due in 1h, no retries, priority 3", info)
	}
	r = jobrelay(t, "--bolt", path, "enqueue", "ping")
	r.want(t, 0)
	if id := strings.TrimSpace(r.stdout); len(id) < 10 || strings.ContainsAny(id, " \n") {
		t.Errorf("enqueue printed %q, want the new job's ID", r.stdout)
	}
	jobrelay(t, "--bolt", path, "enqueue", "ping", "{not json").want(t, 2)
	jobrelay(t, "--bolt", path, "enqueue", "ping", "--delay", "-1s").want(t, 2)
}

func compact(b []byte) string {
	var out bytes.Buffer
	json.Compact(&out, b)
	return out.String()
}

func TestUsage(t *testing.T) {
	s := seed(t)
	for _, v := range []string{"REDIS_URL", "REDIS_HOST", "REDIS_PORT"} {
		t.Setenv(v, "")
	}
	for _, tc := range []struct {
		args []string
		code int
		in   string // expected in stdout or stderr
	}{
		{nil, 2, "Usage: jobrelay"},
		{[]string{"help"}, 0, "Commands:"},
		{[]string{"--help"}, 0, "Commands:"},
		{[]string{"jobs", "-h"}, 0, "-state"},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"job", "show"}, 2, "want ID, got 0 arguments"},
		{[]string{"stats", "extra", "--bolt", s.path}, 2, "want no arguments"},
		{[]string{"stats", "--bogus", "--bolt", s.path}, 2, "flag provided but not defined: -bogus"},
		{[]string{"stats"}, 2, "no backend"},
		{[]string{"stats", "--bolt", s.path, "--redis", "redis://x"}, 2, "not both"},
		{[]string{"stats", "--redis", "http://nope"}, 2, "bad Redis URL"},
	} {
		var out, errOut bytes.Buffer
		code := run(context.Background(), tc.args, &out, &errOut)
		if code != tc.code || !strings.Contains(out.String()+errOut.String(), tc.in) {
			t.Errorf("%q: exit %d, output %q; want exit %d and %q", tc.args, code, out.String()+errOut.String(), tc.code, tc.in)
		}
	}
}

// A bbolt file that a running app holds gives a message that points at the
// dashboard handler.
func TestLockedBoltFile(t *testing.T) {
	t.Parallel()
	s := seed(t)
	app, err := engine.New(engine.WithBolt(s.path))
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	r := jobrelay(t, "--bolt", s.path, "stats")
	r.want(t, 1)
	if !strings.Contains(r.stderr, "in use by another process") || !strings.Contains(r.stderr, "dashboard.Handler") {
		t.Errorf("stderr %q, want it to say the file is in use and point at dashboard.Handler", r.stderr)
	}
}

func TestMissingBoltFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "typo.db")
	r := jobrelay(t, "--bolt", path, "stats")
	r.want(t, 1)
	if _, err := os.Stat(path); err == nil {
		t.Error("stats created the missing file")
	}
}

// withEngine runs commands against a shared engine (the memory backend, or
// one that is running), as tests of a live app.
func withEngine(e *engine.Engine) *cli {
	return &cli{open: func(context.Context, *options, bool) (*engine.Engine, func(), error) {
		return e, func() {}, nil
	}}
}

func (c *cli) exec(t *testing.T, ctx context.Context, args ...string) result {
	t.Helper()
	var out, errOut syncBuffer
	c.stdout, c.stderr, c.opts = &out, &errOut, options{}
	code := c.main(ctx, args)
	return result{code, out.String(), errOut.String()}
}

func TestWorkersOfARunningEngine(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e, err := engine.New(engine.WithMemory(), engine.WithWorkerName("meetings-1"), engine.WithQueues("ai", "default"), engine.WithConcurrency(3))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	c := withEngine(e)
	c.exec(t, ctx, "workers").want(t, 0, "no workers running")

	started := make(chan struct{})
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- e.Run(runCtx) }()
	defer func() { stop(); <-done }()
	// Run registers the worker before it takes jobs: a job that ran means
	// the worker is listed.
	e.HandleFunc("ping", func(context.Context, *engine.Job) error { close(started); return nil })
	e.Enqueue(ctx, "ping", nil)
	<-started

	r := c.exec(t, ctx, "workers")
	r.want(t, 0, "NAME", "meetings-1", "ai,default")
	r = c.exec(t, ctx, "workers", "--json")
	var ws []engine.WorkerInfo
	if err := json.Unmarshal([]byte(r.stdout), &ws); err != nil || len(ws) != 1 || ws[0].Concurrency != 3 {
		t.Errorf("workers --json: got %+v (%v)", ws, err)
	}
}

// The dashboard command serves the dashboard until interrupted.
func TestDashboardCommand(t *testing.T) {
	t.Parallel()
	e, err := engine.New(engine.WithMemory())
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx, cancel := context.WithCancel(context.Background())
	c := withEngine(e)
	var out, errOut syncBuffer
	c.stdout, c.stderr = &out, &errOut
	done := make(chan int)
	go func() { done <- c.main(ctx, []string{"dashboard", "--addr", "127.0.0.1:0", "--token", "t0ken"}) }()

	addr := regexp.MustCompile(`dashboard on (http://127\.0\.0\.1:\d+/)`)
	var url string
	deadline := time.After(10 * time.Second)
	for url == "" {
		if m := addr.FindStringSubmatch(errOut.String()); m != nil {
			url = m[1]
			break
		}
		select {
		case <-deadline:
			t.Fatalf("dashboard did not start within 10s: %q", errOut.String())
		case <-time.After(5 * time.Millisecond):
		}
	}
	for token, want := range map[string]int{"": http.StatusUnauthorized, "t0ken": http.StatusOK} {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET / with token %q: got %d, want %d", token, resp.StatusCode, want)
		}
		if want == http.StatusOK && !strings.Contains(string(body), "Queues") {
			t.Errorf("GET /: page has no queue table:\n%s", body)
		}
	}
	http.DefaultClient.CloseIdleConnections()
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("interrupted dashboard: exit %d, want 0 (stderr %q)", code, errOut.String())
	}
}

// --redis connects to a real Redis, shared with a running app.
func TestRedis(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	url := "redis://" + srv.Addr() + "/0"
	r := jobrelay(t, "--redis", url, "--prefix", "cli", "enqueue", "summarize", `{"m":1}`, "--queue", "ai")
	r.want(t, 0)
	id := strings.TrimSpace(r.stdout)
	jobrelay(t, "--redis", url, "--prefix", "cli", "job", "show", id).wantLine(t, `State\s+queued`)
	jobrelay(t, "--redis", url, "--prefix", "cli", "job", "cancel", id).want(t, 0, "canceled job "+id)
	r = jobrelay(t, "stats", "--json", "--prefix", "cli", "--redis", url)
	r.want(t, 0, `"queue_name": "ai"`, `"canceled_job_count": 1`)
	// The same through the environment.
	t.Setenv("REDIS_URL", "")
	host, port, _ := strings.Cut(srv.Addr(), ":")
	t.Setenv("REDIS_HOST", host)
	t.Setenv("REDIS_PORT", port)
	jobrelay(t, "--prefix", "cli", "job", "show", id).wantLine(t, `State\s+canceled`)
}
