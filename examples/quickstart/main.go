// Command quickstart enqueues a few jobs, runs them, prints their progress
// as it happens and their results, and exits. By default it keeps the jobs
// in a bbolt file in a temporary folder; -db names another file.
//
//	go run ./examples/quickstart
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jobrelay/engine"
)

// WordCount is the payload of a "count-words" job.
type WordCount struct {
	Text string `json:"text"`
}

// Counted is its result.
type Counted struct {
	Words   int    `json:"words"`
	Longest string `json:"longest"`
}

func main() {
	dir, err := os.MkdirTemp("", "jobrelay-quickstart-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	db := flag.String("db", filepath.Join(dir, "jobs.db"), "bbolt file that keeps the jobs")
	flag.Parse()
	if err := run(*db); err != nil {
		log.Fatal(err)
	}
}

func run(db string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	e, err := engine.New(
		engine.WithBolt(db),
		engine.WithConcurrency(4),
		engine.WithListener(engine.Listener{
			OnProgress: func(ev engine.Event) {
				fmt.Printf("  job …%s %3d%% %s\n", ev.JobID[len(ev.JobID)-6:], ev.Progress, ev.Message)
			},
		}),
	)
	if err != nil {
		return err
	}
	defer e.Close()

	err = engine.Handle(e, "count-words", func(ctx context.Context, job *engine.Job, in WordCount) (Counted, error) {
		words := strings.Fields(in.Text)
		var out Counted
		for i, w := range words {
			out.Words++
			if len(w) > len(out.Longest) {
				out.Longest = w
			}
			if err := job.Progress(ctx, (i+1)*100/len(words), "counted "+w); err != nil {
				return out, err
			}
		}
		return out, nil
	}, engine.Timeout(time.Minute))
	if err != nil {
		return err
	}

	texts := []string{
		"the quick brown fox",
		"jobs that never get lost",
		"retries with backoff and progress events",
	}
	var ids []string
	for _, t := range texts {
		id, err := e.Enqueue(ctx, "count-words", WordCount{Text: t})
		if err != nil {
			return err
		}
		fmt.Printf("enqueued %s: %q\n", id, t)
		ids = append(ids, id)
	}

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- e.Run(runCtx) }()

	for i, id := range ids {
		res, err := engine.Result[Counted](ctx, e, id)
		if err != nil {
			return err
		}
		fmt.Printf("result of %s: %d words, longest %q (%q)\n", id, res.Words, res.Longest, texts[i])
	}
	stop()
	if err := <-done; err != nil {
		return err
	}
	stats, err := e.Stats(ctx)
	if err != nil {
		return err
	}
	for _, s := range stats {
		fmt.Printf("queue %s: %d completed, %d failed, %d queued\n", s.Queue, s.Completed, s.Failed, s.Queued)
	}
	return nil
}
