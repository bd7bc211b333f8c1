package redis

import (
	"errors"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/jobrelay/engine/backend"
)

func TestRecordRoundTrip(t *testing.T) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.UTC)
	nj := backend.NewJob{ID: "01J", Type: "summarization", Queue: "ai", Payload: []byte("{\"a\":\"b:c\"}\x00\xff"),
		Meta: map[string]string{"tenant": "acme", "trace": "00-ab:cd-01", "": "empty key"}, Priority: -3,
		RunAt: now.Add(time.Minute), MaxRetries: 5, MaxStalls: 2, Timeout: 90 * time.Second,
		ResultTTL: 24 * time.Hour, FailureTTL: 7 * 24 * time.Hour, UniqueKey: "meeting:1/summary",
		UniqueUntil: now.Add(time.Hour), DependsOn: []string{"p1", "p:2"}}
	runAt := nsString(nj.RunAt)
	rec := "s1:sx" + strconv.Itoa(len(runAt)) + ":" + runAt + string(encodeNewJob(&nj, now))
	j, err := decodeJob(nj.ID, nj.Queue, rec)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	want := &backend.Job{ID: nj.ID, Type: nj.Type, Queue: nj.Queue, Payload: nj.Payload, Meta: nj.Meta,
		Priority: nj.Priority, State: backend.StateScheduled, MaxRetries: 5, MaxStalls: 2, Timeout: nj.Timeout,
		ResultTTL: nj.ResultTTL, FailureTTL: nj.FailureTTL, UniqueKey: nj.UniqueKey, DependsOn: nj.DependsOn}
	for _, tm := range []struct {
		got, want time.Time
		name      string
	}{{j.CreatedAt, now, "CreatedAt"}, {j.RunAt, nj.RunAt, "RunAt"}, {j.UniqueUntil, nj.UniqueUntil, "UniqueUntil"}} {
		if !tm.got.Equal(tm.want) {
			t.Errorf("%s: got %v, want %v", tm.name, tm.got, tm.want)
		}
	}
	j.CreatedAt, j.RunAt, j.UniqueUntil = time.Time{}, time.Time{}, time.Time{}
	if !reflect.DeepEqual(j, want) {
		t.Errorf("decoded job:\n got %+v\nwant %+v", j, want)
	}
}

func TestDecodeRefusesCorruptRecords(t *testing.T) {
	for _, rec := range []string{
		"garbage",
		"s1:q",                             // no type, no creation time
		"s1:zt1:xc1:1",                     // unknown state
		"s1:qt1:xc1:1a3:one",               // attempt not a number
		"s1:qt1:xc1:1p10:short",            // cut short
		"s1:qt1:xc1:1m5:3:a1b",             // meta list cut short
		"s1:qt1:xc1:1m6:1:a1:b1:c",         // meta key without a value... and a bad list
		"s1:qt1:xc19:99999999999999999999", // out of range
	} {
		if _, err := decodeJob("id", "q", rec); !errors.Is(err, ErrCorruptJob) {
			t.Errorf("decode %q: got error %v, want ErrCorruptJob", rec, err)
		}
	}
}

func TestCursorRoundTrip(t *testing.T) {
	c := cursor{"default": "1700000000000-0", "a&b=c": "5-7", "ünï code": "1-1"}
	got, err := parseCursor(c.String())
	if err != nil || !reflect.DeepEqual(got, c) {
		t.Fatalf("parse(%q): got %v, %v, want %v", c.String(), got, err, c)
	}
	for _, s := range []string{"", noEvents} {
		if got, err := parseCursor(s); err != nil || len(got) != 0 {
			t.Errorf("parse(%q): got %v, %v, want an empty cursor", s, got, err)
		}
	}
	for _, s := range []string{"nonsense", "q=abc", "q=1-x&"} {
		if _, err := parseCursor(s); err == nil {
			t.Errorf("parse(%q): got no error, want one", s)
		}
	}
}

func TestQueueOfToken(t *testing.T) {
	if q, ok := queueOfToken("0123456789abcdef.1@my@queue"); !ok || q != "my@queue" {
		t.Errorf("got %q, %v, want \"my@queue\"", q, ok)
	}
	if _, ok := queueOfToken("no-queue"); ok {
		t.Errorf("a token without a queue: got ok, want not")
	}
}

func TestKeysShareTheQueueHashTag(t *testing.T) {
	for _, q := range []string{"default", "a}b", "{x}", ""} {
		keys := queueKeys("jobrelay", q, false)
		for _, k := range keys {
			if tag := hashTag(k); tag != hashTag(keys[0]) {
				t.Errorf("queue %q: key %q has tag %q, want %q", q, k, tag, hashTag(keys[0]))
			}
		}
	}
}

// hashTag returns what Redis Cluster hashes for a key.
func hashTag(key string) string {
	for i := 0; i < len(key); i++ {
		if key[i] == '{' {
			for j := i + 1; j < len(key); j++ {
				if key[j] == '}' {
					if j == i+1 {
						return key
					}
					return key[i+1 : j]
				}
			}
			return key
		}
	}
	return key
}
