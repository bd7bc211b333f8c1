package backendtest

import (
	"fmt"
	"slices"
	"testing"

	"github.com/jobrelay/engine/backend"
)

// listAll pages through filter (whose Limit sets the page size) and returns
// every ID it met and the number of pages, failing on a cursor that loops.
func (f *fixture) listAll(filter backend.ListFilter) (ids []string, pages int) {
	f.t.Helper()
	for {
		page, err := f.b.List(f.ctx, filter)
		if err != nil {
			f.t.Fatalf("List: got error %v, want nil", err)
		}
		if filter.Limit > 0 && len(page.Jobs) > filter.Limit {
			f.t.Fatalf("List with Limit %d: got %d jobs, want at most %d", filter.Limit, len(page.Jobs), filter.Limit)
		}
		pages++
		for _, j := range page.Jobs {
			ids = append(ids, j.ID)
		}
		if page.Next == "" {
			return ids, pages
		}
		if pages > 1000 || page.Next == filter.Cursor {
			f.t.Fatalf("List: paging does not end (cursor %q)", page.Next)
		}
		filter.Cursor = page.Next
	}
}

func testList(t *testing.T, h Harness) {
	t.Run("OrderedByID", func(t *testing.T) {
		f := newFixture(t, h)
		for _, id := range []string{"job-c", "job-a", "job-e", "job-b", "job-d"} {
			f.add(withID(id))
		}
		got, _ := f.listAll(backend.ListFilter{})
		if want := []string{"job-a", "job-b", "job-c", "job-d", "job-e"}; !slices.Equal(got, want) {
			t.Errorf("List: got %v, want %v", got, want)
		}
	})

	t.Run("Filters", func(t *testing.T) {
		f := newFixture(t, h)
		ai1 := f.add(inQueue("ai"), ofType("summarize"))
		ai2 := f.add(inQueue("ai"), ofType("transcribe"))
		def := f.add(ofType("summarize"))
		ai3 := f.add(inQueue("ai"), ofType("summarize"))
		f.leaseID(f.t0, ai1, "ai")
		cases := []struct {
			filter backend.ListFilter
			want   []string
		}{
			{backend.ListFilter{}, []string{ai1, ai2, def, ai3}},
			{backend.ListFilter{Queue: "ai"}, []string{ai1, ai2, ai3}},
			{backend.ListFilter{Type: "summarize"}, []string{ai1, def, ai3}},
			{backend.ListFilter{State: backend.StateQueued}, []string{ai2, def, ai3}},
			{backend.ListFilter{State: backend.StateActive}, []string{ai1}},
			{backend.ListFilter{Queue: "ai", Type: "summarize", State: backend.StateQueued}, []string{ai3}},
			{backend.ListFilter{Queue: "nowhere"}, nil},
		}
		for _, c := range cases {
			got, _ := f.listAll(c.filter)
			if !slices.Equal(got, c.want) {
				t.Errorf("List %+v: got %v, want %v", c.filter, got, c.want)
			}
		}
		page, err := f.b.List(f.ctx, backend.ListFilter{State: backend.StateActive})
		if err != nil || len(page.Jobs) != 1 {
			t.Fatalf("List active: got %d jobs and error %v, want 1", len(page.Jobs), err)
		}
		if j := page.Jobs[0]; j.State != backend.StateActive || j.Attempt != 1 || j.LeaseToken == "" {
			t.Errorf("listed job: got state %q attempt %d token %q, want the stored record", j.State, j.Attempt, j.LeaseToken)
		}
	})

	t.Run("Paging", func(t *testing.T) {
		f := newFixture(t, h)
		var all, odd []string
		jobs := make([]backend.NewJob, 0, 25)
		for i := range 25 {
			typ := "even"
			if i%2 == 1 {
				typ = "odd"
			}
			nj := f.newJob(ofType(typ))
			jobs = append(jobs, nj)
			all = append(all, nj.ID)
			if typ == "odd" {
				odd = append(odd, nj.ID)
			}
		}
		f.enqueue(f.t0, jobs...)
		cases := []struct {
			filter backend.ListFilter
			want   []string
			pages  int
		}{
			{backend.ListFilter{Limit: 7}, all, 4},
			{backend.ListFilter{Limit: 5}, all, 5},
			{backend.ListFilter{Limit: 25}, all, 1},
			{backend.ListFilter{Type: "odd", Limit: 5}, odd, 3},
		}
		for _, c := range cases {
			got, pages := f.listAll(c.filter)
			if !slices.Equal(got, c.want) {
				t.Errorf("List %+v page by page: got %v, want every job once in order: %v", c.filter, got, c.want)
			}
			if pages != c.pages {
				t.Errorf("List %+v: got %d pages, want %d (Next is empty on the last page)", c.filter, pages, c.pages)
			}
		}
	})

	t.Run("DefaultLimit", func(t *testing.T) {
		f := newFixture(t, h)
		jobs := make([]backend.NewJob, 120)
		for i := range jobs {
			jobs[i] = f.newJob(withID(fmt.Sprintf("job-%04d", i)))
		}
		f.enqueue(f.t0, jobs...)
		page, err := f.b.List(f.ctx, backend.ListFilter{})
		if err != nil {
			t.Fatalf("List: got error %v, want nil", err)
		}
		if len(page.Jobs) != 100 || page.Next == "" {
			t.Errorf("List without Limit: got %d jobs and next %q, want 100 and a cursor", len(page.Jobs), page.Next)
		}
	})
}
