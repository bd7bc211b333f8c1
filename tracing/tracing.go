// Package tracing traces jobrelay jobs with OpenTelemetry: Inject records
// the enqueuer's trace context in a job's metadata, and Middleware runs
// every attempt of the job in a span of its own, linked to that context, so
// a trace viewer leads from the request that enqueued a job to each of its
// runs, however late and in whichever process they happen.
//
//	e, _ := engine.New(engine.WithMiddleware(tracing.Middleware(tp)))
//	id, _ := e.Enqueue(ctx, "summarize", args, tracing.Inject(ctx)...)
//
// The context travels in the job's Meta under the W3C Trace Context keys
// (traceparent, tracestate), so it is readable in JobInfo and by handlers.
package tracing

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/jobrelay/engine"
)

// ScopeName is the instrumentation scope of the spans this package starts.
const ScopeName = "github.com/jobrelay/engine/tracing"

// Attribute keys set on every run span, beside the OpenTelemetry messaging
// conventions (messaging.system, messaging.destination.name,
// messaging.message.id).
const (
	AttrJobID   = attribute.Key("jobrelay.job.id")
	AttrJobType = attribute.Key("jobrelay.job.type")
	AttrQueue   = attribute.Key("jobrelay.queue")
	AttrAttempt = attribute.Key("jobrelay.job.attempt")
)

// propagator is W3C Trace Context, whatever the global propagator is: the
// keys in a job's Meta must mean the same in every process that runs it.
var propagator = propagation.TraceContext{}

// Inject returns the Meta options that record the trace context of ctx in a
// job, for Enqueue's options. It returns nil when ctx carries no valid span,
// so it can be passed unconditionally:
//
//	e.Enqueue(ctx, "summarize", args, tracing.Inject(ctx)...)
func Inject(ctx context.Context) []engine.EnqueueOption {
	carrier := propagation.MapCarrier{}
	propagator.Inject(ctx, carrier)
	if len(carrier) == 0 {
		return nil
	}
	opts := make([]engine.EnqueueOption, 0, len(carrier))
	for _, k := range propagator.Fields() {
		if v, ok := carrier[k]; ok {
			opts = append(opts, engine.Meta(k, v))
		}
	}
	return opts
}

// Extract returns the span context that Inject recorded in a job's Meta, or
// an invalid one when there is none; a handler can use it to start spans of
// its own linked to the enqueuer.
func Extract(meta map[string]string) trace.SpanContext {
	if len(meta) == 0 {
		return trace.SpanContext{}
	}
	ctx := propagator.Extract(context.Background(), propagation.MapCarrier(meta))
	return trace.SpanContextFromContext(ctx)
}

// Middleware runs each attempt of a job in a new span named
// "process <type>" of kind consumer, with the job's ID, type, queue and
// attempt as attributes. The span starts a trace of its own and is linked to
// the span that enqueued the job (see Inject), because one enqueue may lead
// to several runs long after its own trace ended. A returned error (or a
// panic, which the engine then records as a failed attempt) is recorded on
// the span and sets its status to error. A nil tp means the global
// TracerProvider.
func Middleware(tp trace.TracerProvider) engine.Middleware {
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	tracer := tp.Tracer(ScopeName)
	return func(next engine.Handler) engine.Handler {
		return engine.HandlerFunc(func(ctx context.Context, job *engine.Job) (err error) {
			opts := []trace.SpanStartOption{
				trace.WithNewRoot(),
				trace.WithSpanKind(trace.SpanKindConsumer),
				trace.WithAttributes(
					AttrJobID.String(job.ID),
					AttrJobType.String(job.Type),
					AttrQueue.String(job.Queue),
					AttrAttempt.Int(job.Attempt),
					attribute.String("messaging.system", "jobrelay"),
					attribute.String("messaging.operation.type", "process"),
					attribute.String("messaging.destination.name", job.Queue),
					attribute.String("messaging.message.id", job.ID),
				),
			}
			if sc := Extract(job.Meta); sc.IsValid() {
				opts = append(opts, trace.WithLinks(trace.Link{SpanContext: sc}))
			}
			ctx, span := tracer.Start(ctx, "process "+job.Type, opts...)
			defer func() {
				if v := recover(); v != nil {
					perr := fmt.Errorf("handler panicked: %v", v)
					span.RecordError(perr, trace.WithStackTrace(true))
					span.SetStatus(codes.Error, perr.Error())
					span.End()
					panic(v)
				}
				if err != nil {
					span.RecordError(err)
					span.SetStatus(codes.Error, err.Error())
				}
				span.End()
			}()
			return next.Handle(ctx, job)
		})
	}
}
