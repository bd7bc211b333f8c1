package agents

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// monday is the day of the test meetings: Monday 2 March 2026.
var monday = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)

func mustParse(t *testing.T, text string) *Transcript {
	t.Helper()
	tr, err := ParseTranscript(text)
	if err != nil {
		t.Fatalf("ParseTranscript: %v", err)
	}
	return tr
}

func TestRuleTasks(t *testing.T) {
	t.Parallel()
	cases := []struct {
		line string
		want []Task // only Text, Owner, Due and DueDate are compared
	}{
		{"Carol: Alice will send the report by Friday.", []Task{{Text: "Send the report", Owner: "Alice", Due: "Friday", DueDate: "2026-03-06"}}},
		{"Alice: I will call the legal team tomorrow.", []Task{{Text: "Call the legal team", Owner: "Alice", Due: "tomorrow", DueDate: "2026-03-03"}}},
		{"Bob: Sure, I'll draft the proposal by end of week.", []Task{{Text: "Draft the proposal", Owner: "Bob", Due: "end of week", DueDate: "2026-03-06"}}},
		{"Bob: OK, I'm going to update the dashboard by March 20th.", []Task{{Text: "Update the dashboard", Owner: "Bob", Due: "March 20th", DueDate: "2026-03-20"}}},
		{"Bob: Let me check the logs.", []Task{{Text: "Check the logs", Owner: "Bob"}}},
		{"Carol: TODO: book the room for the offsite.", []Task{{Text: "Book the room for the offsite"}}},
		{"Carol: Action item: Dan to renew the certificate by 2026-04-01.", []Task{{Text: "Renew the certificate", Owner: "Dan", Due: "2026-04-01", DueDate: "2026-04-01"}}},
		{"Carol: Action item: update the prototype - Frank.", []Task{{Text: "Update the prototype", Owner: "Frank"}}},
		{"Carol: Action items: I will write the minutes.", []Task{{Text: "Write the minutes", Owner: "Carol"}}},
		{"Erin: Grace, could you ask the brand team for the palette today?", []Task{{Text: "Ask the brand team for the palette", Owner: "Grace", Due: "today", DueDate: "2026-03-02"}}},
		{"Erin: Can you review the copy, Bob?", []Task{{Text: "Review the copy", Owner: "Bob"}}},
		{"Erin: Dan needs to renew the certificate before next Tuesday.", []Task{{Text: "Renew the certificate", Owner: "Dan", Due: "next Tuesday", DueDate: "2026-03-10"}}},
		{"Alice: Bob to follow up with legal on Thursday.\nBob: Fine.", []Task{{Text: "Follow up with legal", Owner: "Bob", Due: "Thursday", DueDate: "2026-03-05"}}},
		{"Bob: I'll send it by 3/5.", []Task{{Text: "Send it", Owner: "Bob", Due: "3/5", DueDate: "2026-03-05"}}},
		{"Bob: I will finish the audit by end of month.", []Task{{Text: "Finish the audit", Owner: "Bob", Due: "end of month", DueDate: "2026-03-31"}}},
		{"Bob: I will ship the fix by next week.", []Task{{Text: "Ship the fix", Owner: "Bob", Due: "next week", DueDate: "2026-03-09"}}},
		// Not tasks: predictions, refusals, questions, thoughts.
		{"Bob: I will be out next week.", nil},
		{"Bob: I'll think about it.", nil},
		{"Bob: The report will be ready soon.", nil},
		{"Bob: I will not do that.", nil},
		{"Bob: Will Alice send it?", nil},
		{"Erin: Welcome to the design review.", nil},
		{"Bob: Let me know if you need anything.", nil},
		// A request, then the owner's own promise: one task, with the date.
		{"Hana: Jun, can you raise the size limit and document it?\nJun: Yes. I'll raise the size limit and document it by Friday.",
			[]Task{{Text: "Raise the size limit and document it", Owner: "Jun", Due: "Friday", DueDate: "2026-03-06"}}},
	}
	for _, c := range cases {
		tr := mustParse(t, c.line)
		got, err := RuleTasks{}.ExtractTasks(context.Background(), tr, monday)
		if err != nil {
			t.Fatalf("ExtractTasks(%q): %v", c.line, err)
		}
		var short []Task
		for _, g := range got {
			short = append(short, Task{Text: g.Text, Owner: g.Owner, Due: g.Due, DueDate: g.DueDate})
		}
		if !slices.Equal(short, c.want) {
			t.Errorf("ExtractTasks(%q)\n got %+v\nwant %+v", c.line, short, c.want)
		}
	}
}

