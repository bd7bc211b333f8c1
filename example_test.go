package engine_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jobrelay/engine"
)

type SummarizeArgs struct {
	MeetingID string `json:"meeting_id"`
	Text      string `json:"text"`
}

type Summary struct {
	Sentences int `json:"sentences"`
}

// The main calls: register a typed handler, enqueue, run, and wait for the
// result.
func Example() {
	ctx := context.Background()
	e, err := engine.New(engine.WithMemory())
	if err != nil {
		panic(err)
	}
	defer e.Close()

	engine.Handle(e, "summarization", func(ctx context.Context, job *engine.Job, in SummarizeArgs) (Summary, error) {
		job.Progress(ctx, 50, "half way")
		return Summary{Sentences: 3}, nil
	}, engine.Timeout(2*time.Hour))

	id, err := e.Enqueue(ctx, "summarization", SummarizeArgs{MeetingID: "m-1", Text: "…"})
	if err != nil {
		panic(err)
	}

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- e.Run(runCtx) }()

	sum, err := engine.Result[Summary](ctx, e, id)
	if err != nil {
		panic(err)
	}
	fmt.Println("sentences:", sum.Sentences)
	stop()
	<-done
	// Output: sentences: 3
}

// A user's unit test drives the engine without goroutines: enqueue, Drain,
// move the fake clock for retries, Drain again, assert.
func ExampleEngine_Drain() {
	ctx := context.Background()
	clock := engine.NewFakeClock(time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC))
	e, _ := engine.New(engine.WithMemory(), engine.WithClock(clock))
	defer e.Close()

	calls := 0
	e.HandleFunc("send-email", func(ctx context.Context, job *engine.Job) error {
		calls++
		if calls == 1 {
			return errors.New("smtp: try again")
		}
		return nil
	})
	id, _ := e.Enqueue(ctx, "send-email", map[string]string{"to": "ann@example.com"})

	ran, _ := e.Drain(ctx) // first attempt fails; the retry waits 1 s
	info, _ := e.Status(ctx, id)
	fmt.Println(ran, info.State)

	clock.Advance(time.Second)
	ran, _ = e.Drain(ctx)
	info, _ = e.Status(ctx, id)
	fmt.Println(ran, info.State, info.Attempt)
	// Output:
	// 1 retrying
	// 1 completed 2
}

// Jobs can wait for others: the child is deferred until its parent
// completes.
func ExampleDependsOn() {
	ctx := context.Background()
	e, _ := engine.New()
	defer e.Close()
	e.HandleFunc("step", func(ctx context.Context, job *engine.Job) error {
		fmt.Println("ran", string(job.Payload))
		return nil
	})
	parent, _ := e.Enqueue(ctx, "step", []byte("transcription"))
	child, _ := e.Enqueue(ctx, "step", []byte("summarization"), engine.DependsOn(parent), engine.Priority(9))
	info, _ := e.Status(ctx, child)
	fmt.Println("child is", info.State)
	e.Drain(ctx)
	// Output:
	// child is deferred
	// ran transcription
	// ran summarization
}

// A duplicate unique key returns the existing job's ID.
func ExampleUniqueKey() {
	ctx := context.Background()
	e, _ := engine.New()
	defer e.Close()
	first, _ := e.Enqueue(ctx, "summarize", nil, engine.UniqueKey("meeting-1/summary"))
	second, err := e.Enqueue(ctx, "summarize", nil, engine.UniqueKey("meeting-1/summary"))
	fmt.Println(second == first, errors.Is(err, engine.ErrDuplicateJob))
	// Output: true true
}
