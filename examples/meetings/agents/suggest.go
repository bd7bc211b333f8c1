package agents

import (
	"context"
	"fmt"
)

// Suggestion kinds.
const (
	SuggestUnblock  = "unblock"
	SuggestMitigate = "mitigate"
	SuggestAssign   = "assign_owner"
	SuggestSchedule = "set_due_date"
	SuggestShare    = "share_decision"
	SuggestCapture  = "capture_actions"
)

// Suggestion is a next step proposed for a meeting.
type Suggestion struct {
	Kind string `json:"kind"`
	Text string `json:"text"`
	// Source is the task or signal that led to it.
	Source string `json:"source,omitempty"`
}

// Suggester proposes next steps from a meeting's action items and
// analysis: the agent the old module planned next.
type Suggester interface {
	Suggest(ctx context.Context, tasks []Task, analysis Analysis) ([]Suggestion, error)
}

// DefaultMaxSuggestions is the most suggestions RuleSuggester makes.
const DefaultMaxSuggestions = 10

// RuleSuggester proposes, most urgent first: resolving each blocker,
// mitigating each risk, giving an owner to tasks that have none and a due
// date to tasks that have none, and telling people about each decision.
type RuleSuggester struct {
	// Max caps the list. Defaults to DefaultMaxSuggestions.
	Max int
}

// Suggest proposes next steps.
func (r RuleSuggester) Suggest(ctx context.Context, tasks []Task, a Analysis) ([]Suggestion, error) {
	limit := r.Max
	if limit <= 0 {
		limit = DefaultMaxSuggestions
	}
	out := []Suggestion{}
	add := func(kind, text, source string) {
		if len(out) < limit {
			out = append(out, Suggestion{Kind: kind, Text: text, Source: source})
		}
	}
	for _, b := range a.Blockers {
		add(SuggestUnblock, fmt.Sprintf("Find an owner and a date to clear the blocker %s raised: %q", orSomeone(b.Speaker), b.Text), b.Text)
	}
	for _, r := range a.Risks {
		add(SuggestMitigate, fmt.Sprintf("Plan a mitigation for the risk %s raised: %q", orSomeone(r.Speaker), r.Text), r.Text)
	}
	for _, t := range tasks {
		if t.Owner == "" {
			add(SuggestAssign, fmt.Sprintf("Assign an owner to %q.", t.Text), t.Source)
		}
	}
	for _, t := range tasks {
		if t.Due == "" && t.Owner != "" {
			add(SuggestSchedule, fmt.Sprintf("Agree a due date with %s for %q.", t.Owner, t.Text), t.Source)
		}
	}
	for _, d := range a.Decisions {
		add(SuggestShare, "Tell the people it affects about the decision: "+d.Text, d.Text)
	}
	if len(tasks) == 0 {
		add(SuggestCapture, "No action items were recorded: confirm the next steps with the attendees.", "")
	}
	return out, ctx.Err()
}

func orSomeone(s string) string {
	if s == "" {
		return "someone"
	}
	return s
}