func TestRuleTasksKeepSpeakerAndSource(t *testing.T) {
	t.Parallel()
	tr := mustParse(t, "Alice: Thanks. I will send the notes by Friday.")
	got, _ := RuleTasks{}.ExtractTasks(context.Background(), tr, time.Time{})
	if len(got) != 1 {
		t.Fatalf("got %d tasks, want 1", len(got))
	}
	if got[0].Speaker != "Alice" || got[0].Source != "I will send the notes by Friday." || got[0].DueDate != "" {
		t.Errorf("got %+v, want speaker Alice, the sentence as source, and no due date without a meeting date", got[0])
	}
}

func TestResolveDue(t *testing.T) {
	t.Parallel()
	friday := time.Date(2026, 3, 6, 15, 0, 0, 0, time.UTC)
	cases := []struct {
		due  string
		ref  time.Time
		want string
	}{
		{"today", monday, "2026-03-02"},
		{"EOD", monday, "2026-03-02"},
		{"tomorrow", monday, "2026-03-03"},
		{"Friday", monday, "2026-03-06"},
		{"Friday", friday, "2026-03-13"},
		{"this Friday", monday, "2026-03-06"},
		{"Monday", monday, "2026-03-09"},
		{"next Friday", monday, "2026-03-13"},
		{"next Monday", friday, "2026-03-09"},
		{"end of week", monday, "2026-03-06"},
		{"end of the week", friday, "2026-03-06"},
		{"next week", monday, "2026-03-09"},
		{"end of month", monday, "2026-03-31"},
		{"March 20", monday, "2026-03-20"},
		{"Feb 1st", monday, "2027-02-01"},
		{"5th of April", monday, "2026-04-05"},
		{"12/24", monday, "2026-12-24"},
		{"2025-01-01", monday, "2025-01-01"},
		{"February 30", monday, ""},
		{"Friday", time.Time{}, ""},
	}
	for _, c := range cases {
		if got := resolveDue(c.due, c.ref); got != c.want {
			t.Errorf("resolveDue(%q, %s) = %q, want %q", c.due, c.ref.Format(time.DateOnly), got, c.want)
		}
	}
}

func TestRuleAnalyst(t *testing.T) {
	t.Parallel()
	cases := []struct {
		line       string
		kind       string // "" for no signal
		wantHealth string
	}{
		{"Alice: We decided to ship on the 16th.", SignalDecision, HealthOnTrack},
		{"Alice: Let's go with the simple fix.", SignalDecision, HealthOnTrack},
		{"Alice: Agreed, we keep the old logo.", SignalDecision, HealthOnTrack},
		{"Alice: Not everyone agreed, so we wait.", "", HealthOnTrack},
		{"Alice: Our budget decision is in April.", "", HealthOnTrack},
		{"Bob: I'm worried the integration might slip.", SignalRisk, HealthAtRisk},
		{"Bob: The timeline is tight.", SignalRisk, HealthAtRisk},
		{"Carol: We are blocked on the legal review.", SignalBlocker, HealthBlocked},
		{"Carol: We're waiting for the brand team.", SignalBlocker, HealthBlocked},
		{"Carol: We are no longer blocked on legal.", "", HealthOnTrack},
		{"Carol: The demo went well.", "", HealthOnTrack},
	}
	for _, c := range cases {
		a, err := RuleAnalyst{}.Analyze(context.Background(), mustParse(t, c.line))
		if err != nil {
			t.Fatalf("Analyze: %v", err)
		}
		var kinds []string
		for _, s := range slices.Concat(a.Decisions, a.Risks, a.Blockers) {
			kinds = append(kinds, s.Kind)
			if s.Cue == "" || s.Speaker == "" {
				t.Errorf("%q: signal %+v lacks its cue or speaker", c.line, s)
			}
		}
		var want []string
		if c.kind != "" {
			want = []string{c.kind}
		}
		if !slices.Equal(kinds, want) {
			t.Errorf("Analyze(%q): got signals %v, want %v", c.line, kinds, want)
		}
		if a.Health != c.wantHealth {
			t.Errorf("Analyze(%q): got health %q, want %q", c.line, a.Health, c.wantHealth)
		}
	}
}

const roadmap = `Alice: Good morning, everyone. Thanks for joining.
Bob: Morning!
Alice: We decided to ship the beta to twenty customers on March 16.
Bob: I'm worried the payment integration might slip because the provider changed their API.
Carol: The launch email and the landing page are nearly ready.
Alice: Alice will send the updated roadmap to the leadership group by Friday.
Bob: Sounds good.
Alice: Thanks, everyone.`

