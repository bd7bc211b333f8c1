package agents

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// ProgressFunc hears how far an agent has come: a percent from 0 to 100
// and a message for people.
type ProgressFunc func(percent int, message string)

// Recording is what a transcriber reads: a stored object, streamed.
type Recording struct {
	Reader io.Reader
	// Size is the object's length in bytes, for progress; 0 when unknown.
	Size int64
}

// Transcriber turns a recording into a transcript. A speech-to-text
// service would sit behind it; TextTranscriber reads recordings that are
// transcripts already.
type Transcriber interface {
	Transcribe(ctx context.Context, rec Recording, progress ProgressFunc) (*Transcript, error)
}

// DefaultChunkSize is how much of a recording TextTranscriber reads at a
// time.
const DefaultChunkSize = 64 << 10

// TextTranscriber reads a recording that holds a transcript (plain
// "Speaker: words" lines or WebVTT) chunk by chunk, parsing as it goes and
// reporting progress after each chunk.
type TextTranscriber struct {
	// ChunkSize is the size of one read. Defaults to DefaultChunkSize.
	ChunkSize int
	// ChunkDelay pauses after each chunk, standing in for the time speech
	// recognition takes (the demo uses it to make progress visible).
	// Defaults to none.
	ChunkDelay time.Duration
}

// Transcribe reads rec to its end and parses it.
func (tt TextTranscriber) Transcribe(ctx context.Context, rec Recording, progress ProgressFunc) (*Transcript, error) {
	size := tt.ChunkSize
	if size <= 0 {
		size = DefaultChunkSize
	}
	if progress == nil {
		progress = func(int, string) {}
	}
	buf := make([]byte, size)
	var p Parser
	var read int64
	for {
		n, err := rec.Reader.Read(buf)
		if n > 0 {
			p.Write(buf[:n])
			read += int64(n)
			pct := 0
			if rec.Size > 0 {
				pct = int(min(read*100/rec.Size, 100))
			}
			progress(pct, fmt.Sprintf("transcribed %s of %s", byteSize(read), byteSize(rec.Size)))
			if tt.ChunkDelay > 0 {
				select {
				case <-ctx.Done():
					return nil, context.Cause(ctx)
				case <-time.After(tt.ChunkDelay):
				}
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read recording after %d bytes: %w", read, err)
		}
		if err := ctx.Err(); err != nil {
			return nil, context.Cause(ctx)
		}
	}
	t, err := p.Finish()
	if err != nil {
		return nil, err
	}
	progress(100, fmt.Sprintf("%d turns, %d words, %d speakers", len(t.Turns), t.Words, len(t.Speakers)))
	return t, nil
}

// byteSize writes n bytes for people: 512 B, 1.5 KB, 2.0 MB.
func byteSize(n int64) string {
	switch {
	case n <= 0:
		return "?"
	case n < 1<<10:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
}
