package dashboard

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jobrelay/engine"
)

// fixture is an engine with a failed, a completed and a queued job, and a
// dashboard on it.
type fixture struct {
	e                         *engine.Engine
	d                         *Handler
	srv                       *httptest.Server
	failed, completed, queued string
}

func newFixture(t *testing.T, opts Options) *fixture {
	t.Helper()
	ctx := context.Background()
	e, err := engine.New(engine.WithMemory())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	d, err := New(e, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	f := &fixture{e: e, d: d}

	engine.Handle(e, "summarize", func(ctx context.Context, job *engine.Job, in map[string]string) (map[string]int, error) {
		job.Progress(ctx, 60, "drafting")
		if in["fail"] != "" {
			return nil, errors.New("llm: context window exceeded")
		}
		return map[string]int{"sentences": 3}, nil
	})
	f.failed, _ = e.Enqueue(ctx, "summarize", map[string]string{"fail": "yes"}, engine.Queue("ai"), engine.MaxRetries(0))
	f.completed, _ = e.Enqueue(ctx, "summarize", map[string]string{"meeting": "m-1"}, engine.Queue("ai"))
	if _, err := e.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	f.queued, _ = e.Enqueue(ctx, "notion-sync", map[string]string{"page": "p-9"}, engine.Meta("tenant", "acme"))
	// The listener hears events on its own goroutine: wait until the
	// dashboard has the failed job's end.
	waitFor(t, func() bool {
		evs, _ := d.rec.history(f.failed)
		return len(evs) > 0 && evs[len(evs)-1].Kind == engine.EventFailed
	})
	f.srv = httptest.NewServer(d)
	t.Cleanup(f.srv.Close)
	return f
}

// waitFor waits for a condition that another goroutine makes true, for up
// to five seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// noRedirects is a client that shows redirects instead of following them.
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func get(t *testing.T, c *http.Client, u string, hdr ...string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// post sends a form as a browser on the dashboard's own page would.
func post(t *testing.T, u string, form url.Values, hdr ...string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := noRedirects.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func contains(t *testing.T, body string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(body, w) {
			t.Errorf("page has no %q", w)
		}
	}
	if t.Failed() {
		t.Logf("page:\n%s", body)
	}
}

func TestOverviewShowsQueuesChartAndWorkers(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{})
	status, body := get(t, http.DefaultClient, f.srv.URL+"/")
	if status != http.StatusOK {
		t.Fatalf("got status %d, want 200", status)
	}
	contains(t, body,
		`<tr data-queue="ai">`, `<tr data-queue="default">`,
		`href="/jobs?queue=ai&amp;state=failed">1</a>`,
		`href="/jobs?queue=ai&amp;state=completed">1</a>`,
		`href="/jobs?queue=default&amp;state=queued">1</a>`,
		`<span class="badge running">running</span>`,
		`data-action="pause" data-queue="ai"`,
		`<strong id="chart-completed">1</strong>`, `<strong id="chart-failed">1</strong>`,
		`<svg viewBox="0 0 720.0 180.0"`,
		`No engine is running on this backend.`,
		`/static/style.css`,
	)
}

func TestJobListFiltersAndPages(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{PageSize: 1})
	_, body := get(t, http.DefaultClient, f.srv.URL+"/jobs?state=failed")
	contains(t, body, `data-job="`+f.failed+`"`, "llm: context window exceeded", `data-action="retry"`)
	if strings.Contains(body, f.completed) {
		t.Error("failed list shows the completed job")
	}
	_, body = get(t, http.DefaultClient, f.srv.URL+"/jobs?type=notion-sync")
	contains(t, body, `data-job="`+f.queued+`"`, `data-action="cancel"`)

	// One job per page: the first page links to the second.
	_, body = get(t, http.DefaultClient, f.srv.URL+"/jobs?queue=ai")
	contains(t, body, `data-job="`+f.failed+`"`, `rel="next"`)
	i := strings.Index(body, `rel="next" href="`)
	next := strings.ReplaceAll(body[i+len(`rel="next" href="`):], "&amp;", "&")
	next = next[:strings.IndexByte(next, '"')]
	_, body = get(t, http.DefaultClient, f.srv.URL+next)
	contains(t, body, `data-job="`+f.completed+`"`, "first page")

	status, _ := get(t, http.DefaultClient, f.srv.URL+"/jobs?state=bogus")
	if status != http.StatusBadRequest {
		t.Errorf("unknown state: got status %d, want 400", status)
	}
}

func TestJobPageShowsEverything(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{})
	_, body := get(t, http.DefaultClient, f.srv.URL+"/jobs/"+f.failed)
	contains(t, body,
		`id="job-state">failed</span>`,
		`<pre class="error-text" id="job-error">llm: context window exceeded</pre>`,
		"&#34;fail&#34;: &#34;yes&#34;",
		`<progress id="job-progress" max="100" value="60">`, "drafting",
		`<tr class="ev-queued">`, `<tr class="ev-active">`, `<tr class="ev-progress">`, `<tr class="ev-failed">`,
		`data-action="retry"`,
	)
	_, body = get(t, http.DefaultClient, f.srv.URL+"/jobs/"+f.completed)
	contains(t, body, `<pre id="job-result">{`, "&#34;sentences&#34;: 3")
	_, body = get(t, http.DefaultClient, f.srv.URL+"/jobs/"+f.queued)
	contains(t, body, "<th>tenant</th><td><code>acme</code></td>", `data-action="cancel"`)

	status, _ := get(t, http.DefaultClient, f.srv.URL+"/jobs/no-such-job")
	if status != http.StatusNotFound {
		t.Errorf("unknown job: got status %d, want 404", status)
	}
}

