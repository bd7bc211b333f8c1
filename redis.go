package engine

import (
	"context"
	"time"

	"github.com/jobrelay/engine/backend"
	redisbackend "github.com/jobrelay/engine/backend/redis"
	goredis "github.com/redis/go-redis/v9"
)

// redisConnectTimeout bounds how long New waits for Redis to answer.
const redisConnectTimeout = 5 * time.Second

// WithRedis keeps jobs in Redis through the caller's client (a single node,
// Sentinel or Cluster client), so that any number of processes on any number
// of machines share the queues. The client is used as it is: give it a pool
// of at least the engine's concurrency plus a few connections (see
// README.md); blocking waits for work use connections of their own. New
// fails with a clear error when Redis cannot be reached. The caller keeps
// ownership of the client: Close does not close it.
func WithRedis(client goredis.UniversalClient) Option {
	return WithRedisOptions(client, redisbackend.Options{})
}

// WithRedisOptions is WithRedis with the backend's options, such as the key
// prefix that lets several apps share one Redis.
func WithRedisOptions(client goredis.UniversalClient, opts redisbackend.Options) Option {
	return func(c *config) {
		c.backend = nil
		c.openBackend = func(c *config) (backend.Backend, error) {
			ctx, cancel := context.WithTimeout(context.Background(), redisConnectTimeout)
			defer cancel()
			if opts.Logger == nil {
				opts.Logger = c.logger
			}
			return redisbackend.New(ctx, client, opts)
		}
	}
}

// WithRedisFromEnv connects to Redis as the environment says: REDIS_URL
// (redis:// or rediss:// for TLS, with an ACL user and password and a
// database number) or else REDIS_HOST (default localhost), REDIS_PORT
// (6379), REDIS_DB (0) and REDIS_PASSWORD (empty). The connection pool is
// sized from the engine's concurrency, and Close closes the client.
func WithRedisFromEnv() Option {
	return func(c *config) {
		c.backend = nil
		c.openBackend = func(c *config) (backend.Backend, error) {
			uo, err := redisbackend.ClientOptionsFromEnv()
			if err != nil {
				return nil, err
			}
			if uo.PoolSize == 0 {
				// One connection per worker for its acks and progress, plus
				// the dispatcher, heartbeats, scheduler and API calls.
				uo.PoolSize = c.concurrency + 8
			}
			client := goredis.NewUniversalClient(uo)
			ctx, cancel := context.WithTimeout(context.Background(), redisConnectTimeout)
			defer cancel()
			b, err := redisbackend.New(ctx, client, redisbackend.Options{Logger: c.logger, CloseClient: true})
			if err != nil {
				client.Close()
				return nil, err
			}
			return b, nil
		}
	}
}
