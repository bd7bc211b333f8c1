package agents

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Notion databases the pipeline writes to.
const (
	NotionMeetings = "meetings"
	NotionReports  = "reports"
)

// NotionBlock is one block of a page: a heading, a paragraph, a bullet or a
// to-do.
type NotionBlock struct {
	Type    string `json:"type"` // heading_1 to heading_3, paragraph, bulleted_list_item, to_do
	Text    string `json:"text"`
	Checked bool   `json:"checked,omitempty"`
}

// NotionPage is a page to create or update. Pages are keyed by database
// and ExternalID, so that syncing a meeting again updates its page instead
// of adding another: a job may run more than once.
type NotionPage struct {
	Database   string            `json:"database"`
	ExternalID string            `json:"external_id"`
	Title      string            `json:"title"`
	Properties map[string]string `json:"properties,omitempty"`
	Blocks     []NotionBlock     `json:"blocks"`
	UpdatedAt  time.Time         `json:"updated_at"`
}

// NotionPageRef names a written page.
type NotionPageRef struct {
	ID  string `json:"page_id"`
	URL string `json:"url"`
}

// NotionClient writes pages to Notion. The real one calls Notion's API;
// FolderNotion writes JSON files, so the pipeline runs offline.
type NotionClient interface {
	UpsertPage(ctx context.Context, page NotionPage) (NotionPageRef, error)
}

// FolderNotion keeps each page as a JSON file,
// Dir/<database>/<external id>.json, written whole or not at all.
type FolderNotion struct {
	Dir string
}

// UpsertPage writes page to its file, replacing an older version.
func (f FolderNotion) UpsertPage(ctx context.Context, page NotionPage) (NotionPageRef, error) {
	if f.Dir == "" {
		return NotionPageRef{}, errors.New("notion folder: no folder set")
	}
	name, err := fileName(page.ExternalID)
	if err != nil {
		return NotionPageRef{}, fmt.Errorf("notion folder: %w", err)
	}
	db, err := fileName(page.Database)
	if err != nil {
		return NotionPageRef{}, fmt.Errorf("notion folder: database: %w", err)
	}
	dir := filepath.Join(f.Dir, db)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return NotionPageRef{}, fmt.Errorf("notion folder: %w", err)
	}
	b, err := json.MarshalIndent(page, "", "  ")
	if err != nil {
		return NotionPageRef{}, fmt.Errorf("notion folder: encode page %s: %w", page.ExternalID, err)
	}
	tmp, err := os.CreateTemp(dir, ".page-*")
	if err != nil {
		return NotionPageRef{}, fmt.Errorf("notion folder: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return NotionPageRef{}, fmt.Errorf("notion folder: write page %s: %w", page.ExternalID, err)
	}
	if err := tmp.Close(); err != nil {
		return NotionPageRef{}, fmt.Errorf("notion folder: write page %s: %w", page.ExternalID, err)
	}
	path := filepath.Join(dir, name+".json")
	// Renaming a complete file into place means a reader never sees half
	// a page, even when two workers sync the same meeting at once.
	if err := os.Rename(tmp.Name(), path); err != nil {
		return NotionPageRef{}, fmt.Errorf("notion folder: %w", err)
	}
	abs, _ := filepath.Abs(path)
	return NotionPageRef{ID: db + "/" + name, URL: "file://" + filepath.ToSlash(abs)}, ctx.Err()
}

// fileName makes an ID safe as a file name.
func fileName(id string) (string, error) {
	if strings.TrimSpace(id) == "" {
		return "", errors.New("empty page ID")
	}
	b := []byte(id)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			b[i] = '_'
		}
	}
	s := string(b)
	if strings.Trim(s, ".") == "" || strings.HasPrefix(s, ".") {
		s = "_" + s
	}
	return s, nil
}

// MeetingDigest is what the pipeline learned about one meeting: the input
// of the Notion page and of the weekly report.
type MeetingDigest struct {
	MeetingID string    `json:"meeting_id"`
	Date      time.Time `json:"date"`
	Summary   Summary   `json:"summary"`
	Tasks     []Task    `json:"tasks"`
	Analysis  Analysis  `json:"analysis"`
}

// MeetingPage lays out a meeting as a Notion page: summary, action items as
// to-dos, decisions, risks and blockers.
func MeetingPage(d MeetingDigest, now time.Time) NotionPage {
	p := NotionPage{
		Database:   NotionMeetings,
		ExternalID: d.MeetingID,
		Title:      "Meeting " + d.MeetingID,
		Properties: map[string]string{"health": d.Analysis.Health, "tasks": fmt.Sprint(len(d.Tasks))},
		UpdatedAt:  now.UTC(),
	}
	if !d.Date.IsZero() {
		p.Properties["date"] = d.Date.Format(time.DateOnly)
		p.Title += " (" + d.Date.Format(time.DateOnly) + ")"
	}
	block := func(typ, text string) { p.Blocks = append(p.Blocks, NotionBlock{Type: typ, Text: text}) }
	block("heading_2", "Summary")
	block("paragraph", d.Summary.Text)
	block("heading_2", "Action items")
	for _, t := range d.Tasks {
		block("to_do", taskLine(t))
	}
	for _, sec := range []struct {
		title   string
		signals []Signal
	}{{"Decisions", d.Analysis.Decisions}, {"Risks", d.Analysis.Risks}, {"Blockers", d.Analysis.Blockers}} {
		if len(sec.signals) == 0 {
			continue
		}
		block("heading_2", sec.title)
		for _, s := range sec.signals {
			block("bulleted_list_item", s.Text)
		}
	}
	return p
}

// taskLine writes a task on one line: "Send the report (Alice, due Friday)".
func taskLine(t Task) string {
	var extra []string
	if t.Owner != "" {
		extra = append(extra, t.Owner)
	}
	switch {
	case t.DueDate != "":
		extra = append(extra, "due "+t.DueDate)
	case t.Due != "":
		extra = append(extra, "due "+t.Due)
	}
	if len(extra) == 0 {
		return t.Text
	}
	return t.Text + " (" + strings.Join(extra, ", ") + ")"
}

// ReportPage lays out a weekly report as a Notion page, one block per
// Markdown line.
func ReportPage(r Report, now time.Time) NotionPage {
	p := NotionPage{
		Database:   NotionReports,
		ExternalID: "week-" + r.From.Format(time.DateOnly),
		Title:      "Weekly report " + r.From.Format(time.DateOnly),
		Properties: map[string]string{"from": r.From.Format(time.DateOnly), "to": r.To.Format(time.DateOnly),
			"meetings": fmt.Sprint(r.Meetings), "tasks": fmt.Sprint(r.Tasks)},
		UpdatedAt: now.UTC(),
	}
	for _, line := range strings.Split(r.Markdown, "\n") {
		typ, text := "paragraph", line
		switch {
		case strings.TrimSpace(line) == "":
			continue
		case strings.HasPrefix(line, "# "):
			typ, text = "heading_1", line[2:]
		case strings.HasPrefix(line, "## "):
			typ, text = "heading_2", line[3:]
		case strings.HasPrefix(line, "### "):
			typ, text = "heading_3", line[4:]
		case strings.HasPrefix(line, "- "):
			typ, text = "bulleted_list_item", line[2:]
		}
		p.Blocks = append(p.Blocks, NotionBlock{Type: typ, Text: text})
	}
	return p
}
