package redis

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/jobrelay/engine/backend"
)

// ErrCorruptJob means a stored job record cannot be read (written by hand,
// cut short, or by an incompatible version). Job returns it wrapped; Lease
// fails such a job with an error that says so, and goes on with the others.
var ErrCorruptJob = errors.New("corrupt job record")

// A job record is one string: a run of fields, each a one-letter tag, the
// value's length in decimal, a colon and the value. One string per job in
// one hash per queue costs far less Redis memory than a hash per job (whose
// payload field, past 64 bytes, turns it into a full hash table). The fields
// that transitions change come first (the head); from the type on come the
// fields fixed at enqueue (the body), which the Lua scripts copy without
// reading (see lib.lua). Absent fields are zero. Times are Unix nanoseconds
// and durations nanoseconds, in decimal.
const (
	// The head.
	tagState        = 's' // one letter, see stateCodes
	tagRunAt        = 'x'
	tagAttempt      = 'a'
	tagFailures     = 'f'
	tagStalls       = 'z'
	tagWaits        = 'w' // deferred: a list of (queue, ID) of parents not yet completed
	tagDependents   = 'n' // a list of (queue, ID) of deferred children
	tagProgress     = 'g'
	tagProgressMsg  = 'G'
	tagResult       = 'y'
	tagError        = 'E'
	tagCancelReason = 'Q' // the reason given to Cancel while active
	tagStarted      = 'b'
	tagFinished     = 'h'
	tagLeaseToken   = 'L'
	tagLeaseExpires = 'l'
	tagWorker       = 'W'
	tagCancelReq    = 'C' // "1" when a cancel is pending
	tagCorruptBytes = 'B' // the unreadable record a failed corrupt job had
	tagLimitKey     = 'k' // fixed at enqueue, but in the head: Lease and Finish read it

	// The body, in this order: type, options and creation time first.
	tagType        = 't'
	tagOptions     = 'o' // "priority,MaxRetries,MaxStalls,Timeout,ResultTTL,FailureTTL"
	tagCreated     = 'c'
	tagUniqueKey   = 'u'
	tagUniqueUntil = 'U'
	tagDependsOn   = 'd' // a list of IDs
	tagMeta        = 'm' // a list of key, value, key, value...
	tagPayload     = 'p'
)

// corruptError says why a record cannot be read; it wraps ErrCorruptJob.
type corruptError struct{ id, detail string }

func (e *corruptError) Error() string {
	return "redis: job " + e.id + ": " + ErrCorruptJob.Error() + ": " + e.detail
}

func (e *corruptError) Unwrap() error { return ErrCorruptJob }

// stateCodes maps the one-letter codes of records to states.
var stateCodes = map[byte]backend.State{
	'q': backend.StateQueued, 's': backend.StateScheduled, 'd': backend.StateDeferred,
	'a': backend.StateActive, 'r': backend.StateRetrying, 'c': backend.StateCompleted,
	'f': backend.StateFailed, 'x': backend.StateCanceled,
}

func stateOfCode(code string) backend.State {
	if len(code) != 1 {
		return ""
	}
	return stateCodes[code[0]]
}

// appendField appends one field to a record.
func appendField(b []byte, tag byte, v string) []byte {
	if v == "" {
		return b
	}
	b = append(b, tag)
	b = strconv.AppendInt(b, int64(len(v)), 10)
	b = append(b, ':')
	return append(b, v...)
}

func appendBytes(b []byte, tag byte, v []byte) []byte {
	if len(v) == 0 {
		return b
	}
	b = append(b, tag)
	b = strconv.AppendInt(b, int64(len(v)), 10)
	b = append(b, ':')
	return append(b, v...)
}

func appendTime(b []byte, tag byte, t time.Time) []byte {
	if t.IsZero() {
		return b
	}
	return appendField(b, tag, nsString(t))
}

// listString encodes items as a list field: each its length, a colon and
// itself.
func listString(items ...string) string {
	var b []byte
	for _, it := range items {
		b = strconv.AppendInt(b, int64(len(it)), 10)
		b = append(b, ':')
		b = append(b, it...)
	}
	return string(b)
}

func parseList(s string) ([]string, error) {
	var out []string
	for len(s) > 0 {
		colon := indexColon(s)
		if colon < 0 {
			return nil, errors.New("list item has no length")
		}
		n, err := strconv.Atoi(s[:colon])
		if err != nil || n < 0 || colon+1+n > len(s) {
			return nil, errors.New("list item has a bad length")
		}
		out = append(out, s[colon+1:colon+1+n])
		s = s[colon+1+n:]
	}
	return out, nil
}

func indexColon(s string) int {
	for i := 0; i < len(s); i++ {
		if s[i] == ':' {
			return i
		}
	}
	return -1
}

// eachField calls fn for each field of a record, in order.
func eachField(rec string, fn func(tag byte, v string) error) error {
	for i := 0; i < len(rec); {
		tag := rec[i]
		colon := indexColon(rec[i+1:])
		if colon < 0 {
			return fmt.Errorf("field %c has no length", tag)
		}
		colon += i + 1
		n, err := strconv.Atoi(rec[i+1 : colon])
		if err != nil || n < 0 || colon+1+n > len(rec) {
			return fmt.Errorf("field %c has a bad length", tag)
		}
		if err := fn(tag, rec[colon+1:colon+1+n]); err != nil {
			return err
		}
		i = colon + 1 + n
	}
	return nil
}

