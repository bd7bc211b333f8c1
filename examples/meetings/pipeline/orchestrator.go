package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"
	"unicode"

	"github.com/jobrelay/engine"
	"github.com/jobrelay/engine/examples/meetings/agents"
)

// ErrInvalidMeetingID means a meeting ID is empty, too long, or holds
// spaces or control characters.
var ErrInvalidMeetingID = errors.New("invalid meeting ID")

// ErrNoQuestion means a chat job was asked no question.
var ErrNoQuestion = errors.New("empty question")

// Agents are the workers behind each job type. A nil field gets its
// offline default from the agents package.
type Agents struct {
	Transcriber   agents.Transcriber
	Summarizer    agents.Summarizer
	TaskExtractor agents.TaskExtractor
	Analyst       agents.Analyst
	Responder     agents.Responder
	Suggester     agents.Suggester
	Notion        agents.NotionClient
	Reporter      agents.Reporter
}

// Config configures an Orchestrator.
type Config struct {
	// Objects is the object store that transcription reads: s3://bucket/key
	// is the file bucket/key in it (os.DirFS of OBJECT_STORE_DIR, or the
	// demo's embedded samples). Without it transcription jobs fail, saying
	// so.
	Objects fs.FS
	// NotionDir is where the default Notion client writes its pages, when
	// Agents.Notion is nil. Without either, Notion sync jobs fail, saying so.
	NotionDir string
	// Agents replaces the offline agents.
	Agents Agents
	// WeeklyReportSpec schedules the weekly report (a cron expression);
	// "off" schedules none. Defaults to DefaultWeeklyReportSpec.
	WeeklyReportSpec string
	// Timeout bounds one attempt of a job. Defaults to DefaultTimeout.
	Timeout time.Duration
	// TranscriptionTimeout bounds one attempt of a transcription. Defaults
	// to DefaultTranscriptionTimeout.
	TranscriptionTimeout time.Duration
}

// Orchestrator enqueues the pipeline's jobs, routes each job type to its
// agent, and reports on jobs and the queue: the old orchestration engine
// and queue manager in one. Make one per process with New, over the engine
// the process made once, and pass it to whatever needs it.
type Orchestrator struct {
	e      *engine.Engine
	cfg    Config
	agents Agents
}

// New registers the pipeline's handlers on e and schedules the weekly
// report. Every process that enqueues or runs the pipeline's jobs calls it;
// only processes that call e.Run run jobs and schedules.
func New(e *engine.Engine, cfg Config) (*Orchestrator, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.TranscriptionTimeout <= 0 {
		cfg.TranscriptionTimeout = DefaultTranscriptionTimeout
	}
	if cfg.WeeklyReportSpec == "" {
		cfg.WeeklyReportSpec = DefaultWeeklyReportSpec
	}
	a := cfg.Agents
	if a.Transcriber == nil {
		a.Transcriber = agents.TextTranscriber{}
	}
	if a.Summarizer == nil {
		a.Summarizer = agents.Extractive{}
	}
	if a.TaskExtractor == nil {
		a.TaskExtractor = agents.RuleTasks{}
	}
	if a.Analyst == nil {
		a.Analyst = agents.RuleAnalyst{}
	}
	if a.Responder == nil {
		a.Responder = agents.Retriever{}
	}
	if a.Suggester == nil {
		a.Suggester = agents.RuleSuggester{}
	}
	if a.Notion == nil && cfg.NotionDir != "" {
		a.Notion = agents.FolderNotion{Dir: cfg.NotionDir}
	}
	if a.Reporter == nil {
		a.Reporter = agents.MarkdownReporter{}
	}
	o := &Orchestrator{e: e, cfg: cfg, agents: a}

	errs := []error{
		engine.Handle(e, Transcription, o.transcribe, o.handlerOptions(Transcription)...),
		engine.Handle(e, Summarization, o.summarize, o.handlerOptions(Summarization)...),
		engine.Handle(e, TaskExtraction, o.extractTasks, o.handlerOptions(TaskExtraction)...),
		engine.Handle(e, AIPMAnalysis, o.analyze, o.handlerOptions(AIPMAnalysis)...),
		engine.Handle(e, Chat, o.chat, o.handlerOptions(Chat)...),
		engine.Handle(e, NotionSync, o.syncNotion, o.handlerOptions(NotionSync)...),
		engine.Handle(e, WeeklyReport, o.weeklyReport, o.handlerOptions(WeeklyReport)...),
		engine.Handle(e, Suggestions, o.suggest, o.handlerOptions(Suggestions)...),
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("pipeline: register handlers: %w", err)
	}
	if !strings.EqualFold(cfg.WeeklyReportSpec, "off") {
		if err := e.Schedule(WeeklyReportSchedule, cfg.WeeklyReportSpec, WeeklyReport, WeeklyReportArgs{}, o.jobOptions(WeeklyReport, "")...); err != nil {
			return nil, fmt.Errorf("pipeline: schedule the weekly report: %w", err)
		}
	}
	return o, nil
}

