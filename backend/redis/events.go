package redis

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/jobrelay/engine/backend"
)

// defaultReadMax is how many events ReadEvents returns when max is not
// positive.
const defaultReadMax = 100

// Events live in one capped stream per queue (a stream is one key, and a
// queue's scripts can only write keys of its own slot). A cursor is
// therefore a position in each stream: "queue=ID&queue=ID", queue names
// escaped, sorted. A queue the cursor does not name is read from its start,
// which is right for a queue created after the cursor was made. Each Event's
// ID is the cursor just after it, so that the last event's ID is the next
// cursor, as the contract says.
type cursor map[string]string

// noEvents is the cursor before any event.
const noEvents = "0"

func parseCursor(s string) (cursor, error) {
	c := make(cursor)
	if s == "" || s == noEvents {
		return c, nil
	}
	for _, part := range strings.Split(s, "&") {
		q, id, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("redis: read events: bad cursor %q", s)
		}
		name, err := url.QueryUnescape(q)
		if err != nil {
			return nil, fmt.Errorf("redis: read events: bad cursor %q", s)
		}
		if _, _, err := parseStreamID(id); err != nil {
			return nil, fmt.Errorf("redis: read events: bad cursor %q", s)
		}
		c[name] = id
	}
	return c, nil
}

func (c cursor) String() string {
	if len(c) == 0 {
		return noEvents
	}
	queues := make([]string, 0, len(c))
	for q := range c {
		queues = append(queues, q)
	}
	slices.Sort(queues)
	var b strings.Builder
	for i, q := range queues {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(url.QueryEscape(q))
		b.WriteByte('=')
		b.WriteString(c[q])
	}
	return b.String()
}

// parseStreamID splits a stream entry ID ("ms-seq").
func parseStreamID(id string) (uint64, uint64, error) {
	ms, seq, ok := strings.Cut(id, "-")
	if !ok {
		return 0, 0, errors.New("bad stream ID")
	}
	a, err := strconv.ParseUint(ms, 10, 64)
	if err != nil {
		return 0, 0, err
	}
	b, err := strconv.ParseUint(seq, 10, 64)
	return a, b, err
}

// EventCursor returns the cursor of the newest event of every queue; see
// backend.Backend.
func (b *Backend) EventCursor(ctx context.Context) (string, error) {
	return b.logCursor(ctx, keyEvents, "event cursor")
}

// CancelCursor returns the cursor of the newest cancel request of every
// queue; see backend.Backend. Cancel requests are also written to a small
// capped stream per queue of their own (see cancel.lua), so that a running
// engine hears them without reading every event.
func (b *Backend) CancelCursor(ctx context.Context) (string, error) {
	return b.logCursor(ctx, keyCancels, "cancel cursor")
}

// logCursor returns the cursor of the newest entry of every queue's stream
// at key index log (keyEvents or keyCancels).
func (b *Backend) logCursor(ctx context.Context, log int, op string) (string, error) {
	if b.closed.Load() {
		return "", errClosed
	}
	queues, err := b.queues(ctx, true)
	if err != nil {
		return "", b.fail(op, err)
	}
	pipe := b.rdb.Pipeline()
	cmds := make([]*goredis.XMessageSliceCmd, len(queues))
	for i, q := range queues {
		cmds[i] = pipe.XRevRangeN(ctx, b.queueKeys(q)[log], "+", "-", 1)
	}
	if len(cmds) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return "", b.fail(op, err)
		}
	}
	c := make(cursor)
	for i, cmd := range cmds {
		if msgs := cmd.Val(); len(msgs) > 0 {
			c[queues[i]] = msgs[0].ID
		}
	}
	return c.String(), nil
}

// ReadEvents returns events of every queue after cursor, oldest first,
// blocking in XREAD until there is one; see backend.Backend. An empty cursor
// reads from the oldest kept event. When max is not positive it returns up
// to 100.
func (b *Backend) ReadEvents(ctx context.Context, cur string, max int) ([]backend.Event, error) {
	return b.readLog(ctx, keyEvents, cur, max, "read events")
}

