// Package dashboard is jobrelay's web dashboard: an http.Handler that an
// application mounts on its own mux to watch and steer its jobs. Its
// overview shows every queue with its counts per state, its pause state
// and a chart of completed and failed jobs per minute; job lists per state
// filter by queue and type; a job's page shows its payload, progress,
// result, error and the events heard since the dashboard started. Jobs can
// be retried and canceled, queues paused and resumed.
//
//	d, err := dashboard.New(e, dashboard.Options{Token: os.Getenv("DASHBOARD_TOKEN")})
//	defer d.Close()
//	mux.Handle("/jobs/", http.StripPrefix("/jobs", d))
//
// Everything it serves is embedded in the binary (no CDN), so it works
// offline. Actions are POST forms guarded against cross-site requests by
// net/http.CrossOriginProtection; an optional bearer token or basic auth
// guards every page. The jobrelay command serves it with `jobrelay
// dashboard`, bound to loopback by default.
package dashboard

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"strings"
	"time"

	"github.com/jobrelay/engine"
)

// Defaults of the options.
const (
	// DefaultTitle names the dashboard in its header and page titles.
	DefaultTitle = "jobrelay"
	// DefaultRefresh is how often the overview and job pages refresh
	// themselves in the browser.
	DefaultRefresh = 5 * time.Second
	// DefaultPageSize is how many jobs a list shows per page.
	DefaultPageSize = 50
	// DefaultHistoryEvents is how many events the dashboard keeps per job.
	DefaultHistoryEvents = 100
	// DefaultHistoryJobs is how many jobs the dashboard keeps events for;
	// the jobs heard of first are forgotten first.
	DefaultHistoryJobs = 10_000
)

// Options configures a dashboard. The zero value serves an unguarded
// dashboard with the defaults, which is right only on loopback or behind
// the application's own authentication.
type Options struct {
	// Token, when set, guards every page: a request must carry
	// "Authorization: Bearer <Token>", or the cookie a browser gets by
	// entering the token in the dashboard's sign-in form.
	Token string
	// BasicAuthUser and BasicAuthPassword, when both set, guard every page
	// with HTTP basic auth. With Token set too, either one lets a request in.
	BasicAuthUser     string
	BasicAuthPassword string
	// ReadOnly hides the actions and refuses their requests.
	ReadOnly bool
	// Title names the dashboard. Defaults to DefaultTitle.
	Title string
	// Refresh is how often pages refresh themselves; negative turns it off.
	// Defaults to DefaultRefresh.
	Refresh time.Duration
	// PageSize is how many jobs a list shows. Defaults to DefaultPageSize.
	PageSize int
	// HistoryEvents bounds the events kept per job. Defaults to
	// DefaultHistoryEvents.
	HistoryEvents int
	// HistoryJobs bounds the jobs events are kept for. Defaults to
	// DefaultHistoryJobs.
	HistoryJobs int
}

// static holds the stylesheet and script served under /static/.
//
//go:embed static
var static embed.FS

// Handler serves the dashboard of one engine. Make it with New, mount it
// (under a prefix with http.StripPrefix), and Close it when done.
type Handler struct {
	e      *engine.Engine
	opts   Options
	rec    *recorder
	tmpl   map[string]*template.Template
	root   http.Handler
	remove func()
	// session is the value of the sign-in cookie: an HMAC of the token,
	// so that the cookie never holds the token itself.
	session string
}

// cookieName is the sign-in cookie's name.
const cookieName = "jobrelay_dashboard"

