package agents

import (
	"context"
	"regexp"
	"strings"
	"time"
)

// Task is an action item found in a meeting.
type Task struct {
	Text string `json:"text"`
	// Owner is who the text says will do it ("" when it does not say).
	Owner string `json:"owner,omitempty"`
	// Due is the due date as said ("Friday", "end of month"); DueDate is
	// that day as YYYY-MM-DD, counted from the meeting's date.
	Due     string `json:"due,omitempty"`
	DueDate string `json:"due_date,omitempty"`
	// Speaker said it; Source is the sentence it came from.
	Speaker string `json:"speaker,omitempty"`
	Source  string `json:"source"`
}

// TaskExtractor finds action items in a transcript. meetingDate, when not
// zero, turns relative due dates ("by Friday") into days.
type TaskExtractor interface {
	ExtractTasks(ctx context.Context, t *Transcript, meetingDate time.Time) ([]Task, error)
}

// RuleTasks finds action items with rules a reader can check:
//
//   - a note: "Action item: Carol to review the pricing page", "TODO: book
//     the room" (owner when the note names one);
//   - a person's commitment: "Alice will send the report by Friday", "Bob
//     to follow up with legal", "Dan needs to renew the certificate";
//   - a request: "Erin, can you draft the FAQ?";
//   - the speaker's own "I will …", "I'll …", "I'm going to …" or "let me
//     …", which is the speaker's task.
//
// Due dates come from phrases such as "by Friday", "tomorrow", "end of
// week", "by March 20" or "2026-03-20".
type RuleTasks struct{}

const namePat = `([A-Z][\p{L}'\-]+(?: [A-Z][\p{L}'\-]+)?)`

var (
	fillers    = regexp.MustCompile(`(?i)^(?:ok|okay|so|sure|yes|yeah|yep|alright|all right|right|great|and|then|also|fine|good|perfect|cool|um|uh|well|thanks|thank you|absolutely|definitely)\b[,.!]?\s+`)
	noteMarker = regexp.MustCompile(`(?i)(?:^|\b)(?:action items?|todo|to-do|to do|follow[- ]up|task|ai)\s*[:\-–]\s+(.+)$`)
	noteOwnerA = regexp.MustCompile(`^@?` + namePat + `(?:\s*[:\-–,]\s*|\s+(?:to|will|should|needs to|has to|must|is going to)\s+|'ll\s+)(.+)$`)
	noteOwnerB = regexp.MustCompile(`^(.+?)\s*(?:[-–—]\s*|\(\s*)(?:(?i:owner):?\s*|(?i:assigned to)\s+|@)?` + namePat + `\)?$`)
	requestA   = regexp.MustCompile(`^` + namePat + `,\s*(?:(?i:can|could|would|will) you(?: please)?|please)\s+(.+?)\??$`)
	requestB   = regexp.MustCompile(`^(?i:can|could|would) you(?: please)?\s+(.+?),\s*` + namePat + `\??$`)
	firstPers  = regexp.MustCompile(`(?:^|[,;]\s+|\b(?:and|so|then)\s+)(?:I(?:'ll|’ll| will| am going to|'m going to|’m going to)|(?i:let me))\s+(.+)$`)
	thirdPers  = regexp.MustCompile(`(?:^|[,;]\s+|\b(?:and|so|then)\s+)` + namePat + `(?:'ll|’ll| will| is going to| needs to| should| has to| must)\s+(.+)$`)
	minutesTo  = regexp.MustCompile(`^` + namePat + ` to\s+(.+)$`)
	adverbs    = regexp.MustCompile(`(?i)^(?:also|just|then|definitely|personally|quickly|still|now|first)\s+`)
	trailing   = regexp.MustCompile(`(?i)(?:,?\s+(?:then|as well|too|please|for us|okay|ok|right|asap))+$`)
)

// notNames are capitalised words that start sentences but name nobody.
var notNames = func() map[string]bool {
	m := make(map[string]bool)
	for _, w := range strings.Fields(`I We You He She They It This That These Those There Here The A An Someone
	Somebody Everyone Everybody Nobody Who What Which Where When Why How Our My Your Their His Her Its Let If
	And But So Then Also Maybe Probably Next Last Today Tomorrow Tonight Monday Tuesday Wednesday Thursday
	Friday Saturday Sunday January February March April May June July August September October November
	December Nothing Everything Something Anyone One Each Every All Both Either Neither Once After Before
	Sure Okay Yes No Yeah Great Thanks Well Right Now Action Todo Task Note Please Welcome Hello Hi Good
	Happy Glad Nice Time Back Just Only Even Still Another Other Over Up Down Out`) {
		m[w] = true
	}
	return m
}()

// weakVerbs after "will" make a prediction or a thought, not a task.
var weakVerbs = map[string]bool{
	"be": true, "not": true, "never": true, "probably": true, "likely": true, "maybe": true,
	"see": true, "think": true, "know": true, "need": true, "want": true, "like": true,
}