// Engine returns the engine the orchestrator enqueues on.
func (o *Orchestrator) Engine() *engine.Engine { return o.e }

func (o *Orchestrator) timeout(typ string) time.Duration {
	if typ == Transcription {
		return o.cfg.TranscriptionTimeout
	}
	return o.cfg.Timeout
}

func (o *Orchestrator) handlerOptions(typ string) []engine.HandlerOption {
	opts := []engine.HandlerOption{engine.Queue(Queue), engine.Timeout(o.timeout(typ)), engine.ResultTTL(KeepResults)}
	if key := limitKey(typ); key != "" {
		opts = append(opts, engine.LimitKey(key))
	}
	return opts
}

// jobOptions are given at every enqueue, so that a process that enqueues
// needs no handler defaults (an API process) and gets the same jobs.
func (o *Orchestrator) jobOptions(typ, meetingID string, extra ...engine.EnqueueOption) []engine.EnqueueOption {
	opts := []engine.EnqueueOption{
		engine.Queue(Queue), engine.Timeout(o.timeout(typ)),
		engine.MaxRetries(RetryPolicy().MaxRetries), engine.ResultTTL(KeepResults),
	}
	if key := limitKey(typ); key != "" {
		opts = append(opts, engine.LimitKey(key))
	}
	if meetingID != "" {
		opts = append(opts, engine.Meta("meeting_id", meetingID))
	}
	return append(opts, extra...)
}

// meetingKey is the unique key of a meeting's job of type typ: while it is
// live, enqueuing the same work again returns the live job.
func meetingKey(meetingID, typ string) engine.EnqueueOption {
	return engine.UniqueKey("meeting/" + meetingID + "/" + typ)
}

// CheckMeetingID refuses a meeting ID that is empty, longer than 128
// bytes, or holds spaces, slashes or control characters.
func CheckMeetingID(id string) error {
	if id == "" || len(id) > 128 {
		return fmt.Errorf("%w: %q: want 1 to 128 characters", ErrInvalidMeetingID, id)
	}
	for _, r := range id {
		if unicode.IsSpace(r) || unicode.IsControl(r) || r == '/' {
			return fmt.Errorf("%w: %q: no spaces, slashes or control characters", ErrInvalidMeetingID, id)
		}
	}
	return nil
}

// EnqueueTranscription enqueues the transcription of the recording at
// s3Key for a meeting (the old enqueue_transcription_job). While one is
// live for the meeting, it returns that job's ID with an error wrapping
// engine.ErrDuplicateJob.
func (o *Orchestrator) EnqueueTranscription(ctx context.Context, meetingID, s3Key string) (string, error) {
	if err := CheckMeetingID(meetingID); err != nil {
		return "", err
	}
	if _, _, err := ParseS3Key(s3Key); err != nil {
		return "", err
	}
	return o.e.Enqueue(ctx, Transcription, TranscriptionArgs{MeetingID: meetingID, S3Key: s3Key},
		o.jobOptions(Transcription, meetingID, meetingKey(meetingID, Transcription))...)
}

