package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/jobrelay/engine"
)

// screenshot, when set, makes TestScreenshot write the overview of a busy
// engine to that PNG file:
//
//	go test ./dashboard -run TestScreenshot -dashboard.screenshot=$PWD/docs/img/dashboard.png
var screenshot = flag.String("dashboard.screenshot", "", "write a screenshot of the dashboard overview to this PNG `file`")

// requireBrowser reports whether a missing browser fails the test rather
// than skipping it: always in CI.
func requireBrowser() bool {
	return os.Getenv("CI") == "true" || os.Getenv("JOBRELAY_REQUIRE_BROWSER") == "1"
}

// newBrowser starts Debian's chromium headless with a fresh profile and
// returns a tab's context. The browser stops when the test ends.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	var path string
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		if requireBrowser() {
			t.Fatal("chromium is not installed (apt-get install -y chromium); browser tests must run in CI")
		}
		t.Skip("chromium is not installed; set JOBRELAY_REQUIRE_BROWSER=1 to make this a failure")
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	ctx, cancelTab := chromedp.NewContext(alloc)
	timeout, cancelTimeout := context.WithTimeout(ctx, 60*time.Second)
	t.Cleanup(func() {
		cancelTimeout()
		// Cancel closes the browser and waits for its process to end, so
		// that no goroutine of chromedp outlives the test.
		if err := chromedp.Cancel(ctx); err != nil && !errors.Is(err, context.Canceled) {
			t.Logf("close browser: %v", err)
		}
		cancelTab()
		cancelAlloc()
	})
	// Start the browser now, so that a broken install fails here.
	if err := chromedp.Do(timeout); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	return timeout
}

// text returns the text of the first element that matches sel, or "" when
// there is none. It reads in one step in the page, so that an auto-refresh
// replacing the element meanwhile cannot get in the way.
func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	q, _ := json.Marshal(sel)
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(`(function () { var n = document.querySelector(%s); return n ? n.textContent : ""; })()`, q)))
	if err != nil {
		t.Fatalf("read %s: %v", sel, err)
	}
	return strings.TrimSpace(s)
}

// click clicks a form's button and waits for the page it leads to.
func click(t *testing.T, ctx context.Context, sel string) {
	t.Helper()
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("click %s: %v", sel, err)
	}
	if resp.Status != 200 {
		t.Fatalf("click %s: page answered %d", sel, resp.Status)
	}
}

func navigate(t *testing.T, ctx context.Context, url string) {
	t.Helper()
	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(url))
	if err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
	if resp.Status != 200 {
		t.Fatalf("open %s: got status %d, want 200", url, resp.Status)
	}
}

