package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jobrelay/engine"
	"github.com/jobrelay/engine/backend/memory"
	"github.com/jobrelay/engine/examples/meetings/agents"
	"github.com/jobrelay/engine/examples/meetings/httpapi"
	"github.com/jobrelay/engine/examples/meetings/pipeline"
	"github.com/jobrelay/engine/examples/meetings/samples"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const sampleKey = "s3://recordings/2026-03-02-roadmap-sync.txt"

// gate holds transcriptions until it is opened, so a test can look at jobs
// before they run.
type gate struct {
	open chan struct{}
	agents.Transcriber
}

func (g gate) Transcribe(ctx context.Context, rec agents.Recording, p agents.ProgressFunc) (*agents.Transcript, error) {
	select {
	case <-g.open:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return g.Transcriber.Transcribe(ctx, rec, p)
}

// fixture is an API over a running engine on the memory backend.
type fixture struct {
	srv     *httptest.Server
	e       *engine.Engine
	backend *memory.Backend
	gate    chan struct{}
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	b := memory.New(memory.Options{})
	t.Cleanup(func() { b.Close() })
	e, err := engine.New(engine.WithBackend(b), engine.WithQueues(pipeline.Queues...), engine.WithRetryPolicy(pipeline.RetryPolicy()))
	if err != nil {
		t.Fatalf("engine.New: %v", err)
	}
	t.Cleanup(func() { e.Close() })
	f := &fixture{e: e, backend: b, gate: make(chan struct{})}
	o, err := pipeline.New(e, pipeline.Config{Objects: samples.Objects, NotionDir: t.TempDir(),
		Agents: pipeline.Agents{Transcriber: gate{open: f.gate, Transcriber: agents.TextTranscriber{ChunkSize: 200}}}})
	if err != nil {
		t.Fatalf("pipeline.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	f.srv = httptest.NewServer(httpapi.New(o, nil))
	t.Cleanup(func() {
		f.openGate()
		f.srv.Close()
		cancel()
		<-done
	})
	return f
}

func (f *fixture) openGate() {
	select {
	case <-f.gate:
	default:
		close(f.gate)
	}
}

// call sends a request and decodes a JSON answer into out (when not nil).
func (f *fixture) call(t *testing.T, method, path, body string, out any) int {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatalf("NewRequest: %v", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s %s: got Content-Type %q, want JSON", method, path, ct)
	}
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("%s %s: decode answer: %v", method, path, err)
		}
	}
	return resp.StatusCode
}

func (f *fixture) process(t *testing.T, meeting string) httpapi.ProcessResponse {
	t.Helper()
	var got httpapi.ProcessResponse
	if code := f.call(t, "POST", "/meetings/"+meeting+"/process?s3_key="+sampleKey, "", &got); code != http.StatusOK {
		t.Fatalf("process %s: got %d, want 200", meeting, code)
	}
	return got
}

func (f *fixture) wait(t *testing.T, id string) *engine.JobInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	info, err := f.e.Wait(ctx, id)
	if err != nil {
		t.Fatalf("Wait(%s): %v", id, err)
	}
	return info
}