// New builds the dashboard of e and starts listening to e's events for the
// job histories and the chart. It fails when e is closed.
func New(e *engine.Engine, opts Options) (*Handler, error) {
	if e == nil {
		return nil, errors.New("dashboard: nil engine")
	}
	if (opts.BasicAuthUser == "") != (opts.BasicAuthPassword == "") {
		return nil, errors.New("dashboard: basic auth needs both a user and a password")
	}
	if opts.Title == "" {
		opts.Title = DefaultTitle
	}
	if opts.Refresh == 0 {
		opts.Refresh = DefaultRefresh
	}
	if opts.PageSize <= 0 {
		opts.PageSize = DefaultPageSize
	}
	if opts.HistoryEvents <= 0 {
		opts.HistoryEvents = DefaultHistoryEvents
	}
	if opts.HistoryJobs <= 0 {
		opts.HistoryJobs = DefaultHistoryJobs
	}
	tmpl, err := parseTemplates()
	if err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	h := &Handler{e: e, opts: opts, tmpl: tmpl, rec: newRecorder(opts.HistoryEvents, opts.HistoryJobs, time.Now())}
	if opts.Token != "" {
		mac := hmac.New(sha256.New, []byte(opts.Token))
		mac.Write([]byte("jobrelay dashboard session"))
		h.session = hex.EncodeToString(mac.Sum(nil))
	}
	h.remove, err = e.Listen(engine.Listener{OnEvent: h.rec.record})
	if err != nil {
		return nil, fmt.Errorf("dashboard: listen to events: %w", err)
	}

	files, _ := fs.Sub(static, "static")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", h.overview)
	mux.HandleFunc("GET /jobs", h.jobs)
	mux.HandleFunc("GET /jobs/{id}", h.job)
	mux.HandleFunc("POST /jobs/{id}/retry", h.action(h.retry))
	mux.HandleFunc("POST /jobs/{id}/cancel", h.action(h.cancel))
	mux.HandleFunc("POST /queues/{queue}/pause", h.action(h.pause))
	mux.HandleFunc("POST /queues/{queue}/resume", h.action(h.resume))
	mux.HandleFunc("POST /login", h.login)
	mux.HandleFunc("POST /logout", h.logout)
	mux.Handle("GET /static/", http.StripPrefix("/static/", cacheFor(time.Hour, http.FileServerFS(files))))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		h.fail(w, r, http.StatusNotFound, "No such page.")
	})

	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.fail(w, r, http.StatusForbidden, "Cross-site request refused: actions must come from the dashboard's own pages.")
	}))
	h.root = cop.Handler(h.guard(mux))
	return h, nil
}

// Close stops listening to the engine's events. The handler still serves
// pages, without new history.
func (h *Handler) Close() {
	h.remove()
}

// ServeHTTP serves the dashboard.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("X-Frame-Options", "DENY")
	hdr.Set("Referrer-Policy", "same-origin")
	h.root.ServeHTTP(w, r)
}

func cacheFor(d time.Duration, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", fmt.Sprintf("private, max-age=%d", int(d.Seconds())))
		next.ServeHTTP(w, r)
	})
}

// guard lets a request in when no guard is configured or it carries the
// token (header or sign-in cookie) or the basic auth credentials. Others
// get 401: with a sign-in form when a token is configured, with a basic auth
// challenge otherwise.
func (h *Handler) guard(next http.Handler) http.Handler {
	if h.opts.Token == "" && h.opts.BasicAuthUser == "" {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.authorized(r) || (r.Method == http.MethodPost && r.URL.Path == "/login" && h.opts.Token != "") {
			next.ServeHTTP(w, r)
			return
		}
		if h.opts.BasicAuthUser != "" {
			w.Header().Set("WWW-Authenticate", `Basic realm="jobrelay dashboard", charset="UTF-8"`)
		}
		if h.opts.Token != "" {
			w.Header().Set("Cache-Control", "no-store")
			h.render(w, r, http.StatusUnauthorized, "login", &page{Title: "Sign in"})
			return
		}
		http.Error(w, "401 unauthorized", http.StatusUnauthorized)
	})
}

func equal(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

func (h *Handler) authorized(r *http.Request) bool {
	if h.opts.Token != "" {
		if auth := r.Header.Get("Authorization"); len(auth) > 7 && strings.EqualFold(auth[:7], "bearer ") && equal(auth[7:], h.opts.Token) {
			return true
		}
		if c, err := r.Cookie(cookieName); err == nil && equal(c.Value, h.session) {
			return true
		}
	}
	if h.opts.BasicAuthUser != "" {
		if u, p, ok := r.BasicAuth(); ok && equal(u, h.opts.BasicAuthUser) && equal(p, h.opts.BasicAuthPassword) {
			return true
		}
	}
	return false
}

// login sets the sign-in cookie when the form's token is right.
func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	if h.opts.Token == "" {
		http.Redirect(w, r, basePath(r)+"/", http.StatusSeeOther)
		return
	}
	if !equal(r.PostFormValue("token"), h.opts.Token) {
		h.render(w, r, http.StatusUnauthorized, "login", &page{Title: "Sign in", Error: "That token is not right."})
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: h.session, Path: basePath(r) + "/",
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode,
	})
	http.Redirect(w, r, basePath(r)+"/", http.StatusSeeOther)
}

func (h *Handler) logout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: cookieName, Path: basePath(r) + "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, basePath(r)+"/", http.StatusSeeOther)
}

// basePath is the path the dashboard is mounted under, found by comparing
// the request's original URI with the path it was handed (which
// http.StripPrefix shortened), so that links work under any prefix.
func basePath(r *http.Request) string {
	orig := r.RequestURI
	if i := strings.IndexByte(orig, '?'); i >= 0 {
		orig = orig[:i]
	}
	if base, ok := strings.CutSuffix(orig, r.URL.EscapedPath()); ok && !strings.Contains(base, "//") {
		return base
	}
	return ""
}
