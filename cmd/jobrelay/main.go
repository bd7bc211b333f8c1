// Command jobrelay operates the queues of a jobrelay engine from a terminal:
// it shows queue counts, lists and inspects jobs, cancels and retries them,
// pauses and resumes queues, lists the running workers, enqueues jobs, and
// serves the web dashboard.
//
//	go install github.com/jobrelay/engine/cmd/jobrelay@latest
//	jobrelay --redis redis://localhost:6379/0 stats --watch
//	jobrelay --bolt jobs.db jobs --state failed
//	jobrelay --bolt jobs.db job retry 01J9Z8V4M2K7 --json
//
// It connects with --redis URL (or the REDIS_URL, REDIS_HOST, REDIS_PORT,
// REDIS_DB and REDIS_PASSWORD variables) or --bolt PATH. A bbolt file is
// held by one process at a time: while an application runs on it, mount
// dashboard.Handler in that application instead.
//
// Flags go before or after the arguments. Output is a table for people and
// JSON with --json. The exit code is 0 on success, 1 on failure (an unknown
// job, a refused action, an unreachable backend) and 2 on a usage error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/jobrelay/engine"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// run is the whole command, minus the process: tests call it with their
// own arguments and writers.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := &cli{stdout: stdout, stderr: stderr, open: openEngine}
	return c.main(ctx, args)
}

// cli is one invocation.
type cli struct {
	stdout, stderr io.Writer
	// open connects to the backend; tests replace it to share an engine.
	open func(ctx context.Context, o *options, create bool) (*engine.Engine, func(), error)
	opts options
	e    *engine.Engine
}

// options holds every flag; each command registers the ones it reads.
type options struct {
	redis, bolt, prefix string
	json, help          bool

	watch    bool
	interval time.Duration

	queue, state, typ, cursor string
	limit                     int

	delay    time.Duration
	retries  int
	priority int

	addr, token, user, password string
	readOnly                    bool
}

// command is one subcommand: its words ("job show"), its arguments, the
// flags it takes beside the global ones, and what it does.
type command struct {
	name    string
	args    string
	minArgs int
	maxArgs int
	summary string
	flags   func(fs *flag.FlagSet, o *options)
	run     func(c *cli, ctx context.Context, args []string) error
	// create lets the command create a missing bbolt file.
	create bool
}

var commands []*command

func init() {
	commands = []*command{
		{name: "stats", summary: "show each queue's jobs per state and workers", run: (*cli).stats,
			flags: func(fs *flag.FlagSet, o *options) {
				fs.BoolVar(&o.watch, "watch", false, "refresh the table in place until interrupted")
				fs.DurationVar(&o.interval, "interval", 2*time.Second, "refresh interval of --watch")
			}},
		{name: "jobs", summary: "list jobs, oldest first, a page at a time", run: (*cli).jobs,
			flags: func(fs *flag.FlagSet, o *options) {
				fs.StringVar(&o.queue, "queue", "", "only jobs of this queue")
				fs.StringVar(&o.state, "state", "", "only jobs in this state ("+stateNames()+")")
				fs.StringVar(&o.typ, "type", "", "only jobs of this type")
				fs.StringVar(&o.cursor, "cursor", "", "start after this cursor (printed under the previous page)")
				fs.IntVar(&o.limit, "limit", 20, "jobs per page")
			}},
		{name: "job show", args: "ID", minArgs: 1, maxArgs: 1, summary: "show a job: state, attempts, progress, error, result, times", run: (*cli).jobShow},
		{name: "job cancel", args: "ID", minArgs: 1, maxArgs: 1, summary: "cancel a job (an active one is stopped by its worker)", run: (*cli).jobCancel},
		{name: "job retry", args: "ID", minArgs: 1, maxArgs: 1, summary: "requeue a failed or canceled job from a clean slate", run: (*cli).jobRetry},
		{name: "queue pause", args: "NAME", minArgs: 1, maxArgs: 1, summary: "stop every worker from starting jobs of a queue", run: (*cli).queuePause},
		{name: "queue resume", args: "NAME", minArgs: 1, maxArgs: 1, summary: "let workers start jobs of a paused queue again", run: (*cli).queueResume},
		{name: "workers", summary: "list the engines running on the backend", run: (*cli).workers},
		{name: "enqueue", args: "TYPE [JSON]", minArgs: 1, maxArgs: 2, summary: "enqueue a job with a JSON payload", run: (*cli).enqueue, create: true,
			flags: func(fs *flag.FlagSet, o *options) {
				fs.StringVar(&o.queue, "queue", engine.DefaultQueue, "queue of the job")
				fs.DurationVar(&o.delay, "delay", 0, "run the job after this long (\"90s\", \"1h\")")
				fs.IntVar(&o.retries, "retries", -1, "retries after a failure (default: the engine's policy)")
				fs.IntVar(&o.priority, "priority", 0, "higher runs first within the queue")
			}},
		{name: "dashboard", summary: "serve the web dashboard", run: (*cli).dashboard,
			flags: func(fs *flag.FlagSet, o *options) {
				fs.StringVar(&o.addr, "addr", "127.0.0.1:8081", "address to listen on (loopback unless you guard it)")
				fs.StringVar(&o.token, "token", os.Getenv("JOBRELAY_DASHBOARD_TOKEN"), "bearer token that guards every page (default $JOBRELAY_DASHBOARD_TOKEN)")
				fs.StringVar(&o.user, "user", "", "basic auth user that guards every page")
				fs.StringVar(&o.password, "password", os.Getenv("JOBRELAY_DASHBOARD_PASSWORD"), "basic auth password (default $JOBRELAY_DASHBOARD_PASSWORD)")
				fs.BoolVar(&o.readOnly, "read-only", false, "hide and refuse the actions")
			}},
	}
}

