package dashboard

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jobrelay/engine"
)

//go:embed templates
var templateFiles embed.FS

// pageNames are the templates that render a whole page inside the layout.
var pageNames = []string{"overview", "jobs", "job", "error", "login"}

// states is the order states appear in: live ones as a job passes through
// them, then the terminal ones.
var states = []engine.State{
	engine.StateQueued, engine.StateScheduled, engine.StateDeferred, engine.StateActive,
	engine.StateRetrying, engine.StateCompleted, engine.StateFailed, engine.StateCanceled,
}

// flashes are the messages an action's redirect can ask for; the query
// carries only their key, so nobody can make the page say something else.
var flashes = map[string]string{
	"retried":          "Job requeued: it runs again from a clean slate.",
	"canceled":         "Job canceled.",
	"cancel-requested": "Cancel requested: the worker stops the job and it ends canceled.",
	"paused":           "Queue paused: running jobs finish, no new ones start.",
	"resumed":          "Queue resumed.",
}

var funcs = template.FuncMap{
	"ts": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	},
	"ago": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return ago(time.Since(t))
	},
	"count": count,
	"short": func(n int, s string) string {
		s = strings.TrimSpace(s)
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			s = s[:i] + " …"
		}
		if r := []rune(s); len(r) > n {
			return string(r[:n-1]) + "…"
		}
		return s
	},
	"pathEsc": url.PathEscape,
	// query encodes pairs of keys and values (skipping empty values) as a
	// URL query; its result is safe to put after "?" in an href.
	"query": func(kv ...string) template.URL {
		v := url.Values{}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] != "" {
				v.Set(kv[i], kv[i+1])
			}
		}
		return template.URL(v.Encode())
	},
	"str":      func(s engine.State) string { return string(s) },
	"live":     func(s engine.State) bool { return !s.Terminal() },
	"retrying": func(s engine.State) bool { return s == engine.StateFailed || s == engine.StateCanceled },
	"inc":      func(n int) int { return n + 1 },
	"f1":       func(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) },
}

func parseTemplates() (map[string]*template.Template, error) {
	out := make(map[string]*template.Template, len(pageNames))
	for _, name := range pageNames {
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFiles, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("parse template %s: %w", name, err)
		}
		out[name] = t
	}
	return out, nil
}

// ago says how long ago (or, for a time ahead, how soon) something was.
func ago(d time.Duration) string {
	if d < 0 {
		return "in " + span(-d)
	}
	return span(d) + " ago"
}

