package redis

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"io/fs"
	"strings"

	goredis "github.com/redis/go-redis/v9"
)

//go:embed lua/*.lua
var luaFiles embed.FS

// script is one transition's Lua. Where Redis has Functions (7.0 and later)
// every script is a function of one library, loaded once (FUNCTION LOAD) and
// run with FCALL: the prelude (base.lua and lib.lua, some 600 lines of
// helpers) then runs once at load instead of on every call, which was a
// fifth to a third of a small call's cost. Elsewhere (Redis 6.2, miniredis) each
// script is self-contained, prelude included, and runs with EVALSHA.
type script struct {
	fn    string          // its function's name in the library
	body  string          // what the function runs: the init call and the file
	flags string          // its function's flags, as a Lua list ("" for none)
	eval  *goredis.Script // the self-contained script
}

// functionFlags are the flags of the functions that need any. Redis refuses
// a function without flags outright when it is out of memory, where a script
// failed only at its first command that may grow memory. Sweep frees memory
// (it deletes far more than the counts it writes) and then frees the swept
// jobs' unique keys, so both must run then; a claim that slips in under
// allow-oom is a few bytes, dropped again when its job cannot be stored.
// Peek only reads.
var functionFlags = map[string]string{
	"sweep":  "'allow-oom'",
	"unique": "'allow-oom'",
	"peek":   "'no-writes'",
}

// luaVersion names this build's Lua: a hash of every file. It is part of the
// library's name and of every function's (function names are global in
// Redis), so that processes of different builds sharing one Redis each call
// their own code.
var luaVersion = hashLua()

// The scripts, one per transition. Every queue script is base.lua and
// lib.lua followed by its own file; it first calls init with the index in
// KEYS of the limits key (after the queue's jobs key, see scriptKeys).
var (
	scriptEnqueue   = queueScript("enqueue")
	scriptLease     = queueScript("lease")
	scriptHeartbeat = queueScript("heartbeat")
	scriptProgress  = queueScript("progress")
	scriptFinish    = queueScript("finish")
	scriptPromote   = queueScript("promote")
	scriptReap      = queueScript("reap")
	scriptSweep     = queueScript("sweep")
	scriptCancel    = queueScript("cancel")
	scriptRequeue   = queueScript("requeue")
	scriptPause     = queueScript("pause")
	scriptDepend    = queueScript("depend")
	scriptResolve   = queueScript("resolve")
	scriptPeek      = queueScript("peek")
	scriptCorrupt   = queueScript("corrupt")
	scriptLimits    = newScript("limits", mustRead("base")+"\n", "init_base(KEYS, ARGV, 1)\n")
	scriptWorkers   = newScript("workers", "", "")
	scriptUnique    = newScript("unique", "", "")

	allScripts = []*script{scriptEnqueue, scriptLease, scriptHeartbeat, scriptProgress,
		scriptFinish, scriptPromote, scriptReap, scriptSweep, scriptCancel, scriptRequeue,
		scriptPause, scriptDepend, scriptResolve, scriptPeek, scriptCorrupt, scriptLimits, scriptWorkers,
		scriptUnique}

	// library is the Functions library of every script: the prelude once,
	// then one function per script.
	library = buildLibrary()
)

func mustRead(name string) string {
	b, err := luaFiles.ReadFile("lua/" + name + ".lua")
	if err != nil {
		panic(err)
	}
	return string(b)
}

