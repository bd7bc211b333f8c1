package main

import (
	"bytes"
	"context"
	"encoding/xml"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestShortRun runs every scenario on every system with a few hundred jobs,
// against a redis-server of its own, so that the program cannot rot. The
// full run is not a test: see README.md.
func TestShortRun(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("JOBRELAY_REQUIRE_REDIS") == "1" {
			t.Fatalf("redis-server not found and JOBRELAY_REQUIRE_REDIS=1: %v", err)
		}
		t.Skipf("redis-server not found: %v", err)
	}
	out := t.TempDir()
	cfg, err := parseFlags([]string{
		"-n", "300", "-runs", "1", "-batch", "50",
		"-latency-n", "20", "-latency-budget", "2s", "-latency-gap", "1ms",
		"-scale-small", "100", "-scale-big", "1000",
		"-run-timeout", "2m", "-v", "-out", out,
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	rep, err := run(ctx, cfg, &log)
	t.Log(log.String())
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if err := rep.writeFiles(cfg.out); err != nil {
		t.Fatal(err)
	}

	// Every scenario has a value for every system it applies to.
	rows := rep.rows()
	// 16: each scale case has a row of completions and one of enqueues.
	if got, want := len(rows), 16; got != want {
		t.Errorf("got %d rows, want %d", got, want)
	}
	for _, rw := range rows {
		for _, s := range rep.systems {
			_, ok := rw.cells[s]
			want := true
			switch {
			case s == "asynq" && (rw.id == "enqueue-batch" || rw.id == "e2e-batch"):
				want = false
			case (s == "memory" || s == "bbolt") && rw.id == "memory":
				want = false
			}
			if ok != want {
				t.Errorf("row %q, system %s: has a value %v, want %v", rw.spec.label, s, ok, want)
			}
		}
	}
	for _, g := range rep.goals() {
		if !g.known {
			t.Errorf("goal %q could not be checked: %s", g.name, g.detail)
		}
	}

	md, err := os.ReadFile(filepath.Join(out, "RESULTS.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| enqueue: single, 8 goroutines | jobs/s |", "latency idle, enqueue to start: p99",
		"Redis memory per queued job", "scale: end to end with 1K already queued", "scale: enqueues/s meanwhile, 1K already queued", "## Targets", "results.svg"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("RESULTS.md lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(string(md), "error") {
		t.Errorf("RESULTS.md reports an error:\n%s", md)
	}

	svg, err := os.ReadFile(filepath.Join(out, "results.svg"))
	if err != nil {
		t.Fatal(err)
	}
	d := xml.NewDecoder(bytes.NewReader(svg))
	rects := 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("results.svg is not well-formed XML: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "rect" {
			rects++
		}
	}
	// A background and 4 legend boxes, then one bar per value.
	if rects < 5+40 {
		t.Errorf("results.svg has %d rects, want at least 45 (a bar per value)", rects)
	}
}

func TestParseFlags(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		wantErr string
	}{
		{args: nil},
		{args: []string{"-systems", "redis,asynq", "-scenarios", "e2e"}},
		{args: []string{"-systems", "kafka"}, wantErr: `unknown system "kafka"`},
		{args: []string{"-scenarios", ""}, wantErr: "no scenario selected"},
		{args: []string{"-n", "0"}, wantErr: "-n 0: must be at least 1"},
		{args: []string{"-scale-big", "-1"}, wantErr: "must not be negative"},
		{args: []string{"extra"}, wantErr: "unexpected arguments"},
	} {
		_, err := parseFlags(tc.args, io.Discard)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("parseFlags(%q): %v", tc.args, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("parseFlags(%q): got error %v, want one containing %q", tc.args, err, tc.wantErr)
		}
	}
}

func TestFormat(t *testing.T) {
	for _, tc := range []struct {
		v    float64
		unit string
		want string
	}{
		{1234567.4, "jobs/s", "1,234,567"},
		{999, "jobs/s", "999"},
		{0.0634, "ms", "0.063"},
		{5.236, "ms", "5.24"},
		{26.61, "ms", "26.6"},
		{1468.2, "ms", "1,468"},
		{83.4, "%", "83%"},
	} {
		if got := formatValue(tc.v, tc.unit); got != tc.want {
			t.Errorf("formatValue(%v, %q) = %q, want %q", tc.v, tc.unit, got, tc.want)
		}
	}
	if got := count(1_000_000); got != "1M" {
		t.Errorf("count(1e6) = %q, want 1M", got)
	}
}
