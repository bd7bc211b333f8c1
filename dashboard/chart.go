package dashboard

import (
	"fmt"
	"time"
)

// The chart's drawing area, in SVG user units.
const (
	chartWidth  = 720.0
	chartHeight = 180.0
	chartLeft   = 40.0 // room for the scale
	chartBottom = 22.0 // room for the time labels
	chartTop    = 8.0
)

// chart is the throughput chart, laid out for the template: one bar per
// minute, completed below and failed stacked on top.
type chart struct {
	Width, Height float64
	Bars          []bar
	Grid          []gridLine
	Ticks         []tick
	Completed     int
	Failed        int
	Since         time.Time
	// Partial is true when the dashboard has listened for less than the
	// chart's hour, so that the empty start is not read as no work.
	Partial bool
}

type bar struct {
	X, W           float64
	CY, CH, FY, FH float64
	Label          string
}

type gridLine struct {
	Y     float64
	Label string
}

type tick struct {
	X     float64
	Label string
}

func newChart(ms []minute, since time.Time) chart {
	c := chart{Width: chartWidth, Height: chartHeight, Since: since}
	if len(ms) > 0 {
		c.Partial = since.After(ms[0].Start)
	}
	peak := 0
	for _, m := range ms {
		c.Completed += m.Completed
		c.Failed += m.Failed
		peak = max(peak, m.Completed+m.Failed)
	}
	top := niceCeil(peak)
	plotH := chartHeight - chartBottom - chartTop
	plotW := chartWidth - chartLeft
	slot := plotW / float64(len(ms))
	scale := plotH / float64(top)
	base := chartTop + plotH
	for i, m := range ms {
		ch := float64(m.Completed) * scale
		fh := float64(m.Failed) * scale
		c.Bars = append(c.Bars, bar{
			X: chartLeft + float64(i)*slot + 1, W: max(slot-2, 1),
			CY: base - ch, CH: ch, FY: base - ch - fh, FH: fh,
			Label: fmt.Sprintf("%s UTC: %d completed, %d failed", m.Start.Format("15:04"), m.Completed, m.Failed),
		})
		if i%15 == 0 || i == len(ms)-1 {
			label := m.Start.Format("15:04")
			if i == len(ms)-1 {
				label = "now"
			}
			c.Ticks = append(c.Ticks, tick{X: chartLeft + float64(i)*slot + slot/2, Label: label})
		}
	}
	for _, v := range []int{0, top / 2, top} {
		c.Grid = append(c.Grid, gridLine{Y: base - float64(v)*scale, Label: fmt.Sprint(v)})
	}
	return c
}

// niceCeil rounds n up to a scale top that halves evenly: 2, 4, 10, 20, 50,
// 100 and so on.
func niceCeil(n int) int {
	if n <= 2 {
		return 2
	}
	for step := 1; ; step *= 10 {
		for _, m := range []int{2, 4, 10} {
			if n <= m*step {
				return m * step
			}
		}
	}
}
