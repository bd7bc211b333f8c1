package pipeline_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jobrelay/engine"
	"github.com/jobrelay/engine/examples/meetings/agents"
	"github.com/jobrelay/engine/examples/meetings/pipeline"
	"github.com/jobrelay/engine/examples/meetings/samples"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func newEngine(t *testing.T, opts ...engine.Option) *engine.Engine {
	t.Helper()
	base := []engine.Option{engine.WithMemory(), engine.WithQueues(pipeline.Queues...), engine.WithRetryPolicy(pipeline.RetryPolicy())}
	base = append(base, pipeline.LimitOptions()...)
	e, err := engine.New(append(base, opts...)...)
	if err != nil {
		t.Fatalf("engine.New: %v", err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func newPipeline(t *testing.T, e *engine.Engine, cfg pipeline.Config) *pipeline.Orchestrator {
	t.Helper()
	o, err := pipeline.New(e, cfg)
	if err != nil {
		t.Fatalf("pipeline.New: %v", err)
	}
	return o
}

// start runs e until the test ends.
func start(t *testing.T, e *engine.Engine) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

func timeout(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// gatedTranscriber holds every transcription until its gate opens.
type gatedTranscriber struct {
	gate chan struct{}
	agents.Transcriber
}

func (g gatedTranscriber) Transcribe(ctx context.Context, rec agents.Recording, p agents.ProgressFunc) (*agents.Transcript, error) {
	select {
	case <-g.gate:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return g.Transcriber.Transcribe(ctx, rec, p)
}

func TestProcessMeetingEndToEnd(t *testing.T) {
	t.Parallel()
	ctx := timeout(t)
	// Monday 9 March 2026, a minute before the weekly report is due.
	clock := engine.NewFakeClock(time.Date(2026, 3, 9, 8, 59, 0, 0, time.UTC))
	reports := make(chan engine.Event, 1)
	e := newEngine(t, engine.WithClock(clock), engine.WithConcurrency(4), engine.WithListener(engine.Listener{
		OnCompleted: func(ev engine.Event) {
			if ev.Type == pipeline.WeeklyReport {
				reports <- ev
			}
		},
	}))
	notion := t.TempDir()
	gate := make(chan struct{})
	o := newPipeline(t, e, pipeline.Config{
		Objects:   samples.Objects,
		NotionDir: notion,
		Agents:    pipeline.Agents{Transcriber: gatedTranscriber{gate: gate, Transcriber: agents.TextTranscriber{ChunkSize: 128}}},
	})
	start(t, e)

	const key = "s3://recordings/2026-03-02-roadmap-sync.txt"
	jobs, err := o.ProcessMeeting(ctx, "roadmap-sync", key)
	if err != nil {
		t.Fatalf("ProcessMeeting: %v", err)
	}
	again, err := o.ProcessMeeting(ctx, "roadmap-sync", key)
	if err != nil || again != jobs {
		t.Fatalf("ProcessMeeting again while live: got %+v (%v), want the same jobs %+v", again, err, jobs)
	}
	for _, id := range []string{jobs.Summarization, jobs.TaskExtraction, jobs.AIPMAnalysis, jobs.NotionSync} {
		if info, _ := o.JobStatus(ctx, id); info.State != engine.StateDeferred {
			t.Fatalf("job %s (%s) before its transcript: got %s, want deferred", id, info.Type, info.State)
		}
	}
	close(gate)

	info, err := e.Wait(ctx, jobs.NotionSync)
	if err != nil || info.State != engine.StateCompleted {
		t.Fatalf("notion sync: got %+v (%v), want completed", info, err)
	}
	for _, id := range []string{jobs.Transcription, jobs.Summarization, jobs.TaskExtraction, jobs.AIPMAnalysis} {
		info, _ := o.JobStatus(ctx, id)
		if info.State != engine.StateCompleted || info.Queue != pipeline.Queue || info.MaxRetries != 3 || info.Meta["meeting_id"] != "roadmap-sync" {
			t.Errorf("job %s: got %s in %q with %d retries and meta %v, want completed in %q with 3 retries for the meeting",
				info.Type, info.State, info.Queue, info.MaxRetries, info.Meta, pipeline.Queue)
		}
	}
	tr, _ := o.JobStatus(ctx, jobs.Transcription)
	if tr.Progress != 100 {
		t.Errorf("transcription progress: got %d, want 100", tr.Progress)
	}

	d, err := o.Digest(ctx, "roadmap-sync", jobs)
	if err != nil {
		t.Fatalf("Digest: %v", err)
	}
	if !d.Date.Equal(time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("meeting date: got %s, want 2026-03-02 from the key", d.Date)
	}
	wantTasks := []agents.Task{
		{Owner: "Bob", Text: "Put together a fallback plan for payments", DueDate: "2026-03-04"},
		{Owner: "Bob", Text: "Set up the staging environment with the new provider API", DueDate: "2026-03-04"},
		{Owner: "Alice", Text: "Call the legal team and ask for a date", DueDate: "2026-03-03"},
		{Owner: "Carol", Text: "Review the pricing page before the launch"},
		{Owner: "Alice", Text: "Send the updated roadmap to the leadership group", DueDate: "2026-03-06"},
		{Owner: "", Text: "Book the room for the customer advisory board"},
		{Owner: "Dan", Text: "Prepare the onboarding checklist for the beta customers", DueDate: "2026-03-12"},
	}
	var gotTasks []agents.Task
	for _, task := range d.Tasks {
		gotTasks = append(gotTasks, agents.Task{Owner: task.Owner, Text: task.Text, DueDate: task.DueDate})
	}
	if !slices.Equal(gotTasks, wantTasks) {
		t.Errorf("tasks:\n got %+v\nwant %+v", gotTasks, wantTasks)
	}
	if !strings.Contains(d.Summary.Text, "We decided to ship the beta to the first twenty customers on March 16.") {
		t.Errorf("summary %q lacks the launch decision", d.Summary.Text)
	}
	for _, filler := range []string{"Good morning", "Sounds good", "Thanks, everyone"} {
		if strings.Contains(d.Summary.Text, filler) {
			t.Errorf("summary %q keeps %q", d.Summary.Text, filler)
		}
	}
	if d.Analysis.Health != agents.HealthBlocked || len(d.Analysis.Blockers) != 1 || len(d.Analysis.Decisions) != 2 {
		t.Errorf("analysis: got %+v, want blocked with 1 blocker and 2 decisions", d.Analysis)
	}

	page, err := os.ReadFile(filepath.Join(notion, agents.NotionMeetings, "roadmap-sync.json"))
	if err != nil || !strings.Contains(string(page), "Send the updated roadmap to the leadership group (Alice, due 2026-03-06)") {
		t.Errorf("Notion page: got %q (%v), want the meeting's tasks", page, err)
	}

	chatID, err := o.EnqueueChat(ctx, "roadmap-sync", jobs.Transcription, "Who will send the roadmap?")
	if err != nil {
		t.Fatalf("EnqueueChat: %v", err)
	}
	chat, err := engine.Result[pipeline.ChatResult](ctx, e, chatID)
	if err != nil || !strings.HasPrefix(chat.Answer.Answer, "Alice: send the updated roadmap") {
		t.Errorf("chat: got %+v (%v), want Alice's task", chat, err)
	}
	sugID, err := o.EnqueueSuggestions(ctx, "roadmap-sync", jobs)
	if err != nil {
		t.Fatalf("EnqueueSuggestions: %v", err)
	}
	sug, err := engine.Result[pipeline.SuggestionsResult](ctx, e, sugID)
	if err != nil || len(sug.Suggestions) == 0 || sug.Suggestions[0].Kind != agents.SuggestUnblock {
		t.Errorf("suggestions: got %+v (%v), want the blocker first", sug, err)
	}

	// Monday 09:00: the weekly report's tick.
	clock.Set(time.Date(2026, 3, 9, 9, 0, 0, 0, time.UTC))
	var ev engine.Event
	select {
	case ev = <-reports:
	case <-ctx.Done():
		t.Fatal("no weekly report at Monday 09:00")
	}
	report, err := engine.Result[pipeline.WeeklyReportResult](ctx, e, ev.JobID)
	if err != nil {
		t.Fatalf("weekly report: %v", err)
	}
	md := report.Report.Markdown
	for _, want := range []string{"# Weekly report: 2026-03-02 to 2026-03-09", "### roadmap-sync (2026-03-02)",
		"| Alice | Send the updated roadmap to the leadership group | 2026-03-06 | roadmap-sync |",
		"- We are blocked on the legal review of the new terms of service. (roadmap-sync)"} {
		if !strings.Contains(md, want) {
			t.Errorf("weekly report lacks %q:\n%s", want, md)
		}
	}
	if _, err := os.Stat(filepath.Join(notion, agents.NotionReports, "week-2026-03-02.json")); err != nil {
		t.Errorf("weekly report page: %v", err)
	}

	st, err := o.QueueStats(ctx)
	if err != nil {
		t.Fatalf("QueueStats: %v", err)
	}
	if st.Queue != pipeline.Queue || st.Completed != 8 || st.Failed != 0 || st.Queued != 0 || st.Workers != 1 {
		t.Errorf("stats: got %+v, want 8 completed (5 of the meeting, chat, suggestions, report) and nothing else", st)
	}
}

// A recording that cannot be read fails its transcription at once (retries
// cannot help), and the meeting's later jobs are canceled with it.
func TestTranscriptionFailsWithoutRetryOnBadRecordings(t *testing.T) {
	t.Parallel()
	objects := fstest.MapFS{
		"recordings/empty.txt":  {Data: []byte("\n\n")},
		"recordings/folder/x":   {Data: []byte("Alice: hi there.")},
		"recordings/meeting.md": {Data: []byte("Alice: We decided.")},
	}
	cases := []struct {
		name    string
		objects fstest.MapFS
		key     string
		want    string
	}{
		{"missing", objects, "s3://recordings/nope.txt", "not in the object store"},
		{"empty", objects, "s3://recordings/empty.txt", "transcript has no words"},
		{"folder", objects, "s3://recordings/folder", "is a folder"},
		{"no object store", nil, "s3://recordings/meeting.md", "OBJECT_STORE_DIR"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ctx := timeout(t)
			e := newEngine(t)
			cfg := pipeline.Config{NotionDir: t.TempDir()}
			if c.objects != nil {
				cfg.Objects = c.objects
			}
			o := newPipeline(t, e, cfg)
			jobs, err := o.ProcessMeeting(ctx, "m-1", c.key)
			if err != nil {
				t.Fatalf("ProcessMeeting: %v", err)
			}
			if _, err := e.Drain(ctx); err != nil {
				t.Fatalf("Drain: %v", err)
			}
			tr, _ := o.JobStatus(ctx, jobs.Transcription)
			if tr.State != engine.StateFailed || tr.Attempt != 1 || !strings.Contains(tr.Error, c.want) {
				t.Errorf("transcription: got %s after %d attempts with %q, want failed after 1 with %q", tr.State, tr.Attempt, tr.Error, c.want)
			}
			for _, id := range []string{jobs.Summarization, jobs.TaskExtraction, jobs.AIPMAnalysis, jobs.NotionSync} {
				if info, _ := o.JobStatus(ctx, id); info.State != engine.StateCanceled {
					t.Errorf("%s after a failed transcription: got %s, want canceled", info.Type, info.State)
				}
			}
		})
	}
}

// flakyTranscriber fails its first call, as a speech service that timed out.
type flakyTranscriber struct {
	calls *int
	agents.Transcriber
}

func (f flakyTranscriber) Transcribe(ctx context.Context, rec agents.Recording, p agents.ProgressFunc) (*agents.Transcript, error) {
	*f.calls++
	if *f.calls == 1 {
		return nil, errors.New("speech service: 504 gateway timeout")
	}
	return f.Transcriber.Transcribe(ctx, rec, p)
}

func TestTransientFailureIsRetriedWithTheOldPolicy(t *testing.T) {
	t.Parallel()
	ctx := timeout(t)
	clock := engine.NewFakeClock(time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC))
	e := newEngine(t, engine.WithClock(clock))
	calls := 0
	o := newPipeline(t, e, pipeline.Config{Objects: samples.Objects, NotionDir: t.TempDir(),
		Agents: pipeline.Agents{Transcriber: flakyTranscriber{calls: &calls, Transcriber: agents.TextTranscriber{}}}})
	id, err := o.EnqueueTranscription(ctx, "customer-call", "s3://recordings/2026-03-04-customer-call.txt")
	if err != nil {
		t.Fatalf("EnqueueTranscription: %v", err)
	}
	e.Drain(ctx)
	info, _ := o.JobStatus(ctx, id)
	if info.State != engine.StateRetrying || !info.RunAt.Equal(clock.Now().Add(time.Second)) {
		t.Fatalf("after one failure: got %s due %s, want retrying in 1s", info.State, info.RunAt)
	}
	clock.Advance(time.Second)
	e.Drain(ctx)
	info, _ = o.JobStatus(ctx, id)
	if info.State != engine.StateCompleted || info.Attempt != 2 {
		t.Fatalf("after the retry: got %s on attempt %d, want completed on attempt 2", info.State, info.Attempt)
	}
	p := pipeline.RetryPolicy()
	if p.MaxRetries != 3 || p.Delay(0) != time.Second || p.Delay(1) != 2*time.Second || p.Delay(2) != 4*time.Second {
		t.Errorf("retry policy: got %+v, want 3 retries at 1s, 2s, 4s", p)
	}
}

func TestEnqueueRefusesBadInput(t *testing.T) {
	t.Parallel()
	ctx := timeout(t)
	e := newEngine(t)
	o := newPipeline(t, e, pipeline.Config{Objects: samples.Objects})
	cases := []struct {
		name string
		call func() (string, error)
		want error
	}{
		{"empty meeting", func() (string, error) { return o.EnqueueTranscription(ctx, "", "s3://b/k") }, pipeline.ErrInvalidMeetingID},
		{"meeting with a space", func() (string, error) { return o.EnqueueTranscription(ctx, "a b", "s3://b/k") }, pipeline.ErrInvalidMeetingID},
		{"meeting with a slash", func() (string, error) { return o.EnqueueTranscription(ctx, "a/b", "s3://b/k") }, pipeline.ErrInvalidMeetingID},
		{"meeting too long", func() (string, error) { return o.EnqueueTranscription(ctx, strings.Repeat("m", 129), "s3://b/k") }, pipeline.ErrInvalidMeetingID},
		{"key without bucket", func() (string, error) { return o.EnqueueTranscription(ctx, "m", "s3://just-a-bucket") }, pipeline.ErrInvalidS3Key},
		{"key leaving the bucket", func() (string, error) { return o.EnqueueTranscription(ctx, "m", "s3://b/../etc/passwd") }, pipeline.ErrInvalidS3Key},
		{"empty question", func() (string, error) { return o.EnqueueChat(ctx, "m", "x", "  ") }, pipeline.ErrNoQuestion},
		{"unknown transcription", func() (string, error) { return o.EnqueueSummarization(ctx, "m", "no-such-job") }, engine.ErrUnknownDependency},
		{"sync without jobs", func() (string, error) { return o.EnqueueNotionSync(ctx, "m", pipeline.MeetingJobs{}) }, engine.ErrInvalidOption},
	}
	for _, c := range cases {
		if _, err := c.call(); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want an error wrapping %v", c.name, err, c.want)
		}
	}
	if _, err := o.ProcessMeeting(ctx, "m", "not-a-key"); !errors.Is(err, pipeline.ErrInvalidS3Key) {
		t.Errorf("ProcessMeeting with a bad key: got %v, want ErrInvalidS3Key", err)
	}
	if page, _ := e.Jobs(ctx, engine.JobFilter{}); len(page.Jobs) != 0 {
		t.Errorf("bad input left %d jobs behind", len(page.Jobs))
	}
}

func TestWeeklyReportSchedule(t *testing.T) {
	t.Parallel()
	cases := []struct {
		spec     string
		wantSpec string // "" for no schedule
	}{
		{"", pipeline.DefaultWeeklyReportSpec},
		{"30 17 * * 5", "30 17 * * 5"},
		{"off", ""},
	}
	for _, c := range cases {
		e := newEngine(t)
		newPipeline(t, e, pipeline.Config{WeeklyReportSpec: c.spec})
		got := e.Schedules()
		switch {
		case c.wantSpec == "" && len(got) != 0:
			t.Errorf("spec %q: got schedules %+v, want none", c.spec, got)
		case c.wantSpec != "" && (len(got) != 1 || got[0].Spec != c.wantSpec || got[0].Type != pipeline.WeeklyReport || got[0].Name != pipeline.WeeklyReportSchedule):
			t.Errorf("spec %q: got schedules %+v, want the weekly report on %q", c.spec, got, c.wantSpec)
		}
	}
	if _, err := pipeline.New(newEngine(t), pipeline.Config{WeeklyReportSpec: "every monday"}); !errors.Is(err, engine.ErrInvalidOption) {
		t.Errorf("bad spec: got %v, want ErrInvalidOption", err)
	}
	// The default is Mondays at 09:00.
	e := newEngine(t, engine.WithClock(engine.NewFakeClock(time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC))))
	newPipeline(t, e, pipeline.Config{})
	if next := e.Schedules()[0].Next; !next.Equal(time.Date(2026, 3, 9, 9, 0, 0, 0, time.UTC)) {
		t.Errorf("next weekly report: got %s, want Monday 2026-03-09 09:00", next)
	}
}

func TestParseS3KeyAndMeetingDate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in, bucket, key string
		ok              bool
	}{
		{"s3://recordings/2026/a.vtt", "recordings", "2026/a.vtt", true},
		{"recordings/a.txt", "recordings", "a.txt", true},
		{" s3://b/k ", "b", "k", true},
		{"s3://b/", "", "", false},
		{"s3:///k", "", "", false},
		{"s3://b/./k", "", "", false},
		{"s3://b//k", "", "", false},
		{"", "", "", false},
	}
	for _, c := range cases {
		b, k, err := pipeline.ParseS3Key(c.in)
		if (err == nil) != c.ok || b != c.bucket || k != c.key {
			t.Errorf("ParseS3Key(%q) = %q, %q, %v; want %q, %q, ok %v", c.in, b, k, err, c.bucket, c.key, c.ok)
		}
	}
	fallback := time.Date(2026, 5, 6, 23, 30, 0, 0, time.UTC)
	if got := pipeline.MeetingDate("s3://r/2026-03-02-sync.txt", fallback); !got.Equal(time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("MeetingDate from key: got %s", got)
	}
	if got := pipeline.MeetingDate("s3://r/sync.txt", fallback); !got.Equal(time.Date(2026, 5, 6, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("MeetingDate fallback: got %s", got)
	}
}
