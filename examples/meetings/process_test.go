package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jobrelay/engine"
	"github.com/jobrelay/engine/examples/meetings/httpapi"
	"github.com/jobrelay/engine/examples/meetings/pipeline"
	"github.com/jobrelay/engine/examples/meetings/samples"
	"github.com/jobrelay/engine/internal/redistest"
)

var (
	buildOnce sync.Once
	binDir    string // removed by TestMain
	binPath   string
	buildErr  error
)

// TestMain removes the program built for the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// buildBinary builds this program once for all the tests that run it, with
// -race when the tests have it.
func buildBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if binDir, buildErr = os.MkdirTemp("", "meetings-test-"); buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "meetings")
		args := []string{"build", "-o", binPath}
		if raceEnabled {
			args = append(args, "-race")
		}
		out, err := exec.Command("go", append(args, ".")...).CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// baseEnv is the test's environment without the Redis and pipeline
// variables, so that a developer's settings do not leak into the processes.
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		switch k, _, _ := strings.Cut(kv, "="); k {
		case "REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_DB", "REDIS_PASSWORD", "OBJECT_STORE_DIR", "NOTION_DIR", "WEEKLY_REPORT_SPEC":
			continue
		}
		env = append(env, kv)
	}
	return env
}

// proc is a process of the program under test, its output collected.
type proc struct {
	name  string
	cmd   *exec.Cmd
	lines chan string
	exit  chan error

	mu  sync.Mutex
	out strings.Builder
}

// startProc starts the program with args; it is stopped (SIGTERM, then
// SIGKILL) when the test ends, and its output is logged if the test failed.
func startProc(t *testing.T, name, bin string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, cmd: exec.Command(bin, args...), lines: make(chan string, 4096), exit: make(chan error, 1)}
	p.cmd.Env = env
	p.cmd.Dir = t.TempDir()
	stdout, _ := p.cmd.StdoutPipe()
	stderr, _ := p.cmd.StderrPipe()
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	var readers sync.WaitGroup
	for _, r := range []io.Reader{stdout, stderr} {
		readers.Go(func() {
			sc := bufio.NewScanner(r)
			for sc.Scan() {
				p.mu.Lock()
				p.out.WriteString(sc.Text() + "\n")
				p.mu.Unlock()
				select {
				case p.lines <- sc.Text():
				default:
				}
			}
		})
	}
	go func() {
		readers.Wait()
		p.exit <- p.cmd.Wait()
	}()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			p.mu.Lock()
			t.Logf("output of %s:\n%s", name, p.out.String())
			p.mu.Unlock()
		}
	})
	return p
}

// waitFor reads the process's output until a line holds substr.
func (p *proc) waitFor(t *testing.T, substr string, within time.Duration) string {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case line := <-p.lines:
			if strings.Contains(line, substr) {
				return line
			}
		case err := <-p.exit:
			p.exit <- err
			t.Fatalf("%s exited (%v) before writing %q", p.name, err, substr)
		case <-deadline:
			t.Fatalf("%s did not write %q within %s", p.name, substr, within)
		}
	}
}

// stop sends SIGTERM and waits for the process to end; it returns its
// error (nil for exit 0).
func (p *proc) stop(t *testing.T) error {
	if p.cmd.ProcessState == nil {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case err := <-p.exit:
		p.exit <- err
		return err
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		err := <-p.exit
		p.exit <- err
		return fmt.Errorf("%s did not stop within 30s of SIGTERM", p.name)
	}
}

func TestDemoCommandRunsFromAnyFolder(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), demoTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "demo")
	cmd.Dir = t.TempDir()
	cmd.Env = baseEnv()
	began := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("meetings demo: %v (after %s)\n%s", err, time.Since(began), out)
	}
	for _, want := range []string{"# Weekly report:", "queue ai_workflows: 22 completed, 0 failed"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
}

