// Package metrics exports a jobrelay backend's jobs to Prometheus: how many
// jobs ended and how (by queue, type and outcome), how long they ran and
// how long they waited in their queue, and on each scrape the depth of every
// queue per state, its pause state and the live workers.
//
//	m, err := metrics.New(e, prometheus.DefaultRegisterer, metrics.Options{})
//	defer m.Close()
//	http.Handle("/metrics", promhttp.Handler())
//
// The counters and histograms come from the events the engine hears, and an
// engine hears the events of every process that shares its backend. So the
// numbers describe the backend's jobs, not this process's: mount metrics in
// one process per backend (or aggregate with max, not sum, across
// processes). The package keeps Prometheus out of the engine's own
// dependencies.
package metrics

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jobrelay/engine"
)

// DefaultNamespace prefixes every metric name.
const DefaultNamespace = "jobrelay"

// DefaultMaxTracked bounds how many jobs the package remembers a start or
// ready time for, so that memory stays bounded when events are missed.
const DefaultMaxTracked = 100_000

// DefaultScrapeTimeout bounds the Stats and Workers calls of one scrape.
const DefaultScrapeTimeout = 5 * time.Second

// DefaultRunBuckets are the buckets, in seconds, of the run time histogram:
// from a quick call to the two hours of a long transcription.
var DefaultRunBuckets = []float64{0.01, 0.05, 0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200}

// DefaultWaitBuckets are the buckets, in seconds, of the time a job waits
// in its queue before a worker takes it.
var DefaultWaitBuckets = []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600}

// Outcomes, the values of the outcome label of jobs_total and
// job_run_seconds.
const (
	OutcomeCompleted = "completed" // the attempt succeeded
	OutcomeRetried   = "retried"   // the attempt failed and the job will run again
	OutcomeFailed    = "failed"    // the job failed for good
	OutcomeCanceled  = "canceled"  // the job was canceled
	OutcomeStalled   = "stalled"   // the worker's lease expired; the job went back to its queue
)

// Options configures the metrics. The zero value is ready to use.
type Options struct {
	// Namespace prefixes every metric name. Defaults to DefaultNamespace.
	Namespace string
	// ConstLabels are added to every metric (an app name, say).
	ConstLabels prometheus.Labels
	// RunBuckets are the buckets of job_run_seconds. Defaults to
	// DefaultRunBuckets.
	RunBuckets []float64
	// WaitBuckets are the buckets of job_wait_seconds. Defaults to
	// DefaultWaitBuckets.
	WaitBuckets []float64
	// MaxTracked bounds the jobs whose start or ready time is remembered.
	// Defaults to DefaultMaxTracked.
	MaxTracked int
	// ScrapeTimeout bounds the backend calls of one scrape. Defaults to
	// DefaultScrapeTimeout.
	ScrapeTimeout time.Duration
}

// Metrics holds the registered metrics of one engine. Close it to stop
// listening and unregister them.
type Metrics struct {
	reg      prometheus.Registerer
	jobs     *prometheus.CounterVec
	run      *prometheus.HistogramVec
	wait     *prometheus.HistogramVec
	queues   *queueCollector
	maxTrack int
	remove   func()
	hook     func(engine.Event) // tests: called after each event is counted

	mu      sync.Mutex
	ready   map[string]time.Time // job ID → when it became queued
	started map[string]time.Time // job ID → when its current attempt started
}

// New registers the metrics of e with reg and starts counting the events e
// hears. It fails when a metric of the same name is registered already.
func New(e *engine.Engine, reg prometheus.Registerer, opts Options) (*Metrics, error) {
	return newMetrics(e, reg, opts, nil)
}