func TestActions(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{})
	ctx := context.Background()

	resp := post(t, f.srv.URL+"/jobs/"+f.failed+"/retry", nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/jobs/"+f.failed+"?flash=retried" {
		t.Fatalf("retry: got %d to %q, want 303 to the job page", resp.StatusCode, resp.Header.Get("Location"))
	}
	if info, _ := f.e.Status(ctx, f.failed); info.State != engine.StateQueued {
		t.Errorf("after retry: got state %q, want queued", info.State)
	}
	_, body := get(t, http.DefaultClient, f.srv.URL+"/jobs/"+f.failed+"?flash=retried")
	contains(t, body, `<p class="flash" role="status">Job requeued`)

	// A retry of a completed job is a conflict, shown as such.
	if resp := post(t, f.srv.URL+"/jobs/"+f.completed+"/retry", nil); resp.StatusCode != http.StatusConflict {
		t.Errorf("retry of a completed job: got %d, want 409", resp.StatusCode)
	}

	resp = post(t, f.srv.URL+"/jobs/"+f.queued+"/cancel", url.Values{"next": {"/jobs?state=queued"}})
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || loc != "/jobs?flash=canceled&state=queued" {
		t.Errorf("cancel: got %d to %q, want 303 to the list it came from", resp.StatusCode, loc)
	}
	if info, _ := f.e.Status(ctx, f.queued); info.State != engine.StateCanceled {
		t.Errorf("after cancel: got state %q, want canceled", info.State)
	}

	// A next page outside the dashboard is ignored.
	resp = post(t, f.srv.URL+"/queues/ai/pause", url.Values{"next": {"//evil.example/"}})
	if loc := resp.Header.Get("Location"); loc != "/?flash=paused" {
		t.Errorf("pause: redirected to %q, want /?flash=paused", loc)
	}
	_, body = get(t, http.DefaultClient, f.srv.URL+"/")
	contains(t, body, `<span class="badge paused">paused</span>`, `data-action="resume" data-queue="ai"`)
	post(t, f.srv.URL+"/queues/ai/resume", nil)
	if qs, _ := f.e.Stats(ctx); qs[0].Queue != "ai" || qs[0].Paused {
		t.Errorf("after resume: got %+v, want ai not paused", qs[0])
	}
}

// Cross-site posts are refused, whichever header gives them away.
func TestCrossSiteActionsAreRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{})
	for name, hdr := range map[string][]string{
		"sec-fetch-site": {"Sec-Fetch-Site", "cross-site"},
		"origin":         {"Sec-Fetch-Site", "", "Origin", "https://evil.example"},
	} {
		resp := post(t, f.srv.URL+"/jobs/"+f.failed+"/retry", nil, hdr...)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: got status %d, want 403", name, resp.StatusCode)
		}
	}
	if info, _ := f.e.Status(context.Background(), f.failed); info.State != engine.StateFailed {
		t.Errorf("after refused retries: got state %q, want failed", info.State)
	}
}

func TestTokenGuardsEverything(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{Token: "s3cret"})
	for _, path := range []string{"/", "/jobs", "/jobs/" + f.failed, "/static/style.css"} {
		status, body := get(t, http.DefaultClient, f.srv.URL+path)
		if status != http.StatusUnauthorized || !strings.Contains(body, `name="token"`) {
			t.Errorf("GET %s without token: got %d, want 401 with a sign-in form", path, status)
		}
	}
	if resp := post(t, f.srv.URL+"/queues/ai/pause", nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("POST without token: got %d, want 401", resp.StatusCode)
	}
	if status, _ := get(t, http.DefaultClient, f.srv.URL+"/", "Authorization", "Bearer wrong"); status != http.StatusUnauthorized {
		t.Errorf("wrong bearer token: got %d, want 401", status)
	}
	if status, _ := get(t, http.DefaultClient, f.srv.URL+"/", "Authorization", "Bearer s3cret"); status != http.StatusOK {
		t.Errorf("bearer token: got %d, want 200", status)
	}

	// The sign-in form sets a cookie that is not the token itself.
	if resp := post(t, f.srv.URL+"/login", url.Values{"token": {"nope"}}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("sign-in with a wrong token: got %d, want 401", resp.StatusCode)
	}
	resp := post(t, f.srv.URL+"/login", url.Values{"token": {"s3cret"}})
	cookies := resp.Cookies()
	if resp.StatusCode != http.StatusSeeOther || len(cookies) != 1 || !cookies[0].HttpOnly || strings.Contains(cookies[0].Value, "s3cret") {
		t.Fatalf("sign-in: got %d with cookies %v, want 303 and one HttpOnly cookie without the token", resp.StatusCode, cookies)
	}
	if status, _ := get(t, http.DefaultClient, f.srv.URL+"/", "Cookie", cookies[0].Name+"="+cookies[0].Value); status != http.StatusOK {
		t.Errorf("with the sign-in cookie: got %d, want 200", status)
	}
}