func TestRetriever(t *testing.T) {
	t.Parallel()
	tr := mustParse(t, roadmap)
	vtt := mustParse(t, "WEBVTT\n\n00:00:00.000 --> 00:01:30.000\n<v Erin>We reviewed the onboarding flow.\n")
	cases := []struct {
		tr        *Transcript
		question  string
		found     bool
		wantInAns string
	}{
		{tr, "Who attended?", true, "Alice, Bob, Carol"},
		{tr, "Who will send the roadmap?", true, "Alice: send the updated roadmap to the leadership group, due Friday."},
		{tr, "When does the beta ship?", true, "March 16"},
		{tr, "What did we decide?", true, "We decided to ship the beta"},
		{tr, "What about the payment provider?", true, "payment integration might slip"},
		{tr, "What is the hiring plan for engineers?", false, "does not say"},
		{tr, "", false, "Ask a question"},
		{vtt, "How long was the meeting?", true, "1m30s"},
	}
	for _, c := range cases {
		a, err := Retriever{}.Answer(context.Background(), c.tr, c.question)
		if err != nil {
			t.Fatalf("Answer(%q): %v", c.question, err)
		}
		if a.Found != c.found || !strings.Contains(a.Answer, c.wantInAns) {
			t.Errorf("Answer(%q) = %q (found %v), want found %v and %q in it", c.question, a.Answer, a.Found, c.found, c.wantInAns)
		}
	}
}

func TestExtractiveSummary(t *testing.T) {
	t.Parallel()
	tr := mustParse(t, roadmap)
	s, err := Extractive{MaxSentences: 3}.Summarize(context.Background(), tr)
	if err != nil {
		t.Fatalf("Summarize: %v", err)
	}
	if len(s.Points) == 0 || len(s.Points) > 3 {
		t.Fatalf("got %d sentences, want 1 to 3", len(s.Points))
	}
	if !strings.Contains(s.Text, "We decided to ship the beta") {
		t.Errorf("summary %q lacks the decision", s.Text)
	}
	for _, filler := range []string{"Sounds good", "Thanks, everyone", "Good morning"} {
		if strings.Contains(s.Text, filler) {
			t.Errorf("summary %q keeps the pleasantry %q", s.Text, filler)
		}
	}
	for i := 1; i < len(s.Points); i++ {
		if s.Points[i].Turn < s.Points[i-1].Turn {
			t.Errorf("summary sentences out of order: %+v", s.Points)
		}
	}
	if s.Words != tr.Words || len(s.Speakers) != 3 || s.Speakers[0].Name != "Alice" || s.Speakers[0].Turns != 4 {
		t.Errorf("got words %d and speakers %+v, want %d words and Alice first with 4 turns", s.Words, s.Speakers, tr.Words)
	}
}

func TestRuleSuggester(t *testing.T) {
	t.Parallel()
	tasks := []Task{{Text: "Book the room", Source: "TODO: book the room."}, {Text: "Send it", Owner: "Bob", Source: "I'll send it."}}
	a := Analysis{
		Blockers:  []Signal{{Kind: SignalBlocker, Speaker: "Carol", Text: "We are blocked on legal.", Cue: "blocked on"}},
		Risks:     []Signal{{Kind: SignalRisk, Speaker: "Bob", Text: "It might slip.", Cue: "might slip"}},
		Decisions: []Signal{{Kind: SignalDecision, Text: "We decided to ship.", Cue: "We decided"}},
	}
	got, err := RuleSuggester{}.Suggest(context.Background(), tasks, a)
	if err != nil {
		t.Fatalf("Suggest: %v", err)
	}
	var kinds []string
	for _, s := range got {
		kinds = append(kinds, s.Kind)
	}
	want := []string{SuggestUnblock, SuggestMitigate, SuggestAssign, SuggestSchedule, SuggestShare}
	if !slices.Equal(kinds, want) {
		t.Errorf("got kinds %v, want %v", kinds, want)
	}
	none, _ := RuleSuggester{Max: 1}.Suggest(context.Background(), nil, Analysis{})
	if len(none) != 1 || none[0].Kind != SuggestCapture {
		t.Errorf("no tasks: got %+v, want one %q suggestion", none, SuggestCapture)
	}
}

