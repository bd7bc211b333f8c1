package engine

import (
	"log/slog"
	"time"

	"github.com/jobrelay/engine/backend"
	"github.com/jobrelay/engine/backend/memory"
)

// Defaults of the engine-level options.
const (
	// DefaultConcurrency is the number of jobs one engine runs at once.
	DefaultConcurrency = 10
	// DefaultQueue is the queue a job goes to without the Queue option, and
	// the queue an engine works without WithQueues.
	DefaultQueue = "default"
	// DefaultLease is how long a worker's claim on a running job lasts
	// without a heartbeat; heartbeats come every third of it.
	DefaultLease = 30 * time.Second
	// DefaultShutdownTimeout is how long Run waits for running jobs after
	// its context is cancelled before it hands them back to the queue.
	DefaultShutdownTimeout = 25 * time.Second
	// DefaultMaxStalls is how many expired leases a job survives before it
	// fails, so that a job that kills its process cannot loop forever.
	DefaultMaxStalls = 3
	// DefaultMaxPayloadSize is the largest encoded payload Enqueue accepts.
	DefaultMaxPayloadSize = 4 << 20
	// DefaultPollInterval bounds how long a due scheduled or retrying job
	// waits to be promoted when it was enqueued by another process.
	DefaultPollInterval = time.Second
	// DefaultSweepInterval is how often an engine deletes expired jobs.
	DefaultSweepInterval = time.Minute
)

// Defaults of the per-job options.
const (
	// DefaultTimeout is how long one attempt of a job may run.
	DefaultTimeout = time.Hour
	// DefaultResultTTL is how long a completed job and its result are kept.
	DefaultResultTTL = 24 * time.Hour
	// DefaultFailureTTL is how long a failed or canceled job is kept.
	DefaultFailureTTL = 7 * 24 * time.Hour
)

// Option configures an Engine in New.
type Option func(*config)

type config struct {
	backend         backend.Backend
	openBackend     func(*config) (backend.Backend, error) // opened in New, owned by the engine
	concurrency     int
	queues          []string
	lease           time.Duration
	shutdownTimeout time.Duration
	retry           RetryPolicy
	logger          *slog.Logger
	workerName      string
	listeners       []Listener
	middleware      []Middleware
	clock           Clock
	maxPayload      int
	maxStalls       int
	pollInterval    time.Duration
	sweepInterval   time.Duration
	batchWindow     time.Duration // < 0 until WithBatchWindow: the backend's
	limits          []Limit
	errs            []error
}

func defaultConfig() *config {
	return &config{
		concurrency:     DefaultConcurrency,
		queues:          []string{DefaultQueue},
		lease:           DefaultLease,
		shutdownTimeout: DefaultShutdownTimeout,
		retry:           DefaultRetryPolicy(),
		clock:           systemClock{},
		maxPayload:      DefaultMaxPayloadSize,
		maxStalls:       DefaultMaxStalls,
		pollInterval:    DefaultPollInterval,
		sweepInterval:   DefaultSweepInterval,
		batchWindow:     -1,
	}
}

// WithBackend makes the engine keep its jobs in b. The caller owns b: Close
// of the engine does not close it, so one backend can serve several engines
// (as in tests of many processes).
func WithBackend(b backend.Backend) Option {
	return func(c *config) { c.backend, c.openBackend = b, nil }
}

// WithMemory keeps jobs in this process's memory: the fastest backend, for
// unit tests and work that may be lost when the process ends. It is the
// default when no backend option is given.
func WithMemory() Option {
	return func(c *config) {
		c.backend = nil
		c.openBackend = func(*config) (backend.Backend, error) {
			return memory.New(memory.Options{}), nil
		}
	}
}

// WithConcurrency sets how many jobs this engine runs at once.
// Defaults to DefaultConcurrency.
func WithConcurrency(n int) Option {
	return func(c *config) {
		if n < 1 {
			c.errs = append(c.errs, invalidOption("concurrency %d is below 1", n))
			return
		}
		c.concurrency = n
	}
}

// WithQueues sets the queues this engine works, in strict priority order: a
// job of the first queue always starts before a job of the second. Defaults
// to DefaultQueue alone.
func WithQueues(queues ...string) Option {
	return func(c *config) {
		if len(queues) == 0 {
			c.errs = append(c.errs, invalidOption("WithQueues needs at least one queue"))
			return
		}
		for _, q := range queues {
			if q == "" {
				c.errs = append(c.errs, invalidOption("empty queue name"))
				return
			}
		}
		c.queues = append([]string(nil), queues...)
	}
}

// WithLease sets how long a worker's claim on a running job lasts without a
// heartbeat. A shorter lease finds dead workers sooner and costs more
// heartbeats. Defaults to DefaultLease.
func WithLease(d time.Duration) Option {
	return func(c *config) {
		if d < 10*time.Millisecond {
			c.errs = append(c.errs, invalidOption("lease %s is below 10ms", d))
			return
		}
		c.lease = d
	}
}

