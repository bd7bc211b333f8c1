package redis

import (
	"fmt"
	"net"
	"os"
	"strconv"

	goredis "github.com/redis/go-redis/v9"
)

// Environment variables that ClientOptionsFromEnv reads, and their defaults.
const (
	EnvURL      = "REDIS_URL"      // redis://[user:password@]host:port/db or rediss:// (TLS); overrides the others
	EnvHost     = "REDIS_HOST"     // defaults to DefaultHost
	EnvPort     = "REDIS_PORT"     // defaults to DefaultPort
	EnvDB       = "REDIS_DB"       // defaults to 0
	EnvPassword = "REDIS_PASSWORD" // defaults to none

	DefaultHost = "localhost"
	DefaultPort = 6379
)

// ClientOptionsFromEnv returns client options from the environment: REDIS_URL
// when set (redis:// or rediss:// for TLS, with ACL user and password and a
// database number), else REDIS_HOST, REDIS_PORT, REDIS_DB and
// REDIS_PASSWORD. The caller sizes the pool (PoolSize) and makes the client
// with goredis.NewUniversalClient.
func ClientOptionsFromEnv() (*goredis.UniversalOptions, error) {
	if u := os.Getenv(EnvURL); u != "" {
		o, err := goredis.ParseURL(u)
		if err != nil {
			return nil, fmt.Errorf("redis: %s: %w", EnvURL, err)
		}
		return &goredis.UniversalOptions{Addrs: []string{o.Addr}, Username: o.Username,
			Password: o.Password, DB: o.DB, TLSConfig: o.TLSConfig, ClientName: o.ClientName,
			Protocol: o.Protocol, MaxRetries: o.MaxRetries, DialTimeout: o.DialTimeout,
			ReadTimeout: o.ReadTimeout, WriteTimeout: o.WriteTimeout, PoolSize: o.PoolSize,
			MinIdleConns: o.MinIdleConns, MaxIdleConns: o.MaxIdleConns, PoolTimeout: o.PoolTimeout}, nil
	}
	host := os.Getenv(EnvHost)
	if host == "" {
		host = DefaultHost
	}
	port := DefaultPort
	if s := os.Getenv(EnvPort); s != "" {
		p, err := strconv.Atoi(s)
		if err != nil || p <= 0 || p > 65535 {
			return nil, fmt.Errorf("redis: %s=%q is not a port number", EnvPort, s)
		}
		port = p
	}
	db := 0
	if s := os.Getenv(EnvDB); s != "" {
		d, err := strconv.Atoi(s)
		if err != nil || d < 0 {
			return nil, fmt.Errorf("redis: %s=%q is not a database number", EnvDB, s)
		}
		db = d
	}
	return &goredis.UniversalOptions{Addrs: []string{net.JoinHostPort(host, strconv.Itoa(port))},
		Password: os.Getenv(EnvPassword), DB: db}, nil
}