func newMetrics(e *engine.Engine, reg prometheus.Registerer, opts Options, hook func(engine.Event)) (*Metrics, error) {
	if e == nil || reg == nil {
		return nil, fmt.Errorf("metrics: New needs an engine and a registerer")
	}
	if opts.Namespace == "" {
		opts.Namespace = DefaultNamespace
	}
	if opts.RunBuckets == nil {
		opts.RunBuckets = DefaultRunBuckets
	}
	if opts.WaitBuckets == nil {
		opts.WaitBuckets = DefaultWaitBuckets
	}
	if opts.MaxTracked <= 0 {
		opts.MaxTracked = DefaultMaxTracked
	}
	if opts.ScrapeTimeout <= 0 {
		opts.ScrapeTimeout = DefaultScrapeTimeout
	}
	m := &Metrics{
		reg:      reg,
		maxTrack: opts.MaxTracked,
		hook:     hook,
		ready:    make(map[string]time.Time),
		started:  make(map[string]time.Time),
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: opts.Namespace, Name: "jobs_total", ConstLabels: opts.ConstLabels,
			Help: "Job attempts that ended, by queue, type and outcome (completed, retried, failed, canceled, stalled).",
		}, []string{"queue", "type", "outcome"}),
		run: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: opts.Namespace, Name: "job_run_seconds", ConstLabels: opts.ConstLabels, Buckets: opts.RunBuckets,
			Help: "How long attempts ran, from lease to outcome, by queue, type and outcome.",
		}, []string{"queue", "type", "outcome"}),
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: opts.Namespace, Name: "job_wait_seconds", ConstLabels: opts.ConstLabels, Buckets: opts.WaitBuckets,
			Help: "How long jobs waited in their queue, from becoming due to being taken by a worker.",
		}, []string{"queue", "type"}),
		queues: newQueueCollector(e, opts),
	}
	var done []prometheus.Collector
	for _, c := range []prometheus.Collector{m.jobs, m.run, m.wait, m.queues} {
		if err := reg.Register(c); err != nil {
			for _, d := range done {
				reg.Unregister(d)
			}
			return nil, fmt.Errorf("metrics: register: %w", err)
		}
		done = append(done, c)
	}
	remove, err := e.Listen(engine.Listener{OnEvent: m.observe})
	if err != nil {
		for _, d := range done {
			reg.Unregister(d)
		}
		return nil, fmt.Errorf("metrics: listen to events: %w", err)
	}
	m.remove = remove
	return m, nil
}

// Close stops counting events and unregisters the metrics.
func (m *Metrics) Close() {
	m.remove()
	for _, c := range []prometheus.Collector{m.jobs, m.run, m.wait, m.queues} {
		m.reg.Unregister(c)
	}
}

// observe counts one event. Run times are measured from the active event to
// the outcome's, wait times from the event that made the job queued (enqueue,
// promotion of a scheduled or retrying job, requeue) to the active event;
// jobs whose earlier event came before New are not measured.
func (m *Metrics) observe(ev engine.Event) {
	if ev.JobID == "" {
		return
	}
	m.mu.Lock()
	switch ev.Kind {
	case engine.EventQueued:
		delete(m.started, ev.JobID)
		if ev.State == engine.StateQueued {
			m.track(m.ready, ev.JobID, ev.Time)
		}
	case engine.EventActive:
		if t, ok := m.ready[ev.JobID]; ok {
			delete(m.ready, ev.JobID)
			m.wait.WithLabelValues(ev.Queue, ev.Type).Observe(seconds(ev.Time.Sub(t)))
		}
		m.track(m.started, ev.JobID, ev.Time)
	case engine.EventCompleted:
		m.end(ev, OutcomeCompleted)
	case engine.EventRetrying:
		m.end(ev, OutcomeRetried)
	case engine.EventFailed:
		m.end(ev, OutcomeFailed)
	case engine.EventCanceled:
		m.end(ev, OutcomeCanceled)
		delete(m.ready, ev.JobID)
	case engine.EventStalled:
		m.end(ev, OutcomeStalled)
	}
	m.mu.Unlock()
	if m.hook != nil {
		m.hook(ev)
	}
}

// end counts an outcome, and the run time of an attempt whose start was
// heard. A job that failed past its stall limit was counted as stalled and
// has no start left, so its failure adds no second run time.
func (m *Metrics) end(ev engine.Event, outcome string) {
	m.jobs.WithLabelValues(ev.Queue, ev.Type, outcome).Inc()
	if t, ok := m.started[ev.JobID]; ok {
		delete(m.started, ev.JobID)
		m.run.WithLabelValues(ev.Queue, ev.Type, outcome).Observe(seconds(ev.Time.Sub(t)))
	}
}

