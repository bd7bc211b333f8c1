package tracing_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"github.com/jobrelay/engine"
	"github.com/jobrelay/engine/tracing"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newTraced returns an engine whose handlers run under the tracing
// middleware, and the exporter that receives its spans.
func newTraced(t *testing.T) (*engine.Engine, *tracetest.InMemoryExporter, *sdktrace.TracerProvider) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	e, err := engine.New(engine.WithMemory(), engine.WithMiddleware(tracing.Middleware(tp)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e, exp, tp
}

func attrs(s tracetest.SpanStub) map[attribute.Key]attribute.Value {
	m := make(map[attribute.Key]attribute.Value)
	for _, kv := range s.Attributes {
		m[kv.Key] = kv.Value
	}
	return m
}

// A run is a consumer span linked to the span that enqueued the job, with
// the job's identity as attributes.
func TestRunSpanLinksToEnqueuer(t *testing.T) {
	t.Parallel()
	e, exp, tp := newTraced(t)
	ctx := context.Background()
	e.HandleFunc("summarize", func(ctx context.Context, job *engine.Job) error {
		if !trace.SpanContextFromContext(ctx).IsValid() {
			t.Error("handler context carries no span")
		}
		return nil
	})

	reqCtx, reqSpan := tp.Tracer("test").Start(ctx, "POST /meetings")
	id, err := e.Enqueue(reqCtx, "summarize", map[string]string{"meeting": "m-1"},
		append(tracing.Inject(reqCtx), engine.Queue("ai"))...)
	reqSpan.End()
	if err != nil {
		t.Fatal(err)
	}
	info, err := e.Status(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if info.Meta["traceparent"] == "" {
		t.Fatalf("job meta %v has no traceparent", info.Meta)
	}
	if _, err := e.Drain(ctx); err != nil {
		t.Fatal(err)
	}

	var run *tracetest.SpanStub
	for _, s := range exp.GetSpans() {
		if s.Name == "process summarize" {
			run = &s
		}
	}
	if run == nil {
		t.Fatalf("no span named %q among %d spans", "process summarize", len(exp.GetSpans()))
	}
	if run.SpanKind != trace.SpanKindConsumer {
		t.Errorf("got span kind %v, want consumer", run.SpanKind)
	}
	if len(run.Links) != 1 {
		t.Fatalf("got %d links, want 1", len(run.Links))
	}
	want := reqSpan.SpanContext()
	if got := run.Links[0].SpanContext; got.TraceID() != want.TraceID() || got.SpanID() != want.SpanID() {
		t.Errorf("link points at %s/%s, want the enqueuer's span %s/%s", got.TraceID(), got.SpanID(), want.TraceID(), want.SpanID())
	}
	if run.SpanContext.TraceID() == want.TraceID() {
		t.Error("run span shares the enqueuer's trace; want a trace of its own, linked")
	}
	a := attrs(*run)
	for key, w := range map[attribute.Key]attribute.Value{
		tracing.AttrJobID:   attribute.StringValue(id),
		tracing.AttrJobType: attribute.StringValue("summarize"),
		tracing.AttrQueue:   attribute.StringValue("ai"),
		tracing.AttrAttempt: attribute.IntValue(1),
	} {
		if a[key] != w {
			t.Errorf("attribute %s = %v, want %v", key, a[key].Emit(), w.Emit())
		}
	}
	if run.Status.Code != codes.Unset {
		t.Errorf("got status %v, want unset for a job that completed", run.Status.Code)
	}
}

// Each failed attempt records its error, and each retry is a new span with
// the next attempt number, linked to the same enqueuer.
func TestFailedAttemptsRecordTheirError(t *testing.T) {
	t.Parallel()
	clock := engine.NewFakeClock(time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC))
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(context.Background())
	e, err := engine.New(engine.WithMemory(), engine.WithClock(clock), engine.WithMiddleware(tracing.Middleware(tp)))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx := context.Background()
	e.HandleFunc("notion-sync", func(ctx context.Context, job *engine.Job) error {
		return errors.New("notion: rate limited")
	})
	reqCtx, reqSpan := tp.Tracer("test").Start(ctx, "sync")
	if _, err := e.Enqueue(reqCtx, "notion-sync", nil, append(tracing.Inject(reqCtx), engine.MaxRetries(1))...); err != nil {
		t.Fatal(err)
	}
	reqSpan.End()
	e.Drain(ctx)
	clock.Advance(engine.DefaultRetryPolicy().InitialDelay)
	e.Drain(ctx)

	var attempts []int64
	for _, s := range exp.GetSpans() {
		if s.Name != "process notion-sync" {
			continue
		}
		attempts = append(attempts, attrs(s)[tracing.AttrAttempt].AsInt64())
		if s.Status.Code != codes.Error || s.Status.Description != "notion: rate limited" {
			t.Errorf("got status %v %q, want error %q", s.Status.Code, s.Status.Description, "notion: rate limited")
		}
		if len(s.Events) == 0 || s.Events[0].Name != "exception" {
			t.Errorf("span has no exception event: %v", s.Events)
		}
		if len(s.Links) != 1 || s.Links[0].SpanContext.SpanID() != reqSpan.SpanContext().SpanID() {
			t.Errorf("span links %v, want one to the enqueuer", s.Links)
		}
	}
	if len(attempts) != 2 || attempts[0] != 1 || attempts[1] != 2 {
		t.Errorf("got spans for attempts %v, want [1 2]", attempts)
	}
}

// A job enqueued without a span still runs in a span, with no link.
func TestRunWithoutEnqueuerContext(t *testing.T) {
	t.Parallel()
	e, exp, _ := newTraced(t)
	ctx := context.Background()
	e.HandleFunc("ping", func(context.Context, *engine.Job) error { return nil })
	if opts := tracing.Inject(ctx); opts != nil {
		t.Fatalf("Inject of a context without a span gave %d options, want none", len(opts))
	}
	if _, err := e.Enqueue(ctx, "ping", nil, tracing.Inject(ctx)...); err != nil {
		t.Fatal(err)
	}
	e.Drain(ctx)
	spans := exp.GetSpans()
	if len(spans) != 1 || len(spans[0].Links) != 0 {
		t.Fatalf("got %d spans (links %v), want one span without links", len(spans), spans)
	}
}

// A panic is recorded on the span before the engine turns it into a failed
// attempt.
func TestPanicIsRecorded(t *testing.T) {
	t.Parallel()
	e, exp, _ := newTraced(t)
	ctx := context.Background()
	e.HandleFunc("boom", func(context.Context, *engine.Job) error { panic("out of tokens") })
	id, _ := e.Enqueue(ctx, "boom", nil, engine.MaxRetries(0))
	e.Drain(ctx)
	info, _ := e.Status(ctx, id)
	if info.State != engine.StateFailed {
		t.Fatalf("got state %q, want failed", info.State)
	}
	spans := exp.GetSpans()
	if len(spans) != 1 || spans[0].Status.Code != codes.Error {
		t.Fatalf("got spans %v, want one with status error", spans)
	}
}

func TestExtract(t *testing.T) {
	t.Parallel()
	meta := map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
	sc := tracing.Extract(meta)
	if !sc.IsValid() || sc.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("Extract(%v) = %v, want the trace 4bf92f35…", meta, sc)
	}
	if tracing.Extract(nil).IsValid() {
		t.Error("Extract(nil) is valid, want invalid")
	}
}
