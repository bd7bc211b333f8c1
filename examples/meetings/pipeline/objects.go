package pipeline

import (
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"strings"
	"time"
)

// ErrInvalidS3Key means a recording's key is not s3://bucket/key.
var ErrInvalidS3Key = errors.New("invalid s3 key")

// ParseS3Key splits s3://bucket/key (or bucket/key) into its bucket and
// key. A key that would leave the bucket (.., an absolute path) is refused.
func ParseS3Key(s3Key string) (bucket, key string, err error) {
	rest := strings.TrimPrefix(strings.TrimSpace(s3Key), "s3://")
	bucket, key, ok := strings.Cut(rest, "/")
	if !ok || bucket == "" || key == "" {
		return "", "", fmt.Errorf("%w: %q: want s3://bucket/key", ErrInvalidS3Key, s3Key)
	}
	if !fs.ValidPath(bucket) || strings.Contains(bucket, "/") || !fs.ValidPath(key) {
		return "", "", fmt.Errorf("%w: %q: bucket and key must be plain relative paths", ErrInvalidS3Key, s3Key)
	}
	return bucket, key, nil
}

var datePrefix = regexp.MustCompile(`\d{4}-\d{2}-\d{2}`)

// MeetingDate reads the date in a recording's key (…/2026-03-02-roadmap.txt
// is 2026-03-02), or returns the day of fallback.
func MeetingDate(s3Key string, fallback time.Time) time.Time {
	if m := datePrefix.FindString(s3Key); m != "" {
		if t, err := time.Parse(time.DateOnly, m); err == nil {
			return t
		}
	}
	y, mo, d := fallback.UTC().Date()
	return time.Date(y, mo, d, 0, 0, 0, 0, time.UTC)
}