// enqueueAfterTranscript enqueues a job of type typ that reads the
// transcript of transcriptionJobID once that job completed.
func (o *Orchestrator) enqueueAfterTranscript(ctx context.Context, typ, meetingID, transcriptionJobID string) (string, error) {
	if err := CheckMeetingID(meetingID); err != nil {
		return "", err
	}
	return o.e.Enqueue(ctx, typ, TranscriptArgs{MeetingID: meetingID, TranscriptionJobID: transcriptionJobID},
		o.jobOptions(typ, meetingID, meetingKey(meetingID, typ), engine.DependsOn(transcriptionJobID))...)
}

// EnqueueSummarization enqueues the summary of a meeting, run once its
// transcription job completed.
func (o *Orchestrator) EnqueueSummarization(ctx context.Context, meetingID, transcriptionJobID string) (string, error) {
	return o.enqueueAfterTranscript(ctx, Summarization, meetingID, transcriptionJobID)
}

// EnqueueTaskExtraction enqueues finding a meeting's action items, run once
// its transcription job completed.
func (o *Orchestrator) EnqueueTaskExtraction(ctx context.Context, meetingID, transcriptionJobID string) (string, error) {
	return o.enqueueAfterTranscript(ctx, TaskExtraction, meetingID, transcriptionJobID)
}

// EnqueueAIPMAnalysis enqueues the project analysis of a meeting, run once
// its transcription job completed.
func (o *Orchestrator) EnqueueAIPMAnalysis(ctx context.Context, meetingID, transcriptionJobID string) (string, error) {
	return o.enqueueAfterTranscript(ctx, AIPMAnalysis, meetingID, transcriptionJobID)
}

// EnqueueChat enqueues a question about a meeting, answered from the
// transcript of transcriptionJobID once that job completed. Chat jobs go
// ahead of the long jobs in the queue.
func (o *Orchestrator) EnqueueChat(ctx context.Context, meetingID, transcriptionJobID, question string) (string, error) {
	if err := CheckMeetingID(meetingID); err != nil {
		return "", err
	}
	if strings.TrimSpace(question) == "" {
		return "", ErrNoQuestion
	}
	return o.e.Enqueue(ctx, Chat, ChatArgs{MeetingID: meetingID, TranscriptionJobID: transcriptionJobID, Question: question},
		o.jobOptions(Chat, meetingID, engine.DependsOn(transcriptionJobID), engine.Priority(ChatPriority))...)
}

// EnqueueNotionSync enqueues writing a meeting's page to Notion from the
// results of its summarization, task extraction and AIPM analysis jobs,
// run once all three completed.
func (o *Orchestrator) EnqueueNotionSync(ctx context.Context, meetingID string, jobs MeetingJobs) (string, error) {
	if err := CheckMeetingID(meetingID); err != nil {
		return "", err
	}
	args := NotionSyncArgs{MeetingID: meetingID, SummarizationJobID: jobs.Summarization,
		TaskExtractionJobID: jobs.TaskExtraction, AIPMAnalysisJobID: jobs.AIPMAnalysis}
	return o.e.Enqueue(ctx, NotionSync, args, o.jobOptions(NotionSync, meetingID, meetingKey(meetingID, NotionSync),
		engine.DependsOn(jobs.Summarization, jobs.TaskExtraction, jobs.AIPMAnalysis))...)
}

// EnqueueSuggestions enqueues proposing next steps for a meeting from the
// results of its task extraction and AIPM analysis jobs.
func (o *Orchestrator) EnqueueSuggestions(ctx context.Context, meetingID string, jobs MeetingJobs) (string, error) {
	if err := CheckMeetingID(meetingID); err != nil {
		return "", err
	}
	args := SuggestionsArgs{MeetingID: meetingID, TaskExtractionJobID: jobs.TaskExtraction, AIPMAnalysisJobID: jobs.AIPMAnalysis}
	return o.e.Enqueue(ctx, Suggestions, args, o.jobOptions(Suggestions, meetingID, meetingKey(meetingID, Suggestions),
		engine.DependsOn(jobs.TaskExtraction, jobs.AIPMAnalysis))...)
}

