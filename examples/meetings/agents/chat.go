package agents

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Answer is a reply to a question about a meeting, with the sentences it
// rests on.
type Answer struct {
	Question string `json:"question"`
	Answer   string `json:"answer"`
	// Found is false when the transcript holds nothing on the question.
	Found   bool       `json:"found"`
	Sources []Sentence `json:"sources"`
}

// Responder answers questions about a meeting from its transcript. An LLM
// with the transcript as context would sit behind it; Retriever quotes.
type Responder interface {
	Answer(ctx context.Context, t *Transcript, question string) (Answer, error)
}

// Retriever answers by quoting the sentences that share the most
// (rare) words with the question, best first. It knows a few kinds of question: who
// attended, how long the meeting took, who does something or when (from
// the action items), and what was decided.
type Retriever struct{}

var (
	askAttendees = regexp.MustCompile(`(?i)\b(?:who (?:attended|was (?:there|in|at|present)|joined|spoke|took part)|attendees|participants|who were)\b`)
	askLength    = regexp.MustCompile(`(?i)\bhow long\b`)
	askWho       = regexp.MustCompile(`(?i)^\s*who\b`)
	askWhen      = regexp.MustCompile(`(?i)^\s*(?:when|by when|what(?:'s| is) the (?:deadline|due date))\b`)
	askDecided   = regexp.MustCompile(`(?i)\b(?:decide|decided|decision|decisions|agree|agreed)\b`)
	timePhrase   = regexp.MustCompile(`(?i)\b(?:` + datePat + `|in ` + monthPat + `|q[1-4]|(?:first|second|third|fourth) quarter|next month|\d{1,2}(?::\d{2})? ?(?:am|pm))\b`)
)

// questionWords are words of questions about meetings that name no topic.
var questionWords = set(contentStems("discuss discussed talk talked mention mentioned meeting call happen happened tell question answer cover covered topic"))

// decisionWords are the words of "what did we decide?", which the
// decision cues answer rather than the words themselves.
var decisionWords = set(contentStems("decide decided decision decisions agree agreed"))

// Answer replies to question from t.
func (Retriever) Answer(ctx context.Context, t *Transcript, question string) (Answer, error) {
	ans := Answer{Question: question, Sources: []Sentence{}}
	q := strings.TrimSpace(question)
	switch {
	case q == "":
		ans.Answer = "Ask a question about the meeting."
		return ans, nil
	case askAttendees.MatchString(q) && len(t.Speakers) > 0:
		ans.Found = true
		ans.Answer = fmt.Sprintf("%d people spoke: %s.", len(t.Speakers), strings.Join(t.Speakers, ", "))
		return ans, nil
	case askLength.MatchString(q) && t.Duration > 0:
		ans.Found = true
		ans.Answer = fmt.Sprintf("The recording runs %s, %d words.", t.Duration.Round(time.Second), t.Words)
		return ans, nil
	}

	sentences := t.Sentences()
	stems := make([][]string, len(sentences))
	vocabulary := make(map[string]bool)
	for i, s := range sentences {
		stems[i] = contentStems(s.Text)
		for _, w := range stems[i] {
			vocabulary[w] = true
		}
	}
	decided := askDecided.MatchString(q)
	var qStems []string
	absent := 0
	for w := range set(contentStems(q)) {
		if questionWords[w] || (decided && decisionWords[w]) {
			continue
		}
		qStems = append(qStems, w)
		if !vocabulary[w] {
			absent++
		}
	}
	slices.Sort(qStems)
	// A question whose words are mostly foreign to the meeting is about
	// something else: quoting a sentence that shares one word would mislead.
	if (len(qStems) == 0 && !decided) || (len(qStems) > 0 && absent*2 >= len(qStems)) {
		ans.Answer = "The transcript does not say."
		return ans, ctx.Err()
	}
	when := askWhen.MatchString(q)
	if askWho.MatchString(q) || when {
		tasks, _ := RuleTasks{}.ExtractTasks(ctx, t, time.Time{})
		if a, ok := answerFromTasks(q, qStems, tasks); ok {
			return a, nil
		}
	}

	weight := idf(stems)
	want := make(map[string]bool)
	for _, w := range qStems {
		want[w] = true
	}
	type hit struct {
		i     int
		score float64
	}
	var hits []hit
	for i, s := range sentences {
		score := 0.0
		seen := make(map[string]bool)
		for _, w := range stems[i] {
			if want[w] && !seen[w] {
				seen[w] = true
				score += weight[w]
			}
		}
		if decided && decisionCue.MatchString(s.Text) {
			score += 2
		}
		switch {
		case when && score > 0 && timePhrase.MatchString(s.Text):
			score++
		case when:
			score *= 0.5
		}
		if score > 0 && strings.HasSuffix(s.Text, "?") {
			score *= 0.5 // a question restated is no answer
		}
		if score > 0 {
			hits = append(hits, hit{i, score})
		}
	}
	if len(hits) == 0 {
		ans.Answer = "The transcript does not say."
		return ans, ctx.Err()
	}
	slices.SortStableFunc(hits, func(a, b hit) int {
		switch {
		case a.score > b.score:
			return -1
		case a.score < b.score:
			return 1
		}
		return a.i - b.i
	})
	best := hits[0].score
	var picked []int
	for _, h := range hits[:min(3, len(hits))] {
		if h.score >= 0.6*best {
			picked = append(picked, h.i)
		}
	}
	var parts []string
	for _, i := range picked {
		s := sentences[i]
		ans.Sources = append(ans.Sources, s)
		if s.Speaker != "" {
			parts = append(parts, fmt.Sprintf("%s said: %q", s.Speaker, s.Text))
		} else {
			parts = append(parts, fmt.Sprintf("%q", s.Text))
		}
	}
	ans.Found = true
	ans.Answer = strings.Join(parts, " ")
	return ans, ctx.Err()
}

// answerFromTasks answers "who …" and "when …" questions with the action
// item that shares the most words with the question.
func answerFromTasks(q string, qStems []string, tasks []Task) (Answer, bool) {
	bestI, bestN := -1, 0
	for i, task := range tasks {
		n := 0
		ts := contentStems(task.Text)
		for _, w := range qStems {
			if slices.Contains(ts, w) {
				n++
			}
		}
		if n > bestN {
			bestI, bestN = i, n
		}
	}
	if bestI < 0 {
		return Answer{}, false
	}
	task := tasks[bestI]
	ans := Answer{Question: q, Found: true, Sources: []Sentence{{Speaker: task.Speaker, Text: task.Source}}}
	switch {
	case askWhen.MatchString(q) && task.Due != "":
		ans.Answer = fmt.Sprintf("%s, due %s.", task.Text, task.Due)
	case askWhen.MatchString(q):
		return Answer{}, false
	case task.Owner != "":
		ans.Answer = fmt.Sprintf("%s: %s.", task.Owner, lowerFirst(task.Text))
		if task.Due != "" {
			ans.Answer = fmt.Sprintf("%s: %s, due %s.", task.Owner, lowerFirst(task.Text), task.Due)
		}
	default:
		return Answer{}, false
	}
	return ans, true
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}
