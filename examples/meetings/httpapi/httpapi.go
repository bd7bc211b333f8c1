// Package httpapi is the meeting pipeline's web API, the old service's
// routes on net/http:
//
//	POST /meetings/{meeting_id}/process   s3_key as a query parameter or {"s3_key": …}
//	GET  /jobs/{job_id}/status            the job's JobInfo, with its result
//	GET  /jobs/{job_id}/events            the job's events as Server-Sent Events, until it ends
//	GET  /queue/stats                     the queue's statistics, with the old keys
//	GET  /healthz                         200 when the backend answers
//
// Errors are JSON, {"error": "…"}: 400 for bad input, 404 for an unknown
// job, 503 when the backend cannot be reached.
package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/jobrelay/engine"
	"github.com/jobrelay/engine/examples/meetings/pipeline"
)

// MaxBodySize bounds a request body.
const MaxBodySize = 1 << 20

// KeepAlive is how often an event stream with nothing to say sends a
// comment, so that proxies keep it open.
const KeepAlive = 15 * time.Second

// ProcessResponse is the answer to POST /meetings/{meeting_id}/process.
type ProcessResponse struct {
	// JobID is the meeting's transcription job, the workflow's first.
	JobID  string               `json:"job_id"`
	Status string               `json:"status"`
	Jobs   pipeline.MeetingJobs `json:"jobs"`
}

// ProcessRequest is the optional JSON body of POST
// /meetings/{meeting_id}/process. Other fields are ignored, as the old
// service ignored them.
type ProcessRequest struct {
	S3Key string `json:"s3_key"`
}

// ErrorResponse is the body of every error answer.
type ErrorResponse struct {
	Error string `json:"error"`
}

type server struct {
	o   *pipeline.Orchestrator
	log *slog.Logger
}

// New returns the API over o. log may be nil.
func New(o *pipeline.Orchestrator, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &server{o: o, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /meetings/{meeting_id}/process", s.process)
	mux.HandleFunc("GET /jobs/{job_id}/status", s.status)
	mux.HandleFunc("GET /jobs/{job_id}/events", s.events)
	mux.HandleFunc("GET /queue/stats", s.stats)
	mux.HandleFunc("GET /healthz", s.health)
	return mux
}

func (s *server) process(w http.ResponseWriter, r *http.Request) {
	meetingID := r.PathValue("meeting_id")
	if err := pipeline.CheckMeetingID(meetingID); err != nil {
		s.fail(w, http.StatusBadRequest, err)
		return
	}
	s3Key := r.URL.Query().Get("s3_key")
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodySize))
	if err != nil {
		s.fail(w, http.StatusBadRequest, fmt.Errorf("read body: %w", err))
		return
	}
	if len(bytes.TrimSpace(body)) > 0 {
		var req ProcessRequest
		if err := json.Unmarshal(body, &req); err != nil {
			s.fail(w, http.StatusBadRequest, fmt.Errorf("malformed JSON body: %w", err))
			return
		}
		if s3Key == "" {
			s3Key = req.S3Key
		}
	}
	if s3Key == "" {
		s.fail(w, http.StatusBadRequest, errors.New("s3_key is required, as a query parameter or in a JSON body"))
		return
	}
	jobs, err := s.o.ProcessMeeting(r.Context(), meetingID, s3Key)
	switch {
	case errors.Is(err, pipeline.ErrInvalidS3Key) || errors.Is(err, pipeline.ErrInvalidMeetingID) ||
		errors.Is(err, engine.ErrInvalidOption) || errors.Is(err, engine.ErrPayloadTooLarge):
		s.fail(w, http.StatusBadRequest, err)
		return
	case err != nil:
		s.unavailable(w, err)
		return
	}
	s.log.Info("meeting queued", "meeting_id", meetingID, "s3_key", s3Key, "job_id", jobs.Transcription)
	writeJSON(w, http.StatusOK, ProcessResponse{JobID: jobs.Transcription, Status: string(engine.StateQueued), Jobs: jobs})
}

func (s *server) status(w http.ResponseWriter, r *http.Request) {
	info, ok := s.job(w, r)
	if ok {
		writeJSON(w, http.StatusOK, info)
	}
}

// job looks up the request's job, answering 404 or 503 when it cannot.
func (s *server) job(w http.ResponseWriter, r *http.Request) (*engine.JobInfo, bool) {
	id := r.PathValue("job_id")
	info, err := s.o.JobStatus(r.Context(), id)
	switch {
	case errors.Is(err, engine.ErrJobNotFound):
		s.fail(w, http.StatusNotFound, fmt.Errorf("job %s not found", id))
		return nil, false
	case err != nil:
		s.unavailable(w, err)
		return nil, false
	}
	return info, true
}

func (s *server) stats(w http.ResponseWriter, r *http.Request) {
	st, err := s.o.QueueStats(r.Context())
	if err != nil {
		s.unavailable(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *server) health(w http.ResponseWriter, r *http.Request) {
	if _, err := s.o.QueueStats(r.Context()); err != nil {
		s.unavailable(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// events streams a job's events: first an event "status" with its JobInfo,
// then one event per change (queued, active, progress, retrying, …) named by
// its kind, until a completed, failed or canceled event ends the stream.
func (s *server) events(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		s.fail(w, http.StatusInternalServerError, errors.New("streaming is not supported by this connection"))
		return
	}
	id := r.PathValue("job_id")
	// Listen before reading the status, so that no change falls between
	// the two: a change before the status shows in it, one after it comes
	// as an event.
	evs := make(chan engine.Event, 64)
	done := make(chan struct{})
	remove, err := s.o.Engine().Listen(engine.Listener{OnEvent: func(ev engine.Event) {
		if ev.JobID != id {
			return
		}
		select {
		case evs <- ev:
		case <-done:
		}
	}})
	if err != nil {
		s.unavailable(w, err)
		return
	}
	defer func() {
		close(done)
		remove()
	}()
	info, ok := s.job(w, r)
	if !ok {
		return
	}

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if err := writeEvent(w, "status", info); err != nil {
		return
	}
	flusher.Flush()
	if info.State.Terminal() {
		return
	}
	keepAlive := time.NewTicker(KeepAlive)
	defer keepAlive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-keepAlive.C:
			if _, err := io.WriteString(w, ": keep-alive\n\n"); err != nil {
				return
			}
		case ev := <-evs:
			if err := writeEvent(w, string(ev.Kind), ev); err != nil {
				return
			}
			if ev.Kind == engine.EventCompleted || ev.Kind == engine.EventFailed || ev.Kind == engine.EventCanceled {
				flusher.Flush()
				return
			}
		}
		flusher.Flush()
	}
}

func writeEvent(w io.Writer, name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "event: %s\ndata: %s\n\n", name, b)
	return err
}

func (s *server) fail(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, ErrorResponse{Error: err.Error()})
}

// unavailable answers 503: the backend did not answer (Redis is down, the
// engine was closed).
func (s *server) unavailable(w http.ResponseWriter, err error) {
	s.log.Warn("backend unavailable", "err", err)
	s.fail(w, http.StatusServiceUnavailable, fmt.Errorf("job backend unavailable: %w", err))
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}
