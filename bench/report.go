package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// report holds every run's values and turns their medians into the table,
// RESULTS.md and results.svg.
type report struct {
	cfg     *config
	systems []string
	machine machine
	results []*scenarioResult
}

// machine describes where the benchmark ran.
type machine struct {
	date   time.Time
	cpus   int
	cpu    string
	goVer  string
	osArch string
	redis  string
	// load is /proc/loadavg's 1-minute figure when the run began and
	// ended: other work on a shared machine shows here.
	loadStart, loadEnd string
}

func newReport(cfg *config, systems []system) *report {
	rep := &report{cfg: cfg, machine: machine{
		date:      time.Now(),
		cpus:      runtime.NumCPU(),
		cpu:       cpuModel(),
		goVer:     runtime.Version(),
		osArch:    runtime.GOOS + "/" + runtime.GOARCH,
		redis:     "not used",
		loadStart: loadAverage(),
	}}
	for _, s := range systems {
		rep.systems = append(rep.systems, s.name)
	}
	return rep
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "unknown"
	}
	return f[0]
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

// scenarioResult is every run of one scenario: values[system][run][row].
type scenarioResult struct {
	sc     scenario
	values map[string][][]float64
	errs   map[string]error
}

func (rep *report) add(sc scenario) *scenarioResult {
	r := &scenarioResult{sc: sc, values: make(map[string][][]float64), errs: make(map[string]error)}
	rep.results = append(rep.results, r)
	return r
}

func (r *scenarioResult) record(system string, vals []float64) {
	r.values[system] = append(r.values[system], vals)
}

func (r *scenarioResult) fail(system string, err error) { r.errs[system] = err }

// describe formats one run's values for the progress log.
func (r *scenarioResult) describe(vals []float64) string {
	var parts []string
	for i, spec := range r.sc.rows {
		if i < len(vals) {
			parts = append(parts, formatValue(vals[i], spec.unit)+" "+spec.unit)
		}
	}
	return strings.Join(parts, ", ")
}

// row is one line of the table: the median of each system.
type row struct {
	spec rowSpec
	id   string // the scenario's
	// cells maps a system to its median; a system missing from it reads
	// n/a, or "error" when it is in errs.
	cells map[string]float64
	runs  map[string]int
	errs  map[string]bool
}

func (rep *report) rows() []row {
	var out []row
	for _, r := range rep.results {
		for i, spec := range r.sc.rows {
			rw := row{spec: spec, id: r.sc.id, cells: make(map[string]float64), runs: make(map[string]int), errs: make(map[string]bool)}
			for _, s := range rep.systems {
				if r.errs[s] != nil {
					rw.errs[s] = true
				}
				var vs []float64
				for _, run := range r.values[s] {
					if i < len(run) {
						vs = append(vs, run[i])
					}
				}
				if len(vs) > 0 {
					rw.cells[s] = median(vs)
					rw.runs[s] = len(vs)
				}
			}
			out = append(out, rw)
		}
	}
	if small, big := rep.find(out, "scale-small"), rep.find(out, "scale-big"); small != nil && big != nil {
		rw := row{spec: rowSpec{label: fmt.Sprintf("scale: %s queued vs %s queued", count(rep.cfg.scaleBig), count(rep.cfg.scaleSmall)), unit: "%"},
			id: "scale-ratio", cells: make(map[string]float64)}
		for _, s := range rep.systems {
			a, okA := small.cells[s]
			b, okB := big.cells[s]
			if okA && okB && a > 0 {
				rw.cells[s] = 100 * b / a
			}
		}
		out = append(out, rw)
	}
	return out
}

func (rep *report) find(rows []row, id string) *row {
	for i := range rows {
		if rows[i].id == id {
			return &rows[i]
		}
	}
	return nil
}