// WithShutdownTimeout sets how long Run lets running jobs finish once its
// context is cancelled; the jobs still running then go back to their queue.
// Defaults to DefaultShutdownTimeout.
func WithShutdownTimeout(d time.Duration) Option {
	return func(c *config) {
		if d < 0 {
			c.errs = append(c.errs, invalidOption("negative shutdown timeout %s", d))
			return
		}
		c.shutdownTimeout = d
	}
}

// WithRetryPolicy sets how failed attempts are retried. Defaults to
// DefaultRetryPolicy().
func WithRetryPolicy(p RetryPolicy) Option {
	return func(c *config) {
		if err := p.validate(); err != nil {
			c.errs = append(c.errs, err)
			return
		}
		c.retry = p
	}
}

// WithLogger sets where the engine logs. Defaults to no logging at all.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) { c.logger = l }
}

// WithWorkerName names this engine in Workers and on the jobs it runs.
// Defaults to host:pid.
func WithWorkerName(name string) Option {
	return func(c *config) { c.workerName = name }
}

// WithListener registers hooks that hear every event from New on.
func WithListener(l Listener) Option {
	return func(c *config) { c.listeners = append(c.listeners, l) }
}

// WithMiddleware wraps every handler, outermost first: for logging, tracing
// and metrics around each run.
func WithMiddleware(m ...Middleware) Option {
	return func(c *config) { c.middleware = append(c.middleware, m...) }
}

// WithClock sets the engine's clock, so tests can move time for delays,
// retries and expiry (see FakeClock). Defaults to the system clock.
func WithClock(clk Clock) Option {
	return func(c *config) {
		if clk == nil {
			c.errs = append(c.errs, invalidOption("nil clock"))
			return
		}
		c.clock = clk
	}
}

// WithMaxPayloadSize sets the largest encoded payload Enqueue accepts.
// Defaults to DefaultMaxPayloadSize.
func WithMaxPayloadSize(n int) Option {
	return func(c *config) {
		if n < 1 {
			c.errs = append(c.errs, invalidOption("max payload size %d is below 1", n))
			return
		}
		c.maxPayload = n
	}
}

// WithMaxStalls sets how many expired leases a job survives before it fails.
// Defaults to DefaultMaxStalls.
func WithMaxStalls(n int) Option {
	return func(c *config) {
		if n < 1 {
			c.errs = append(c.errs, invalidOption("max stalls %d is below 1", n))
			return
		}
		c.maxStalls = n
	}
}

// WithPollInterval bounds how late this engine promotes a due scheduled or
// retrying job that it did not learn about itself (another process enqueued
// it). Defaults to DefaultPollInterval.
func WithPollInterval(d time.Duration) Option {
	return func(c *config) {
		if d <= 0 {
			c.errs = append(c.errs, invalidOption("poll interval %s is not positive", d))
			return
		}
		c.pollInterval = d
	}
}

// WithBatchWindow sets how long a busy engine gathers jobs and
// acknowledgements into fewer, larger backend calls: after a Lease that
// came back with several jobs but not all it asked for while workers still
// run, the next waits until d has passed since it began; an acknowledgement
// waits up to d for those of the other jobs still running. A job may so
// start, and its outcome be recorded, up to d later while the engine is
// busy; a lone job never waits (see backend.Batcher). 0 turns it off.
// Defaults to the backend's own window: the Redis backend's
// redis.DefaultBatchWindow, where a call's fixed cost on the server
// outweighs a few hundred microseconds; none for the memory and bbolt
// backends.
func WithBatchWindow(d time.Duration) Option {
	return func(c *config) {
		if d < 0 || d > maxBatchWindow {
			c.errs = append(c.errs, invalidOption("batch window %s is not between 0 and %s", d, maxBatchWindow))
			return
		}
		c.batchWindow = d
	}
}

// maxBatchWindow bounds WithBatchWindow and a backend's window: gathering
// saves a call's fixed cost, worth a few hundred microseconds, not seconds.
const maxBatchWindow = time.Second

// EnqueueOption configures one job at Enqueue.
type EnqueueOption interface {
	applyEnqueue(*jobConfig)
}

// HandlerOption configures a handler at registration; those that are also
// EnqueueOptions (Queue, Priority, Timeout, MaxRetries, ResultTTL) become the
// defaults of jobs of that type enqueued through this engine.
type HandlerOption interface {
	applyHandler(*handlerConfig)
}

// JobOption is an option that works both at Enqueue and as a handler's
// default.
type JobOption interface {
	EnqueueOption
	HandlerOption
}