func TestFolderNotionWritesPagesWhole(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	n := FolderNotion{Dir: dir}
	d := MeetingDigest{MeetingID: "../weekly sync", Date: monday,
		Summary:  Summary{Text: "We shipped."},
		Tasks:    []Task{{Text: "Send the notes", Owner: "Alice", DueDate: "2026-03-06"}},
		Analysis: Analysis{Health: HealthOnTrack, Decisions: []Signal{{Text: "We decided."}}}}
	ref, err := n.UpsertPage(context.Background(), MeetingPage(d, monday))
	if err != nil {
		t.Fatalf("UpsertPage: %v", err)
	}
	path := filepath.Join(dir, NotionMeetings, "_.._weekly_sync.json")
	if ref.ID != "meetings/_.._weekly_sync" || !strings.HasSuffix(ref.URL, filepath.ToSlash(path)) {
		t.Errorf("got ref %+v, want the page's file inside the folder (%s)", ref, path)
	}
	d.Summary.Text = "We shipped again."
	if _, err := n.UpsertPage(context.Background(), MeetingPage(d, monday)); err != nil {
		t.Fatalf("UpsertPage again: %v", err)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, NotionMeetings))
	if len(entries) != 1 {
		t.Fatalf("got %d files, want 1 page updated in place", len(entries))
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read page: %v", err)
	}
	var page NotionPage
	if err := json.Unmarshal(b, &page); err != nil {
		t.Fatalf("page is not JSON: %v", err)
	}
	var texts []string
	for _, blk := range page.Blocks {
		texts = append(texts, blk.Type+": "+blk.Text)
	}
	want := []string{"heading_2: Summary", "paragraph: We shipped again.", "heading_2: Action items",
		"to_do: Send the notes (Alice, due 2026-03-06)", "heading_2: Decisions", "bulleted_list_item: We decided."}
	if !slices.Equal(texts, want) {
		t.Errorf("got blocks %q, want %q", texts, want)
	}
	if _, err := n.UpsertPage(context.Background(), NotionPage{Database: NotionMeetings}); err == nil {
		t.Error("UpsertPage without an ID: got nil error")
	}
}

func TestMarkdownReporter(t *testing.T) {
	t.Parallel()
	from := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	to := from.AddDate(0, 0, 7)
	meetings := []MeetingDigest{
		{MeetingID: "b-call", Date: monday.AddDate(0, 0, 2), Summary: Summary{Text: "Call summary."},
			Tasks: []Task{{Text: "Write | escape", Owner: "Zed"}, {Text: "Orphan task"}}},
		{MeetingID: "a-sync", Date: monday, Summary: Summary{Text: "Sync summary."},
			Tasks:    []Task{{Text: "Send notes", Owner: "Alice", Due: "Friday", DueDate: "2026-03-06"}},
			Analysis: Analysis{Health: HealthAtRisk, Decisions: []Signal{{Text: "Ship it."}}, Risks: []Signal{{Text: "Tight."}}}},
	}
	r, err := MarkdownReporter{}.WeeklyReport(context.Background(), from, to, meetings)
	if err != nil {
		t.Fatalf("WeeklyReport: %v", err)
	}
	if r.Meetings != 2 || r.Tasks != 3 || r.Decisions != 1 || r.Risks != 1 || r.Blockers != 0 {
		t.Errorf("got totals %+v", r)
	}
	md := r.Markdown
	for _, want := range []string{
		"# Weekly report: 2026-03-02 to 2026-03-09",
		"2 meetings, 3 action items, 1 decisions, 1 risks, 0 blockers.",
		"### a-sync (2026-03-02)\n\nSync summary.\n\nHealth: at risk.",
		"| Alice | Send notes | 2026-03-06 | a-sync |\n| Zed | Write \\| escape | - | b-call |\n| - | Orphan task | - | b-call |",
		"## Decisions\n\n- Ship it. (a-sync)",
		"## Risks\n\n- Tight. (a-sync)",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	if strings.Index(md, "### a-sync") > strings.Index(md, "### b-call") {
		t.Error("meetings are not in date order")
	}
	if strings.Contains(md, "## Blockers") {
		t.Error("report has an empty Blockers section")
	}
	empty, _ := MarkdownReporter{}.WeeklyReport(context.Background(), from, to, nil)
	if !strings.Contains(empty.Markdown, "No meetings were processed this week.") {
		t.Errorf("empty week: got %q", empty.Markdown)
	}
	page := ReportPage(r, to)
	if page.Database != NotionReports || page.ExternalID != "week-2026-03-02" || page.Blocks[0].Type != "heading_1" {
		t.Errorf("report page: got %+v", page)
	}
}
