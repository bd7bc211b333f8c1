package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
)

// Handler runs jobs of one type. It is a one-method interface, as in
// net/http, so that middleware can wrap any handler.
type Handler interface {
	Handle(ctx context.Context, job *Job) error
}

// HandlerFunc adapts a plain function to Handler.
type HandlerFunc func(ctx context.Context, job *Job) error

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, job *Job) error { return f(ctx, job) }

// Middleware wraps a Handler, for logging, tracing or metrics around every
// run. Register it with WithMiddleware.
type Middleware func(next Handler) Handler

type handlerEntry struct {
	handler  Handler
	defaults []EnqueueOption
}

// Handle registers h for jobs of type typ, replacing an earlier handler of
// that type. Options such as Timeout and MaxRetries become the defaults of
// jobs of this type enqueued through this engine.
func (e *Engine) Handle(typ string, h Handler, opts ...HandlerOption) error {
	if typ == "" {
		return fmt.Errorf("register handler: %w", ErrEmptyType)
	}
	if h == nil {
		return fmt.Errorf("register handler for %q: %w: nil handler", typ, ErrInvalidOption)
	}
	var hc handlerConfig
	for _, o := range opts {
		o.applyHandler(&hc)
	}
	var probe jobConfig
	for _, o := range hc.defaults {
		o.applyEnqueue(&probe)
	}
	if len(probe.errs) > 0 {
		return fmt.Errorf("register handler for %q: %w", typ, probe.errs[0])
	}
	for i := len(e.cfg.middleware) - 1; i >= 0; i-- {
		h = e.cfg.middleware[i](h)
	}
	e.mu.Lock()
	handlers := make(map[string]*handlerEntry)
	if old := e.handlers.Load(); old != nil {
		maps.Copy(handlers, *old)
	}
	handlers[typ] = &handlerEntry{handler: h, defaults: hc.defaults}
	e.handlers.Store(&handlers)
	e.mu.Unlock()
	return nil
}

// handler returns the handler registered for typ, or nil.
func (e *Engine) handler(typ string) *handlerEntry {
	if m := e.handlers.Load(); m != nil {
		return (*m)[typ]
	}
	return nil
}

// HandleFunc registers a function for jobs of type typ; see Handle.
func (e *Engine) HandleFunc(typ string, f func(ctx context.Context, job *Job) error, opts ...HandlerOption) error {
	if f == nil {
		return fmt.Errorf("register handler for %q: %w: nil function", typ, ErrInvalidOption)
	}
	return e.Handle(typ, HandlerFunc(f), opts...)
}

var bytesType = reflect.TypeFor[[]byte]()

// Handle registers a typed handler for jobs of type typ: the payload is
// decoded from JSON into In (or given as is when In is []byte), and the
// result is encoded to JSON and kept with the job, for Status, Wait and
// Result. A payload that does not decode fails the job at once, without
// retries, with an error naming the type.
func Handle[In, Out any](e *Engine, typ string, fn func(ctx context.Context, job *Job, in In) (Out, error), opts ...HandlerOption) error {
	if fn == nil {
		return fmt.Errorf("register handler for %q: %w: nil function", typ, ErrInvalidOption)
	}
	rawIn := reflect.TypeFor[In]() == bytesType
	return e.Handle(typ, HandlerFunc(func(ctx context.Context, job *Job) error {
		var in In
		if rawIn {
			reflect.ValueOf(&in).Elem().SetBytes(job.Payload)
		} else if len(job.Payload) > 0 {
			if err := json.Unmarshal(job.Payload, &in); err != nil {
				return SkipRetry(fmt.Errorf("decode payload of job type %q into %T: %w", typ, in, err))
			}
		}
		out, err := fn(ctx, job, in)
		if err != nil {
			return err
		}
		b, err := json.Marshal(out)
		if err != nil {
			return SkipRetry(fmt.Errorf("encode result of job type %q: %w", typ, err))
		}
		job.SetResult(b)
		return nil
	}), opts...)
}

// SetResult keeps b (which should be JSON) as the job's result when the
// handler returns nil. Typed handlers registered with Handle set it
// themselves; a Handler or HandlerFunc calls it to return a result.
func (j *Job) SetResult(b []byte) {
	if j.run != nil {
		j.run.result = b
	}
}
