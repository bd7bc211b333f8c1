package agents

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Report is the weekly report: the week's meetings, tasks and decisions in
// one Markdown document.
type Report struct {
	From      time.Time `json:"from"`
	To        time.Time `json:"to"`
	Meetings  int       `json:"meetings"`
	Tasks     int       `json:"tasks"`
	Decisions int       `json:"decisions"`
	Risks     int       `json:"risks"`
	Blockers  int       `json:"blockers"`
	Markdown  string    `json:"markdown"`
}

// Reporter writes the weekly report from the week's meeting digests.
type Reporter interface {
	WeeklyReport(ctx context.Context, from, to time.Time, meetings []MeetingDigest) (Report, error)
}

// MarkdownReporter writes the report as Markdown: totals, then each
// meeting's summary, every open task by owner, the decisions, and the
// risks and blockers.
type MarkdownReporter struct{}

// WeeklyReport writes the report of [from, to).
func (MarkdownReporter) WeeklyReport(ctx context.Context, from, to time.Time, meetings []MeetingDigest) (Report, error) {
	ms := slices.Clone(meetings)
	slices.SortStableFunc(ms, func(a, b MeetingDigest) int {
		if c := a.Date.Compare(b.Date); c != 0 {
			return c
		}
		return strings.Compare(a.MeetingID, b.MeetingID)
	})
	r := Report{From: from.UTC(), To: to.UTC(), Meetings: len(ms)}
	type ownedTask struct {
		Task
		meeting string
	}
	var tasks []ownedTask
	var decisions, risks, blockers []string
	for _, m := range ms {
		for _, t := range m.Tasks {
			tasks = append(tasks, ownedTask{t, m.MeetingID})
		}
		for _, d := range m.Analysis.Decisions {
			decisions = append(decisions, fmt.Sprintf("%s (%s)", d.Text, m.MeetingID))
		}
		for _, s := range m.Analysis.Risks {
			risks = append(risks, fmt.Sprintf("%s (%s)", s.Text, m.MeetingID))
		}
		for _, s := range m.Analysis.Blockers {
			blockers = append(blockers, fmt.Sprintf("%s (%s)", s.Text, m.MeetingID))
		}
	}
	r.Tasks, r.Decisions, r.Risks, r.Blockers = len(tasks), len(decisions), len(risks), len(blockers)
	slices.SortStableFunc(tasks, func(a, b ownedTask) int {
		ao, bo := a.Owner, b.Owner
		if ao == "" {
			ao = "\uffff" // tasks without an owner last
		}
		if bo == "" {
			bo = "\uffff"
		}
		return strings.Compare(ao, bo)
	})

	var b strings.Builder
	fmt.Fprintf(&b, "# Weekly report: %s to %s\n\n", from.Format(time.DateOnly), to.Format(time.DateOnly))
	fmt.Fprintf(&b, "%d meetings, %d action items, %d decisions, %d risks, %d blockers.\n",
		r.Meetings, r.Tasks, r.Decisions, r.Risks, r.Blockers)
	if len(ms) == 0 {
		b.WriteString("\nNo meetings were processed this week.\n")
	}
	if len(ms) > 0 {
		b.WriteString("\n## Meetings\n")
		for _, m := range ms {
			fmt.Fprintf(&b, "\n### %s", m.MeetingID)
			if !m.Date.IsZero() {
				fmt.Fprintf(&b, " (%s)", m.Date.Format(time.DateOnly))
			}
			fmt.Fprintf(&b, "\n\n%s\n", orDash(m.Summary.Text))
			if m.Analysis.Health != "" {
				fmt.Fprintf(&b, "\nHealth: %s.\n", strings.ReplaceAll(m.Analysis.Health, "_", " "))
			}
		}
	}
	if len(tasks) > 0 {
		b.WriteString("\n## Action items\n\n| Owner | Task | Due | Meeting |\n|---|---|---|---|\n")
		for _, t := range tasks {
			due := t.DueDate
			if due == "" {
				due = t.Due
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", cell(orDash(t.Owner)), cell(t.Text), cell(orDash(due)), cell(t.meeting))
		}
	}
	list := func(title string, items []string) {
		if len(items) == 0 {
			return
		}
		fmt.Fprintf(&b, "\n## %s\n\n", title)
		for _, it := range items {
			fmt.Fprintf(&b, "- %s\n", it)
		}
	}
	list("Decisions", decisions)
	list("Blockers", blockers)
	list("Risks", risks)
	r.Markdown = b.String()
	return r, ctx.Err()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// cell escapes a Markdown table cell.
func cell(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "|", `\|`), "\n", " ")
}