func hashLua() string {
	h := sha256.New()
	err := fs.WalkDir(luaFiles, "lua", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := luaFiles.ReadFile(path)
		h.Write([]byte(path))
		h.Write(b)
		return err
	})
	if err != nil {
		panic(err)
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// newScript makes the script of file name: prelude, then front (the init
// call), then the file.
func newScript(name, prelude, front string) *script {
	body := front + mustRead(name)
	return &script{fn: "jobrelay_" + luaVersion + "_" + name, body: body, flags: functionFlags[name],
		eval: goredis.NewScript(prelude + body)}
}

func queueScript(name string) *script {
	return newScript(name, mustRead("base")+"\n"+mustRead("lib")+"\n",
		"init(KEYS, ARGV, 2)\n")
}

func buildLibrary() string {
	var b strings.Builder
	b.WriteString("#!lua name=" + libraryName + "\n")
	b.WriteString(mustRead("base") + "\n" + mustRead("lib") + "\n")
	for _, s := range allScripts {
		// KEYS and ARGV are the callback's parameters, so that the files
		// read the same as scripts and as functions.
		b.WriteString("redis.register_function{function_name = '" + s.fn + "', flags = {" + s.flags +
			"}, callback = function(KEYS, ARGV)\n" + s.body + "\nend}\n")
	}
	return b.String()
}

// loadLibrary loads the library on Redis (on every master of a cluster).
// It fails where Redis has no Functions.
func loadLibrary(ctx context.Context, c goredis.UniversalClient) error {
	load := func(ctx context.Context, c *goredis.Client) error {
		return c.FunctionLoadReplace(ctx, library).Err()
	}
	switch c := c.(type) {
	case *goredis.ClusterClient:
		return c.ForEachMaster(ctx, load)
	case *goredis.Client:
		return load(ctx, c)
	}
	return errors.New("redis: functions need a Client or a ClusterClient")
}

// libraryName is the name of this build's library.
var libraryName = "jobrelay_" + luaVersion

// pruneLibraries deletes the libraries of other jobrelay builds (on every
// master of a cluster), so that a Redis that outlives many deployments does
// not keep every build's code. A process of another build that still runs
// finds its library missing at its next call and loads it again (see run),
// so this costs it one round trip, never a call.
func pruneLibraries(ctx context.Context, c goredis.UniversalClient) error {
	prune := func(ctx context.Context, c *goredis.Client) error {
		libs, err := c.FunctionList(ctx, goredis.FunctionListQuery{LibraryNamePattern: "jobrelay_*"}).Result()
		if err != nil {
			return err
		}
		for _, l := range libs {
			if l.Name == libraryName {
				continue
			}
			if err := c.FunctionDelete(ctx, l.Name).Err(); err != nil && !strings.Contains(err.Error(), "not exist") {
				return err
			}
		}
		return nil
	}
	switch c := c.(type) {
	case *goredis.ClusterClient:
		return c.ForEachMaster(ctx, prune)
	case *goredis.Client:
		return prune(ctx, c)
	}
	return nil
}

// loadScripts loads every script (on every master of a cluster), so that the
// first calls need not send their source.
func loadScripts(ctx context.Context, c goredis.UniversalClient) error {
	for _, s := range allScripts {
		if err := s.eval.Load(ctx, c).Err(); err != nil {
			return err
		}
	}
	return nil
}

// call is one script call of a pipeline.
type call struct {
	script *script
	queue  string
	keys   []string
	args   []any
	cmd    *goredis.Cmd
}

// isMissing says that Redis does not have the script or function called: it
// did not run (a restarted Redis without persistence, a failover, FLUSH).
func isMissing(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, goredis.ErrNoScript) || goredis.HasErrorPrefix(err, "NOSCRIPT") {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "Function not found") || strings.Contains(msg, "unknown command") &&
		strings.Contains(strings.ToLower(msg), "fcall")
}

// send queues or sends one call of s on c, as FCALL or EVALSHA.
func send(ctx context.Context, c goredis.Cmdable, functions bool, s *script, keys []string, args []any) *goredis.Cmd {
	if functions {
		return c.FCall(ctx, s.fn, keys, args...)
	}
	return c.EvalSha(ctx, s.eval.Hash(), keys, args...)
}

// run calls s once. When Redis does not have it, it loads it and calls it
// again: a missing script did not run, so the second call is the only one.
// A Redis that lost Functions altogether (replaced by an older one) gets
// scripts from then on.
func (b *Backend) run(ctx context.Context, s *script, keys []string, args ...any) *goredis.Cmd {
	functions := b.functions.Load()
	cmd := send(ctx, b.rdb, functions, s, keys, args)
	if !isMissing(cmd.Err()) {
		return cmd
	}
	if !functions {
		return s.eval.Eval(ctx, b.rdb, keys, args...)
	}
	if err := loadLibrary(ctx, b.rdb); err != nil {
		if ctx.Err() != nil {
			return cmd
		}
		b.log.Warn("redis: cannot load the functions again; using scripts", "err", err)
		b.functions.Store(false)
		return s.eval.Run(ctx, b.rdb, keys, args...)
	}
	return send(ctx, b.rdb, true, s, keys, args)
}

// evalAll runs calls in one pipeline (one round trip per node). A call that
// finds its script missing runs again on its own (see run). It returns the
// first error.
func (b *Backend) evalAll(ctx context.Context, calls []*call) error {
	switch len(calls) {
	case 0:
		return nil
	case 1:
		c := calls[0]
		c.cmd = b.run(ctx, c.script, c.keys, c.args...)
		return c.cmd.Err()
	}
	functions := b.functions.Load()
	pipe := b.rdb.Pipeline()
	for _, c := range calls {
		c.cmd = send(ctx, pipe, functions, c.script, c.keys, c.args)
	}
	_, _ = pipe.Exec(ctx)
	var first error
	for _, c := range calls {
		if isMissing(c.cmd.Err()) {
			c.cmd = b.run(ctx, c.script, c.keys, c.args...)
		}
		if err := c.cmd.Err(); err != nil && first == nil {
			first = err
		}
	}
	return first
}