// One API process and two worker processes share a real Redis: 50 meetings
// posted to the API are processed by the workers, every job completes, and
// the queue's statistics agree with the jobs.
func TestAPIAndTwoWorkersOnRedis(t *testing.T) {
	t.Parallel()
	const meetings = 50
	srv := redistest.Start(t, redistest.Options{})
	bin := buildBinary(t)

	objects, notion := t.TempDir(), t.TempDir()
	keys := make([]string, meetings)
	for i := range meetings {
		sample := samples.Meetings[i%len(samples.Meetings)]
		_, key, _ := pipeline.ParseS3Key(sample.S3Key)
		b, err := fs.ReadFile(samples.Objects, samples.Bucket+"/"+key)
		if err != nil {
			t.Fatalf("read sample: %v", err)
		}
		name := fmt.Sprintf("meeting-%02d-%s", i, key)
		if err := os.MkdirAll(filepath.Join(objects, "uploads"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(objects, "uploads", name), b, 0o644); err != nil {
			t.Fatal(err)
		}
		keys[i] = "s3://uploads/" + name
	}
	env := append(baseEnv(), "REDIS_URL=redis://"+srv.Addr()+"/0", "OBJECT_STORE_DIR="+objects, "NOTION_DIR="+notion)

	workers := []*proc{
		startProc(t, "worker-1", bin, env, "worker", "-name", "worker-1", "-concurrency", "4", "-monitor", "1s"),
		startProc(t, "worker-2", bin, env, "worker", "-name", "worker-2", "-concurrency", "4", "-monitor", "1s"),
	}
	api := startProc(t, "api", bin, env, "api", "-addr", "127.0.0.1:0")
	for _, w := range workers {
		w.waitFor(t, "jobrelay: running", 20*time.Second)
	}
	base := strings.TrimPrefix(api.waitFor(t, "listening on ", 20*time.Second), "meetings api: listening on ")

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	getJSON := func(path string, out any) int {
		req, _ := http.NewRequestWithContext(ctx, "GET", base+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("GET %s: decode: %v", path, err)
		}
		return resp.StatusCode
	}

	all := make([]pipeline.MeetingJobs, meetings)
	for i := range meetings {
		url := fmt.Sprintf("%s/meetings/m-%02d/process?s3_key=%s", base, i, keys[i])
		req, _ := http.NewRequestWithContext(ctx, "POST", url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("POST meeting %d: %v", i, err)
		}
		var p httpapi.ProcessResponse
		err = json.NewDecoder(resp.Body).Decode(&p)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || p.Status != "queued" {
			t.Fatalf("POST meeting %d: got %d %+v (%v)", i, resp.StatusCode, p, err)
		}
		all[i] = p.Jobs
	}

	// Each meeting's last job is followed through the API's event stream,
	// which hears the workers' events through Redis.
	var wg sync.WaitGroup
	ends := make([]string, meetings)
	for i := range meetings {
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(ctx, "GET", base+"/jobs/"+all[i].NotionSync+"/events", nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				ends[i] = err.Error()
				return
			}
			defer resp.Body.Close()
			sc := bufio.NewScanner(resp.Body)
			sc.Buffer(make([]byte, 0, 1<<16), 1<<22)
			var event string
			for sc.Scan() {
				line := sc.Text()
				if name, ok := strings.CutPrefix(line, "event: "); ok {
					event = name
					continue
				}
				if data, ok := strings.CutPrefix(line, "data: "); ok && event == "status" {
					var info engine.JobInfo
					if json.Unmarshal([]byte(data), &info) == nil && info.State.Terminal() {
						event = string(info.State) // it had ended before the stream began
					}
				}
			}
			ends[i] = event
		})
	}
	wg.Wait()
	for i, end := range ends {
		if end != "completed" {
			t.Errorf("meeting m-%02d: notion sync stream ended with %q, want completed", i, end)
		}
	}
	if t.Failed() {
		return
	}

	completed := 0
	for i, jobs := range all {
		for _, id := range []string{jobs.Transcription, jobs.Summarization, jobs.TaskExtraction, jobs.AIPMAnalysis, jobs.NotionSync} {
			var info engine.JobInfo
			if code := getJSON("/jobs/"+id+"/status", &info); code != http.StatusOK || info.State != engine.StateCompleted || info.Attempt != 1 {
				t.Errorf("meeting m-%02d: job %s (%s) is %s after %d attempts (HTTP %d), want completed after 1", i, id, info.Type, info.State, info.Attempt, code)
				continue
			}
			completed++
		}
	}

	var stats engine.QueueStats
	if code := getJSON("/queue/stats", &stats); code != http.StatusOK {
		t.Fatalf("stats: HTTP %d", code)
	}
	if stats.Queue != pipeline.Queue || stats.Completed != completed || stats.Processed != int64(completed) || stats.Failed != 0 ||
		stats.Queued != 0 || stats.Active != 0 || stats.Deferred != 0 || stats.Workers != 2 {
		t.Errorf("stats: got %+v, want %d completed and processed (as the jobs say), nothing else, 2 workers", stats, completed)
	}
	pages, err := os.ReadDir(filepath.Join(notion, "meetings"))
	if err != nil || len(pages) != meetings {
		t.Errorf("Notion pages: got %d (%v), want %d", len(pages), err, meetings)
	}
	for _, w := range workers {
		w.waitFor(t, fmt.Sprintf("completed=%d", completed), 10*time.Second) // each worker's monitor agrees
	}

	for _, p := range append(workers, api) {
		if err := p.stop(t); err != nil {
			t.Errorf("%s: exit after SIGTERM: %v, want 0", p.name, err)
		}
	}
	// Both workers did a share of the work, and together all of it.
	total := 0
	for _, w := range workers {
		ran := w.counted(t, "jobs_ran")
		if ran == 0 {
			t.Errorf("%s ran no jobs", w.name)
		}
		if failed := w.counted(t, "jobs_failed"); failed != 0 {
			t.Errorf("%s: %d attempts failed, want 0", w.name, failed)
		}
		total += ran
	}
	if total != meetings*5 {
		t.Errorf("workers ran %d jobs in all, want %d", total, meetings*5)
	}
}

// counted reads key=N from the process's "worker stopped" line.
func (p *proc) counted(t *testing.T, key string) int {
	t.Helper()
	p.mu.Lock()
	out := p.out.String()
	p.mu.Unlock()
	for _, line := range strings.Split(out, "\n") {
		if !strings.Contains(line, "worker stopped") {
			continue
		}
		for _, field := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(field, key+"="); ok {
				n, err := strconv.Atoi(v)
				if err != nil {
					t.Fatalf("%s: %s=%q is not a number", p.name, key, v)
				}
				return n
			}
		}
	}
	t.Fatalf("%s wrote no %s in its \"worker stopped\" line", p.name, key)
	return 0
}
