package redis

import (
	"context"
	"embed"
	"errors"
	"strconv"

	goredis "github.com/redis/go-redis/v9"
)

//go:embed lua/*.lua
var luaFiles embed.FS

// The scripts, one per transition. Every queue script is base.lua and
// lib.lua followed by its own file, so that each is self-contained on the
// server; LK tells base.lua where in KEYS the limit keys start.
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
	scriptLimits    = goredis.NewScript("local LK = 1\n" + mustRead("base") + "\n" + mustRead("limits"))
	scriptWorkers   = goredis.NewScript(mustRead("workers"))
	scriptUnique    = goredis.NewScript(mustRead("unique"))

	allScripts = []*goredis.Script{scriptEnqueue, scriptLease, scriptHeartbeat, scriptProgress,
		scriptFinish, scriptPromote, scriptReap, scriptSweep, scriptCancel, scriptRequeue,
		scriptPause, scriptDepend, scriptResolve, scriptPeek, scriptCorrupt, scriptLimits, scriptWorkers,
		scriptUnique}
)

func mustRead(name string) string {
	b, err := luaFiles.ReadFile("lua/" + name + ".lua")
	if err != nil {
		panic(err)
	}
	return string(b)
}

func queueScript(name string) *goredis.Script {
	return goredis.NewScript("local LK = " + strconv.Itoa(numKeys+1) + "\n" + mustRead("base") + "\n" +
		mustRead("lib") + "\n" + mustRead(name))
}

// loadScripts loads every script (on every master of a cluster), so that the
// first calls need not send their source.
func loadScripts(ctx context.Context, c goredis.UniversalClient) error {
	for _, s := range allScripts {
		if err := s.Load(ctx, c).Err(); err != nil {
			return err
		}
	}
	return nil
}

// call is one script call of a pipeline.
type call struct {
	script *goredis.Script
	queue  string
	keys   []string
	args   []any
	cmd    *goredis.Cmd
}

func isNoScript(err error) bool {
	return err != nil && (errors.Is(err, goredis.ErrNoScript) || goredis.HasErrorPrefix(err, "NOSCRIPT"))
}

// evalAll runs calls in one pipeline (one round trip per node). A call that
// meets NOSCRIPT (a restarted or failed-over Redis has an empty script
// cache) runs again with its source, which also loads it: NOSCRIPT means the
// script did not run, so running it again is safe. It returns the first error.
func (b *Backend) evalAll(ctx context.Context, calls []*call) error {
	switch len(calls) {
	case 0:
		return nil
	case 1:
		c := calls[0]
		c.cmd = c.script.Run(ctx, b.rdb, c.keys, c.args...)
		return c.cmd.Err()
	}
	pipe := b.rdb.Pipeline()
	for _, c := range calls {
		c.cmd = pipe.EvalSha(ctx, c.script.Hash(), c.keys, c.args...)
	}
	_, _ = pipe.Exec(ctx)
	var first error
	for _, c := range calls {
		if isNoScript(c.cmd.Err()) {
			c.cmd = c.script.Run(ctx, b.rdb, c.keys, c.args...)
		}
		if err := c.cmd.Err(); err != nil && first == nil {
			first = err
		}
	}
	return first
}