func isName(s string) bool {
	first, _, _ := strings.Cut(s, " ")
	return !notNames[first]
}

// ExtractTasks finds the action items of t. A task that repeats an earlier
// one of the same owner (a request, then the owner's "I'll do it by …")
// replaces it, keeping the due date either of them gave.
func (RuleTasks) ExtractTasks(ctx context.Context, t *Transcript, meetingDate time.Time) ([]Task, error) {
	out := []Task{}
	speakers := make(map[string]bool)
	for _, s := range t.Speakers {
		speakers[s] = true
		first, _, _ := strings.Cut(s, " ")
		speakers[first] = true
	}
	for _, s := range t.Sentences() {
		task, ok := taskIn(s, speakers)
		if !ok {
			continue
		}
		task.Due, task.Text = cutDue(task.Text)
		task.Text = capitalize(trailing.ReplaceAllString(trimSentence(task.Text), ""))
		if len(words(task.Text)) < 2 {
			continue
		}
		if task.Due != "" {
			task.DueDate = resolveDue(task.Due, meetingDate)
		}
		if i := sameTask(out, task); i >= 0 {
			if task.Due == "" {
				task.Due, task.DueDate = out[i].Due, out[i].DueDate
			}
			out = append(out[:i], out[i+1:]...)
		}
		out = append(out, task)
	}
	return out, ctx.Err()
}

// sameTask returns the index of an earlier task of the same owner that says
// mostly the same, or -1.
func sameTask(tasks []Task, t Task) int {
	stems := contentStems(t.Text)
	for i, old := range tasks {
		if old.Owner == t.Owner && overlap(contentStems(old.Text), stems) >= 0.6 {
			return i
		}
	}
	return -1
}

// taskIn finds one task in a sentence, trying the rules from the most
// explicit to the least.
func taskIn(s Sentence, speakers map[string]bool) (Task, bool) {
	text := strings.TrimSpace(s.Text)
	for {
		cut := fillers.ReplaceAllString(text, "")
		if cut == text {
			break
		}
		text = cut
	}
	task := Task{Speaker: s.Speaker, Source: s.Text}
	question := strings.HasSuffix(text, "?")

	if m := noteMarker.FindStringSubmatch(text); m != nil {
		body := trimSentence(m[1])
		switch {
		case noteOwnerA.MatchString(body) && isName(noteOwnerA.FindStringSubmatch(body)[1]):
			mm := noteOwnerA.FindStringSubmatch(body)
			task.Owner, task.Text = mm[1], mm[2]
		case firstPers.MatchString(body):
			task.Owner, task.Text = s.Speaker, firstPers.FindStringSubmatch(body)[1]
		case noteOwnerB.MatchString(body) && isName(noteOwnerB.FindStringSubmatch(body)[2]):
			mm := noteOwnerB.FindStringSubmatch(body)
			task.Owner, task.Text = mm[2], mm[1]
		default:
			task.Text = body
		}
		return task, true
	}
	if m := requestA.FindStringSubmatch(text); m != nil && isName(m[1]) {
		task.Owner, task.Text = m[1], m[2]
		return task, true
	}
	if m := requestB.FindStringSubmatch(text); m != nil && isName(m[2]) {
		task.Owner, task.Text = m[2], m[1]
		return task, true
	}
	if question {
		return task, false
	}
	if m := firstPers.FindStringSubmatch(text); m != nil {
		if rest, ok := action(m[1]); ok {
			task.Owner, task.Text = s.Speaker, rest
			return task, true
		}
	}
	if m := thirdPers.FindStringSubmatch(text); m != nil && isName(m[1]) {
		if rest, ok := action(m[2]); ok {
			task.Owner, task.Text = m[1], rest
			return task, true
		}
	}
	// "Bob to follow up" reads as a task only for people at the meeting:
	// "Welcome to the review" is not one.
	if m := minutesTo.FindStringSubmatch(text); m != nil && speakers[m[1]] {
		if rest, ok := action(m[2]); ok {
			task.Owner, task.Text = m[1], rest
			return task, true
		}
	}
	return task, false
}

// action checks that the words after "will" start an action, and drops
// adverbs before it.
func action(rest string) (string, bool) {
	for {
		cut := adverbs.ReplaceAllString(rest, "")
		if cut == rest {
			break
		}
		rest = cut
	}
	first, _, _ := strings.Cut(strings.ToLower(rest), " ")
	if weakVerbs[strings.Trim(first, ".,!?")] {
		return "", false
	}
	return rest, len(words(rest)) >= 2
}

const (
	weekdayPat = `(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)`
	monthPat   = `(?:january|february|march|april|may|june|july|august|september|october|november|december|jan|feb|mar|apr|jun|jul|aug|sept|sep|oct|nov|dec)`
	datePat    = `(?:(?:next|this) ` + weekdayPat + `|` + weekdayPat + `|tomorrow|today|tonight|(?:the )?end of (?:the )?(?:day|week|month)|eod|eow|cob|next week|this week|` +
		monthPat + `\.? \d{1,2}(?:st|nd|rd|th)?|\d{1,2}(?:st|nd|rd|th)? (?:of )?` + monthPat + `|\d{4}-\d{2}-\d{2}|\d{1,2}/\d{1,2})`
)

