package agents

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseTranscript(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		in       string
		format   string
		speakers []string
		turns    []Turn
	}{
		{
			name:     "plain lines",
			in:       "Alice: Hello there.\nBob: Hi Alice.\r\nAlice: Let's start.\n",
			format:   FormatText,
			speakers: []string{"Alice", "Bob"},
			turns: []Turn{
				{Speaker: "Alice", Text: "Hello there."},
				{Speaker: "Bob", Text: "Hi Alice."},
				{Speaker: "Alice", Text: "Let's start."},
			},
		},
		{
			name:     "continuation lines, blank lines and notes",
			in:       "\ufeffMary Ann: First point,\nwhich goes on.\n\nTODO: book the room\nBob: 10:30 works for me.",
			format:   FormatText,
			speakers: []string{"Mary Ann", "Bob"},
			turns: []Turn{
				{Speaker: "Mary Ann", Text: "First point, which goes on. TODO: book the room"},
				{Speaker: "Bob", Text: "10:30 works for me."},
			},
		},
		{
			name: "webvtt with voice tags",
			in: "WEBVTT - meeting\n\nNOTE a comment\nthat spans lines\n\nSTYLE\n::cue { color: red }\n\n" +
				"intro\n00:00:01.000 --> 00:00:04.500 align:start\n<v Erin>Welcome <i>all</i> &amp; hello.</v>\n\n" +
				"00:04.500 --> 00:00:07.000\n<v Erin>Second cue.\n\n" +
				"00:00:07.000 --> 00:00:09.250\n<v.loud Frank>I agree.\n\n" +
				"01:00:00.000 --> 01:00:02.000\nGrace: No voice tag here.\n",
			format:   FormatWebVTT,
			speakers: []string{"Erin", "Frank", "Grace"},
			turns: []Turn{
				{Speaker: "Erin", Text: "Welcome all & hello. Second cue.", Start: time.Second, End: 7 * time.Second},
				{Speaker: "Frank", Text: "I agree.", Start: 7 * time.Second, End: 9250 * time.Millisecond},
				{Speaker: "Grace", Text: "No voice tag here.", Start: time.Hour, End: time.Hour + 2*time.Second},
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseTranscript(c.in)
			if err != nil {
				t.Fatalf("ParseTranscript: %v", err)
			}
			if got.Format != c.format {
				t.Errorf("got format %q, want %q", got.Format, c.format)
			}
			if !reflect.DeepEqual(got.Speakers, c.speakers) {
				t.Errorf("got speakers %q, want %q", got.Speakers, c.speakers)
			}
			if !reflect.DeepEqual(got.Turns, c.turns) {
				t.Errorf("got turns\n%+v\nwant\n%+v", got.Turns, c.turns)
			}

			// Fed a byte at a time, as a slow stream, it reads the same.
			var p Parser
			for i := range len(c.in) {
				p.Write([]byte{c.in[i]})
			}
			streamed, err := p.Finish()
			if err != nil || !reflect.DeepEqual(streamed, got) {
				t.Errorf("byte by byte: got %+v (%v), want %+v", streamed, err, got)
			}
		})
	}
}

func TestParseTranscriptRefusesEmptyInput(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"", "\n\n", "WEBVTT\n\n00:00:01.000 --> 00:00:02.000\n\n"} {
		if _, err := ParseTranscript(in); !errors.Is(err, ErrEmptyTranscript) {
			t.Errorf("ParseTranscript(%q): got %v, want ErrEmptyTranscript", in, err)
		}
	}
}

func TestSplitSentences(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in   string
		want []string
	}{
		{"One. Two! Three?", []string{"One.", "Two!", "Three?"}},
		{"Ask Dr. Smith e.g. today. Then go.", []string{"Ask Dr. Smith e.g. today.", "Then go."}},
		{"Version 3.5 ships. J. R. R. Tolkien wrote it.", []string{"Version 3.5 ships.", "J. R. R. Tolkien wrote it."}},
		{`He said "stop." Then left`, []string{`He said "stop."`, "Then left"}},
		{"No end", []string{"No end"}},
	}
	for _, c := range cases {
		if got := splitSentences(c.in); !reflect.DeepEqual(got, c.want) {
			t.Errorf("splitSentences(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestTextTranscriberReadsInChunksWithProgress(t *testing.T) {
	t.Parallel()
	text := strings.Repeat("Alice: We ship on Friday.\nBob: I will write the notes.\n", 20)
	var percents []int
	tr, err := TextTranscriber{ChunkSize: 100}.Transcribe(context.Background(),
		Recording{Reader: strings.NewReader(text), Size: int64(len(text))},
		func(p int, msg string) { percents = append(percents, p) })
	if err != nil {
		t.Fatalf("Transcribe: %v", err)
	}
	if len(tr.Turns) != 40 || tr.Words != 20*9 {
		t.Errorf("got %d turns and %d words, want 40 and %d", len(tr.Turns), tr.Words, 20*9)
	}
	wantCalls := (len(text)+99)/100 + 1 // one per chunk, then the total
	if len(percents) != wantCalls {
		t.Errorf("got %d progress reports, want %d", len(percents), wantCalls)
	}
	for i := 1; i < len(percents); i++ {
		if percents[i] < percents[i-1] {
			t.Fatalf("progress went back: %v", percents)
		}
	}
	if percents[len(percents)-1] != 100 {
		t.Errorf("last progress %d, want 100", percents[len(percents)-1])
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = TextTranscriber{ChunkSize: 10, ChunkDelay: time.Hour}.Transcribe(ctx,
		Recording{Reader: strings.NewReader(text)}, nil)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled transcription: got %v, want context.Canceled", err)
	}
}
