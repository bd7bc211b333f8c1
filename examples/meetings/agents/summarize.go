package agents

import (
	"context"
	"math"
	"regexp"
	"slices"
	"strings"
)

// Summary is an extractive summary: the transcript's most telling
// sentences, in the order they were said.
type Summary struct {
	Points   []Sentence     `json:"points"`
	Text     string         `json:"text"`
	Keywords []string       `json:"keywords"`
	Speakers []SpeakerShare `json:"speakers"`
	Words    int            `json:"words"`
}

// SpeakerShare is how much one speaker said.
type SpeakerShare struct {
	Name  string `json:"name"`
	Turns int    `json:"turns"`
	Words int    `json:"words"`
}

// Summarizer condenses a transcript. An LLM would sit behind it;
// Extractive picks sentences.
type Summarizer interface {
	Summarize(ctx context.Context, t *Transcript) (Summary, error)
}

// DefaultSummarySentences is the most sentences Extractive keeps.
const DefaultSummarySentences = 5

// Extractive summarizes by scoring sentences on how many of the meeting's
// frequent words they hold, with a boost for sentences that record
// decisions, plans and problems, and a penalty for pleasantries; it keeps
// the best, skipping near repeats.
type Extractive struct {
	// MaxSentences caps the summary. Defaults to DefaultSummarySentences.
	MaxSentences int
}

// cuePhrases mark sentences that matter in a meeting.
var cuePhrases = regexp.MustCompile(`(?i)\b(decided|decision|agreed|agree|will|plan|deadline|launch|ship|priority|risk|blocked|blocker|concern|goal|budget|next step|action item|by (monday|tuesday|wednesday|thursday|friday)|release)\b`)

// Summarize picks the best sentences of t.
func (x Extractive) Summarize(ctx context.Context, t *Transcript) (Summary, error) {
	limit := x.MaxSentences
	if limit <= 0 {
		limit = DefaultSummarySentences
	}
	sentences := t.Sentences()
	stems := make([][]string, len(sentences))
	freq := make(map[string]int)
	surface := make(map[string]map[string]int) // stem → word → count
	for i, s := range sentences {
		stems[i] = contentStems(s.Text)
		for _, w := range words(s.Text) {
			if stopwords[w] || len(w) < 2 || isNumber(w) {
				continue
			}
			st := stem(w)
			freq[st]++
			if surface[st] == nil {
				surface[st] = make(map[string]int)
			}
			surface[st][w]++
		}
	}
	maxFreq := 1
	for _, n := range freq {
		maxFreq = max(maxFreq, n)
	}

	type scored struct {
		i     int
		score float64
	}
	ranked := make([]scored, len(sentences))
	for i, s := range sentences {
		seen := make(map[string]bool)
		sum := 0.0
		for _, st := range stems[i] {
			if !seen[st] {
				seen[st] = true
				sum += float64(freq[st]) / float64(maxFreq)
			}
		}
		score := sum / math.Sqrt(float64(len(stems[i])+1))
		if cuePhrases.MatchString(s.Text) {
			score *= 1.5
		}
		if n := len(words(s.Text)); n < 6 {
			score *= 0.3 // "Sounds good.", "Thanks, everyone."
		}
		if strings.HasSuffix(s.Text, "?") {
			score *= 0.7
		}
		ranked[i] = scored{i: i, score: score}
	}
	slices.SortStableFunc(ranked, func(a, b scored) int {
		switch {
		case a.score > b.score:
			return -1
		case a.score < b.score:
			return 1
		}
		return a.i - b.i
	})
	want := min(limit, max(2, (len(sentences)+3)/4))
	var picked []int
	for _, r := range ranked {
		if len(picked) == want || r.score <= 0 {
			break
		}
		repeat := false
		for _, p := range picked {
			if jaccard(stems[p], stems[r.i]) >= 0.6 {
				repeat = true
				break
			}
		}
		if !repeat {
			picked = append(picked, r.i)
		}
	}
	slices.Sort(picked)

	out := Summary{Words: t.Words, Points: []Sentence{}}
	texts := make([]string, len(picked))
	for k, i := range picked {
		out.Points = append(out.Points, sentences[i])
		texts[k] = sentences[i].Text
	}
	out.Text = strings.Join(texts, " ")
	out.Keywords = keywords(freq, surface, 8)
	out.Speakers = speakerShares(t)
	return out, ctx.Err()
}

// keywords returns the n most frequent stems that occur more than once, each
// in its most common spelling.
func keywords(freq map[string]int, surface map[string]map[string]int, n int) []string {
	stems := make([]string, 0, len(freq))
	for st, c := range freq {
		if c > 1 {
			stems = append(stems, st)
		}
	}
	slices.SortFunc(stems, func(a, b string) int {
		if freq[a] != freq[b] {
			return freq[b] - freq[a]
		}
		return strings.Compare(a, b)
	})
	out := []string{}
	for _, st := range stems[:min(n, len(stems))] {
		best, bestN := "", 0
		for w, c := range surface[st] {
			if c > bestN || (c == bestN && w < best) {
				best, bestN = w, c
			}
		}
		out = append(out, best)
	}
	return out
}

func speakerShares(t *Transcript) []SpeakerShare {
	idx := make(map[string]int)
	out := []SpeakerShare{}
	for _, turn := range t.Turns {
		if turn.Speaker == "" {
			continue
		}
		i, ok := idx[turn.Speaker]
		if !ok {
			i = len(out)
			idx[turn.Speaker] = i
			out = append(out, SpeakerShare{Name: turn.Speaker})
		}
		out[i].Turns++
		out[i].Words += len(words(turn.Text))
	}
	return out
}
