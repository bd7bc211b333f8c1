// Package samples holds the meetings built into the demo: recordings that
// are transcripts already, kept in the program itself (go:embed), so that
// the demo runs from any folder with no object store set up.
package samples

import (
	"embed"
	"io/fs"
)

//go:embed data
var data embed.FS

// Objects is an object store holding the sample recordings: the object
// s3://recordings/<name> is the file recordings/<name>.
var Objects fs.FS = mustSub(data, "data")

// Bucket is the bucket the sample recordings are in.
const Bucket = "recordings"

// Meeting is one sample meeting: its ID and where its recording is.
type Meeting struct {
	ID    string
	S3Key string
}

// Meetings lists the sample meetings in the order they took place.
var Meetings = []Meeting{
	{ID: "roadmap-sync", S3Key: "s3://recordings/2026-03-02-roadmap-sync.txt"},
	{ID: "design-review", S3Key: "s3://recordings/2026-03-03-design-review.vtt"},
	{ID: "customer-call", S3Key: "s3://recordings/2026-03-04-customer-call.txt"},
}

func mustSub(f fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(f, dir)
	if err != nil {
		panic(err)
	}
	return sub
}
