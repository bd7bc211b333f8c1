package redis_test

import (
	"testing"

	"github.com/jobrelay/engine/backend/redis"
)

func TestClientOptionsFromEnv(t *testing.T) {
	cases := []struct {
		name             string
		env              map[string]string
		addr, user, pass string
		db               int
		tls              bool
		wantErr          bool
	}{
		{name: "Defaults", addr: "localhost:6379"},
		{name: "HostPortDBPassword", env: map[string]string{"REDIS_HOST": "redis.internal", "REDIS_PORT": "6380",
			"REDIS_DB": "2", "REDIS_PASSWORD": "s3cret"}, addr: "redis.internal:6380", pass: "s3cret", db: 2},
		{name: "URLOverrides", env: map[string]string{"REDIS_HOST": "ignored", "REDIS_URL": "redis://app:pw@cache:7000/3"},
			addr: "cache:7000", user: "app", pass: "pw", db: 3},
		{name: "TLS", env: map[string]string{"REDIS_URL": "rediss://:pw@secure:6390/0"}, addr: "secure:6390", pass: "pw", tls: true},
		{name: "BadPort", env: map[string]string{"REDIS_PORT": "http"}, wantErr: true},
		{name: "BadDB", env: map[string]string{"REDIS_DB": "-1"}, wantErr: true},
		{name: "BadURL", env: map[string]string{"REDIS_URL": "http://x"}, wantErr: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, k := range []string{"REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_DB", "REDIS_PASSWORD"} {
				t.Setenv(k, c.env[k])
			}
			o, err := redis.ClientOptionsFromEnv()
			if c.wantErr {
				if err == nil {
					t.Fatalf("got options %+v, want an error", o)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want options", err)
			}
			if len(o.Addrs) != 1 || o.Addrs[0] != c.addr || o.Username != c.user || o.Password != c.pass ||
				o.DB != c.db || (o.TLSConfig != nil) != c.tls {
				t.Errorf("got addrs %v user %q password %q db %d tls %v, want %s %q %q %d %v",
					o.Addrs, o.Username, o.Password, o.DB, o.TLSConfig != nil, c.addr, c.user, c.pass, c.db, c.tls)
			}
		})
	}
}