// ReadCancels returns the cancel requests of every queue after cursor,
// oldest first, blocking in XREAD until there is one; see backend.Backend.
// It reads the queues' cancel streams, which hold nothing else.
func (b *Backend) ReadCancels(ctx context.Context, cur string, max int) ([]backend.Event, error) {
	return b.readLog(ctx, keyCancels, cur, max, "read cancels")
}

// readLog is ReadEvents on the streams at key index log.
func (b *Backend) readLog(ctx context.Context, log int, cur string, max int, op string) ([]backend.Event, error) {
	if b.closed.Load() {
		return nil, errClosed
	}
	pos, err := parseCursor(cur)
	if err != nil {
		return nil, err
	}
	if max <= 0 {
		max = defaultReadMax
	}
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		queues, err := b.queues(ctx, false)
		if err != nil {
			return nil, b.fail(op, err)
		}
		if len(queues) == 0 {
			// No queue yet: look at the registry again in a while.
			if err := b.sleep(ctx, blockChunk); err != nil {
				return nil, err
			}
			continue
		}
		streams, err := b.readStreams(ctx, log, queues, pos, max, -1)
		if err == nil && len(streams) == 0 {
			streams, err = b.readStreamsBlocking(ctx, log, queues, pos, max)
		}
		if err != nil {
			if errors.Is(err, errStopped) {
				return nil, errClosed
			}
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, b.fail(op, err)
		}
		if evs := mergeEvents(streams, pos, max, b.log.Warn); len(evs) > 0 {
			return evs, nil
		}
	}
}

// queueStream is the entries read from one queue's stream.
type queueStream struct {
	queue string
	msgs  []goredis.XMessage
}

// readStreams reads (block < 0: without blocking) the streams at key index
// log of queues after pos. On a Cluster every stream is a command of its
// own, in one pipeline.
func (b *Backend) readStreams(ctx context.Context, log int, queues []string, pos cursor, max int, block time.Duration) ([]queueStream, error) {
	keyQueue := make(map[string]string, len(queues))
	args := func(qs []string) *goredis.XReadArgs {
		a := &goredis.XReadArgs{Count: int64(max), Block: block}
		for _, q := range qs {
			k := b.queueKeys(q)[log]
			keyQueue[k] = q
			a.Streams = append(a.Streams, k)
		}
		for _, q := range qs {
			a.Streams = append(a.Streams, position(pos, q))
		}
		return a
	}
	var cmds []*goredis.XStreamSliceCmd
	if _, ok := b.rdb.(*goredis.ClusterClient); ok {
		pipe := b.rdb.Pipeline()
		for _, q := range queues {
			cmds = append(cmds, pipe.XRead(ctx, args([]string{q})))
		}
		_, _ = pipe.Exec(ctx)
	} else {
		cmds = append(cmds, b.rdb.XRead(ctx, args(queues)))
	}
	var out []queueStream
	for _, c := range cmds {
		res, err := c.Result()
		if err != nil && !errors.Is(err, goredis.Nil) {
			return nil, err
		}
		for _, s := range res {
			if len(s.Messages) > 0 {
				out = append(out, queueStream{queue: keyQueue[s.Stream], msgs: s.Messages})
			}
		}
	}
	return out, nil
}

func position(pos cursor, q string) string {
	if id, ok := pos[q]; ok {
		return id
	}
	return "0-0"
}

// readStreamsBlocking waits up to blockChunk in XREAD BLOCK on the
// blocker's connections: one command for all streams, or on a Cluster one
// per stream, the first to bring entries ending the wait.
func (b *Backend) readStreamsBlocking(ctx context.Context, log int, queues []string, pos cursor, max int) ([]queueStream, error) {
	groups := [][]string{queues}
	if b.blk.cluster && len(queues) > 1 {
		groups = groups[:0]
		for _, q := range queues {
			groups = append(groups, []string{q})
		}
	}
	type read struct {
		streams []queueStream
		err     error
	}
	wg := newWaitGroup[read](len(groups))
	for _, g := range groups {
		a := &goredis.XReadArgs{Count: int64(max), Block: blockChunk}
		keyQueue := make(map[string]string, len(g))
		for _, q := range g {
			k := b.queueKeys(q)[log]
			keyQueue[k] = q
			a.Streams = append(a.Streams, k)
		}
		for _, q := range g {
			a.Streams = append(a.Streams, position(pos, q))
		}
		started := b.blk.goBlock(func() {
			res, err := b.blk.c.XRead(context.Background(), a).Result()
			switch {
			case err != nil && (errors.Is(err, goredis.Nil) || b.blk.isClosed()):
				wg.deliver(read{}, false)
			case err != nil:
				wg.deliver(read{err: err}, true)
			default:
				var r read
				for _, s := range res {
					r.streams = append(r.streams, queueStream{queue: keyQueue[s.Stream], msgs: s.Messages})
				}
				wg.deliver(r, true)
			}
		})
		if !started {
			return nil, errStopped
		}
	}
	got, err := wg.wait(ctx, b.blk.done, blockChunk+time.Second)
	var out []queueStream
	for _, r := range got {
		if r.err != nil && err == nil {
			err = r.err
		}
		out = append(out, r.streams...)
	}
	return out, err
}