var (
	duePrep = regexp.MustCompile(`(?i)\s*,?\s*\b(?:by|before|until|no later than|due(?: on| by)?|on|for)\s+(` + datePat + `)\b`)
	dueBare = regexp.MustCompile(`(?i)\s*,?\s*\b(tomorrow|today|tonight|this week|next week|eod|eow)\b`)
)

// cutDue finds a due date phrase in text and returns it and the text
// without it.
func cutDue(text string) (due, rest string) {
	for _, re := range []*regexp.Regexp{duePrep, dueBare} {
		if loc := re.FindStringSubmatchIndex(text); loc != nil {
			due = text[loc[2]:loc[3]]
			return due, strings.TrimSpace(text[:loc[0]] + text[loc[1]:])
		}
	}
	return "", text
}

var (
	isoDate   = regexp.MustCompile(`^(\d{4})-(\d{2})-(\d{2})$`)
	slashDate = regexp.MustCompile(`^(\d{1,2})/(\d{1,2})$`)
	monthDay  = regexp.MustCompile(`(?i)^(` + monthPat + `)\.? (\d{1,2})`)
	dayMonth  = regexp.MustCompile(`(?i)^(\d{1,2})(?:st|nd|rd|th)? (?:of )?(` + monthPat + `)$`)
)

var weekdays = map[string]time.Weekday{"sunday": time.Sunday, "monday": time.Monday, "tuesday": time.Tuesday,
	"wednesday": time.Wednesday, "thursday": time.Thursday, "friday": time.Friday, "saturday": time.Saturday}

// resolveDue turns a due phrase into a day (YYYY-MM-DD) counted from the
// meeting's date, or "" when it cannot.
func resolveDue(due string, ref time.Time) string {
	d := strings.ToLower(strings.TrimSpace(due))
	if m := isoDate.FindStringSubmatch(d); m != nil {
		return d
	}
	if ref.IsZero() {
		return ""
	}
	day := time.Date(ref.Year(), ref.Month(), ref.Day(), 0, 0, 0, 0, time.UTC)
	format := func(t time.Time) string { return t.Format(time.DateOnly) }
	// after returns the first wd strictly after from.
	after := func(from time.Time, wd time.Weekday) time.Time {
		n := (int(wd) - int(from.Weekday()) + 7) % 7
		if n == 0 {
			n = 7
		}
		return from.AddDate(0, 0, n)
	}
	mondayOfNextWeek := func() time.Time { return after(day, time.Monday) }
	d = strings.TrimPrefix(d, "the ")
	switch d {
	case "today", "tonight", "end of day", "end of the day", "eod", "cob":
		return format(day)
	case "tomorrow":
		return format(day.AddDate(0, 0, 1))
	case "end of week", "end of the week", "eow", "this week":
		if day.Weekday() == time.Friday {
			return format(day)
		}
		return format(after(day, time.Friday))
	case "next week":
		return format(mondayOfNextWeek())
	case "end of month", "end of the month":
		return format(time.Date(day.Year(), day.Month()+1, 0, 0, 0, 0, 0, time.UTC))
	}
	if rest, ok := strings.CutPrefix(d, "next "); ok {
		if wd, ok := weekdays[rest]; ok {
			return format(mondayOfNextWeek().AddDate(0, 0, (int(wd)+6)%7))
		}
	}
	if rest, ok := strings.CutPrefix(d, "this "); ok {
		d = rest
	}
	if wd, ok := weekdays[d]; ok {
		return format(after(day, wd))
	}
	if m := slashDate.FindStringSubmatch(d); m != nil {
		return dateInYear(day, time.Month(atoi(m[1])), atoi(m[2]))
	}
	if m := monthDay.FindStringSubmatch(d); m != nil {
		return dateInYear(day, monthOf(m[1]), atoi(m[2]))
	}
	if m := dayMonth.FindStringSubmatch(d); m != nil {
		return dateInYear(day, monthOf(m[2]), atoi(m[1]))
	}
	return ""
}

// dateInYear returns month/day in ref's year, or the next year's when that
// is already past.
func dateInYear(ref time.Time, month time.Month, dayOfMonth int) string {
	if month < 1 || month > 12 || dayOfMonth < 1 || dayOfMonth > 31 {
		return ""
	}
	t := time.Date(ref.Year(), month, dayOfMonth, 0, 0, 0, 0, time.UTC)
	if t.Month() != month {
		return "" // February 30
	}
	if t.Before(ref) {
		t = t.AddDate(1, 0, 0)
	}
	return t.Format(time.DateOnly)
}

func monthOf(s string) time.Month {
	s = strings.ToLower(s)
	for m := time.January; m <= time.December; m++ {
		if strings.HasPrefix(strings.ToLower(m.String()), s[:3]) {
			return m
		}
	}
	return 0
}
