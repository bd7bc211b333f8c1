// Package pipeline is the meeting assistant's background work on jobrelay:
// the job types of the old Python module, their payloads and results, and
// an Orchestrator that enqueues them, runs them through agents and reports
// on them.
//
// Processing a meeting is a small workflow: transcription first;
// summarization, task extraction and AIPM analysis once it completed, each
// reading the transcript from the transcription job's result; Notion sync
// once those three completed. A weekly report runs on a schedule.
package pipeline

import (
	"time"

	"github.com/jobrelay/engine"
	"github.com/jobrelay/engine/examples/meetings/agents"
)

// Queue is the queue every job of the pipeline goes to, as in the old
// service.
const Queue = "ai_workflows"

// Queues lists every queue the pipeline uses: what a worker works unless
// told otherwise.
var Queues = []string{Queue}

// The job types, named as the old JobType enum named them, plus
// suggestions, the agent the old module planned next.
const (
	Transcription  = "transcription"
	Summarization  = "summarization"
	TaskExtraction = "task_extraction"
	AIPMAnalysis   = "aipm_analysis"
	Chat           = "chat"
	NotionSync     = "notion_sync"
	WeeklyReport   = "weekly_report"
	Suggestions    = "suggestions"
)

// JobTypes lists every job type of the pipeline.
var JobTypes = []string{Transcription, Summarization, TaskExtraction, AIPMAnalysis, Chat, NotionSync, WeeklyReport, Suggestions}

// Defaults of Config.
const (
	// DefaultTimeout bounds one attempt of a job, as in the old service.
	DefaultTimeout = time.Hour
	// DefaultTranscriptionTimeout bounds one attempt of a transcription,
	// which takes longer on the audio of long meetings.
	DefaultTranscriptionTimeout = 2 * time.Hour
	// DefaultWeeklyReportSpec schedules the weekly report: Mondays at 09:00
	// (in the worker's time zone; prefix CRON_TZ=Zone to choose).
	DefaultWeeklyReportSpec = "0 9 * * 1"
	// KeepResults is how long the results of a meeting's jobs are kept: over
	// a week, so that the weekly report finds every meeting of its week.
	KeepResults = 8 * 24 * time.Hour
)

// WeeklyReportSchedule is the name of the weekly report's schedule.
const WeeklyReportSchedule = "weekly_report"

// ChatPriority puts chat questions, which someone waits for, ahead of the
// long jobs in the queue.
const ChatPriority = 10

// RetryPolicy returns the old service's retry policy: 3 retries, backoff
// factor 2, first delay 1 s (delays 1 s, 2 s, 4 s; four runs in all).
// Workers run with it.
func RetryPolicy() engine.RetryPolicy {
	return engine.RetryPolicy{MaxRetries: 3, BackoffFactor: 2, InitialDelay: time.Second}
}

// The limit keys of the API quotas the agents would use: the LLM-backed
// types share one limit, Notion sync has its own.
const (
	LLMLimit    = "llm"
	NotionLimit = "notion"
)

// Limits returns the quotas every process of the app declares: at most 8
// LLM calls at once and 600 a minute, and at most 10 Notion requests a
// second. On Redis they hold across every worker process.
func Limits() []engine.Limit {
	return []engine.Limit{
		{Key: LLMLimit, Concurrency: 8, Rate: 600, Period: time.Minute},
		{Key: NotionLimit, Rate: 10, Period: time.Second},
	}
}

// LimitOptions declares Limits on an engine.
func LimitOptions() []engine.Option {
	var opts []engine.Option
	for _, l := range Limits() {
		opts = append(opts, engine.WithLimit(l))
	}
	return opts
}

// limitKey returns the limit key of a job type, or "" for none.
func limitKey(typ string) string {
	switch typ {
	case Summarization, TaskExtraction, AIPMAnalysis, Chat, Suggestions, WeeklyReport:
		return LLMLimit
	case NotionSync:
		return NotionLimit
	}
	return ""
}

