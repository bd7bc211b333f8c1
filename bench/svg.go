package main

import (
	"fmt"
	"io"
	"math"
	"strings"
)

// colors of the systems in the chart.
var colors = map[string]string{
	"memory": "#4c78a8",
	"bbolt":  "#f58518",
	"redis":  "#e45756",
	"asynq":  "#8c8c8c",
}

// panel is one block of the chart: rows of one unit on one axis.
type panel struct {
	title string
	rows  []row
	log   bool
	mark  float64 // a dashed reference line (the 80% of scale), or 0
}

// Chart geometry, in pixels.
const (
	chartWidth = 980
	labelWidth = 330
	barLeft    = labelWidth + 10
	barWidth   = 500
	barHeight  = 13
	barGap     = 2
	groupGap   = 12
	panelGap   = 34
)

// writeSVG draws the medians as horizontal grouped bars, one panel per
// unit: throughput and latency on log axes, bytes and the scale ratio on
// linear ones. Each jobrelay bar is labelled with its ratio to asynq.
func (rep *report) writeSVG(w io.Writer) {
	var tput, lat, mem, scale []row
	for _, rw := range rep.rows() {
		switch rw.spec.unit {
		case "jobs/s":
			tput = append(tput, rw)
		case "ms":
			lat = append(lat, rw)
		case "B/job":
			mem = append(mem, rw)
		case "%":
			scale = append(scale, rw)
		}
	}
	panels := []panel{
		{title: "Throughput, jobs/s (log scale; longer is better)", rows: tput, log: true},
		{title: "Idle latency, enqueue to handler start, ms (log scale; shorter is better)", rows: lat, log: true},
		{title: "Redis memory per queued job, bytes (shorter is better)", rows: mem},
		{title: "Scale: throughput with the big backlog as % of the small one (80% target)", rows: scale, mark: 80},
	}
	var body strings.Builder
	y := 100
	for _, p := range panels {
		if len(p.rows) == 0 {
			continue
		}
		y = rep.drawPanel(&body, p, y) + panelGap
	}
	height := y
	fmt.Fprintf(w, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="Helvetica, Arial, sans-serif" font-size="12">`+"\n",
		chartWidth, height, chartWidth, height)
	fmt.Fprintf(w, `<rect width="100%%" height="100%%" fill="#ffffff"/>`+"\n")
	m := rep.machine
	fmt.Fprintf(w, `<text x="10" y="22" font-size="16" font-weight="bold">jobrelay vs asynq v0.26.0</text>`+"\n")
	fmt.Fprintf(w, `<text x="10" y="40" fill="#555">%s</text>`+"\n",
		esc(fmt.Sprintf("%s · %d CPUs %s · %s · redis-server %s · %d jobs/scenario, median of %d runs",
			m.date.UTC().Format("2006-01-02"), m.cpus, m.cpu, m.goVer, m.redis, rep.cfg.n, rep.cfg.runs)))
	x := 10
	for _, s := range rep.systems {
		name := s
		if s != "asynq" {
			name = "jobrelay " + s
		}
		fmt.Fprintf(w, `<rect x="%d" y="50" width="12" height="12" fill="%s"/><text x="%d" y="60">%s</text>`+"\n", x, colors[s], x+16, esc(name))
		x += 16 + 8*len(name) + 20
	}
	io.WriteString(w, body.String())
	io.WriteString(w, "</svg>\n")
}

// drawPanel draws p from y down and returns the y below it.
func (rep *report) drawPanel(w io.Writer, p panel, y int) int {
	lo, hi := axis(p)
	// Only the systems with a value in this panel get a bar.
	var systems []string
	for _, s := range rep.systems {
		for _, rw := range p.rows {
			if _, ok := rw.cells[s]; ok {
				systems = append(systems, s)
				break
			}
		}
	}
	pos := func(v float64) float64 {
		if p.log {
			v = max(v, lo)
			return barWidth * (math.Log10(v) - math.Log10(lo)) / (math.Log10(hi) - math.Log10(lo))
		}
		return barWidth * (v - lo) / (hi - lo)
	}
	fmt.Fprintf(w, `<text x="10" y="%d" font-size="14" font-weight="bold">%s</text>`+"\n", y, esc(p.title))
	y += 10
	top := y
	perRow := len(systems)*(barHeight+barGap) + groupGap
	bottom := top + perRow*len(p.rows)
	// Grid lines and their labels.
	for _, t := range ticks(lo, hi, p.log) {
		x := float64(barLeft) + pos(t)
		fmt.Fprintf(w, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#e3e3e3"/>`+"\n", x, top, x, bottom)
		fmt.Fprintf(w, `<text x="%.1f" y="%d" fill="#777" font-size="10" text-anchor="middle">%s</text>`+"\n", x, bottom+12, esc(short(t)))
	}
	if p.mark > 0 {
		x := float64(barLeft) + pos(p.mark)
		fmt.Fprintf(w, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#333" stroke-dasharray="4 3"/>`+"\n", x, top, x, bottom)
	}
	for _, rw := range p.rows {
		groupH := len(systems) * (barHeight + barGap)
		fmt.Fprintf(w, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", labelWidth, y+groupH/2+4, esc(rw.spec.label))
		for _, s := range systems {
			v, ok := rw.cells[s]
			if !ok {
				fmt.Fprintf(w, `<text x="%d" y="%d" fill="#999" font-size="10">n/a</text>`+"\n", barLeft+2, y+barHeight-3)
				y += barHeight + barGap
				continue
			}
			wd := max(pos(v), 1)
			fmt.Fprintf(w, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"><title>%s</title></rect>`+"\n",
				barLeft, y, wd, barHeight, colors[s], esc(fmt.Sprintf("%s: %s %s", s, formatValue(v, rw.spec.unit), rw.spec.unit)))
			label := formatValue(v, rw.spec.unit)
			if r, ok := rw.ratio(s); ok {
				label += "  (" + formatRatio(r) + " asynq)"
			}
			fmt.Fprintf(w, `<text x="%.1f" y="%d" font-size="10">%s</text>`+"\n", float64(barLeft)+wd+4, y+barHeight-3, esc(label))
			y += barHeight + barGap
		}
		y += groupGap
	}
	return bottom + 14
}

// axis picks the range of a panel: whole powers of ten on a log axis, from
// zero to a round number on a linear one.
func axis(p panel) (lo, hi float64) {
	minV, maxV := math.Inf(1), 0.0
	for _, rw := range p.rows {
		for _, v := range rw.cells {
			if v > 0 {
				minV, maxV = min(minV, v), max(maxV, v)
			}
		}
	}
	maxV = max(maxV, p.mark)
	if maxV == 0 {
		return 0.1, 1
	}
	if p.log {
		lo = math.Pow(10, math.Floor(math.Log10(minV)))
		hi = math.Pow(10, math.Ceil(math.Log10(maxV)))
		if hi <= lo {
			hi = lo * 10
		}
		return lo, hi
	}
	return 0, roundUp(maxV*1.05, []float64{1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10})
}

// roundUp rounds v up to one of the multipliers times a power of ten.
func roundUp(v float64, multipliers []float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range multipliers {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func ticks(lo, hi float64, log bool) []float64 {
	var out []float64
	if log {
		for t := lo; t <= hi*1.0001; t *= 10 {
			out = append(out, t)
		}
		return out
	}
	step := roundUp(hi/6, []float64{1, 2, 5, 10})
	for t := 0.0; t <= hi*1.0001; t += step {
		out = append(out, t)
	}
	return out
}

// short writes an axis value: 1K, 10M, 0.1.
func short(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%gM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%gK", v/1e3)
	}
	return fmt.Sprintf("%g", v)
}

func esc(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace(s)
}
