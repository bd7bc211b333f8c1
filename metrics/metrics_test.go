package metrics

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/goleak"

	"github.com/jobrelay/engine"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// scrape serves reg with promhttp and returns the exposition text.
func scrape(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: got status %d, want 200: %s", resp.StatusCode, body)
	}
	return string(body)
}

func wantLines(t *testing.T, text string, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if !strings.Contains(text, "\n"+l+"\n") {
			t.Errorf("scrape has no line %q", l)
		}
	}
	if t.Failed() {
		t.Logf("scrape:\n%s", text)
	}
}

// A live engine runs jobs that complete, retry and fail; a scrape shows
// them by queue, type and outcome, with run and wait times and the queue
// gauges.
func TestScrapeLiveEngine(t *testing.T) {
	ctx := context.Background()
	e, err := engine.New(engine.WithMemory(), engine.WithQueues("ai", "default"),
		engine.WithRetryPolicy(engine.RetryPolicy{MaxRetries: 1, InitialDelay: time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	e.HandleFunc("summarize", func(context.Context, *engine.Job) error { return nil })
	e.HandleFunc("notion-sync", func(context.Context, *engine.Job) error { return errors.New("notion: 503") })

	// The hook tells when the listener has counted the last outcome.
	ends := make(chan engine.Event, 16)
	reg := prometheus.NewRegistry()
	m, err := newMetrics(e, reg, Options{}, func(ev engine.Event) {
		switch ev.Kind {
		case engine.EventCompleted, engine.EventFailed:
			ends <- ev
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- e.Run(runCtx) }()
	defer func() { stop(); <-done }()

	for range 2 {
		if _, err := e.Enqueue(ctx, "summarize", nil, engine.Queue("ai")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.Enqueue(ctx, "notion-sync", nil); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		select {
		case <-ends:
		case <-time.After(10 * time.Second):
			t.Fatal("jobs did not end within 10s")
		}
	}
	if err := e.Pause(ctx, "ai"); err != nil {
		t.Fatal(err)
	}

	text := scrape(t, reg)
	wantLines(t, text,
		`jobrelay_jobs_total{outcome="completed",queue="ai",type="summarize"} 2`,
		`jobrelay_jobs_total{outcome="retried",queue="default",type="notion-sync"} 1`,
		`jobrelay_jobs_total{outcome="failed",queue="default",type="notion-sync"} 1`,
		`jobrelay_job_run_seconds_count{outcome="completed",queue="ai",type="summarize"} 2`,
		`jobrelay_job_run_seconds_count{outcome="retried",queue="default",type="notion-sync"} 1`,
		`jobrelay_job_run_seconds_count{outcome="failed",queue="default",type="notion-sync"} 1`,
		`jobrelay_job_wait_seconds_count{queue="ai",type="summarize"} 2`,
		// Two waits for the flaky job: first enqueue, then its retry.
		`jobrelay_job_wait_seconds_count{queue="default",type="notion-sync"} 2`,
		`jobrelay_queue_jobs{queue="ai",state="completed"} 2`,
		`jobrelay_queue_jobs{queue="ai",state="queued"} 0`,
		`jobrelay_queue_jobs{queue="default",state="failed"} 1`,
		`jobrelay_queue_paused{queue="ai"} 1`,
		`jobrelay_queue_paused{queue="default"} 0`,
		`jobrelay_queue_workers{queue="ai"} 1`,
		`jobrelay_queue_processed_total{queue="ai"} 2`,
		`jobrelay_queue_failed_attempts_total{queue="default"} 2`,
		`jobrelay_workers 1`,
	)
}

// The wait time runs from the moment the job became due, not from enqueue:
// a delayed job that is taken at once after its delay waited no time.
func TestWaitCountsFromDueTime(t *testing.T) {
	e, err := engine.New(engine.WithMemory())
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	reg := prometheus.NewRegistry()
	m, err := newMetrics(e, reg, Options{WaitBuckets: []float64{1}, RunBuckets: []float64{1}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	t0 := time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)
	for _, ev := range []engine.Event{
		{Kind: engine.EventQueued, JobID: "j1", Type: "report", Queue: "q", State: engine.StateScheduled, Time: t0},
		{Kind: engine.EventQueued, JobID: "j1", Type: "report", Queue: "q", State: engine.StateQueued, Time: t0.Add(time.Hour)},
		{Kind: engine.EventActive, JobID: "j1", Type: "report", Queue: "q", State: engine.StateActive, Time: t0.Add(time.Hour + 100*time.Millisecond)},
		{Kind: engine.EventStalled, JobID: "j1", Type: "report", Queue: "q", State: engine.StateQueued, Time: t0.Add(2 * time.Hour)},
		{Kind: engine.EventFailed, JobID: "j1", Type: "report", Queue: "q", State: engine.StateFailed, Time: t0.Add(2 * time.Hour)},
	} {
		m.observe(ev)
	}
	text := scrape(t, reg)
	wantLines(t, text,
		`jobrelay_job_wait_seconds_bucket{queue="q",type="report",le="1"} 1`,
		`jobrelay_job_wait_seconds_sum{queue="q",type="report"} 0.1`,
		`jobrelay_jobs_total{outcome="stalled",queue="q",type="report"} 1`,
		`jobrelay_jobs_total{outcome="failed",queue="q",type="report"} 1`,
		// The stalled attempt's run time is counted once, under stalled.
		`jobrelay_job_run_seconds_count{outcome="stalled",queue="q",type="report"} 1`,
	)
	if strings.Contains(text, `jobrelay_job_run_seconds_count{outcome="failed"`) {
		t.Error("a failure after a stall added a second run time")
	}
}

// Close unregisters everything, so metrics for a new engine can take the
// names; registering twice fails.
func TestRegisterTwiceAndClose(t *testing.T) {
	e, _ := engine.New()
	defer e.Close()
	reg := prometheus.NewRegistry()
	m, err := New(e, reg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(e, reg, Options{}); err == nil {
		t.Fatal("second New on one registry: got no error, want a registration error")
	}
	m.Close()
	m2, err := New(e, reg, Options{Namespace: "jobs", ConstLabels: prometheus.Labels{"app": "meetings"}})
	if err != nil {
		t.Fatalf("New after Close: %v", err)
	}
	defer m2.Close()
	wantLines(t, scrape(t, reg), `jobs_queue_paused{app="meetings",queue="default"} 0`)
}

// A backend that fails makes the scrape fail rather than report zeros.
func TestScrapeFailsWhenBackendFails(t *testing.T) {
	e, _ := engine.New()
	reg := prometheus.NewRegistry()
	m, err := New(e, reg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	e.Close()
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError {
		t.Errorf("scrape of a closed engine: got status %d, want 500", resp.StatusCode)
	}
}