// In a real browser against a running engine: the overview shows a failed
// job, a click pauses its queue, a click retries the job (which waits while
// its queue is paused), a click resumes the queue, and the job completes.
func TestBrowserRetryAndPause(t *testing.T) {
	ctx := context.Background()
	e, err := engine.New(engine.WithMemory(), engine.WithQueues("ai", "default"), engine.WithWorkerName("worker-1"))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	var runs atomic.Int32
	engine.Handle(e, "summarize", func(ctx context.Context, job *engine.Job, in map[string]string) (map[string]int, error) {
		if runs.Add(1) == 1 {
			return nil, errors.New("llm: overloaded")
		}
		return map[string]int{"sentences": 4}, nil
	})
	d, err := New(e, Options{Refresh: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	srv := httptest.NewServer(d)
	defer srv.Close()

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- e.Run(runCtx) }()
	defer func() { stop(); <-done }()

	id, err := e.Enqueue(ctx, "summarize", map[string]string{"meeting": "m-7"}, engine.Queue("ai"), engine.MaxRetries(0))
	if err != nil {
		t.Fatal(err)
	}
	if info, _ := e.Wait(ctx, id); info.State != engine.StateFailed {
		t.Fatalf("first run: got state %q, want failed", info.State)
	}

	b := newBrowser(t)
	navigate(t, b, srv.URL+"/")
	if got := text(t, b, `tr[data-queue="ai"] td.state-failed`); got != "1" {
		t.Errorf("overview: ai shows %q failed, want 1", got)
	}
	if got := text(t, b, `tr[data-queue="ai"] .badge`); got != "running" {
		t.Errorf("overview: ai is %q, want running", got)
	}

	click(t, b, `button[data-action="pause"][data-queue="ai"]`)
	if got := text(t, b, `tr[data-queue="ai"] .badge`); got != "paused" {
		t.Errorf("after clicking pause: ai is %q, want paused", got)
	}
	if got := text(t, b, `.flash`); !strings.HasPrefix(got, "Queue paused") {
		t.Errorf("after clicking pause: flash %q, want Queue paused…", got)
	}
	if qs, _ := e.Stats(ctx); !qs[0].Paused {
		t.Errorf("after clicking pause: engine says %+v, want ai paused", qs[0])
	}

	navigate(t, b, srv.URL+"/jobs?state=failed")
	click(t, b, fmt.Sprintf(`button[data-action="retry"][data-job=%q]`, id))
	if got := text(t, b, `.flash`); !strings.HasPrefix(got, "Job requeued") {
		t.Errorf("after clicking retry: flash %q, want Job requeued…", got)
	}
	if got, err := chromedp.Run(b, chromedp.Location()); err != nil || !strings.Contains(got, "/jobs?") || strings.Contains(got, "flash=") {
		t.Errorf("after clicking retry: at %q (%v), want the failed list without the flash in the address", got, err)
	}
	navigate(t, b, srv.URL+"/jobs/"+id)
	if got := text(t, b, `#job-state`); got != "queued" {
		t.Errorf("job page after retry in a paused queue: state %q, want queued", got)
	}
	if got := text(t, b, `#job-error`); got != "" {
		t.Errorf("job page after retry: error %q, want none", got)
	}

	navigate(t, b, srv.URL+"/")
	click(t, b, `button[data-action="resume"][data-queue="ai"]`)
	if got := text(t, b, `tr[data-queue="ai"] .badge`); got != "running" {
		t.Errorf("after clicking resume: ai is %q, want running", got)
	}
	if info, _ := e.Wait(ctx, id); info.State != engine.StateCompleted {
		t.Fatalf("after resume: got state %q, want completed", info.State)
	}
	navigate(t, b, srv.URL+"/jobs/"+id)
	if got := text(t, b, `#job-state`); got != "completed" {
		t.Errorf("job page at the end: state %q, want completed", got)
	}
	if got := text(t, b, `#job-result`); !strings.Contains(got, `"sentences": 4`) {
		t.Errorf("job page at the end: result %q, want the handler's", got)
	}
	if got := text(t, b, `table.history`); !strings.Contains(got, "failed") || !strings.Contains(got, "completed") {
		t.Errorf("job page at the end: history %q, want the failure and the completion", got)
	}
}

// The page refreshes itself: a job that ends while the page is open shows
// its new state without a reload.
func TestBrowserAutoRefresh(t *testing.T) {
	ctx := context.Background()
	e, err := engine.New(engine.WithMemory())
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	e.HandleFunc("ping", func(context.Context, *engine.Job) error { return nil })
	d, err := New(e, Options{Refresh: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	srv := httptest.NewServer(d)
	defer srv.Close()
	id, _ := e.Enqueue(ctx, "ping", nil)

	b := newBrowser(t)
	navigate(t, b, srv.URL+"/jobs/"+id)
	if got := text(t, b, `#job-state`); got != "queued" {
		t.Fatalf("state %q, want queued", got)
	}
	if _, err := e.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(b, chromedp.WaitVisible(chromedp.CSS(`#job-state.state-completed`))); err != nil {
		t.Fatalf("page did not show the completed state by itself: %v", err)
	}
}

// TestScreenshot writes docs/img/dashboard.png when asked to with
// -dashboard.screenshot: an hour of traffic on three queues, one of them
// paused, with a worker running a job.
func TestScreenshot(t *testing.T) {
	if *screenshot == "" {
		t.Skip("no -dashboard.screenshot file given")
	}
	ctx := context.Background()
	start := time.Now().Add(-59 * time.Minute).Truncate(time.Minute)
	clock := engine.NewFakeClock(start)
	e, err := engine.New(engine.WithMemory(), engine.WithClock(clock), engine.WithQueues("ai"),
		engine.WithWorkerName("meetings-worker-1"), engine.WithConcurrency(4))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	d, err := New(e, Options{Refresh: -1, Title: "jobrelay · meetings"})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	d.rec.since = start

	var n atomic.Int32
	for _, typ := range []string{"transcription", "summarization", "task-extraction", "notion-sync"} {
		e.HandleFunc(typ, func(ctx context.Context, job *engine.Job) error {
			if n.Add(1)%13 == 0 {
				return errors.New("upstream: 503 service unavailable")
			}
			return nil
		})
	}
	ends := 0
	for m := range 60 {
		load := 6 + (m*7)%11 + int(8*float64(m%20)/20)
		for i := range load {
			typ, queue := "summarization", "ai"
			switch i % 4 {
			case 1:
				typ = "transcription"
			case 2:
				typ, queue = "task-extraction", "default"
			case 3:
				typ, queue = "notion-sync", "notion"
			}
			e.Enqueue(ctx, typ, map[string]any{"meeting_id": fmt.Sprintf("m-%d-%d", m, i)}, engine.Queue(queue), engine.MaxRetries(0))
		}
		ran, _ := e.Drain(ctx)
		ends += ran
		clock.Advance(time.Minute)
	}
	clock.Set(time.Now())
	for i := range 5 {
		e.Enqueue(ctx, "notion-sync", map[string]any{"page": i}, engine.Queue("notion"))
	}
	e.Pause(ctx, "notion")
	e.Enqueue(ctx, "weekly-report", nil, engine.Delay(6*time.Hour))
	waitFor(t, func() bool {
		c := newChart(d.rec.throughput(time.Now()), d.rec.since)
		return c.Completed+c.Failed == ends
	})

	started := make(chan struct{})
	release := make(chan struct{})
	e.HandleFunc("transcription", func(ctx context.Context, job *engine.Job) error {
		job.Progress(ctx, 40, "transcribing 00:24:10 of 01:02:00")
		close(started)
		<-release
		return nil
	})
	e.Enqueue(ctx, "transcription", map[string]any{"meeting_id": "m-live"}, engine.Queue("ai"))
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- e.Run(runCtx) }()
	defer func() { close(release); stop(); <-done }()
	<-started

	srv := httptest.NewServer(d)
	defer srv.Close()
	b := newBrowser(t)
	navigate(t, b, srv.URL+"/")
	png, err := chromedp.Run(b, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(*screenshot), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(*screenshot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s (%d bytes)", *screenshot, len(png))
}
