package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	goredis "github.com/redis/go-redis/v9"

	"github.com/jobrelay/engine"
	"github.com/jobrelay/engine/backend/bolt"
	redisbackend "github.com/jobrelay/engine/backend/redis"
)

// workerName names the command's engine; it never runs jobs, so it never
// shows up in Workers.
const workerName = "jobrelay-cli"

// openEngine connects to the backend the flags or the environment name. A
// missing bbolt file is an error unless create is set, so that a mistyped
// path does not quietly make an empty database.
func openEngine(ctx context.Context, o *options, create bool) (*engine.Engine, func(), error) {
	if o.redis != "" && o.bolt != "" {
		return nil, nil, usagef("give --redis or --bolt, not both")
	}
	if o.bolt != "" {
		return openBolt(o.bolt, create)
	}
	client, addr, err := redisClient(o.redis)
	if err != nil {
		return nil, nil, err
	}
	if client == nil {
		return nil, nil, usagef("no backend: give --bolt PATH or --redis URL (or set REDIS_URL)")
	}
	b, err := redisbackend.New(ctx, client, redisbackend.Options{Prefix: o.prefix, CloseClient: true})
	if err != nil {
		client.Close()
		return nil, nil, fmt.Errorf("connect to Redis at %s: %w", addr, err)
	}
	e, err := engine.New(engine.WithBackend(b), engine.WithWorkerName(workerName))
	if err != nil {
		b.Close()
		return nil, nil, err
	}
	return e, func() { e.Close(); b.Close() }, nil
}

func openBolt(path string, create bool) (*engine.Engine, func(), error) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) && !create {
		return nil, nil, fmt.Errorf("no bbolt file at %s", path)
	}
	e, err := engine.New(engine.WithBolt(path), engine.WithWorkerName(workerName))
	if errors.Is(err, bolt.ErrLocked) {
		return nil, nil, fmt.Errorf("%s is in use by another process, and a bbolt file admits one process at a time.\n"+
			"To see and steer the jobs of a running application, mount dashboard.Handler in it\n"+
			"(github.com/jobrelay/engine/dashboard; see docs/operating.md), or stop it and run jobrelay again", path)
	}
	if err != nil {
		return nil, nil, err
	}
	return e, func() { e.Close() }, nil
}

// redisClient connects to a redis:// or rediss:// URL, or without one to
// what the environment names, read as engine.WithRedisFromEnv reads it
// (REDIS_URL, or REDIS_HOST, REDIS_PORT, REDIS_DB and REDIS_PASSWORD). It
// returns nil when neither the URL nor any of those variables is set, so
// that the caller can say that no backend was named; addr is for messages.
func redisClient(url string) (client goredis.UniversalClient, addr string, err error) {
	if url != "" {
		ro, err := goredis.ParseURL(url)
		if err != nil {
			return nil, "", usagef("bad Redis URL: %v", err)
		}
		return goredis.NewClient(ro), ro.Addr, nil
	}
	named := false
	for _, v := range []string{redisbackend.EnvURL, redisbackend.EnvHost, redisbackend.EnvPort, redisbackend.EnvDB} {
		named = named || os.Getenv(v) != ""
	}
	if !named {
		return nil, "", nil
	}
	uo, err := redisbackend.ClientOptionsFromEnv()
	if err != nil {
		return nil, "", usagef("%v", err)
	}
	return goredis.NewUniversalClient(uo), strings.Join(uo.Addrs, ","), nil
}
