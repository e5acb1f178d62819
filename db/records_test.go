package db_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/pgcast/pgcast/db"
	"github.com/pgcast/pgcast/internal/pgtest"
)

func ptr[T any](v T) *T { return &v }

// cellsOf is a record's cells: values by field name, keyed by the field ids
// of fields (name → id).
func cellsOf(t *testing.T, fields map[string]int64, values map[string]any) []byte {
	t.Helper()
	cells := map[string]any{}
	for name, v := range values {
		cells[fmt.Sprint(fields[name])] = v
	}
	b, err := json.Marshal(cells)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRecordWrites(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := pgtest.NewPool(t)
	c := mustCollection(t, pool, postsDef())
	otherDef := postsDef()
	otherDef.Name = "other"
	other := mustCollection(t, pool, otherDef)
	ids := map[string]int64{"title": c.Fields[0].ID, "body": c.Fields[1].ID}

	row, err := db.CreateRecord(ctx, pool, c.ID, cellsOf(t, ids, map[string]any{"title": "hello"}), []string{"u1"})
	if err != nil {
		t.Fatal(err)
	}
	if row.ID == 0 || row.CreatedAt == nil || row.UpdatedAt == nil || row.Fields[fmt.Sprint(ids["title"])] != "title" || row.Fields[fmt.Sprint(ids["body"])] != "body" {
		t.Fatalf("created %+v: want an id, timestamps and the class's field names", row)
	}
	rec, err := db.GetRecord(ctx, pool, c.ID, row.ID)
	if err != nil || rec.ID != row.ID || string(rec.Cells) != string(row.Cells) || !slices.Equal(rec.Owners, []string{"u1"}) || len(rec.Assignees) != 0 {
		t.Fatalf("GetRecord = %+v, %v", rec, err)
	}
	if _, err := db.GetRecord(ctx, pool, other.ID, row.ID); !errors.Is(err, db.ErrRecordNotFound) {
		t.Errorf("GetRecord of another class: %v, want ErrRecordNotFound", err)
	}

	// A write restricted to another user changes nothing.
	if _, err := db.UpdateRecord(ctx, pool, c.ID, row.ID, ptr("u2"), cellsOf(t, ids, map[string]any{"body": "no"})); !errors.Is(err, db.ErrRecordNotAllowed) {
		t.Errorf("UpdateRecord as u2: %v, want ErrRecordNotAllowed", err)
	}
	mustExec(t, pool, `UPDATE pgcast.object_records SET assignees = '{u3}' WHERE id = $1`, row.ID)
	for _, user := range []*string{ptr("u1"), ptr("u3"), nil} {
		body := fmt.Sprint("by ", user)
		got, err := db.UpdateRecord(ctx, pool, c.ID, row.ID, user, cellsOf(t, ids, map[string]any{"body": body}))
		if err != nil {
			t.Fatalf("UpdateRecord as %v: %v", user, err)
		}
		var cells map[string]string
		if err := json.Unmarshal(got.Cells, &cells); err != nil || cells[fmt.Sprint(ids["title"])] != "hello" || cells[fmt.Sprint(ids["body"])] != body {
			t.Errorf("updated cells %s: want the title kept and the body merged", got.Cells)
		}
		if got.ID != row.ID || got.Fields[fmt.Sprint(ids["body"])] != "body" {
			t.Errorf("updated %+v: want the record with its field names", got)
		}
	}
	if _, err := db.UpdateRecord(ctx, pool, other.ID, row.ID, nil, []byte(`{}`)); !errors.Is(err, db.ErrRecordNotFound) {
		t.Errorf("UpdateRecord of another class: %v, want ErrRecordNotFound", err)
	}

	if err := db.DeleteRecord(ctx, pool, c.ID, row.ID, ptr("u2")); !errors.Is(err, db.ErrRecordNotAllowed) {
		t.Errorf("DeleteRecord as u2: %v, want ErrRecordNotAllowed", err)
	}
	if _, err := db.GetRecord(ctx, pool, c.ID, row.ID); err != nil {
		t.Fatalf("after a refused delete: %v", err)
	}
	if err := db.DeleteRecord(ctx, pool, c.ID, row.ID, ptr("u3")); err != nil {
		t.Fatalf("DeleteRecord as the assignee: %v", err)
	}
	if err := db.DeleteRecord(ctx, pool, c.ID, row.ID, nil); !errors.Is(err, db.ErrRecordNotFound) {
		t.Errorf("DeleteRecord again: %v, want ErrRecordNotFound", err)
	}
}

// The errors with which Postgres refuses a record's cells, and a class
// that is gone, are told apart.
func TestRecordWriteErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := pgtest.NewPool(t)
	c := mustCollection(t, pool, postsDef())
	ids := map[string]int64{"title": c.Fields[0].ID, "body": c.Fields[1].ID}
	row, err := db.CreateRecord(ctx, pool, c.ID, cellsOf(t, ids, map[string]any{"title": "t"}), nil)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		cells string
		want  db.CellsReason
	}{
		{"unknown field id", fmt.Sprintf(`{"%d": "t", "999999": 1}`, ids["title"]), db.CellsUnknown},
		{"required field missing", fmt.Sprintf(`{"%d": "b"}`, ids["body"]), db.CellsRequired},
		{"required field null", fmt.Sprintf(`{"%d": null}`, ids["title"]), db.CellsRequired},
		{"not an object", `[1]`, db.CellsInvalid},
		{"NUL", fmt.Sprintf(`{"%d": "a\u0000b"}`, ids["title"]), db.CellsUnstorable},
	}
	for _, tc := range cases {
		_, err := db.CreateRecord(ctx, pool, c.ID, []byte(tc.cells), nil)
		var ce *db.CellsError
		if !errors.As(err, &ce) || ce.Reason != tc.want || ce.Message == "" {
			t.Errorf("create, %s: %#v (%v), want a CellsError of reason %d", tc.name, ce, err, tc.want)
		}
		if tc.name == "required field missing" {
			continue // an update merges into the stored cells, which have the title
		}
		_, err = db.UpdateRecord(ctx, pool, c.ID, row.ID, nil, []byte(tc.cells))
		if !errors.As(err, &ce) || ce.Reason != tc.want {
			t.Errorf("update, %s: %v, want a CellsError of reason %d", tc.name, err, tc.want)
		}
	}
	mustExec(t, pool, `DELETE FROM pgcast.object_classes WHERE id = $1`, c.ID)
	_, err = db.CreateRecord(ctx, pool, c.ID, cellsOf(t, ids, map[string]any{"title": "t"}), nil)
	if !errors.Is(err, db.ErrCollectionNotFound) {
		t.Errorf("create in a deleted class: %v, want ErrCollectionNotFound", err)
	}
}