// EnqueueWeeklyReport enqueues the report of the week that ends at
// weekEnding (zero: now), outside the schedule.
func (o *Orchestrator) EnqueueWeeklyReport(ctx context.Context, weekEnding time.Time) (string, error) {
	return o.e.Enqueue(ctx, WeeklyReport, WeeklyReportArgs{WeekEnding: weekEnding}, o.jobOptions(WeeklyReport, "")...)
}

// ProcessMeeting enqueues a meeting's whole workflow: transcription;
// summarization, task extraction and AIPM analysis after it; Notion sync
// after those. Asked again while the meeting's jobs are live, it returns
// the live jobs instead of adding more.
func (o *Orchestrator) ProcessMeeting(ctx context.Context, meetingID, s3Key string) (MeetingJobs, error) {
	var jobs MeetingJobs
	steps := []struct {
		id      *string
		enqueue func() (string, error)
	}{
		{&jobs.Transcription, func() (string, error) { return o.EnqueueTranscription(ctx, meetingID, s3Key) }},
		{&jobs.Summarization, func() (string, error) { return o.EnqueueSummarization(ctx, meetingID, jobs.Transcription) }},
		{&jobs.TaskExtraction, func() (string, error) { return o.EnqueueTaskExtraction(ctx, meetingID, jobs.Transcription) }},
		{&jobs.AIPMAnalysis, func() (string, error) { return o.EnqueueAIPMAnalysis(ctx, meetingID, jobs.Transcription) }},
		{&jobs.NotionSync, func() (string, error) { return o.EnqueueNotionSync(ctx, meetingID, jobs) }},
	}
	for _, s := range steps {
		id, err := s.enqueue()
		if err != nil && !errors.Is(err, engine.ErrDuplicateJob) {
			return jobs, fmt.Errorf("process meeting %s: %w", meetingID, err)
		}
		*s.id = id
	}
	return jobs, nil
}

// JobStatus returns what is known of a job now (the old get_job_status),
// or an error wrapping engine.ErrJobNotFound.
func (o *Orchestrator) JobStatus(ctx context.Context, jobID string) (*engine.JobInfo, error) {
	return o.e.Status(ctx, jobID)
}

// QueueStats counts the jobs of the pipeline's queue by state (the old
// get_queue_stats); it encodes with the old keys.
func (o *Orchestrator) QueueStats(ctx context.Context) (engine.QueueStats, error) {
	stats, err := o.e.Stats(ctx)
	if err != nil {
		return engine.QueueStats{}, err
	}
	for _, s := range stats {
		if s.Queue == Queue {
			return s, nil
		}
	}
	return engine.QueueStats{Queue: Queue, Timestamp: time.Now().UTC()}, nil
}

// Digest waits for a meeting's summarization, task extraction and AIPM
// analysis jobs and gathers their results.
func (o *Orchestrator) Digest(ctx context.Context, meetingID string, jobs MeetingJobs) (agents.MeetingDigest, error) {
	d := agents.MeetingDigest{MeetingID: meetingID}
	sum, err := engine.Result[SummarizationResult](ctx, o.e, jobs.Summarization)
	if err != nil {
		return d, fmt.Errorf("summary of meeting %s: %w", meetingID, err)
	}
	tasks, err := engine.Result[TaskExtractionResult](ctx, o.e, jobs.TaskExtraction)
	if err != nil {
		return d, fmt.Errorf("tasks of meeting %s: %w", meetingID, err)
	}
	analysis, err := engine.Result[AIPMAnalysisResult](ctx, o.e, jobs.AIPMAnalysis)
	if err != nil {
		return d, fmt.Errorf("analysis of meeting %s: %w", meetingID, err)
	}
	d.Date, d.Summary, d.Tasks, d.Analysis = tasks.MeetingDate, sum.Summary, tasks.Tasks, analysis.Analysis
	return d, nil
}
