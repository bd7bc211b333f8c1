package redis

import "strings"

// Key layout. Every key of a queue starts with the hash tag {prefix:queue},
// so that all of them live in one Redis Cluster slot and one Lua script can
// touch them all. The few keys shared by all queues carry the tag {prefix}.
//
//	{p:q}:jobs            HASH   job ID -> record (see record.go)
//	{p:q}:meta            HASH   counts per state, processed, failures, paused
//	{p:q}:ready:<prio>    LIST   queued job IDs of one priority, FIFO
//	{p:q}:prios           ZSET   priorities that have a ready list
//	{p:q}:scheduled       ZSET   scheduled and retrying jobs by RunAt
//	{p:q}:active          ZSET   active jobs by lease expiry
//	{p:q}:done            ZSET   terminal jobs by expiry, for Sweep
//	{p:q}:recheck         ZSET   deferred jobs waiting on another queue, by next check
//	{p:q}:events          STREAM the queue's events, capped
//	{p:q}:wake            ZSET   a marker while jobs are ready; idle Lease calls block on it
//	{p:q}:cancels         STREAM the queue's cancel requests alone, capped (ReadCancels)
//	{p}:queues            SET    every queue that ever held a job or was paused
//	{p}:unique            HASH   unique key -> holder (keys are unique across queues)
//	{p}:unique:tombs      ZSET   unique keys of swept jobs, by UniqueUntil
//	{p}:workers           HASH   worker ID -> entry (JSON)
//	{p}:workers:expiry    ZSET   worker ID by expiry
//	{p}:limits            HASH   limit key -> "concurrency,rate,period"
//	{p}:limit:active      HASH   limit key -> active jobs with it
//	{p}:limit:throttles   HASH   limit key -> throttled until
//	{p}:limit:state       HASH   the now of the latest Promote
//	{p}:limit:starts:<k>  ZSET   the latest leases of key k, by time
//	{p}:limit:queues:<k>  SET    queues where jobs of key k are parked
//	{p:q}:parked:<k>      LIST   jobs of key k that Lease passed over, in line
//	{p:q}:parkedkeys      SET    the keys that have such a list
const (
	keyJobs = iota
	keyMeta
	keyPrios
	keyScheduled
	keyActive
	keyDone
	keyRecheck
	keyEvents
	keyWake
	keyCancels
	numKeys
)

var keySuffixes = [numKeys]string{"jobs", "meta", "prios", "scheduled", "active", "done", "recheck",
	"events", "wake", "cancels"}

// queueKeys returns the keys of a queue, indexed by keyJobs..., then the
// limit keys (limitKeys) when limits are on. A queue script takes only two
// of them, the jobs key and the limits key (Backend.scriptKeys), and makes
// the others' names as lib.lua's init does.
func queueKeys(prefix, queue string, limits bool) []string {
	base := queueBase(prefix, queue)
	keys := make([]string, numKeys, numKeys+4)
	for i, s := range keySuffixes {
		keys[i] = base + s
	}
	if limits {
		keys = append(keys, limitKeys(prefix)...)
	}
	return keys
}

// limitKeys returns the keys of the limits, in the order base.lua names
// them.
func limitKeys(prefix string) []string {
	return []string{globalKey(prefix, "limits"), globalKey(prefix, "limit:active"),
		globalKey(prefix, "limit:throttles"), globalKey(prefix, "limit:state")}
}

func queueBase(prefix, queue string) string {
	var b strings.Builder
	b.Grow(len(prefix) + len(queue) + 4)
	b.WriteByte('{')
	b.WriteString(prefix)
	b.WriteByte(':')
	b.WriteString(queue)
	b.WriteString("}:")
	return b.String()
}

func globalKey(prefix, name string) string { return "{" + prefix + "}:" + name }
