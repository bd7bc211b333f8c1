package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/jobrelay/engine"
	"github.com/jobrelay/engine/examples/meetings/agents"
)

// result reads the result of an earlier job of the workflow. The job has
// completed (the caller depends on it), so this does not wait; a job that is
// gone or did not complete fails the caller at once, since retrying cannot
// bring it back.
func result[T any](ctx context.Context, e *engine.Engine, what, id string) (T, error) {
	out, err := engine.Result[T](ctx, e, id)
	var jobErr *engine.JobError
	switch {
	case errors.Is(err, engine.ErrJobNotFound):
		return out, engine.SkipRetry(fmt.Errorf("%s job %s is gone (results are kept %s): %w", what, id, KeepResults, err))
	case errors.As(err, &jobErr):
		return out, engine.SkipRetry(fmt.Errorf("%s job %s did not complete: %w", what, id, err))
	case err != nil:
		return out, fmt.Errorf("%s job %s: %w", what, id, err)
	}
	return out, nil
}

// progress reports an agent's progress on job, skipping repeats of the same
// percent. A lost lease cancels ctx, which stops the agent.
func progress(ctx context.Context, job *engine.Job) agents.ProgressFunc {
	last := -1
	return func(percent int, message string) {
		if percent == last {
			return
		}
		last = percent
		_ = job.Progress(ctx, percent, message)
	}
}

func (o *Orchestrator) transcribe(ctx context.Context, job *engine.Job, in TranscriptionArgs) (TranscriptionResult, error) {
	out := TranscriptionResult{MeetingID: in.MeetingID, S3Key: in.S3Key, MeetingDate: MeetingDate(in.S3Key, job.CreatedAt)}
	bucket, key, err := ParseS3Key(in.S3Key)
	if err != nil {
		return out, engine.SkipRetry(err)
	}
	if o.cfg.Objects == nil {
		return out, engine.SkipRetry(errors.New("no object store: set OBJECT_STORE_DIR on the worker"))
	}
	f, err := o.cfg.Objects.Open(bucket + "/" + key)
	if errors.Is(err, fs.ErrNotExist) {
		return out, engine.SkipRetry(fmt.Errorf("recording %s is not in the object store (looked for %s/%s)", in.S3Key, bucket, key))
	}
	if err != nil {
		return out, fmt.Errorf("open recording %s: %w", in.S3Key, err)
	}
	defer f.Close()
	var size int64
	if st, err := f.Stat(); err == nil {
		if st.IsDir() {
			return out, engine.SkipRetry(fmt.Errorf("recording %s is a folder", in.S3Key))
		}
		size = st.Size()
	}
	_ = job.Progress(ctx, 0, "opened "+in.S3Key)
	t, err := o.agents.Transcriber.Transcribe(ctx, agents.Recording{Reader: f, Size: size}, progress(ctx, job))
	if errors.Is(err, agents.ErrEmptyTranscript) {
		return out, engine.SkipRetry(fmt.Errorf("recording %s: %w", in.S3Key, err))
	}
	if err != nil {
		return out, fmt.Errorf("transcribe %s: %w", in.S3Key, err)
	}
	out.Transcript = *t
	return out, nil
}

// transcript loads the transcript a job depends on.
func (o *Orchestrator) transcript(ctx context.Context, job *engine.Job, transcriptionJobID string) (TranscriptionResult, error) {
	tr, err := result[TranscriptionResult](ctx, o.e, "transcription", transcriptionJobID)
	if err == nil {
		_ = job.Progress(ctx, 10, fmt.Sprintf("read the transcript: %d turns, %d words", len(tr.Transcript.Turns), tr.Transcript.Words))
	}
	return tr, err
}

func (o *Orchestrator) summarize(ctx context.Context, job *engine.Job, in TranscriptArgs) (SummarizationResult, error) {
	out := SummarizationResult{MeetingID: in.MeetingID}
	tr, err := o.transcript(ctx, job, in.TranscriptionJobID)
	if err != nil {
		return out, err
	}
	if out.Summary, err = o.agents.Summarizer.Summarize(ctx, &tr.Transcript); err != nil {
		return out, fmt.Errorf("summarize meeting %s: %w", in.MeetingID, err)
	}
	_ = job.Progress(ctx, 100, fmt.Sprintf("kept %d sentences", len(out.Summary.Points)))
	return out, nil
}