// mergeEvents merges the entries of several streams, each in its own order,
// by the time their scripts ran (see emit in lib.lua), takes the first max,
// and gives each event the cursor that follows it. It advances pos.
func mergeEvents(streams []queueStream, pos cursor, max int, warn func(string, ...any)) []backend.Event {
	type head struct {
		s     *queueStream
		next  int
		order uint64
	}
	heads := make([]*head, 0, len(streams))
	for i := range streams {
		if len(streams[i].msgs) > 0 {
			h := &head{s: &streams[i]}
			h.order = eventOrder(h.s.msgs[0].Values)
			heads = append(heads, h)
		}
	}
	var out []backend.Event
	for len(out) < max && len(heads) > 0 {
		// The stream whose next event ran first; the queue's name breaks
		// ties. Each stream is taken in its own order, so that a cursor
		// never passes an event of its stream that was not returned.
		best := 0
		for i, h := range heads[1:] {
			b := heads[best]
			if h.order < b.order || h.order == b.order && h.s.queue < b.s.queue {
				best = i + 1
			}
		}
		h := heads[best]
		m := h.s.msgs[h.next]
		h.next++
		if h.next == len(h.s.msgs) {
			heads = append(heads[:best], heads[best+1:]...)
		} else {
			h.order = eventOrder(h.s.msgs[h.next].Values)
		}
		pos[h.s.queue] = m.ID
		ev, err := decodeEvent(m.Values)
		if err != nil {
			warn("redis: skipped an unreadable event", "queue", h.s.queue, "id", m.ID, "err", err)
			continue
		}
		ev.Queue = h.s.queue
		ev.ID = pos.String()
		out = append(out, ev)
	}
	return out
}

// eventOrder reads the O field of an event (see emit in lib.lua).
func eventOrder(values map[string]any) uint64 {
	v, _ := values["O"].(string)
	order, _ := strconv.ParseUint(v, 10, 64)
	return order
}

// decodeEvent reads an event written by lib.lua's emit.
func decodeEvent(values map[string]any) (backend.Event, error) {
	var ev backend.Event
	str := func(k string) string { s, _ := values[k].(string); return s }
	ev.Kind = backend.EventKind(str("k"))
	ev.JobID = str("i")
	ev.Type = str("t")
	ev.State = backend.State(str("s"))
	ev.Message = str("G")
	ev.Error = str("E")
	if y, ok := values["y"].(string); ok {
		ev.Result = []byte(y)
	}
	var errs []error
	if a := str("a"); a != "" {
		var err error
		ev.Attempt, err = strconv.Atoi(a)
		errs = append(errs, err)
	}
	if g := str("g"); g != "" {
		var err error
		ev.Progress, err = strconv.Atoi(g)
		errs = append(errs, err)
	}
	var err error
	ev.Time, err = parseTime(str("T"))
	errs = append(errs, err)
	if x := str("x"); x != "" {
		ev.RunAt, err = parseTime(x)
		errs = append(errs, err)
	}
	if ev.Kind == "" {
		errs = append(errs, errors.New("no kind"))
	}
	return ev, errors.Join(errs...)
}

// sleep waits d, or until ctx ends or the backend closes.
func (b *Backend) sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-b.blk.done:
		return errClosed
	}
}
