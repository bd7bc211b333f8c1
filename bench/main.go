// Command bench runs jobrelay's memory, bbolt and Redis backends and asynq
// side by side on the same scenarios and the same redis-server, and reports
// the medians as a table (stdout and RESULTS.md) and a bar chart
// (results.svg).
//
//	go run .                          # starts its own redis-server
//	go run . -redis 127.0.0.1:6379    # uses a running one (flushes its database)
//	go run . -n 2000 -runs 1 -scale-big 0   # a run of seconds
//
// README.md gives the scenarios, the flags and the last results.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"
)

// config is the benchmark's flags.
type config struct {
	redisAddr     string
	redisDB       int
	redisServer   string
	flush         bool
	n             int
	memN          int
	memoryN       int // jobs per throughput scenario on the memory backend
	batch         int
	producers     int
	runs          int
	latencyN      int
	latencyBudget time.Duration
	latencyGap    time.Duration
	scaleSmall    int
	scaleBig      int
	scaleBigRuns  int
	systems       []string
	scenarios     []string
	out           string
	cpuProfile    string
	runTimeout    time.Duration
	batchWindow   time.Duration // < 0: each backend's own
	verbose       bool
	args          []string // the command line, for RESULTS.md
}

func defaultConfig() *config {
	return &config{
		n:             20000,
		batch:         256,
		producers:     8,
		runs:          3,
		latencyN:      500,
		latencyBudget: 15 * time.Second,
		latencyGap:    2 * time.Millisecond,
		scaleSmall:    1000,
		scaleBig:      1_000_000,
		scaleBigRuns:  1,
		systems:       systemNames,
		scenarios:     scenarioIDs,
		out:           ".",
		runTimeout:    10 * time.Minute,
	}
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	cfg := defaultConfig()
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.redisAddr, "redis", "", "address of a running redis-server (its database is flushed between runs); empty: start one on a free loopback port")
	fs.IntVar(&cfg.redisDB, "redis-db", 0, "Redis database number to use")
	fs.StringVar(&cfg.redisServer, "redis-server", "redis-server", "redis-server binary to start when -redis is empty")
	fs.BoolVar(&cfg.flush, "flush", false, "allow flushing a -redis database that holds keys")
	fs.IntVar(&cfg.n, "n", cfg.n, "jobs per throughput scenario")
	fs.IntVar(&cfg.memN, "mem-n", 0, "jobs queued for the memory scenario (0: -n)")
	fs.IntVar(&cfg.memoryN, "memory-n", 0, "jobs per throughput scenario on the memory backend, which finishes -n jobs too fast to time well (0: 10 × -n)")
	fs.IntVar(&cfg.batch, "batch", cfg.batch, "jobs per EnqueueMany call in the batched scenarios")
	fs.IntVar(&cfg.producers, "producers", cfg.producers, "goroutines that enqueue")
	fs.IntVar(&cfg.runs, "runs", cfg.runs, "runs of each scenario; the median is reported")
	fs.IntVar(&cfg.latencyN, "latency-n", cfg.latencyN, "jobs measured per latency run")
	fs.DurationVar(&cfg.latencyBudget, "latency-budget", cfg.latencyBudget, "time limit of one latency run (at least 5 jobs are measured)")
	fs.DurationVar(&cfg.latencyGap, "latency-gap", cfg.latencyGap, "idle pause before each latency job")
	fs.IntVar(&cfg.scaleSmall, "scale-small", cfg.scaleSmall, "jobs already queued in the small scale scenario")
	fs.IntVar(&cfg.scaleBig, "scale-big", cfg.scaleBig, "jobs already queued in the big scale scenario (0 skips it)")
	fs.IntVar(&cfg.scaleBigRuns, "scale-big-runs", cfg.scaleBigRuns, "runs of the big scale scenario")
	systems := fs.String("systems", strings.Join(systemNames, ","), "systems to run: "+strings.Join(systemNames, ","))
	scens := fs.String("scenarios", strings.Join(scenarioIDs, ","), "scenarios to run: "+strings.Join(scenarioIDs, ","))
	fs.StringVar(&cfg.out, "out", cfg.out, "folder for RESULTS.md and results.svg (empty: write neither)")
	fs.StringVar(&cfg.cpuProfile, "cpuprofile", "", "folder for CPU profiles, one per scenario and system (first run of each; profiling slows it)")
	fs.DurationVar(&cfg.batchWindow, "batch-window", -1, "jobrelay engines' batch window (engine.WithBatchWindow; 0 turns it off); negative: each backend's own")
	fs.DurationVar(&cfg.runTimeout, "run-timeout", cfg.runTimeout, "time limit of one run of one scenario on one system")
	fs.BoolVar(&cfg.verbose, "v", false, "print each run, and what redis-server spent per job (CPU, calls)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var err error
	if cfg.systems, err = pick(*systems, systemNames, "system"); err != nil {
		return nil, err
	}
	if cfg.scenarios, err = pick(*scens, scenarioIDs, "scenario"); err != nil {
		return nil, err
	}
	if cfg.memN == 0 {
		cfg.memN = cfg.n
	}
	if cfg.memoryN == 0 {
		cfg.memoryN = 10 * cfg.n
	}
	for _, c := range []struct {
		name string
		v    int
	}{{"n", cfg.n}, {"mem-n", cfg.memN}, {"memory-n", cfg.memoryN}, {"batch", cfg.batch}, {"producers", cfg.producers},
		{"runs", cfg.runs}, {"latency-n", cfg.latencyN}, {"scale-big-runs", cfg.scaleBigRuns}} {
		if c.v < 1 {
			return nil, fmt.Errorf("-%s %d: must be at least 1", c.name, c.v)
		}
	}
	if cfg.scaleSmall < 0 || cfg.scaleBig < 0 {
		return nil, errors.New("-scale-small and -scale-big must not be negative")
	}
	cfg.args = args
	return cfg, nil
}