func (o *Orchestrator) extractTasks(ctx context.Context, job *engine.Job, in TranscriptArgs) (TaskExtractionResult, error) {
	out := TaskExtractionResult{MeetingID: in.MeetingID}
	tr, err := o.transcript(ctx, job, in.TranscriptionJobID)
	if err != nil {
		return out, err
	}
	out.MeetingDate = tr.MeetingDate
	if out.Tasks, err = o.agents.TaskExtractor.ExtractTasks(ctx, &tr.Transcript, tr.MeetingDate); err != nil {
		return out, fmt.Errorf("extract tasks of meeting %s: %w", in.MeetingID, err)
	}
	_ = job.Progress(ctx, 100, fmt.Sprintf("found %d action items", len(out.Tasks)))
	return out, nil
}

func (o *Orchestrator) analyze(ctx context.Context, job *engine.Job, in TranscriptArgs) (AIPMAnalysisResult, error) {
	out := AIPMAnalysisResult{MeetingID: in.MeetingID}
	tr, err := o.transcript(ctx, job, in.TranscriptionJobID)
	if err != nil {
		return out, err
	}
	if out.Analysis, err = o.agents.Analyst.Analyze(ctx, &tr.Transcript); err != nil {
		return out, fmt.Errorf("analyze meeting %s: %w", in.MeetingID, err)
	}
	a := out.Analysis
	_ = job.Progress(ctx, 100, fmt.Sprintf("%d decisions, %d risks, %d blockers", len(a.Decisions), len(a.Risks), len(a.Blockers)))
	return out, nil
}

func (o *Orchestrator) chat(ctx context.Context, job *engine.Job, in ChatArgs) (ChatResult, error) {
	out := ChatResult{MeetingID: in.MeetingID}
	if strings.TrimSpace(in.Question) == "" {
		return out, engine.SkipRetry(ErrNoQuestion)
	}
	tr, err := o.transcript(ctx, job, in.TranscriptionJobID)
	if err != nil {
		return out, err
	}
	if out.Answer, err = o.agents.Responder.Answer(ctx, &tr.Transcript, in.Question); err != nil {
		return out, fmt.Errorf("answer about meeting %s: %w", in.MeetingID, err)
	}
	return out, nil
}

func (o *Orchestrator) syncNotion(ctx context.Context, job *engine.Job, in NotionSyncArgs) (NotionSyncResult, error) {
	out := NotionSyncResult{MeetingID: in.MeetingID}
	if o.agents.Notion == nil {
		return out, engine.SkipRetry(errors.New("no Notion client: set NOTION_DIR on the worker"))
	}
	d, err := o.Digest(ctx, in.MeetingID, MeetingJobs{Summarization: in.SummarizationJobID,
		TaskExtraction: in.TaskExtractionJobID, AIPMAnalysis: in.AIPMAnalysisJobID})
	var jobErr *engine.JobError
	switch {
	case errors.Is(err, engine.ErrJobNotFound) || errors.As(err, &jobErr):
		return out, engine.SkipRetry(err)
	case err != nil:
		return out, err
	}
	_ = job.Progress(ctx, 50, "gathered summary, tasks and analysis")
	if out.Page, err = o.agents.Notion.UpsertPage(ctx, agents.MeetingPage(d, time.Now())); err != nil {
		return out, fmt.Errorf("write Notion page of meeting %s: %w", in.MeetingID, err)
	}
	_ = job.Progress(ctx, 100, "wrote "+out.Page.ID)
	return out, nil
}

func (o *Orchestrator) suggest(ctx context.Context, job *engine.Job, in SuggestionsArgs) (SuggestionsResult, error) {
	out := SuggestionsResult{MeetingID: in.MeetingID}
	tasks, err := result[TaskExtractionResult](ctx, o.e, "task extraction", in.TaskExtractionJobID)
	if err != nil {
		return out, err
	}
	analysis, err := result[AIPMAnalysisResult](ctx, o.e, "AIPM analysis", in.AIPMAnalysisJobID)
	if err != nil {
		return out, err
	}
	if out.Suggestions, err = o.agents.Suggester.Suggest(ctx, tasks.Tasks, analysis.Analysis); err != nil {
		return out, fmt.Errorf("suggest next steps for meeting %s: %w", in.MeetingID, err)
	}
	return out, nil
}

