package redis

import (
	"context"
	"time"
)

// Dependencies between jobs of two queues cross Cluster slots, so no one
// script can both record the child and look at the parent. They are built
// from steps that each touch one queue and that may run twice:
//
//  1. enqueue.lua stores the child deferred, with the parents it waits for
//     (field w), and puts it in its queue's recheck index;
//  2. depend.lua records the child on each parent (field n) and returns the
//     parent's state; a parent that has ended already is resolved at once;
//  3. when a parent ends, its script returns the children of other queues,
//     and resolve.lua releases (or cancels) each in its own queue.
//
// A process that dies between steps leaves a child waiting; Promote finds it
// in the recheck index, runs step 2 again and resolves what has ended.

// link is a deferred child waiting for a parent in another queue.
type link struct {
	childQueue, child   string
	parentQueue, parent string
}

// linkCross runs step 2 for links and resolves the children whose parent
// has ended already. Errors are logged: the recheck repairs what is missed.
func (b *Backend) linkCross(ctx context.Context, now time.Time, links []link) {
	if len(links) == 0 {
		return
	}
	calls := make([]*call, len(links))
	for i, l := range links {
		c := b.newCall(scriptDepend, l.parentQueue, now, 3)
		c.args = append(c.args, l.parent, l.childQueue, l.child)
		calls[i] = c
	}
	if err := b.evalAll(ctx, calls); err != nil {
		b.log.Warn("redis: link jobs to dependencies in other queues; a recheck will retry", "err", err)
	}
	var ended []any
	for i, c := range calls {
		st, err := c.cmd.Text()
		if err != nil {
			continue
		}
		switch st {
		case "c", "f", "x":
		case "":
			st = "?" // the parent is gone
		default:
			continue
		}
		l := links[i]
		ended = append(ended, []any{l.childQueue, l.child, l.parent, st})
	}
	b.resolveCross(ctx, now, ended)
}

// resolveCross runs step 3: items are {child's queue, child, parent,
// parent's state code} as the scripts return them. Resolving a child may
// end it (canceled) and reach its own children in other queues in turn.
func (b *Backend) resolveCross(ctx context.Context, now time.Time, items []any) {
	for round := 0; len(items) > 0 && round < 100; round++ {
		byQueue := make(map[string]*call)
		var calls []*call
		for _, it := range items {
			f := asStrings(it)
			if len(f) < 4 {
				continue
			}
			c := byQueue[f[0]]
			if c == nil {
				c = b.newCall(scriptResolve, f[0], now, 3)
				byQueue[f[0]] = c
				calls = append(calls, c)
			}
			c.args = append(c.args, f[1], f[2], f[3])
		}
		if err := b.evalAll(ctx, calls); err != nil {
			b.log.Warn("redis: resolve dependents in other queues; a recheck will retry", "err", err)
		}
		items = items[:0:0]
		for _, c := range calls {
			more, _ := c.cmd.Val().([]any)
			items = append(items, more...)
		}
	}
}

// recheck runs step 2 again for deferred children that Promote found due
// for a check: each item is {child, queue, parent, queue, parent...}.
func (b *Backend) recheck(ctx context.Context, now time.Time, childQueue string, items []any) {
	var links []link
	for _, it := range items {
		f := asStrings(it)
		for i := 1; i+1 < len(f); i += 2 {
			links = append(links, link{childQueue: childQueue, child: f[0], parentQueue: f[i], parent: f[i+1]})
		}
	}
	b.linkCross(ctx, now, links)
}