// track remembers t for job id, first forgetting arbitrary entries when the
// map is full: those are jobs whose later events were missed or will come
// long after.
func (m *Metrics) track(into map[string]time.Time, id string, t time.Time) {
	if len(into) >= m.maxTrack {
		n := len(into) / 10
		for k := range into {
			if n <= 0 {
				break
			}
			delete(into, k)
			n--
		}
	}
	into[id] = t
}

func seconds(d time.Duration) float64 { return max(d, 0).Seconds() }

// queueCollector reads the queues and workers from the backend on every
// scrape, so that the gauges are never stale.
type queueCollector struct {
	e       *engine.Engine
	timeout time.Duration

	jobs, paused, queueWorkers, workers, processed, failedAttempts *prometheus.Desc
}

func newQueueCollector(e *engine.Engine, opts Options) *queueCollector {
	name := func(n string) string { return prometheus.BuildFQName(opts.Namespace, "", n) }
	return &queueCollector{
		e:       e,
		timeout: opts.ScrapeTimeout,
		jobs: prometheus.NewDesc(name("queue_jobs"),
			"Jobs in each queue by state, now.", []string{"queue", "state"}, opts.ConstLabels),
		paused: prometheus.NewDesc(name("queue_paused"),
			"1 when the queue is paused, 0 otherwise.", []string{"queue"}, opts.ConstLabels),
		queueWorkers: prometheus.NewDesc(name("queue_workers"),
			"Live engines that work the queue.", []string{"queue"}, opts.ConstLabels),
		workers: prometheus.NewDesc(name("workers"),
			"Live engines (processes running Engine.Run) on the backend.", nil, opts.ConstLabels),
		processed: prometheus.NewDesc(name("queue_processed_total"),
			"Attempts that completed since the queue was first used, as the backend counts them.", []string{"queue"}, opts.ConstLabels),
		failedAttempts: prometheus.NewDesc(name("queue_failed_attempts_total"),
			"Attempts that failed (retried or not) since the queue was first used, as the backend counts them.", []string{"queue"}, opts.ConstLabels),
	}
}

// Describe sends the descriptions of the queue gauges.
func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.jobs, c.paused, c.queueWorkers, c.workers, c.processed, c.failedAttempts} {
		ch <- d
	}
}

// Collect reads Stats and Workers; a backend error fails the scrape rather
// than reporting zeros.
func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	stats, err := c.e.Stats(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.jobs, err)
		return
	}
	workers, err := c.e.Workers(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.workers, err)
		return
	}
	for _, s := range stats {
		for state, n := range map[engine.State]int{
			engine.StateQueued: s.Queued, engine.StateScheduled: s.Scheduled,
			engine.StateDeferred: s.Deferred, engine.StateActive: s.Active,
			engine.StateRetrying: s.Retrying, engine.StateCompleted: s.Completed,
			engine.StateFailed: s.Failed, engine.StateCanceled: s.Canceled,
		} {
			ch <- prometheus.MustNewConstMetric(c.jobs, prometheus.GaugeValue, float64(n), s.Queue, string(state))
		}
		paused := 0.0
		if s.Paused {
			paused = 1
		}
		ch <- prometheus.MustNewConstMetric(c.paused, prometheus.GaugeValue, paused, s.Queue)
		ch <- prometheus.MustNewConstMetric(c.queueWorkers, prometheus.GaugeValue, float64(s.Workers), s.Queue)
		ch <- prometheus.MustNewConstMetric(c.processed, prometheus.CounterValue, float64(s.Processed), s.Queue)
		ch <- prometheus.MustNewConstMetric(c.failedAttempts, prometheus.CounterValue, float64(s.FailedTotal), s.Queue)
	}
	ch <- prometheus.MustNewConstMetric(c.workers, prometheus.GaugeValue, float64(len(workers)))
}