func TestBasicAuth(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{BasicAuthUser: "ops", BasicAuthPassword: "pw"})
	req, _ := http.NewRequest(http.MethodGet, f.srv.URL+"/", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") {
		t.Errorf("without credentials: got %d %q, want 401 with a Basic challenge", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	req.SetBasicAuth("ops", "pw")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("with credentials: got %d, want 200", resp.StatusCode)
	}
	if _, err := New(f.e, Options{BasicAuthUser: "ops"}); err == nil {
		t.Error("New with a user and no password: got no error")
	}
}

func TestReadOnly(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{ReadOnly: true})
	_, body := get(t, http.DefaultClient, f.srv.URL+"/jobs/"+f.failed)
	if strings.Contains(body, "data-action") {
		t.Error("read-only job page shows actions")
	}
	if resp := post(t, f.srv.URL+"/jobs/"+f.failed+"/retry", nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("read-only retry: got %d, want 403", resp.StatusCode)
	}
}

// Mounted under a prefix, every link and redirect keeps the prefix.
func TestMountedUnderPrefix(t *testing.T) {
	t.Parallel()
	f := newFixture(t, Options{})
	mux := http.NewServeMux()
	mux.Handle("/admin/jobs/", http.StripPrefix("/admin/jobs", f.d))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	_, body := get(t, http.DefaultClient, srv.URL+"/admin/jobs/")
	contains(t, body, `href="/admin/jobs/static/style.css"`, `action="/admin/jobs/queues/ai/pause"`, `href="/admin/jobs/jobs?queue=ai&amp;state=failed"`)
	resp := post(t, srv.URL+"/admin/jobs/jobs/"+f.failed+"/retry", nil)
	if loc := resp.Header.Get("Location"); loc != "/admin/jobs/jobs/"+f.failed+"?flash=retried" {
		t.Errorf("retry redirected to %q, want the job page under the prefix", loc)
	}
	if status, body := get(t, http.DefaultClient, srv.URL+"/admin/jobs/static/app.js"); status != http.StatusOK || !strings.Contains(body, "auto-refresh") {
		t.Errorf("app.js: got %d, want 200 with the script", status)
	}
}

func TestChartLayout(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 10, 30, 0, 0, time.UTC)
	r := newRecorder(10, 10, now.Add(-2*time.Hour))
	r.record(engine.Event{Kind: engine.EventCompleted, JobID: "a", Time: now.Add(-time.Minute)})
	r.record(engine.Event{Kind: engine.EventCompleted, JobID: "b", Time: now.Add(-time.Minute)})
	r.record(engine.Event{Kind: engine.EventFailed, JobID: "c", Time: now})
	r.record(engine.Event{Kind: engine.EventCompleted, JobID: "d", Time: now.Add(-3 * time.Hour)})
	c := newChart(r.throughput(now), r.since)
	if c.Completed != 2 || c.Failed != 1 || c.Partial {
		t.Errorf("got %d completed, %d failed, partial %v; want 2, 1, false", c.Completed, c.Failed, c.Partial)
	}
	if len(c.Bars) != chartMinutes {
		t.Fatalf("got %d bars, want %d", len(c.Bars), chartMinutes)
	}
	last, prev := c.Bars[chartMinutes-1], c.Bars[chartMinutes-2]
	if last.FH <= 0 || last.CH != 0 || prev.CH <= 0 || prev.CH <= last.FH {
		t.Errorf("bars: last %+v, previous %+v; want one failure now and two completions, taller, a minute ago", last, prev)
	}
	for _, tc := range []struct{ in, want int }{{0, 2}, {3, 4}, {5, 10}, {11, 20}, {39, 40}, {41, 100}, {1000, 1000}} {
		if got := niceCeil(tc.in); got != tc.want {
			t.Errorf("niceCeil(%d) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

// The history keeps the first event and the latest ones of each job, and
// forgets the jobs heard of first.
func TestHistoryBounds(t *testing.T) {
	t.Parallel()
	r := newRecorder(3, 2, time.Now())
	for i := range 5 {
		r.record(engine.Event{Kind: engine.EventProgress, JobID: "a", Progress: i})
	}
	evs, dropped := r.history("a")
	if len(evs) != 3 || evs[0].Progress != 0 || evs[2].Progress != 4 || dropped != 2 {
		t.Errorf("got %d events %v, %d dropped; want first, then the two latest, 2 dropped", len(evs), evs, dropped)
	}
	r.record(engine.Event{Kind: engine.EventQueued, JobID: "b"})
	r.record(engine.Event{Kind: engine.EventQueued, JobID: "c"})
	if evs, _ := r.history("a"); evs != nil {
		t.Errorf("job a still has history after two newer jobs: %v", evs)
	}
}
