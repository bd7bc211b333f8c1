package redis_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/jobrelay/engine/backend"
	"github.com/jobrelay/engine/backend/redis"
	"github.com/jobrelay/engine/internal/redistest"
)

// BenchmarkCallCost measures what redis-server spends per call of the
// enqueue, lease and finish functions (INFO commandstats) when each call
// carries one job, or JOBRELAY_PROBE_BATCH jobs: the fixed cost of a call.
// It is a probe rather than a benchmark of b.N: run it once with
// -benchtime 1x; each of JOBRELAY_PROBE_ROUNDS (default 3) rounds puts
// JOBRELAY_PROBE jobs (default 20,000) through a fresh redis-server, and it
// reports the median per call (and logs the range and the commands made).
func BenchmarkCallCost(b *testing.B) {
	n := 20000
	if v, _ := strconv.Atoi(os.Getenv("JOBRELAY_PROBE")); v > 0 {
		n = v
	}
	t := b
	rounds := 3
	if v, _ := strconv.Atoi(os.Getenv("JOBRELAY_PROBE_ROUNDS")); v > 0 {
		rounds = v
	}
	batch := 1
	if v, _ := strconv.Atoi(os.Getenv("JOBRELAY_PROBE_BATCH")); v > 0 {
		batch = v
	}
	ctx := context.Background()
	type phase struct {
		name string
		run  func(be *redis.Backend) error
	}
	var leases []*backend.Lease
	phases := []phase{
		{"enqueue", func(be *redis.Backend) error {
			for done := 0; done < n; done += batch {
				jobs := make([]backend.NewJob, batch)
				for i := range jobs {
					jobs[i] = benchJob("default")
				}
				if _, err := be.Enqueue(ctx, time.Now(), jobs); err != nil {
					return err
				}
			}
			return nil
		}},
		{"lease", func(be *redis.Backend) error {
			leases = leases[:0]
			for done := 0; done < n; done += batch {
				ls, err := be.Lease(ctx, backend.LeaseRequest{Queues: []string{"default"}, Max: batch, Now: time.Now(),
					TTL: time.Minute, Worker: "w1"})
				if err != nil || len(ls) != batch {
					return fmt.Errorf("lease: %d leases, %v", len(ls), err)
				}
				leases = append(leases, ls...)
			}
			return nil
		}},
		{"finish", func(be *redis.Backend) error {
			for i := 0; i < len(leases); i += batch {
				acks := make([]backend.Ack, 0, batch)
				for _, l := range leases[i : i+batch] {
					acks = append(acks, backend.Ack{Lease: l.Ref(), Outcome: backend.OutcomeCompleted, Result: []byte(`"ok"`)})
				}
				errs, err := be.Finish(ctx, time.Now(), acks)
				if err != nil {
					return err
				}
				for _, e := range errs {
					if e != nil {
						return e
					}
				}
			}
			return nil
		}},
	}
	type stat struct{ calls, usec float64 }
	results := map[string][]map[string]stat{}
	for range rounds {
		s := redistest.Start(t, redistest.Options{})
		client := goredis.NewClient(s.Options())
		be, err := redis.New(ctx, client, redis.Options{CloseClient: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range phases {
			if err := client.ConfigResetStat(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			if err := p.run(be); err != nil {
				t.Fatalf("%s: %v", p.name, err)
			}
			info, err := client.Info(ctx, "commandstats").Result()
			if err != nil {
				t.Fatal(err)
			}
			m := map[string]stat{}
			for _, line := range strings.Split(info, "\n") {
				name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
				if !ok || !strings.HasPrefix(name, "cmdstat_") {
					continue
				}
				var st stat
				for _, kv := range strings.Split(rest, ",") {
					k, v, _ := strings.Cut(kv, "=")
					f, _ := strconv.ParseFloat(v, 64)
					switch k {
					case "calls":
						st.calls = f
					case "usec":
						st.usec = f
					}
				}
				m[strings.TrimPrefix(name, "cmdstat_")] = st
			}
			results[p.name] = append(results[p.name], m)
		}
		be.Close()
	}
	for _, p := range phases {
		rs := results[p.name]
		var fc, lua []float64
		inner := map[string][]float64{}
		for _, m := range rs {
			f := m["fcall"]
			if f.calls == 0 {
				f = m["evalsha"]
			}
			fc = append(fc, f.usec/f.calls)
			other := 0.0
			for name, st := range m {
				if name == "fcall" || name == "evalsha" || name == "config|resetstat" || name == "info" {
					continue
				}
				other += st.usec
				inner[name] = append(inner[name], st.calls/f.calls)
			}
			lua = append(lua, (f.usec-other)/f.calls)
		}
		var names []string
		for name := range inner {
			names = append(names, name)
		}
		sort.Strings(names)
		var cmds []string
		for _, name := range names {
			cmds = append(cmds, fmt.Sprintf("%s %.2f", name, med(inner[name])))
		}
		t.Logf("%-8s n=%d per call: %.1f µs [%.1f–%.1f], Lua %.1f; commands per call: %s", p.name, batch,
			med(fc), slices.Min(fc), slices.Max(fc), med(lua), strings.Join(cmds, ", "))
		b.ReportMetric(med(fc), p.name+"-µs/call")
	}
}

func med(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