func TestProcessAnswersWithTheWorkflowsJobs(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var byQuery, byBody map[string]any
	if code := f.call(t, "POST", "/meetings/m-query/process?s3_key="+sampleKey, "", &byQuery); code != http.StatusOK {
		t.Fatalf("s3_key in the query: got %d, want 200", code)
	}
	if code := f.call(t, "POST", "/meetings/m-body/process", `{"s3_key": "`+sampleKey+`"}`, &byBody); code != http.StatusOK {
		t.Fatalf("s3_key in the body: got %d, want 200", code)
	}
	for _, got := range []map[string]any{byQuery, byBody} {
		jobs, _ := got["jobs"].(map[string]any)
		keys := make([]string, 0, len(jobs))
		for k, v := range jobs {
			if s, _ := v.(string); s == "" {
				t.Errorf("jobs[%q] = %v, want a job ID", k, v)
			}
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if want := []string{"aipm_analysis", "notion_sync", "summarization", "task_extraction", "transcription"}; !slices.Equal(keys, want) {
			t.Errorf("got job keys %v, want %v", keys, want)
		}
		if got["status"] != "queued" || got["job_id"] != jobs["transcription"] {
			t.Errorf("got status %v and job_id %v, want \"queued\" and the transcription job %v", got["status"], got["job_id"], jobs["transcription"])
		}
	}
	// Asked again while the meeting's jobs are live: the same jobs.
	var again httpapi.ProcessResponse
	f.call(t, "POST", "/meetings/m-query/process?s3_key="+sampleKey, "", &again)
	if again.JobID != byQuery["job_id"] {
		t.Errorf("processing a live meeting again: got job %s, want %v", again.JobID, byQuery["job_id"])
	}
}

func TestProcessRefusesBadRequests(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cases := []struct {
		name, path, body string
		wantCode         int
		wantInError      string
	}{
		{"no s3_key", "/meetings/m-1/process", "", 400, "s3_key is required"},
		{"empty body object", "/meetings/m-1/process", "{}", 400, "s3_key is required"},
		{"malformed body", "/meetings/m-1/process", `{"s3_key": `, 400, "malformed JSON body"},
		{"misspelt field", "/meetings/m-1/process", `{"s3key": "s3://b/k"}`, 400, "s3_key is required"},
		{"trailing garbage", "/meetings/m-1/process", `{"s3_key": "s3://b/k"} x`, 400, "malformed JSON body"},
		{"body not an object", "/meetings/m-1/process", `["s3://b/k"]`, 400, "malformed JSON body"},
		{"bad key", "/meetings/m-1/process?s3_key=nobucket", "", 400, "invalid s3 key"},
		{"key leaving its bucket", "/meetings/m-1/process?s3_key=s3://b/../../etc/passwd", "", 400, "invalid s3 key"},
		{"bad meeting ID", "/meetings/a%20b/process?s3_key=s3://b/k", "", 400, "invalid meeting ID"},
	}
	for _, c := range cases {
		var got httpapi.ErrorResponse
		code := f.call(t, "POST", c.path, c.body, &got)
		if code != c.wantCode || !strings.Contains(got.Error, c.wantInError) {
			t.Errorf("%s: got %d %q, want %d with %q", c.name, code, got.Error, c.wantCode, c.wantInError)
		}
	}
	if page, _ := f.e.Jobs(context.Background(), engine.JobFilter{}); len(page.Jobs) != 0 {
		t.Errorf("bad requests left %d jobs", len(page.Jobs))
	}
}

func TestJobStatusAndQueueStats(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	p := f.process(t, "m-1")

	var queued engine.JobInfo
	if code := f.call(t, "GET", "/jobs/"+p.Jobs.Summarization+"/status", "", &queued); code != http.StatusOK {
		t.Fatalf("status: got %d, want 200", code)
	}
	if queued.ID != p.Jobs.Summarization || queued.State != engine.StateDeferred || queued.Type != pipeline.Summarization {
		t.Errorf("status before the transcript: got %+v, want the deferred summarization", queued)
	}
	f.openGate()
	f.wait(t, p.Jobs.NotionSync)

	var raw map[string]any
	f.call(t, "GET", "/jobs/"+p.Jobs.TaskExtraction+"/status", "", &raw)
	for _, key := range []string{"job_id", "type", "queue", "status", "attempt", "max_retries", "progress", "result", "error", "created_at", "started_at", "finished_at"} {
		if _, ok := raw[key]; !ok {
			t.Errorf("status JSON lacks %q: %v", key, raw)
		}
	}
	result, _ := raw["result"].(map[string]any)
	tasks, _ := result["tasks"].([]any)
	if raw["status"] != "completed" || len(tasks) != 7 {
		t.Errorf("status after the run: got status %v with %d tasks, want completed with 7 tasks as nested JSON", raw["status"], len(tasks))
	}

	var errResp httpapi.ErrorResponse
	if code := f.call(t, "GET", "/jobs/no-such-job/status", "", &errResp); code != http.StatusNotFound || !strings.Contains(errResp.Error, "not found") {
		t.Errorf("unknown job: got %d %q, want 404", code, errResp.Error)
	}

	var stats map[string]any
	if code := f.call(t, "GET", "/queue/stats", "", &stats); code != http.StatusOK {
		t.Fatalf("stats: got %d, want 200", code)
	}
	want := map[string]any{"queue_name": pipeline.Queue, "job_count": 0.0, "started_job_registry_count": 0.0,
		"finished_job_registry_count": 5.0, "failed_job_registry_count": 0.0, "worker_count": 1.0}
	for k, v := range want {
		if stats[k] != v {
			t.Errorf("stats[%q] = %v, want %v", k, stats[k], v)
		}
	}
	if ts, _ := stats["timestamp"].(string); ts == "" {
		t.Errorf("stats lack a timestamp: %v", stats)
	}
}

// sse reads a stream of Server-Sent Events: the names of the events and
// their data.
func sse(t *testing.T, body io.Reader) (names []string, data []string) {
	t.Helper()
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 0, 1<<16), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			names = append(names, strings.TrimPrefix(line, "event: "))
		case strings.HasPrefix(line, "data: "):
			data = append(data, strings.TrimPrefix(line, "data: "))
		}
	}
	return names, data
}