// pick parses a comma-separated list of names out of known, kept in the
// order of known.
func pick(list string, known []string, what string) ([]string, error) {
	var out []string
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !slices.Contains(known, s) {
			return nil, fmt.Errorf("unknown %s %q (known: %s)", what, s, strings.Join(known, ", "))
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no %s selected", what)
	}
	slices.SortFunc(out, func(a, b string) int { return slices.Index(known, a) - slices.Index(known, b) })
	return slices.Compact(out), nil
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx, cfg, os.Stderr)
	if rep != nil {
		rep.writeText(os.Stdout)
		if cfg.out != "" {
			if werr := rep.writeFiles(cfg.out); werr != nil {
				err = errors.Join(err, werr)
			} else {
				fmt.Fprintf(os.Stderr, "wrote %s and %s\n", filepath.Join(cfg.out, "RESULTS.md"), filepath.Join(cfg.out, "results.svg"))
			}
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// run runs every selected scenario on every selected system and returns
// the report; an error of one run is kept in its cell and returned joined
// with the others at the end.
func run(ctx context.Context, cfg *config, log io.Writer) (*report, error) {
	var systems []system
	needRedis := false
	for _, name := range cfg.systems {
		s, _ := systemByName(name)
		systems = append(systems, s)
		needRedis = needRedis || s.redis
	}
	env := &env{cfg: cfg, redisAddr: cfg.redisAddr}
	rep := newReport(cfg, systems)
	defer func() { rep.machine.loadEnd = loadAverage() }()
	if needRedis {
		if env.redisAddr == "" {
			srv, err := startRedis(ctx, cfg.redisServer)
			if err != nil {
				return nil, err
			}
			defer srv.Stop()
			env.redisAddr = srv.Addr
			fmt.Fprintf(log, "started redis-server on %s\n", srv.Addr)
		}
		admin, err := newRedisAdmin(ctx, env.redisAddr, cfg.redisDB)
		if err != nil {
			return nil, err
		}
		defer admin.Close()
		if cfg.redisAddr != "" && !cfg.flush {
			if n, err := admin.rdb.DBSize(ctx).Result(); err != nil {
				return nil, err
			} else if n > 0 {
				return nil, fmt.Errorf("redis %s database %d holds %d keys and the benchmark flushes it between runs: pass -flush, or pick an empty one with -redis-db", env.redisAddr, cfg.redisDB, n)
			}
		}
		env.admin = admin
		rep.machine.redis = admin.version(ctx)
	}
	if cfg.cpuProfile != "" {
		if err := os.MkdirAll(cfg.cpuProfile, 0o755); err != nil {
			return nil, err
		}
	}
	r := &runner{cfg: cfg, env: env, log: log}
	var errs []error
	for _, sc := range scenarios(cfg) {
		if !slices.Contains(cfg.scenarios, sc.id) {
			continue
		}
		runs := cfg.runs
		if sc.runs > 0 {
			runs = sc.runs
		}
		res := rep.add(sc)
		// The systems take turns within each run, so that a slow minute of
		// a shared machine hurts them alike.
		for i := range runs {
			for _, s := range systems {
				if sc.applies != nil && !sc.applies(s) {
					continue
				}
				if err := ctx.Err(); err != nil {
					return rep, errors.Join(append(errs, err)...)
				}
				r.scenario, r.system, r.run = sc.id, s, i
				t0 := time.Now()
				vals, err := r.once(ctx, sc)
				if err != nil {
					err = fmt.Errorf("%s on %s, run %d: %w", sc.id, s.name, i+1, err)
					errs = append(errs, err)
					fmt.Fprintln(log, "error:", err)
					res.fail(s.name, err)
					continue
				}
				res.record(s.name, vals)
				fmt.Fprintf(log, "%-13s run %d/%d %-6s %-32s (%s)\n", sc.id, i+1, runs, s.name, res.describe(vals), time.Since(t0).Round(100*time.Millisecond))
			}
		}
	}
	return rep, errors.Join(errs...)
}

// runner runs one scenario on one system at a time.
type runner struct {
	cfg *config
	env *env
	log io.Writer

	scenario string
	system   system
	run      int
}

// jobs is how many jobs a throughput scenario runs on the runner's system:
// -memory-n on the memory backend, -n on the others.
func (r *runner) jobs() int {
	if r.system.name == "memory" {
		return r.cfg.memoryN
	}
	return r.cfg.n
}

// once opens a fresh target (on a flushed database for the Redis systems),
// measures, and closes it.
func (r *runner) once(ctx context.Context, sc scenario) ([]float64, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, r.cfg.runTimeout, fmt.Errorf("run took longer than -run-timeout %s", r.cfg.runTimeout))
	defer cancel()
	if r.system.redis {
		if err := r.env.admin.flush(ctx); err != nil {
			return nil, err
		}
	}
	t, err := r.system.open(ctx, r.env, sc.concurrency)
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	vals, err := sc.measure(ctx, r, t)
	if cerr := t.close(); cerr != nil && err == nil {
		err = fmt.Errorf("close: %w", cerr)
	}
	return vals, err
}

// timed times f. On the first run it writes a CPU profile of f when
// -cpuprofile is set, and with -v it prints what redis-server spent per job
// of the n that f handles.
func (r *runner) timed(n int, f func() error) (time.Duration, error) {
	var before serverLoad
	watch := r.cfg.verbose && r.system.redis && n > 0
	if watch {
		before, _ = r.env.admin.load(context.Background())
	}
	if r.cfg.cpuProfile != "" && r.run == 0 {
		path := filepath.Join(r.cfg.cpuProfile, r.scenario+"_"+r.system.name+".pprof")
		fh, err := os.Create(path)
		if err != nil {
			return 0, err
		}
		defer fh.Close()
		if err := pprof.StartCPUProfile(fh); err != nil {
			return 0, err
		}
		defer pprof.StopCPUProfile()
	}
	use0 := processUsage()
	t0 := time.Now()
	err := f()
	d := time.Since(t0)
	use := processUsage().since(use0)
	if r.cfg.verbose && n > 0 && err == nil {
		fmt.Fprintf(r.log, "    this process: %.1f µs CPU/job, %.0f%% of one core; %.2f page faults/job, %.2f context switches/job\n",
			use.cpu.Seconds()*1e6/float64(n), 100*use.cpu.Seconds()/d.Seconds(),
			float64(use.faults)/float64(n), float64(use.switches)/float64(n))
	}
	if watch && err == nil {
		after, lerr := r.env.admin.load(context.Background())
		if lerr == nil {
			r.logLoad(after.since(before), n, d)
		}
	}
	return d, err
}

// logLoad prints redis-server's CPU per job and its busiest commands.
func (r *runner) logLoad(l serverLoad, n int, d time.Duration) {
	type cmd struct {
		name  string
		calls int64
	}
	var cmds []cmd
	for k, v := range l.calls {
		cmds = append(cmds, cmd{k, v})
	}
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].calls > cmds[j].calls })
	var b strings.Builder
	for i, c := range cmds {
		if i == 6 {
			break
		}
		fmt.Fprintf(&b, " %s=%.2f(%.1fµs)", c.name, float64(c.calls)/float64(n), float64(l.usec[c.name])/float64(c.calls))
	}
	fmt.Fprintf(r.log, "    redis-server: %.1f µs CPU/job, %.0f%% of one core; calls/job:%s\n",
		l.cpu*1e6/float64(n), 100*l.cpu/d.Seconds(), b.String())
}

func (r *runner) logf(format string, args ...any) {
	if r.cfg.verbose {
		fmt.Fprintf(r.log, "    %s %s: %s\n", r.scenario, r.system.name, fmt.Sprintf(format, args...))
	}
}

func gomaxprocs() int { return runtime.GOMAXPROCS(0) }

// usage is what this process has used: CPU time (user and system), page
// faults (minor and major) and context switches (voluntary and not).
type usage struct {
	cpu      time.Duration
	faults   int64
	switches int64
}

func processUsage() usage {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return usage{}
	}
	return usage{
		cpu:      time.Duration(ru.Utime.Nano() + ru.Stime.Nano()),
		faults:   ru.Minflt + ru.Majflt,
		switches: ru.Nvcsw + ru.Nivcsw,
	}
}

func (u usage) since(before usage) usage {
	return usage{cpu: u.cpu - before.cpu, faults: u.faults - before.faults, switches: u.switches - before.switches}
}