// encodeNewJob encodes the body of a new job; enqueue.lua puts the head
// (state, RunAt...) in front.
func encodeNewJob(j *backend.NewJob, now time.Time) []byte {
	b := make([]byte, 0, 96+len(j.Type)+len(j.Payload))
	b = appendField(b, tagType, j.Type)
	var opt [6 * 20]byte
	o := opt[:0]
	for i, v := range [...]int64{int64(j.Priority), int64(j.MaxRetries), int64(j.MaxStalls), int64(j.Timeout),
		int64(j.ResultTTL), int64(j.FailureTTL)} {
		if i > 0 {
			o = append(o, ',')
		}
		o = strconv.AppendInt(o, v, 10)
	}
	b = appendBytes(b, tagOptions, o)
	b = appendTime(b, tagCreated, now)
	b = appendField(b, tagUniqueKey, j.UniqueKey)
	b = appendTime(b, tagUniqueUntil, j.UniqueUntil)
	if len(j.DependsOn) > 0 {
		b = appendField(b, tagDependsOn, listString(j.DependsOn...))
	}
	if len(j.Meta) > 0 {
		kv := make([]string, 0, 2*len(j.Meta))
		for _, k := range sortedKeys(j.Meta) {
			kv = append(kv, k, j.Meta[k])
		}
		b = appendField(b, tagMeta, listString(kv...))
	}
	return appendBytes(b, tagPayload, j.Payload)
}

// decodeJob reads a record into a Job. A record that is not sound gives an
// error wrapping ErrCorruptJob.
func decodeJob(id, queue, rec string) (*backend.Job, error) {
	j := &backend.Job{ID: id, Queue: queue}
	var created, options bool
	err := eachField(rec, func(tag byte, v string) error {
		var err error
		switch tag {
		case tagState:
			if j.State = stateOfCode(v); j.State == "" {
				err = fmt.Errorf("unknown state %q", v)
			}
		case tagType:
			j.Type = v
		case tagOptions:
			err = decodeOptions(j, v)
			options = true
		case tagCreated:
			j.CreatedAt, err = parseTime(v)
			created = true
		case tagRunAt:
			j.RunAt, err = parseTime(v)
		case tagAttempt:
			j.Attempt, err = atoi(v)
		case tagFailures:
			j.Failures, err = atoi(v)
		case tagStalls:
			j.Stalls, err = atoi(v)
		case tagUniqueKey:
			j.UniqueKey = v
		case tagLimitKey:
			j.LimitKey = v
		case tagUniqueUntil:
			j.UniqueUntil, err = parseTime(v)
		case tagDependsOn:
			j.DependsOn, err = parseList(v)
		case tagMeta:
			var kv []string
			if kv, err = parseList(v); err == nil {
				if len(kv)%2 != 0 {
					return errors.New("meta has a key without a value")
				}
				j.Meta = make(map[string]string, len(kv)/2)
				for i := 0; i < len(kv); i += 2 {
					j.Meta[kv[i]] = kv[i+1]
				}
			}
		case tagProgress:
			j.Progress, err = atoi(v)
		case tagProgressMsg:
			j.ProgressMessage = v
		case tagResult:
			j.Result = []byte(v)
		case tagError:
			j.Error = v
		case tagStarted:
			j.StartedAt, err = parseTime(v)
		case tagFinished:
			j.FinishedAt, err = parseTime(v)
		case tagLeaseToken:
			j.LeaseToken = v
		case tagLeaseExpires:
			j.LeaseExpiresAt, err = parseTime(v)
		case tagWorker:
			j.Worker = v
		case tagCancelReq:
			j.CancelRequested = v == "1"
		case tagPayload:
			j.Payload = []byte(v)
		}
		if err != nil {
			return fmt.Errorf("field %c: %w", tag, err)
		}
		return nil
	})
	switch {
	case err != nil:
	case j.State == "":
		err = errors.New("no state")
	case j.Type == "":
		err = errors.New("no type")
	case !created:
		err = errors.New("no creation time")
	case !options:
		err = errors.New("no options")
	}
	if err != nil {
		return nil, &corruptError{id: id, detail: err.Error()}
	}
	switch j.State {
	case backend.StateCompleted:
		j.ExpiresAt = j.FinishedAt.Add(j.ResultTTL)
	case backend.StateFailed, backend.StateCanceled:
		j.ExpiresAt = j.FinishedAt.Add(j.FailureTTL)
	}
	return j, nil
}

func atoi(v string) (int, error) { return strconv.Atoi(v) }

// decodeOptions reads the options field into j.
func decodeOptions(j *backend.Job, v string) error {
	var n [6]int64
	rest := v
	for i := range n {
		var part string
		part, rest, _ = strings.Cut(rest, ",")
		var err error
		if n[i], err = strconv.ParseInt(part, 10, 64); err != nil {
			return fmt.Errorf("options %q: %w", v, err)
		}
	}
	if rest != "" {
		return fmt.Errorf("options %q: too many", v)
	}
	j.Priority, j.MaxRetries, j.MaxStalls = int(n[0]), int(n[1]), int(n[2])
	j.Timeout, j.ResultTTL, j.FailureTTL = time.Duration(n[3]), time.Duration(n[4]), time.Duration(n[5])
	return nil
}

// The times a record can hold: int64 nanoseconds cover the years 1678 to
// 2262; times outside are stored at the nearest end.
var (
	minTime = time.Unix(0, math.MinInt64+1)
	maxTime = time.Unix(0, math.MaxInt64)
)

func nanos(t time.Time) int64 {
	switch {
	case t.Before(minTime):
		return minTime.UnixNano()
	case t.After(maxTime):
		return maxTime.UnixNano()
	}
	return t.UnixNano()
}

func nsString(t time.Time) string { return strconv.FormatInt(nanos(t), 10) }

func parseTime(v string) (time.Time, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}, err
	}
	return time.Unix(0, n), nil
}
