package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/jobrelay/engine"
	"github.com/jobrelay/engine/examples/meetings/pipeline"
)

func TestDemoProcessesTheSampleMeetings(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), demoTimeout)
	defer cancel()
	var out bytes.Buffer
	if err := runDemo(ctx, &out, demoConfig{Dir: t.TempDir()}); err != nil {
		t.Fatalf("runDemo: %v\n%s", err, out.String())
	}
	text := out.String()
	for _, want := range []string{
		"periodic job weekly_report (0 9 * * 1): next run Mon ",
		"roadmap-sync transcription   100%",
		"roadmap-sync (2026-03-02), 230 words, health: blocked",
		"[ ] Alice        2026-03-06 Send the updated roadmap to the leadership group",
		"design-review (2026-03-03)",
		"[ ] Frank        2026-03-13 Run an A/B test on the opt-in timing and share the numbers",
		"customer-call (2026-03-04)",
		"A: Hana said: \"Then we decided to give your team early access to the single sign-on beta.\"",
		"# Weekly report:",
		"3 meetings, 14 action items, 4 decisions, 5 risks, 2 blockers.",
		"queue ai_workflows: 22 completed, 0 failed, 0 queued",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	if strings.Contains(text, "\x1b[") {
		t.Error("demo wrote terminal escapes to a buffer")
	}
	if t.Failed() {
		t.Logf("demo output:\n%s", text)
	}
}

func TestModesAndRedisRequirement(t *testing.T) {
	t.Setenv("REDIS_URL", "")
	t.Setenv("REDIS_HOST", "")
	cases := []struct {
		args       []string
		code       int
		wantStderr string
		wantStdout string
	}{
		{nil, exitUsage, "usage: meetings <mode>", ""},
		{[]string{"serve"}, exitUsage, `unknown mode "serve"`, ""},
		{[]string{"help"}, exitOK, "", "usage: meetings <mode>"},
		{[]string{"api"}, exitUsage, "meetings api: needs Redis", ""},
		{[]string{"worker", "-concurrency", "2"}, exitUsage, "meetings worker: needs Redis", ""},
		{[]string{"api", "-bogus"}, exitUsage, "flag provided but not defined: -bogus", ""},
		{[]string{"worker", "-h"}, exitOK, "-concurrency", ""},
		{[]string{"demo", "extra"}, exitUsage, `unexpected arguments ["extra"]`, ""},
	}
	for _, c := range cases {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), c.args, &stdout, &stderr)
		if code != c.code || !strings.Contains(stderr.String(), c.wantStderr) || !strings.Contains(stdout.String(), c.wantStdout) {
			t.Errorf("run(%q): got exit %d, stdout %q, stderr %q; want exit %d with %q in stdout and %q in stderr",
				c.args, code, stdout.String(), stderr.String(), c.code, c.wantStdout, c.wantStderr)
		}
	}
}

func TestProgressView(t *testing.T) {
	t.Parallel()
	jobs := pipeline.MeetingJobs{Transcription: "t1", Summarization: "s1", TaskExtraction: "x1", AIPMAnalysis: "a1", NotionSync: "n1"}
	events := []engine.Event{
		{Kind: engine.EventActive, JobID: "t1", Attempt: 1},
		{Kind: engine.EventProgress, JobID: "t1", Progress: 50, Message: "transcribed 1 KB of 2 KB"},
		{Kind: engine.EventCompleted, JobID: "t1"},
		{Kind: engine.EventCompleted, JobID: "s1"},
		{Kind: engine.EventRetrying, JobID: "x1", State: engine.StateRetrying, Error: "boom"},
		{Kind: engine.EventProgress, JobID: "other", Progress: 10},
	}

	var plain bytes.Buffer
	v := newProgressView(&plain, false)
	v.event(events[0]) // before track: kept and applied when the meeting is tracked
	v.track("m-1", jobs)
	for _, ev := range events[1:] {
		v.event(ev)
	}
	v.close()
	want := "  m-1 transcription            started (attempt 1)\n" +
		"  m-1 transcription             50%  transcribed 1 KB of 2 KB\n" +
		"  m-1 transcription            done\n" +
		"  m-1 summary                  done\n" +
		"  m-1 tasks                    retrying: boom\n"
	if plain.String() != want {
		t.Errorf("plain view:\n got %q\nwant %q", plain.String(), want)
	}

	var live bytes.Buffer
	lv := newProgressView(&live, true)
	lv.track("m-1", jobs)
	for _, ev := range events {
		lv.event(ev)
	}
	lv.close()
	frame := live.String()
	// Transcription done (60%) and the summary (10%): 70%.
	if !strings.Contains(frame, "\x1b[2Km-1             [████████████████░░░░░░░░]  70%  transcription ✓ summary ✓ tasks ↻ analysis · notion ·\n") {
		t.Errorf("live view: got %q", frame)
	}
}