func stateNames() string {
	var s []string
	for _, st := range []engine.State{engine.StateQueued, engine.StateScheduled, engine.StateDeferred, engine.StateActive,
		engine.StateRetrying, engine.StateCompleted, engine.StateFailed, engine.StateCanceled} {
		s = append(s, string(st))
	}
	return strings.Join(s, ", ")
}

// globalFlags registers the flags every command takes.
func globalFlags(fs *flag.FlagSet, o *options) {
	fs.StringVar(&o.redis, "redis", "", "Redis `URL` (redis://[:password@]host:port/db); default $REDIS_URL or $REDIS_HOST…")
	fs.StringVar(&o.bolt, "bolt", "", "bbolt database `file`")
	fs.StringVar(&o.prefix, "prefix", "", "Redis key prefix (default \"jobrelay\")")
	fs.BoolVar(&o.json, "json", false, "print JSON instead of a table")
	fs.BoolVar(&o.help, "h", false, "show help")
	fs.BoolVar(&o.help, "help", false, "show help")
}

// usageError is a mistake in the command line: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

func (c *cli) main(ctx context.Context, args []string) int {
	flagArgs, words := flagsFirst(args, flagKinds())

	cmd, rest := findCommand(words)
	if cmd == nil {
		if len(words) == 0 || words[0] == "help" {
			if len(words) == 0 && !slices.ContainsFunc(flagArgs, isHelpFlag) {
				c.usage(c.stderr)
				return exitUsage
			}
			c.usage(c.stdout)
			return exitOK
		}
		fmt.Fprintf(c.stderr, "jobrelay: unknown command %q\n\n", strings.Join(words, " "))
		c.usage(c.stderr)
		return exitUsage
	}

	fs := flag.NewFlagSet("jobrelay "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	globalFlags(fs, &c.opts)
	if cmd.flags != nil {
		cmd.flags(fs, &c.opts)
	}
	if err := fs.Parse(flagArgs); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			c.commandUsage(c.stdout, cmd, fs)
			return exitOK
		}
		fmt.Fprintf(c.stderr, "jobrelay %s: %v\n", cmd.name, err)
		c.commandUsage(c.stderr, cmd, fs)
		return exitUsage
	}
	if c.opts.help {
		c.commandUsage(c.stdout, cmd, fs)
		return exitOK
	}
	if len(rest) < cmd.minArgs || len(rest) > cmd.maxArgs {
		fmt.Fprintf(c.stderr, "jobrelay %s: want %s, got %d arguments\n", cmd.name, orNone(cmd.args), len(rest))
		c.commandUsage(c.stderr, cmd, fs)
		return exitUsage
	}

	e, closeEngine, err := c.open(ctx, &c.opts, cmd.create)
	if err == nil {
		c.e = e
		err = cmd.run(c, ctx, rest)
		closeEngine()
	}
	var ue *usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(c.stderr, "jobrelay %s: %v\n", cmd.name, err)
		return exitUsage
	default:
		fmt.Fprintf(c.stderr, "jobrelay: %v\n", err)
		return exitFailure
	}
}

