package agents

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Transcript formats.
const (
	// FormatText is plain text with one "Speaker: words" line per turn.
	FormatText = "text"
	// FormatWebVTT is WebVTT, with voice tags (<v Speaker>) naming speakers.
	FormatWebVTT = "webvtt"
)

// Turn is what one speaker said without interruption.
type Turn struct {
	Speaker string `json:"speaker,omitempty"`
	Text    string `json:"text"`
	// Start and End are the cue times of a WebVTT turn; zero for plain text.
	Start time.Duration `json:"start,omitempty"`
	End   time.Duration `json:"end,omitempty"`
}

// Transcript is a meeting as text, turn by turn. It is the result of the
// transcription job and the input of every later agent.
type Transcript struct {
	Format   string   `json:"format"`
	Turns    []Turn   `json:"turns"`
	Speakers []string `json:"speakers"`
	Words    int      `json:"words"`
	// Duration is the end of the last cue of a WebVTT transcript.
	Duration time.Duration `json:"duration,omitempty"`
}

// Sentences splits every turn into sentences, in order.
func (t *Transcript) Sentences() []Sentence {
	var out []Sentence
	for i, turn := range t.Turns {
		for _, s := range splitSentences(turn.Text) {
			out = append(out, Sentence{Speaker: turn.Speaker, Text: s, Turn: i})
		}
	}
	return out
}

// Text returns the transcript as plain "Speaker: words" lines.
func (t *Transcript) Text() string {
	var b strings.Builder
	for _, turn := range t.Turns {
		if turn.Speaker != "" {
			b.WriteString(turn.Speaker)
			b.WriteString(": ")
		}
		b.WriteString(turn.Text)
		b.WriteByte('\n')
	}
	return b.String()
}

// ErrEmptyTranscript means the input held no words at all.
var ErrEmptyTranscript = errors.New("transcript has no words")

// ParseTranscript reads a whole transcript at once; see Parser.
func ParseTranscript(text string) (*Transcript, error) {
	var p Parser
	p.Write([]byte(text))
	return p.Finish()
}

// Parser reads a transcript piece by piece, as it arrives from storage, so
// that a long recording never needs to be in memory twice. It recognises
// WebVTT by its "WEBVTT" header and reads anything else as plain text.
// Call Write with each chunk, then Finish.
type Parser struct {
	partial  []byte // a line not yet ended
	started  bool
	format   string
	lines    int
	turns    []Turn
	speakers map[string]bool
	order    []string

	// WebVTT state
	inCue    bool
	skipping bool // inside a NOTE, STYLE or REGION block
	cueStart time.Duration
	cueEnd   time.Duration
	lastEnd  time.Duration
}

// Write feeds the next chunk. It never fails; errors show at Finish.
func (p *Parser) Write(chunk []byte) (int, error) {
	data := append(p.partial, chunk...)
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		p.line(strings.TrimRight(string(data[:i]), "\r"))
		data = data[i+1:]
	}
	p.partial = append([]byte(nil), data...)
	return len(chunk), nil
}

// Finish reads what is left and returns the transcript.
func (p *Parser) Finish() (*Transcript, error) {
	if len(p.partial) > 0 {
		p.line(strings.TrimRight(string(p.partial), "\r"))
		p.partial = nil
	}
	t := &Transcript{Format: p.format, Turns: p.turns, Speakers: p.order, Duration: p.lastEnd}
	if t.Format == "" {
		t.Format = FormatText
	}
	for _, turn := range t.Turns {
		t.Words += len(words(turn.Text))
	}
	if t.Words == 0 {
		return nil, fmt.Errorf("parse %s transcript of %d lines: %w", t.Format, p.lines, ErrEmptyTranscript)
	}
	if t.Speakers == nil {
		t.Speakers = []string{}
	}
	return t, nil
}

func (p *Parser) line(l string) {
	p.lines++
	if !p.started {
		l = strings.TrimPrefix(l, "\uFEFF")
		if strings.TrimSpace(l) == "" {
			return
		}
		p.started = true
		if l == "WEBVTT" || strings.HasPrefix(l, "WEBVTT ") || strings.HasPrefix(l, "WEBVTT\t") {
			p.format = FormatWebVTT
			p.skipping = true // the header block
			return
		}
		p.format = FormatText
	}
	if p.format == FormatWebVTT {
		p.vttLine(l)
		return
	}
	p.textLine(l)
}

// speakerLine matches "Speaker: words": a name of up to five words that
// starts with a letter, then a colon.
var speakerLine = regexp.MustCompile(`^\s*([\p{L}][\p{L}\p{N} .'\-]{0,40}?)\s*:\s+(.*\S)\s*$`)