func TestEventsStreamUntilTheJobEnds(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	p := f.process(t, "m-1")
	resp, err := http.Get(f.srv.URL + "/jobs/" + p.JobID + "/events")
	if err != nil {
		t.Fatalf("GET events: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: got %d %q, want 200 text/event-stream", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	// The stream is open: now let the transcription run.
	f.openGate()
	names, data := sse(t, resp.Body)
	if len(names) < 3 || names[0] != "status" || names[len(names)-1] != "completed" {
		t.Fatalf("got events %v, want status first, then the job's events, ending with completed", names)
	}
	if !slices.Contains(names, "progress") {
		t.Errorf("got events %v, want progress among them", names)
	}
	var first engine.JobInfo
	if err := json.Unmarshal([]byte(data[0]), &first); err != nil || first.ID != p.JobID {
		t.Errorf("first event: got %s (%v), want the job's status", data[0], err)
	}
	var last engine.Event
	if err := json.Unmarshal([]byte(data[len(data)-1]), &last); err != nil || last.JobID != p.JobID || len(last.Result) == 0 {
		t.Errorf("last event: got %s (%v), want the job's completion with its result", data[len(data)-1], err)
	}

	// A job that has ended streams its status and ends.
	resp2, err := http.Get(f.srv.URL + "/jobs/" + p.JobID + "/events")
	if err != nil {
		t.Fatalf("GET events of an ended job: %v", err)
	}
	names, _ = sse(t, resp2.Body)
	resp2.Body.Close()
	if !slices.Equal(names, []string{"status"}) {
		t.Errorf("ended job: got events %v, want only its status", names)
	}

	var errResp httpapi.ErrorResponse
	if code := f.call(t, "GET", "/jobs/no-such-job/events", "", &errResp); code != http.StatusNotFound {
		t.Errorf("events of an unknown job: got %d, want 404", code)
	}
}

func TestEventsStreamEndsWhenTheClientLeaves(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	p := f.process(t, "m-1")
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", f.srv.URL+"/jobs/"+p.JobID+"/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET events: %v", err)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "event: status\n" {
		t.Fatalf("first line: got %q (%v), want the status event", line, err)
	}
	cancel()
	resp.Body.Close()
	// goleak in TestMain checks that the handler and its listener are gone.
}

func TestBackendUnavailableIs503(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	p := f.process(t, "m-1")
	f.backend.Close()
	for _, c := range []struct{ method, path string }{
		{"GET", "/jobs/" + p.JobID + "/status"},
		{"GET", "/queue/stats"},
		{"GET", "/healthz"},
		{"POST", "/meetings/m-2/process?s3_key=" + sampleKey},
		{"GET", "/jobs/" + p.JobID + "/events"},
	} {
		var got httpapi.ErrorResponse
		if code := f.call(t, c.method, c.path, "", &got); code != http.StatusServiceUnavailable || !strings.Contains(got.Error, "unavailable") {
			t.Errorf("%s %s with the backend down: got %d %q, want 503", c.method, c.path, code, got.Error)
		}
	}
}