func span(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func count(s engine.QueueStats, st engine.State) int {
	switch st {
	case engine.StateQueued:
		return s.Queued
	case engine.StateScheduled:
		return s.Scheduled
	case engine.StateDeferred:
		return s.Deferred
	case engine.StateActive:
		return s.Active
	case engine.StateRetrying:
		return s.Retrying
	case engine.StateCompleted:
		return s.Completed
	case engine.StateFailed:
		return s.Failed
	case engine.StateCanceled:
		return s.Canceled
	}
	return 0
}

// page is what every template gets; Data is the page's own.
type page struct {
	Title    string
	Brand    string
	Base     string
	Nav      string
	Refresh  int64 // milliseconds; 0 is off
	ReadOnly bool
	SignOut  bool
	Flash    string
	Error    string
	Data     any
}

func (h *Handler) render(w http.ResponseWriter, r *http.Request, status int, name string, p *page) {
	p.Brand = h.opts.Title
	p.Base = basePath(r)
	p.ReadOnly = h.opts.ReadOnly
	p.SignOut = h.opts.Token != "" && h.authorized(r)
	if p.Flash == "" {
		p.Flash = flashes[r.URL.Query().Get("flash")]
	}
	var buf bytes.Buffer
	if err := h.tmpl[name].ExecuteTemplate(&buf, "layout", p); err != nil {
		http.Error(w, "dashboard: render "+name+": "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// fail renders an error page.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	h.render(w, r, status, "error", &page{Title: http.StatusText(status), Error: msg})
}

// failErr renders an engine error with the status that fits it.
func (h *Handler) failErr(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, engine.ErrJobNotFound):
		status = http.StatusNotFound
	case errors.Is(err, engine.ErrInvalidState):
		status = http.StatusConflict
	case errors.Is(err, engine.ErrInvalidOption):
		status = http.StatusBadRequest
	}
	h.fail(w, r, status, err.Error())
}

func (h *Handler) refresh() int64 {
	if h.opts.Refresh < 0 {
		return 0
	}
	return h.opts.Refresh.Milliseconds()
}

type overviewData struct {
	States  []engine.State
	Queues  []engine.QueueStats
	Totals  engine.QueueStats
	Workers []engine.WorkerInfo
	Chart   chart
}

func (h *Handler) overview(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	qs, err := h.e.Stats(ctx)
	if err != nil {
		h.failErr(w, r, err)
		return
	}
	ws, err := h.e.Workers(ctx)
	if err != nil {
		h.failErr(w, r, err)
		return
	}
	d := &overviewData{States: states, Queues: qs, Workers: ws, Totals: totals(qs)}
	d.Chart = newChart(h.rec.throughput(time.Now()), h.rec.since)
	h.render(w, r, http.StatusOK, "overview", &page{Title: "Overview", Nav: "overview", Refresh: h.refresh(), Data: d})
}

func totals(qs []engine.QueueStats) engine.QueueStats {
	var t engine.QueueStats
	for _, q := range qs {
		t.Queued += q.Queued
		t.Scheduled += q.Scheduled
		t.Deferred += q.Deferred
		t.Active += q.Active
		t.Retrying += q.Retrying
		t.Completed += q.Completed
		t.Failed += q.Failed
		t.Canceled += q.Canceled
		t.Processed += q.Processed
		t.FailedTotal += q.FailedTotal
	}
	return t
}

type stateTab struct {
	State  engine.State
	Count  int
	Active bool
}

type jobsData struct {
	Filter engine.JobFilter
	Queues []string
	Tabs   []stateTab
	All    int
	Jobs   []*engine.JobInfo
	Next   string
}

func (h *Handler) jobs(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	f := engine.JobFilter{
		Queue:  q.Get("queue"),
		State:  engine.State(q.Get("state")),
		Type:   strings.TrimSpace(q.Get("type")),
		Cursor: q.Get("cursor"),
		Limit:  h.opts.PageSize,
	}
	if f.State != "" && !f.State.Valid() {
		h.fail(w, r, http.StatusBadRequest, fmt.Sprintf("Unknown state %q.", f.State))
		return
	}
	qs, err := h.e.Stats(ctx)
	if err != nil {
		h.failErr(w, r, err)
		return
	}
	p, err := h.e.Jobs(ctx, f)
	if err != nil {
		h.failErr(w, r, err)
		return
	}
	d := &jobsData{Filter: f, Jobs: p.Jobs, Next: p.Next}
	var counted engine.QueueStats
	for _, s := range qs {
		d.Queues = append(d.Queues, s.Queue)
		if f.Queue == "" || f.Queue == s.Queue {
			counted = totals([]engine.QueueStats{counted, s})
		}
	}
	for _, s := range states {
		n := count(counted, s)
		d.Tabs = append(d.Tabs, stateTab{State: s, Count: n, Active: s == f.State})
		d.All += n
	}
	title := "Jobs"
	if f.State != "" {
		title = strings.ToUpper(string(f.State[:1])) + string(f.State[1:]) + " jobs"
	}
	h.render(w, r, http.StatusOK, "jobs", &page{Title: title, Nav: "jobs", Data: d})
}

type jobData struct {
	Job       *engine.JobInfo
	Payload   string
	Result    string
	Meta      []metaEntry
	History   []engine.Event
	Dropped   int
	Since     time.Time
	CanRetry  bool
	CanCancel bool
}

type metaEntry struct{ Key, Value string }

func (h *Handler) job(w http.ResponseWriter, r *http.Request) {
	info, err := h.e.Status(r.Context(), r.PathValue("id"))
	if err != nil {
		h.failErr(w, r, err)
		return
	}
	d := &jobData{
		Job:       info,
		Payload:   pretty(info.Payload),
		Result:    pretty(info.Result),
		Since:     h.rec.since,
		CanRetry:  info.State == engine.StateFailed || info.State == engine.StateCanceled,
		CanCancel: !info.State.Terminal(),
	}
	for _, k := range slices.Sorted(mapKeys(info.Meta)) {
		d.Meta = append(d.Meta, metaEntry{k, info.Meta[k]})
	}
	d.History, d.Dropped = h.rec.history(info.ID)
	h.render(w, r, http.StatusOK, "job", &page{Title: "Job " + info.ID, Nav: "jobs", Refresh: h.refresh(), Data: d})
}

func mapKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// pretty indents JSON for reading, and shows anything else as it is.
func pretty(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	var out bytes.Buffer
	if json.Valid(b) && json.Indent(&out, b, "", "  ") == nil {
		return out.String()
	}
	return string(b)
}

// action wraps an action: refused when read-only, then done, then a 303 to
// the form's next page (or the default the action gives) with a flash.
func (h *Handler) action(do func(r *http.Request) (flash, next string, err error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if h.opts.ReadOnly {
			h.fail(w, r, http.StatusForbidden, "This dashboard is read-only.")
			return
		}
		flash, next, err := do(r)
		if err != nil {
			h.failErr(w, r, err)
			return
		}
		if n := r.PostFormValue("next"); localPath(n) {
			next = n
		}
		u, _ := url.Parse(next)
		q := u.Query()
		q.Set("flash", flash)
		u.RawQuery = q.Encode()
		http.Redirect(w, r, basePath(r)+u.String(), http.StatusSeeOther)
	}
}

// localPath accepts only a path inside the dashboard, so that a form
// cannot send the browser elsewhere.
func localPath(p string) bool {
	return strings.HasPrefix(p, "/") && !strings.HasPrefix(p, "//") && !strings.ContainsAny(p, "\\\r\n")
}

func (h *Handler) retry(r *http.Request) (string, string, error) {
	id := r.PathValue("id")
	return "retried", "/jobs/" + url.PathEscape(id), h.e.Requeue(r.Context(), id)
}

func (h *Handler) cancel(r *http.Request) (string, string, error) {
	id := r.PathValue("id")
	next := "/jobs/" + url.PathEscape(id)
	if err := h.e.Cancel(r.Context(), id); err != nil {
		return "", "", err
	}
	if info, err := h.e.Status(r.Context(), id); err == nil && info.State == engine.StateActive {
		return "cancel-requested", next, nil
	}
	return "canceled", next, nil
}

func (h *Handler) pause(r *http.Request) (string, string, error) {
	return "paused", "/", h.e.Pause(r.Context(), r.PathValue("queue"))
}

func (h *Handler) resume(r *http.Request) (string, string, error) {
	return "resumed", "/", h.e.Resume(r.Context(), r.PathValue("queue"))
}