type jobConfig struct {
	queue      string
	priority   int
	runAt      time.Time
	delay      time.Duration
	maxRetries int
	hasRetries bool
	timeout    time.Duration
	uniqueKey  string
	uniqueFor  time.Duration
	limitKey   string
	dependsOn  []string
	resultTTL  time.Duration
	failureTTL time.Duration
	meta       map[string]string
	errs       []error
}

type handlerConfig struct {
	defaults []EnqueueOption
}

type jobOption func(*jobConfig)

func (o jobOption) applyEnqueue(c *jobConfig)     { o(c) }
func (o jobOption) applyHandler(h *handlerConfig) { h.defaults = append(h.defaults, o) }

type enqueueOption func(*jobConfig)

func (o enqueueOption) applyEnqueue(c *jobConfig) { o(c) }

func (c *jobConfig) fail(format string, args ...any) {
	c.errs = append(c.errs, invalidOption(format, args...))
}

// Queue puts the job in the named queue. Defaults to DefaultQueue.
func Queue(name string) JobOption {
	return jobOption(func(c *jobConfig) {
		if name == "" {
			c.fail("empty queue name")
			return
		}
		c.queue = name
	})
}

// Priority orders jobs within a queue: higher runs first, and jobs of one
// priority run in the order they were enqueued. Defaults to 0.
func Priority(p int) JobOption {
	return jobOption(func(c *jobConfig) { c.priority = p })
}

// Delay makes the job wait d before it may run.
func Delay(d time.Duration) EnqueueOption {
	return enqueueOption(func(c *jobConfig) {
		if d < 0 {
			c.fail("negative delay %s", d)
			return
		}
		c.delay, c.runAt = d, time.Time{}
	})
}

// At makes the job wait until t before it may run; a time in the past runs
// it at once.
func At(t time.Time) EnqueueOption {
	return enqueueOption(func(c *jobConfig) { c.runAt, c.delay = t, 0 })
}

// MaxRetries sets how many failed attempts of the job are retried,
// overriding the retry policy's count; 0 means none. Defaults to the
// engine's RetryPolicy.MaxRetries.
func MaxRetries(n int) JobOption {
	return jobOption(func(c *jobConfig) {
		if n < 0 {
			c.fail("negative max retries %d", n)
			return
		}
		c.maxRetries, c.hasRetries = n, true
	})
}

// Timeout bounds one attempt: the handler's context ends at the deadline and
// the attempt fails with an error that says so. Defaults to DefaultTimeout.
func Timeout(d time.Duration) JobOption {
	return jobOption(func(c *jobConfig) {
		if d <= 0 {
			c.fail("timeout %s is not positive", d)
			return
		}
		c.timeout = d
	})
}

// UniqueKey refuses a second job with the same key while the first is live:
// Enqueue returns the existing job's ID with ErrDuplicateJob.
func UniqueKey(key string) EnqueueOption {
	return enqueueOption(func(c *jobConfig) {
		if key == "" {
			c.fail("empty unique key")
			return
		}
		c.uniqueKey = key
	})
}

// UniqueFor holds the job's UniqueKey for d from enqueue, whatever the job's
// state, so that a job that already ran is not enqueued again in that time
// (one run per cron tick across processes, say).
func UniqueFor(d time.Duration) EnqueueOption {
	return enqueueOption(func(c *jobConfig) {
		if d <= 0 {
			c.fail("unique-for %s is not positive", d)
			return
		}
		c.uniqueFor = d
	})
}

// DependsOn makes the job wait (deferred) until every named job completed.
// If one of them fails or is canceled, this job is canceled too.
func DependsOn(ids ...string) EnqueueOption {
	return enqueueOption(func(c *jobConfig) {
		for _, id := range ids {
			if id == "" {
				c.fail("empty dependency ID")
				return
			}
		}
		c.dependsOn = append(c.dependsOn, ids...)
	})
}

// ResultTTL sets how long the job and its result are kept after it
// completes. Defaults to DefaultResultTTL.
func ResultTTL(d time.Duration) JobOption {
	return jobOption(func(c *jobConfig) {
		if d <= 0 {
			c.fail("result TTL %s is not positive", d)
			return
		}
		c.resultTTL = d
	})
}

// FailureTTL sets how long the job is kept after it fails or is canceled.
// Defaults to DefaultFailureTTL.
func FailureTTL(d time.Duration) JobOption {
	return jobOption(func(c *jobConfig) {
		if d <= 0 {
			c.fail("failure TTL %s is not positive", d)
			return
		}
		c.failureTTL = d
	})
}

// Meta attaches a string to the job under key (a trace context, a tenant),
// seen by its handler and in JobInfo.
func Meta(key, value string) EnqueueOption {
	return enqueueOption(func(c *jobConfig) {
		if key == "" {
			c.fail("empty meta key")
			return
		}
		if c.meta == nil {
			c.meta = make(map[string]string)
		}
		c.meta[key] = value
	})
}