// notSpeakers are labels that look like a speaker but start a note.
var notSpeakers = map[string]bool{
	"todo": true, "to do": true, "action item": true, "action items": true, "ai": true,
	"note": true, "decision": true, "task": true, "follow up": true, "follow-up": true,
	"next steps": true, "agenda": true, "summary": true, "fyi": true,
}

// splitSpeaker returns the speaker and words of a "Speaker: words" line,
// or "" and the whole line.
func splitSpeaker(l string) (string, string) {
	m := speakerLine.FindStringSubmatch(l)
	if m == nil || notSpeakers[strings.ToLower(m[1])] || len(strings.Fields(m[1])) > 5 {
		return "", strings.TrimSpace(l)
	}
	return m[1], m[2]
}

func (p *Parser) textLine(l string) {
	if strings.TrimSpace(l) == "" {
		return
	}
	speaker, text := splitSpeaker(l)
	if speaker == "" && len(p.turns) > 0 {
		// A line without a speaker continues the turn before it.
		last := &p.turns[len(p.turns)-1]
		last.Text += " " + text
		return
	}
	p.addTurn(Turn{Speaker: speaker, Text: text})
}

func (p *Parser) addTurn(t Turn) {
	if t.Speaker != "" {
		if p.speakers == nil {
			p.speakers = make(map[string]bool)
		}
		if !p.speakers[t.Speaker] {
			p.speakers[t.Speaker] = true
			p.order = append(p.order, t.Speaker)
		}
	}
	p.turns = append(p.turns, t)
}

var (
	cueTiming = regexp.MustCompile(`^\s*((?:\d+:)?\d{1,2}:\d{2}[.,]\d{1,3})\s+-->\s+((?:\d+:)?\d{1,2}:\d{2}[.,]\d{1,3})`)
	voiceTag  = regexp.MustCompile(`<v(?:\.[\w.\-]+)?\s+([^>]+)>`)
	anyTag    = regexp.MustCompile(`</?[^>]*>`)
)

func (p *Parser) vttLine(l string) {
	trimmed := strings.TrimSpace(l)
	if trimmed == "" {
		p.inCue, p.skipping = false, false
		return
	}
	if p.skipping {
		return
	}
	if !p.inCue {
		if m := cueTiming.FindStringSubmatch(trimmed); m != nil {
			p.inCue = true
			p.cueStart, p.cueEnd = vttTime(m[1]), vttTime(m[2])
			p.lastEnd = max(p.lastEnd, p.cueEnd)
			return
		}
		if trimmed == "NOTE" || strings.HasPrefix(trimmed, "NOTE ") || trimmed == "STYLE" || trimmed == "REGION" {
			p.skipping = true
		}
		return // a cue identifier
	}
	speaker := ""
	if m := voiceTag.FindStringSubmatch(trimmed); m != nil {
		speaker = strings.TrimSpace(m[1])
	}
	text := strings.TrimSpace(htmlText(anyTag.ReplaceAllString(trimmed, "")))
	if speaker == "" {
		speaker, text = splitSpeaker(text)
	}
	if text == "" {
		return
	}
	if len(p.turns) > 0 {
		last := &p.turns[len(p.turns)-1]
		// Cues of one speaker in a row are one turn; a line without a voice
		// inside the same cue continues it too.
		if speaker == last.Speaker || (speaker == "" && last.End == p.cueEnd) {
			last.Text += " " + text
			last.End = p.cueEnd
			return
		}
	}
	p.addTurn(Turn{Speaker: speaker, Text: text, Start: p.cueStart, End: p.cueEnd})
}

var htmlEntities = strings.NewReplacer("&amp;", "&", "&lt;", "<", "&gt;", ">", "&nbsp;", " ", "&lrm;", "", "&rlm;", "")

func htmlText(s string) string { return htmlEntities.Replace(s) }

// vttTime reads hh:mm:ss.ttt or mm:ss.ttt.
func vttTime(s string) time.Duration {
	s = strings.Replace(s, ",", ".", 1)
	parts := strings.Split(s, ":")
	var d time.Duration
	for i, part := range parts {
		if i == len(parts)-1 {
			sec, frac, _ := strings.Cut(part, ".")
			d = d*60 + time.Duration(atoi(sec))*time.Second
			for len(frac) < 3 {
				frac += "0"
			}
			d += time.Duration(atoi(frac[:3])) * time.Millisecond
			continue
		}
		d = d*60 + time.Duration(atoi(part))*time.Second
	}
	return d
}

func atoi(s string) int {
	n := 0
	for _, r := range s {
		if r < '0' || r > '9' {
			return n
		}
		n = n*10 + int(r-'0')
	}
	return n
}