// TranscriptionArgs is the payload of a transcription job.
type TranscriptionArgs struct {
	MeetingID string `json:"meeting_id"`
	// S3Key names the recording: s3://bucket/key (or bucket/key).
	S3Key string `json:"s3_key"`
}

// TranscriptionResult is the result of a transcription job, which the
// later jobs of the meeting read.
type TranscriptionResult struct {
	MeetingID string `json:"meeting_id"`
	S3Key     string `json:"s3_key"`
	// MeetingDate is the date in the recording's key (2026-03-02-…), or the
	// day the job was enqueued.
	MeetingDate time.Time         `json:"meeting_date"`
	Transcript  agents.Transcript `json:"transcript"`
}

// TranscriptArgs is the payload of the jobs that read a meeting's
// transcript: summarization, task extraction and AIPM analysis.
type TranscriptArgs struct {
	MeetingID          string `json:"meeting_id"`
	TranscriptionJobID string `json:"transcription_job_id"`
}

// SummarizationResult is the result of a summarization job.
type SummarizationResult struct {
	MeetingID string         `json:"meeting_id"`
	Summary   agents.Summary `json:"summary"`
}

// TaskExtractionResult is the result of a task extraction job.
type TaskExtractionResult struct {
	MeetingID   string        `json:"meeting_id"`
	MeetingDate time.Time     `json:"meeting_date"`
	Tasks       []agents.Task `json:"tasks"`
}

// AIPMAnalysisResult is the result of an AIPM analysis job.
type AIPMAnalysisResult struct {
	MeetingID string          `json:"meeting_id"`
	Analysis  agents.Analysis `json:"analysis"`
}

// ChatArgs is the payload of a chat job: a question about a meeting.
type ChatArgs struct {
	MeetingID          string `json:"meeting_id"`
	TranscriptionJobID string `json:"transcription_job_id"`
	Question           string `json:"question"`
}

// ChatResult is the result of a chat job.
type ChatResult struct {
	MeetingID string        `json:"meeting_id"`
	Answer    agents.Answer `json:"answer"`
}

// NotionSyncArgs is the payload of a Notion sync job: the jobs whose
// results make the meeting's page.
type NotionSyncArgs struct {
	MeetingID           string `json:"meeting_id"`
	SummarizationJobID  string `json:"summarization_job_id"`
	TaskExtractionJobID string `json:"task_extraction_job_id"`
	AIPMAnalysisJobID   string `json:"aipm_analysis_job_id"`
}

// NotionSyncResult is the result of a Notion sync job.
type NotionSyncResult struct {
	MeetingID string               `json:"meeting_id"`
	Page      agents.NotionPageRef `json:"page"`
}

// WeeklyReportArgs is the payload of a weekly report job.
type WeeklyReportArgs struct {
	// WeekEnding ends the report's week (the week is the 7 days before
	// it). Zero means the schedule's tick, or now for a job enqueued by
	// hand.
	WeekEnding time.Time `json:"week_ending,omitzero"`
}

// WeeklyReportResult is the result of a weekly report job.
type WeeklyReportResult struct {
	Report agents.Report        `json:"report"`
	Page   agents.NotionPageRef `json:"page"`
}

// SuggestionsArgs is the payload of a suggestions job: the jobs whose
// results it reads.
type SuggestionsArgs struct {
	MeetingID           string `json:"meeting_id"`
	TaskExtractionJobID string `json:"task_extraction_job_id"`
	AIPMAnalysisJobID   string `json:"aipm_analysis_job_id"`
}

// SuggestionsResult is the result of a suggestions job.
type SuggestionsResult struct {
	MeetingID   string              `json:"meeting_id"`
	Suggestions []agents.Suggestion `json:"suggestions"`
}

// MeetingJobs names the jobs of one meeting's workflow. It encodes with
// the keys of the HTTP API's answer.
type MeetingJobs struct {
	Transcription  string `json:"transcription"`
	Summarization  string `json:"summarization"`
	TaskExtraction string `json:"task_extraction"`
	AIPMAnalysis   string `json:"aipm_analysis"`
	NotionSync     string `json:"notion_sync"`
}