func isHelpFlag(s string) bool {
	s = strings.TrimLeft(s, "-")
	return s == "h" || s == "help"
}

func orNone(s string) string {
	if s == "" {
		return "no arguments"
	}
	return s
}

// flagKinds maps the name of every flag of every command to whether it is
// boolean: which flags take a value decides which words are arguments, so
// the pre-pass must know them all. A name means the same in every command.
func flagKinds() map[string]bool {
	kinds := make(map[string]bool)
	add := func(fs *flag.FlagSet) {
		fs.VisitAll(func(f *flag.Flag) {
			b, ok := f.Value.(interface{ IsBoolFlag() bool })
			kinds[f.Name] = ok && b.IsBoolFlag()
		})
	}
	var scratch options
	fs := flag.NewFlagSet("global", flag.ContinueOnError)
	globalFlags(fs, &scratch)
	add(fs)
	for _, cmd := range commands {
		if cmd.flags != nil {
			fs := flag.NewFlagSet(cmd.name, flag.ContinueOnError)
			cmd.flags(fs, &scratch)
			add(fs)
		}
	}
	return kinds
}

// flagsFirst splits args into flags (with their values) and the other
// words, keeping the order of each, so that flags may come anywhere on the
// command line: the flag package stops at the first argument. A known flag
// that is not boolean and has no "=value" takes the next word as its value.
// Everything after "--" is a word.
func flagsFirst(args []string, isBool map[string]bool) (flags, words []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			words = append(words, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			words = append(words, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		boolean, known := isBool[name]
		if !known || boolean {
			continue // an unknown flag is reported by the command's FlagSet
		}
		if i+1 < len(args) {
			flags = append(flags, args[i+1])
			i++
		}
	}
	return flags, words
}

// findCommand matches the longest command name at the start of words.
func findCommand(words []string) (*command, []string) {
	var best *command
	n := 0
	for _, cmd := range commands {
		parts := strings.Fields(cmd.name)
		if len(parts) > len(words) || len(parts) <= n {
			continue
		}
		if slices.Equal(parts, words[:len(parts)]) {
			best, n = cmd, len(parts)
		}
	}
	if best == nil {
		return nil, words
	}
	return best, words[n:]
}

func (c *cli) usage(w io.Writer) {
	fmt.Fprint(w, `jobrelay operates the queues of a jobrelay engine.

Usage: jobrelay (--redis URL | --bolt PATH) COMMAND [ARGS] [FLAGS]

Commands:
`)
	for _, cmd := range commands {
		fmt.Fprintf(w, "  %-24s %s\n", strings.TrimSpace(cmd.name+" "+cmd.args), cmd.summary)
	}
	fmt.Fprint(w, `
Global flags (before or after the arguments):
  --redis URL    Redis to connect to; without it, $REDIS_URL or $REDIS_HOST, $REDIS_PORT, $REDIS_DB, $REDIS_PASSWORD
  --bolt PATH    bbolt file to open (held by one process at a time)
  --prefix P     Redis key prefix (default "jobrelay")
  --json         print JSON instead of a table

"jobrelay COMMAND -h" shows a command's flags. Exit codes: 0 ok, 1 failure, 2 usage.
`)
}

func (c *cli) commandUsage(w io.Writer, cmd *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: jobrelay %s [FLAGS]\n\n%s.\n\nFlags:\n", strings.TrimSpace(cmd.name+" "+cmd.args), upperFirst(cmd.summary))
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
