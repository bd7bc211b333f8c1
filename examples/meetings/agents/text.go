package agents

import (
	"math"
	"strings"
	"unicode"
)

// Sentence is one sentence of a transcript with the speaker who said it.
type Sentence struct {
	Speaker string `json:"speaker,omitempty"`
	Text    string `json:"text"`
	// Turn is the index of the turn the sentence comes from.
	Turn int `json:"turn"`
}

// abbreviations end with a period without ending a sentence.
var abbreviations = map[string]bool{
	"mr": true, "mrs": true, "ms": true, "dr": true, "prof": true, "sr": true, "jr": true,
	"st": true, "vs": true, "e.g": true, "i.e": true, "approx": true, "inc": true, "ltd": true,
	"co": true, "dept": true, "est": true, "fig": true, "no": true, "jan": true, "feb": true,
	"mar": true, "apr": true, "jun": true, "jul": true, "aug": true, "sep": true, "sept": true,
	"oct": true, "nov": true, "dec": true,
}

// splitSentences cuts text at sentence ends (. ! ?) that are followed by a
// space or the end, except after abbreviations and initials.
func splitSentences(text string) []string {
	var out []string
	rs := []rune(text)
	start := 0
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		if r != '.' && r != '!' && r != '?' {
			continue
		}
		end := i + 1
		for end < len(rs) && strings.ContainsRune(".!?\"')]”’", rs[end]) {
			end++
		}
		if end < len(rs) && !unicode.IsSpace(rs[end]) {
			continue // 3.5, e.g.x, a URL
		}
		if r == '.' && endsWithAbbreviation(rs[start:i]) {
			continue
		}
		if s := strings.TrimSpace(string(rs[start:end])); s != "" {
			out = append(out, s)
		}
		start = end
		i = end - 1
	}
	if s := strings.TrimSpace(string(rs[start:])); s != "" {
		out = append(out, s)
	}
	return out
}

// endsWithAbbreviation reports whether the word before a period is an
// abbreviation or a single capital letter (an initial).
func endsWithAbbreviation(before []rune) bool {
	j := len(before)
	for j > 0 && !unicode.IsSpace(before[j-1]) {
		j--
	}
	word := string(before[j:])
	if word == "" {
		return false
	}
	if len([]rune(word)) == 1 && unicode.IsUpper([]rune(word)[0]) {
		return true
	}
	return abbreviations[strings.ToLower(strings.TrimLeft(word, "(\"'"))]
}

// words splits text into lower-case words of letters, digits and inner
// apostrophes.
func words(text string) []string {
	var out []string
	var b strings.Builder
	flush := func() {
		w := strings.Trim(b.String(), "'’")
		if w != "" {
			out = append(out, w)
		}
		b.Reset()
	}
	for _, r := range text {
		switch {
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(unicode.ToLower(r))
		case (r == '\'' || r == '’') && b.Len() > 0:
			b.WriteRune('\'')
		default:
			flush()
		}
	}
	flush()
	return out
}

// stopwords are words that carry no topic: they are left out of scoring.
var stopwords = func() map[string]bool {
	list := `a about above after again against all also am an and any are aren't as at be because been
	before being below between both but by can can't cannot could couldn't did didn't do does doesn't doing
	don't down during each few for from further get got had hadn't has hasn't have haven't having he he'd
	he'll he's her here here's hers herself him himself his how how's i i'd i'll i'm i've if in into is
	isn't it it's its itself just let's like me more most mustn't my myself no nor not of off on once only
	or other ought our ours ourselves out over own really right same shan't she she'd she'll she's should
	shouldn't so some such than that that's the their theirs them themselves then there there's these they
	they'd they'll they're they've this those through to too under until up very was wasn't we we'd we'll
	we're we've were weren't what what's when when's where where's which while who who's whom why why's
	will with won't would wouldn't you you'd you'll you're you've your yours yourself yourselves yeah yes
	okay ok um uh hmm oh well sure thanks thank great good sounds think know going go gonna want need
	one two also maybe probably actually thing things lot bit kind sort mean guess everyone everybody
	let us said say see hi hello`
	m := make(map[string]bool)
	for _, w := range strings.Fields(list) {
		m[w] = true
	}
	return m
}()

