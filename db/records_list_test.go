package db_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/pgcast/pgcast/db"
	"github.com/pgcast/pgcast/internal/pgtest"
)

// The bounds of a page: its limit, its start (Before), its user, and
// Postgres's byte budget, which always lets the first record through and
// cuts the page after the records whose cells fit; each's own cut; the
// field names, read once, on every row.
func TestListRecordsBounds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := pgtest.NewPool(t)
	c := mustCollection(t, pool, postsDef())
	title := fmt.Sprint(c.Fields[0].ID)
	var all, mine []int64 // newest first
	for i := range 6 {
		owner := []string{"u1", "u2"}[i%2]
		// Every record's cells have the same size.
		cells := fmt.Sprintf(`{"%s":"%s%d"}`, title, strings.Repeat("x", 50), i)
		row, err := db.CreateRecord(ctx, pool, c.ID, []byte(cells), []string{owner})
		if err != nil {
			t.Fatal(err)
		}
		all = append([]int64{row.ID}, all...)
		if owner == "u1" {
			mine = append([]int64{row.ID}, mine...)
		}
	}
	size := int64(len(fmt.Sprintf(`{"%s":"%s0"}`, title, strings.Repeat("x", 50))))

	list := func(p db.RecordPage, stopAfter int) ([]int64, bool) {
		t.Helper()
		p.Class = c.ID
		var got []int64
		truncated, err := db.ListRecords(ctx, pool, p, func(row *db.RecordRow) (bool, error) {
			if row.Fields[title] != "title" || len(row.Cells) == 0 {
				t.Errorf("record %d: fields %v, cells %s: want the class's field names and the cells", row.ID, row.Fields, row.Cells)
			}
			got = append(got, row.ID)
			return stopAfter == 0 || len(got) < stopAfter, nil
		})
		if err != nil {
			t.Fatalf("%+v: %v", p, err)
		}
		return got, truncated
	}
	cases := []struct {
		name      string
		page      db.RecordPage
		stopAfter int
		want      []int64
		truncated bool
	}{
		{"everything", db.RecordPage{Limit: 100, MaxBytes: -1}, 0, all, false},
		{"limit", db.RecordPage{Limit: 4, MaxBytes: -1}, 0, all[:4], false},
		{"limit, exactly all", db.RecordPage{Limit: 6, MaxBytes: -1}, 0, all, false},
		{"before", db.RecordPage{Limit: 2, Before: &all[1], MaxBytes: -1}, 0, all[2:4], false},
		{"before the oldest", db.RecordPage{Limit: 2, Before: &all[5], MaxBytes: -1}, 0, nil, false},
		{"user", db.RecordPage{Limit: 100, User: ptr("u1"), MaxBytes: -1}, 0, mine, false},
		{"user and before", db.RecordPage{Limit: 100, User: ptr("u1"), Before: &mine[0], MaxBytes: -1}, 0, mine[1:], false},
		{"budget of two records", db.RecordPage{Limit: 100, MaxBytes: 2*size + 1}, 0, all[:2], true},
		{"budget of exactly three", db.RecordPage{Limit: 100, MaxBytes: 3 * size}, 0, all[:3], true},
		{"budget below one record", db.RecordPage{Limit: 100, MaxBytes: 1}, 0, all[:1], true},
		{"budget of everything", db.RecordPage{Limit: 100, MaxBytes: 6 * size}, 0, all, false},
		{"budget beyond the limit", db.RecordPage{Limit: 2, MaxBytes: 6 * size}, 0, all[:2], false},
		{"each's cut", db.RecordPage{Limit: 100, MaxBytes: -1}, 3, all[:3], true},
	}
	for _, tc := range cases {
		got, truncated := list(tc.page, tc.stopAfter)
		if !slices.Equal(got, tc.want) || truncated != tc.truncated {
			t.Errorf("%s: %v, truncated %t; want %v, truncated %t", tc.name, got, truncated, tc.want, tc.truncated)
		}
	}

	if _, err := db.ListRecords(ctx, pool, db.RecordPage{Class: c.ID}, nil); err == nil {
		t.Error("limit 0: no error")
	}
	boom := errors.New("boom")
	n := 0
	_, err := db.ListRecords(ctx, pool, db.RecordPage{Class: c.ID, Limit: 100, MaxBytes: -1}, func(*db.RecordRow) (bool, error) {
		n++
		return true, boom
	})
	if !errors.Is(err, boom) || n != 1 {
		t.Errorf("each failing: %v after %d records, want its error after one", err, n)
	}
}
