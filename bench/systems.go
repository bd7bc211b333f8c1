package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	engine "github.com/jobrelay/engine"
	redisbackend "github.com/jobrelay/engine/backend/redis"
	goredis "github.com/redis/go-redis/v9"
)

// payload is the 100-byte JSON payload every job carries.
var payload = []byte(`{"meeting_id":"m-000001","s3_key":"s3://bucket/meetings/000001/audio.wav","lang":"en","x":"abcdefg"}`)

// jobType is the type of every job; its handler does nothing but count.
const jobType = "noop"

// errNoBatch is what a system without a batch enqueue answers to
// enqueueBatch; its cell reads n/a.
var errNoBatch = errors.New("no batch enqueue")

// target is one opened system under test: a queue to fill and, once
// started, workers that run a no-op handler which calls the hook.
type target interface {
	// enqueue stores one job.
	enqueue(ctx context.Context) error
	// enqueueBatch stores n jobs in one call, or returns errNoBatch.
	enqueueBatch(ctx context.Context, n int) error
	// start starts the workers; every job run calls hook once.
	start(hook func()) error
	// close stops the workers and releases everything the target opened.
	close() error
}

// system is one of the things compared: a jobrelay backend or asynq.
type system struct {
	name string
	// redis is set for the systems that keep jobs in the shared Redis: the
	// database is flushed before each of their runs, and their Redis bytes
	// per job are measured.
	redis bool
	// open makes a fresh target whose workers run concurrency jobs at once.
	open func(ctx context.Context, env *env, concurrency int) (target, error)
}

// env is what the systems share within one benchmark run.
type env struct {
	cfg       *config
	redisAddr string
	admin     *redisAdmin // nil when no Redis is used
	seq       atomic.Int64
}

// systemNames are the names -systems accepts, in the order of the table.
var systemNames = []string{"memory", "bbolt", "redis", "asynq"}

func systemByName(name string) (system, bool) {
	switch name {
	case "memory":
		return system{name: name, open: openMemory}, true
	case "bbolt":
		return system{name: name, open: openBolt}, true
	case "redis":
		return system{name: name, redis: true, open: openRedis}, true
	case "asynq":
		return system{name: name, redis: true, open: openAsynq}, true
	}
	return system{}, false
}

// jobrelayTarget is an engine with a no-op handler; Run starts at start.
type jobrelayTarget struct {
	e       *engine.Engine
	hook    atomic.Pointer[func()]
	stop    context.CancelFunc
	runDone chan error
	cleanup func()
}

func newJobrelay(cleanup func(), opts ...engine.Option) (target, error) {
	e, err := engine.New(opts...)
	if err != nil {
		if cleanup != nil {
			cleanup()
		}
		return nil, err
	}
	t := &jobrelayTarget{e: e, cleanup: cleanup}
	e.HandleFunc(jobType, func(ctx context.Context, job *engine.Job) error {
		if h := t.hook.Load(); h != nil {
			(*h)()
		}
		return nil
	})
	return t, nil
}

func openMemory(_ context.Context, _ *env, concurrency int) (target, error) {
	return newJobrelay(nil, engine.WithMemory(), engine.WithConcurrency(concurrency))
}

// openBolt opens a fresh bbolt file with fsync on, as an application would.
func openBolt(_ context.Context, _ *env, concurrency int) (target, error) {
	dir, err := os.MkdirTemp("", "jobrelay-bench-bolt-")
	if err != nil {
		return nil, err
	}
	return newJobrelay(func() { os.RemoveAll(dir) },
		engine.WithBolt(filepath.Join(dir, "jobs.db")), engine.WithConcurrency(concurrency))
}

// openRedis opens a Redis backend under a key prefix of its own, on a
// client sized as backend/redis/README.md advises: the engine's concurrency
// plus a few, and never fewer than go-redis's default that asynq gets.
func openRedis(_ context.Context, env *env, concurrency int) (target, error) {
	rdb := goredis.NewClient(&goredis.Options{
		Addr:     env.redisAddr,
		DB:       env.cfg.redisDB,
		PoolSize: max(concurrency+8, defaultPoolSize()),
	})
	prefix := fmt.Sprintf("bench%d-%d", time.Now().UnixNano(), env.seq.Add(1))
	opts := []engine.Option{engine.WithRedisOptions(rdb, redisbackend.Options{Prefix: prefix}),
		engine.WithConcurrency(concurrency)}
	if env.cfg.batchWindow >= 0 {
		opts = append(opts, engine.WithBatchWindow(env.cfg.batchWindow))
	}
	t, err := newJobrelay(func() { rdb.Close() }, opts...)
	if err != nil {
		return nil, err
	}
	return t, nil
}

// defaultPoolSize is go-redis's default pool: 10 connections per CPU.
func defaultPoolSize() int { return 10 * gomaxprocs() }

func (t *jobrelayTarget) enqueue(ctx context.Context) error {
	_, err := t.e.Enqueue(ctx, jobType, payload)
	return err
}

func (t *jobrelayTarget) enqueueBatch(ctx context.Context, n int) error {
	specs := make([]engine.JobSpec, n)
	for i := range specs {
		specs[i] = engine.JobSpec{Type: jobType, Payload: payload}
	}
	res, err := t.e.EnqueueMany(ctx, specs)
	if err != nil {
		return err
	}
	for _, r := range res {
		if r.Err != nil {
			return r.Err
		}
	}
	return nil
}

func (t *jobrelayTarget) start(hook func()) error {
	t.hook.Store(&hook)
	ctx, stop := context.WithCancel(context.Background())
	t.stop, t.runDone = stop, make(chan error, 1)
	go func() { t.runDone <- t.e.Run(ctx) }()
	return nil
}

func (t *jobrelayTarget) close() error {
	var errs []error
	if t.stop != nil {
		t.stop()
		errs = append(errs, <-t.runDone)
	}
	errs = append(errs, t.e.Close())
	if t.cleanup != nil {
		t.cleanup()
	}
	return errors.Join(errs...)
}

// asynqTarget is asynq's client, and once started its server, with the
// defaults asynq ships except the concurrency every system gets.
type asynqTarget struct {
	opt         asynq.RedisClientOpt
	client      *asynq.Client
	srv         *asynq.Server
	concurrency int
}

func openAsynq(_ context.Context, env *env, concurrency int) (target, error) {
	opt := asynq.RedisClientOpt{Addr: env.redisAddr, DB: env.cfg.redisDB}
	return &asynqTarget{opt: opt, client: asynq.NewClient(opt), concurrency: concurrency}, nil
}

func (t *asynqTarget) enqueue(ctx context.Context) error {
	_, err := t.client.EnqueueContext(ctx, asynq.NewTask(jobType, payload))
	return err
}

// enqueueBatch: asynq's client has no batch enqueue and no pipelining in its
// public API (each Enqueue is one script call and one round trip).
func (t *asynqTarget) enqueueBatch(context.Context, int) error { return errNoBatch }

func (t *asynqTarget) start(hook func()) error {
	t.srv = asynq.NewServer(t.opt, asynq.Config{
		Concurrency: t.concurrency,
		LogLevel:    asynq.WarnLevel, // logging only: Info prints start and stop lines
	})
	mux := asynq.NewServeMux()
	mux.HandleFunc(jobType, func(ctx context.Context, task *asynq.Task) error {
		hook()
		return nil
	})
	return t.srv.Start(mux)
}

func (t *asynqTarget) close() error {
	if t.srv != nil {
		t.srv.Shutdown()
	}
	return t.client.Close()
}