// stem strips common English endings so that "reports", "reporting" and
// "reported" count as one word. It is crude on purpose: it only has to
// make the same word meet itself.
func stem(w string) string {
	w = strings.TrimSuffix(w, "'s")
	n := len(w)
	switch {
	case n > 5 && strings.HasSuffix(w, "ing"):
		w = w[:n-3]
	case n > 4 && strings.HasSuffix(w, "ies"):
		w = w[:n-3] + "y"
	case n > 4 && strings.HasSuffix(w, "ed"):
		w = w[:n-2]
	case n > 4 && strings.HasSuffix(w, "sses"):
		w = w[:n-2]
	case n > 3 && strings.HasSuffix(w, "s") && !strings.HasSuffix(w, "ss") && !strings.HasSuffix(w, "us"):
		w = w[:n-1]
	}
	if len(w) > 4 && strings.HasSuffix(w, "e") {
		w = w[:len(w)-1] // "decide" meets "decided"
	}
	return w
}

// contentStems returns the stems of the words of text that are not
// stopwords, numbers or one letter long.
func contentStems(text string) []string {
	var out []string
	for _, w := range words(text) {
		if stopwords[w] || len(w) < 2 || isNumber(w) {
			continue
		}
		out = append(out, stem(w))
	}
	return out
}

func isNumber(w string) bool {
	for _, r := range w {
		if !unicode.IsDigit(r) {
			return false
		}
	}
	return true
}

// overlap is the share of the smaller set of stems found in the other,
// from 0 (none) to 1 (all).
func overlap(a, b []string) float64 {
	sa, sb := set(a), set(b)
	if len(sa) == 0 || len(sb) == 0 {
		return 0
	}
	inter := 0
	for w := range sa {
		if sb[w] {
			inter++
		}
	}
	return float64(inter) / float64(min(len(sa), len(sb)))
}

func set(ws []string) map[string]bool {
	m := make(map[string]bool, len(ws))
	for _, w := range ws {
		m[w] = true
	}
	return m
}

// jaccard is the overlap of two sets of stems, from 0 (none) to 1 (same).
func jaccard(a, b []string) float64 {
	if len(a) == 0 || len(b) == 0 {
		return 0
	}
	sa := make(map[string]bool, len(a))
	for _, w := range a {
		sa[w] = true
	}
	sb := make(map[string]bool, len(b))
	inter := 0
	for _, w := range b {
		if sb[w] {
			continue
		}
		sb[w] = true
		if sa[w] {
			inter++
		}
	}
	union := len(sa) + len(sb) - inter
	return float64(inter) / float64(union)
}

// idf weights stems by how rare they are among the sentences: a word that
// appears everywhere says little about which sentence answers a question.
func idf(sentences [][]string) map[string]float64 {
	df := make(map[string]int)
	for _, s := range sentences {
		seen := make(map[string]bool)
		for _, w := range s {
			if !seen[w] {
				seen[w] = true
				df[w]++
			}
		}
	}
	out := make(map[string]float64, len(df))
	n := float64(len(sentences))
	for w, d := range df {
		out[w] = 1 + math.Log(n/float64(d))
	}
	return out
}

// capitalize upper-cases the first letter of s.
func capitalize(s string) string {
	for i, r := range s {
		return string(unicode.ToUpper(r)) + s[i+len(string(r)):]
	}
	return s
}

// trimSentence removes surrounding space and the final punctuation.
func trimSentence(s string) string {
	return strings.TrimRight(strings.TrimSpace(s), ".!?;:, ")
}
