package agents

import (
	"context"
	"regexp"
)

// Signal kinds that AIPM analysis reports.
const (
	SignalDecision = "decision"
	SignalRisk     = "risk"
	SignalBlocker  = "blocker"
)

// Project health, from the signals.
const (
	HealthOnTrack = "on_track"
	HealthAtRisk  = "at_risk"
	HealthBlocked = "blocked"
)

// Signal is one sentence that says something about the project's course.
type Signal struct {
	Kind    string `json:"kind"`
	Speaker string `json:"speaker,omitempty"`
	Text    string `json:"text"`
	// Cue is the phrase that marked it ("blocked on", "worried").
	Cue string `json:"cue"`
}

// Analysis is what an AI project manager takes from a meeting: what was
// decided, what may go wrong, what stands in the way.
type Analysis struct {
	Health    string   `json:"health"`
	Decisions []Signal `json:"decisions"`
	Risks     []Signal `json:"risks"`
	Blockers  []Signal `json:"blockers"`
}

// Analyst derives project signals from a transcript.
type Analyst interface {
	Analyze(ctx context.Context, t *Transcript) (Analysis, error)
}

// RuleAnalyst finds decisions, risks and blockers by their cue phrases
// ("we decided", "let's go with", "worried", "might slip", "blocked on",
// "waiting for"), skipping negated ones ("not everyone agreed,").
type RuleAnalyst struct{}

var (
	decisionCue = regexp.MustCompile(`(?i)\b(?:(?:we|i|the team|everyone)(?: have| has|'ve)? (?:decided|agreed)|decision (?:is|was) to|decision:|let'?s go with|we(?:'ll| will) go with|we(?:'re| are) going (?:with|ahead)|agreed[,:]|approved|the plan is|final call|signed off)`)
	blockerCue  = regexp.MustCompile(`(?i)\b(?:blocked (?:on|by)|blocker|blocking|waiting (?:on|for)|stuck|can(?:not|'t|’t) (?:proceed|move forward|continue|start|ship)|no access|on hold)`)
	riskCue     = regexp.MustCompile(`(?i)\b(?:risks?|risky|concerns?|concerned|worr(?:y|ied|ies)|(?:might|may|could|will) slip|slipping|delay(?:ed|s)?|behind schedule|tight|over budget|not sure (?:we|if|whether)|bottleneck|understaffed|fragile)\b`)
	negated     = regexp.MustCompile(`(?i)\b(?:not|haven't|hasn't|didn't|never|no longer|yet to)\s+(?:[\w']+\s+){0,2}$`)
	unblocked   = regexp.MustCompile(`(?i)\b(?:no longer blocked|unblocked|not blocked|no blockers?)\b`)
)

// Analyze finds the signals in t.
func (RuleAnalyst) Analyze(ctx context.Context, t *Transcript) (Analysis, error) {
	a := Analysis{Decisions: []Signal{}, Risks: []Signal{}, Blockers: []Signal{}}
	for _, s := range t.Sentences() {
		if loc := decisionCue.FindStringIndex(s.Text); loc != nil && !negated.MatchString(s.Text[:loc[0]]) {
			a.Decisions = append(a.Decisions, Signal{Kind: SignalDecision, Speaker: s.Speaker, Text: s.Text, Cue: s.Text[loc[0]:loc[1]]})
		}
		switch {
		case unblocked.MatchString(s.Text):
		case blockerCue.MatchString(s.Text):
			a.Blockers = append(a.Blockers, Signal{Kind: SignalBlocker, Speaker: s.Speaker, Text: s.Text, Cue: blockerCue.FindString(s.Text)})
		case riskCue.MatchString(s.Text):
			a.Risks = append(a.Risks, Signal{Kind: SignalRisk, Speaker: s.Speaker, Text: s.Text, Cue: riskCue.FindString(s.Text)})
		}
	}
	switch {
	case len(a.Blockers) > 0:
		a.Health = HealthBlocked
	case len(a.Risks) > 0:
		a.Health = HealthAtRisk
	default:
		a.Health = HealthOnTrack
	}
	return a, ctx.Err()
}