func median(vs []float64) float64 {
	s := slices.Clone(vs)
	slices.Sort(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

// ratio compares a jobrelay system with asynq on one row so that above 1
// always means jobrelay is better: its jobs/s over asynq's, or asynq's
// latency or bytes over its own.
func (rw row) ratio(system string) (float64, bool) {
	if system == "asynq" || rw.spec.unit == "%" {
		return 0, false
	}
	v, ok := rw.cells[system]
	a, okA := rw.cells["asynq"]
	if !ok || !okA || v <= 0 || a <= 0 {
		return 0, false
	}
	if rw.spec.lowerBetter {
		return a / v, true
	}
	return v / a, true
}

func (rw row) cell(system string) string {
	if v, ok := rw.cells[system]; ok {
		return formatValue(v, rw.spec.unit)
	}
	if rw.errs[system] {
		return "error"
	}
	return "n/a"
}

func formatValue(v float64, unit string) string {
	switch unit {
	case "ms":
		switch {
		case v < 1:
			return fmt.Sprintf("%.3f", v)
		case v < 10:
			return fmt.Sprintf("%.2f", v)
		case v < 100:
			return fmt.Sprintf("%.1f", v)
		}
		return thousands(int64(math.Round(v)))
	case "%":
		return fmt.Sprintf("%.0f%%", v)
	}
	return thousands(int64(math.Round(v)))
}

// formatRatio writes a ratio with three significant digits or so.
func formatRatio(r float64) string {
	switch {
	case r >= 100:
		return thousands(int64(math.Round(r))) + "×"
	case r >= 10:
		return fmt.Sprintf("%.1f×", r)
	}
	return fmt.Sprintf("%.2f×", r)
}

func thousands(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func (rep *report) jobrelaySystems() []string {
	var out []string
	for _, s := range rep.systems {
		if s != "asynq" {
			out = append(out, s)
		}
	}
	return out
}

func (rep *report) hasAsynq() bool { return slices.Contains(rep.systems, "asynq") }

// header is the table's first line.
func (rep *report) header() []string {
	h := []string{"scenario", "unit"}
	h = append(h, rep.systems...)
	if rep.hasAsynq() {
		for _, s := range rep.jobrelaySystems() {
			h = append(h, s+" vs asynq")
		}
	}
	return h
}

func (rep *report) line(rw row) []string {
	l := []string{rw.spec.label, rw.spec.unit}
	for _, s := range rep.systems {
		l = append(l, rw.cell(s))
	}
	if rep.hasAsynq() {
		for _, s := range rep.jobrelaySystems() {
			if r, ok := rw.ratio(s); ok {
				l = append(l, formatRatio(r))
			} else {
				l = append(l, "")
			}
		}
	}
	return l
}

// writeText prints the table for a terminal.
func (rep *report) writeText(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, strings.Join(rep.header(), "\t")+"\t")
	for _, rw := range rep.rows() {
		fmt.Fprintln(tw, strings.Join(rep.line(rw), "\t")+"\t")
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, t := range rep.goals() {
		fmt.Fprintf(w, "%-4s %s: %s\n", t.verdict(), t.name, t.detail)
	}
}

// goal is one of issue 6's goals, checked against the medians.
type goal struct {
	name   string
	detail string
	ok     bool
	known  bool // false when a value it needs was not measured
}

func (t goal) verdict() string {
	switch {
	case !t.known:
		return "n/a"
	case t.ok:
		return "MET"
	}
	return "MISS"
}

func (rep *report) goals() []goal {
	rows := rep.rows()
	get := func(id, system string, i int) (float64, bool) {
		n := 0
		for _, rw := range rows {
			if rw.id == id {
				if n == i {
					v, ok := rw.cells[system]
					return v, ok
				}
				n++
			}
		}
		return 0, false
	}
	var ts []goal
	{
		t := goal{name: "Redis end to end at c=32 ≥ 2× asynq"}
		r, okR := get("e2e", "redis", 0)
		a, okA := get("e2e", "asynq", 0)
		if okR && okA {
			t.known, t.ok = true, r >= 2*a
			t.detail = fmt.Sprintf("%s vs %s jobs/s = %.2f× (single enqueues, both)", formatValue(r, ""), formatValue(a, ""), r/a)
			if rb, ok := get("e2e-batch", "redis", 0); ok {
				t.detail += fmt.Sprintf("; with batched enqueues %s jobs/s = %.2f×", formatValue(rb, ""), rb/a)
			}
		}
		ts = append(ts, t)
	}
	{
		t := goal{name: "Redis idle latency p99 ≤ 5 ms"}
		if v, ok := get("latency", "redis", 2); ok {
			t.known, t.ok = true, v <= 5
			t.detail = fmt.Sprintf("p99 %s ms", formatValue(v, "ms"))
		}
		ts = append(ts, t)
	}
	{
		t := goal{name: "Redis bytes per queued job ≤ asynq's"}
		r, okR := get("memory", "redis", 0)
		a, okA := get("memory", "asynq", 0)
		if okR && okA {
			t.known, t.ok = true, r <= a
			t.detail = fmt.Sprintf("%s vs %s B/job", formatValue(r, ""), formatValue(a, ""))
		}
		ts = append(ts, t)
	}
	for _, g := range []struct {
		system string
		goal   float64
		what   string
	}{{"memory", 1_000_000, "memory backend ≥ 1,000,000 jobs/s end to end"}, {"bbolt", 20_000, "bbolt (fsync on) ≥ 20,000 jobs/s end to end"}} {
		t := goal{name: g.what}
		s, okS := get("e2e", g.system, 0)
		b, okB := get("e2e-batch", g.system, 0)
		if okS || okB {
			t.known, t.ok = true, max(s, b) >= g.goal
			t.detail = fmt.Sprintf("%s jobs/s with batched enqueues, %s with single ones", formatValue(b, ""), formatValue(s, ""))
		}
		ts = append(ts, t)
	}
	{
		t := goal{name: fmt.Sprintf("scale: %s queued ≥ 80%% of %s queued, every backend", count(rep.cfg.scaleBig), count(rep.cfg.scaleSmall))}
		if rep.cfg.scaleBig == 0 {
			t.name = "scale: big backlog ≥ 80% of small backlog, every backend"
		}
		var parts []string
		t.known, t.ok = true, true
		for _, s := range rep.systems {
			small, ok1 := get("scale-small", s, 0)
			big, ok2 := get("scale-big", s, 0)
			if !ok1 || !ok2 || small <= 0 {
				if s != "asynq" {
					t.known = false
				}
				continue
			}
			pct := 100 * big / small
			part := fmt.Sprintf("%s %.0f%%", s, pct)
			if es, ok3 := get("scale-small", s, 1); ok3 && es > 0 {
				if eb, ok4 := get("scale-big", s, 1); ok4 {
					part += fmt.Sprintf(" (enqueues %.0f%%)", 100*eb/es)
				}
			}
			parts = append(parts, part)
			if s != "asynq" && pct < 80 {
				t.ok = false
			}
		}
		t.detail = strings.Join(parts, ", ")
		if rep.hasAsynq() {
			t.detail += " (asynq for reference)"
		}
		ts = append(ts, t)
	}
	return ts
}

// writeFiles writes RESULTS.md and results.svg into dir.
func (rep *report) writeFiles(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var md strings.Builder
	rep.writeMarkdown(&md)
	if err := os.WriteFile(filepath.Join(dir, "RESULTS.md"), []byte(md.String()), 0o644); err != nil {
		return err
	}
	var svg strings.Builder
	rep.writeSVG(&svg)
	return os.WriteFile(filepath.Join(dir, "results.svg"), []byte(svg.String()), 0o644)
}

func (rep *report) writeMarkdown(w io.Writer) {
	m := rep.machine
	c := rep.cfg
	fmt.Fprintf(w, "# jobrelay vs asynq v0.26.0: results\n\n")
	fmt.Fprintf(w, "- date: %s\n", m.date.UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(w, "- machine: %d CPUs, %s; %s; %s; redis-server %s on the same machine\n", m.cpus, m.cpu, m.osArch, m.goVer, m.redis)
	fmt.Fprintf(w, "- load average (1 min) at the start and the end of the run: %s, %s\n", m.loadStart, m.loadEnd)
	fmt.Fprintf(w, "- command: `go run . %s`\n", strings.Join(c.args, " "))
	fmt.Fprintf(w, "- %d jobs per throughput scenario, %d queued for the memory scenario; median of %d runs (the %s-queued scale case: %d); 100-byte JSON payload, no-op handler\n\n",
		c.n, c.memN, c.runs, count(c.scaleBig), c.scaleBigRuns)
	fmt.Fprintf(w, "![jobrelay vs asynq](results.svg)\n\n")
	fmt.Fprintf(w, "| %s |\n", strings.Join(rep.header(), " | "))
	fmt.Fprintf(w, "|%s\n", strings.Repeat(" --- |", len(rep.header())))
	for _, rw := range rep.rows() {
		l := rep.line(rw)
		for i := range l {
			l[i] = strings.ReplaceAll(l[i], "|", "\\|")
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(l, " | "))
	}
	fmt.Fprintf(w, "\n\"x vs asynq\" is x's jobs/s over asynq's, or asynq's latency or bytes over x's: above 1 means jobrelay is better. n/a: the system has no such operation (asynq has no batch enqueue) or the row does not apply to it.\n\n")
	fmt.Fprintf(w, "## Targets (issue 6)\n\n")
	for _, t := range rep.goals() {
		fmt.Fprintf(w, "- **%s** %s: %s\n", t.verdict(), t.name, t.detail)
	}
	fmt.Fprintln(w)
}