func (o *Orchestrator) weeklyReport(ctx context.Context, job *engine.Job, in WeeklyReportArgs) (WeeklyReportResult, error) {
	var out WeeklyReportResult
	end := in.WeekEnding
	if end.IsZero() {
		end = time.Now()
		if tick, err := time.Parse(time.RFC3339, job.Meta[engine.MetaScheduleTick]); err == nil {
			end = tick
		}
	}
	start := end.AddDate(0, 0, -7)
	digests, err := o.week(ctx, start, end)
	if err != nil {
		return out, err
	}
	_ = job.Progress(ctx, 50, fmt.Sprintf("gathered %d meetings", len(digests)))
	if out.Report, err = o.agents.Reporter.WeeklyReport(ctx, start, end, digests); err != nil {
		return out, fmt.Errorf("write weekly report: %w", err)
	}
	if o.agents.Notion != nil {
		if out.Page, err = o.agents.Notion.UpsertPage(ctx, agents.ReportPage(out.Report, time.Now())); err != nil {
			return out, fmt.Errorf("write weekly report to Notion: %w", err)
		}
	}
	_ = job.Progress(ctx, 100, fmt.Sprintf("%d meetings, %d action items", out.Report.Meetings, out.Report.Tasks))
	return out, nil
}

// week gathers the digests of the meetings whose jobs completed in [start,
// end), from the results the engine keeps (KeepResults).
func (o *Orchestrator) week(ctx context.Context, start, end time.Time) ([]agents.MeetingDigest, error) {
	byMeeting := make(map[string]*agents.MeetingDigest)
	var order []string
	digest := func(id string) *agents.MeetingDigest {
		d := byMeeting[id]
		if d == nil {
			d = &agents.MeetingDigest{MeetingID: id}
			byMeeting[id] = d
			order = append(order, id)
		}
		return d
	}
	for _, typ := range []string{Summarization, TaskExtraction, AIPMAnalysis} {
		err := o.completed(ctx, typ, start, end, func(info *engine.JobInfo) error {
			switch typ {
			case Summarization:
				var r SummarizationResult
				if err := decode(info, &r); err != nil {
					return err
				}
				digest(r.MeetingID).Summary = r.Summary
			case TaskExtraction:
				var r TaskExtractionResult
				if err := decode(info, &r); err != nil {
					return err
				}
				d := digest(r.MeetingID)
				d.Tasks, d.Date = r.Tasks, r.MeetingDate
			case AIPMAnalysis:
				var r AIPMAnalysisResult
				if err := decode(info, &r); err != nil {
					return err
				}
				digest(r.MeetingID).Analysis = r.Analysis
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	out := make([]agents.MeetingDigest, 0, len(order))
	for _, id := range order {
		out = append(out, *byMeeting[id])
	}
	return out, nil
}

// completed calls fn for every completed job of type typ that finished in
// [start, end), oldest first, so that a meeting processed twice shows its
// latest results.
func (o *Orchestrator) completed(ctx context.Context, typ string, start, end time.Time, fn func(*engine.JobInfo) error) error {
	f := engine.JobFilter{Queue: Queue, State: engine.StateCompleted, Type: typ, Limit: 500}
	for {
		page, err := o.e.Jobs(ctx, f)
		if err != nil {
			return fmt.Errorf("list %s jobs: %w", typ, err)
		}
		for _, info := range page.Jobs {
			if info.FinishedAt.Before(start) || !info.FinishedAt.Before(end) {
				continue
			}
			if err := fn(info); err != nil {
				return err
			}
		}
		if page.Next == "" {
			return nil
		}
		f.Cursor = page.Next
	}
}

func decode(info *engine.JobInfo, v any) error {
	if err := json.Unmarshal(info.Result, v); err != nil {
		return fmt.Errorf("decode result of %s job %s: %w", info.Type, info.ID, err)
	}
	return nil
}
