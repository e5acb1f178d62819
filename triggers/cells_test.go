package triggers_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgcast/pgcast/triggers"
)

// refused runs a write that the check of cells must refuse, and checks the
// error: SQLSTATE 23514, the constraint, and that message, detail and hint
// hold the given texts. Nothing may be appended to the log.
func (f *fixture) refused(constraint string, texts []string, sql string, args ...any) {
	f.t.Helper()
	_, err := f.pool.Exec(f.ctx, sql, args...)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		f.t.Fatalf("%s: %v, want SQLSTATE 23514", sql, err)
	}
	all := pe.Message + "\n" + pe.Detail + "\n" + pe.Hint
	if pe.Code != "23514" || pe.ConstraintName != constraint || pe.SchemaName != "pgcast" || pe.TableName != "object_records" || pe.ColumnName != "cells" {
		f.t.Errorf("%s: SQLSTATE %s constraint %q (%s.%s.%s), want 23514 %s on pgcast.object_records.cells:\n%s",
			sql, pe.Code, pe.ConstraintName, pe.SchemaName, pe.TableName, pe.ColumnName, constraint, all)
	}
	for _, s := range texts {
		if !strings.Contains(all, s) {
			f.t.Errorf("%s: error lacks %q:\n%s", sql, s, all)
		}
	}
	if es := f.newEntries(); len(es) != 0 {
		f.t.Errorf("%s: refused, yet appended\n%s", sql, dump(es))
	}
}

// Writes through SQL are held to the rules REST checks: cells are keyed by
// field id, and a required field has a cell that is not null. The error
// names the key or field and hints at the field ids.
func TestCellsAreChecked(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	classID, fl := f.class("posts", "public", "title", "body")
	f.exec(`UPDATE pgcast.object_class_fields SET required = true WHERE id = $1`, fl["title"])
	title, body := fmt.Sprint(fl["title"]), fmt.Sprint(fl["body"])
	insert := `INSERT INTO pgcast.object_records (object_class_id, cells) VALUES ($1, $2)`
	f.skip()

	// The first thing a new user tries: cells keyed by field name.
	f.refused("object_records_cells_known",
		[]string{`key "title" is not a field id`, `field "title" has id ` + title, `{"` + title + `": …}`},
		insert, classID, `{"title": "Hello"}`)
	f.refused("object_records_cells_known",
		[]string{`key "999999" is not a field id`, `"title" (id ` + title + `), "body" (id ` + body + `)`},
		insert, classID, fmt.Sprintf(`{"%s": "Hello", "999999": 1}`, title))
	f.refused("object_records_cells_required",
		[]string{`required field "title" (id ` + title + `) has no cell`},
		insert, classID, fmt.Sprintf(`{"%s": "b"}`, body))
	f.refused("object_records_cells_required",
		[]string{`required field "title" (id ` + title + `) is null`},
		insert, classID, fmt.Sprintf(`{"%s": null}`, title))
	// One bad row refuses the statement.
	f.refused("object_records_cells_known", []string{`key "nope"`},
		`INSERT INTO pgcast.object_records (object_class_id, cells) SELECT $1, CASE WHEN g = 3 THEN '{"nope": 1}'::jsonb ELSE jsonb_build_object($2::text, g) END
		 FROM generate_series(1, 5) g`, classID, title)
	if n := f.int64(`SELECT count(*) FROM pgcast.object_records`); n != 0 {
		t.Fatalf("%d records after refused inserts", n)
	}

	// Optional fields may be absent or null.
	id := f.record(classID, fmt.Sprintf(`{"%s": "Hello", "%s": null}`, title, body), nil, nil)
	wantKinds(t, f.newEntries(), triggers.KindRecordCreated)
	f.exec(`UPDATE pgcast.object_records SET cells = cells - $2::text WHERE id = $1`, id, body)
	wantKinds(t, f.newEntries(), triggers.KindRecordUpdated)

	// An update is held to the rules for what it changes; the error says
	// which record.
	update := `UPDATE pgcast.object_records SET cells = $2 WHERE id = $1`
	recordDetail := fmt.Sprintf("Object record %d.", id)
	f.refused("object_records_cells_known", []string{`key "body" is not a field id`, recordDetail, `field "body" has id ` + body},
		`UPDATE pgcast.object_records SET cells = cells || '{"body": "x"}' WHERE id = $1`, id)
	f.refused("object_records_cells_required", []string{`required field "title" (id ` + title + `) has no cell`, recordDetail},
		update, id, fmt.Sprintf(`{"%s": "b"}`, body))
	f.refused("object_records_cells_required", []string{`is null`, recordDetail},
		update, id, fmt.Sprintf(`{"%s": null}`, title))

	// Cells of a field deleted since, and a required field added after the
	// record was written, do not block other changes to the record.
	f.exec(`DELETE FROM pgcast.object_class_fields WHERE id = $1`, fl["title"])
	late := f.int64(`INSERT INTO pgcast.object_class_fields (object_class_id, name, type, required) VALUES ($1, 'late', 'string', true) RETURNING id`, classID)
	f.skip()
	f.exec(`UPDATE pgcast.object_records SET cells = cells || jsonb_build_object($2::text, 'b'), owners = '{u1}' WHERE id = $1`, id, body)
	wantKinds(t, f.newEntries(), triggers.KindRecordUpdated, triggers.KindRecordOwnerAdded)
	// ... but a key it adds must be a field id, and new records need the
	// required field.
	f.refused("object_records_cells_known", []string{fmt.Sprintf(`key "%d" is not a field id`, fl["title"])},
		update, id, fmt.Sprintf(`{"%s": "again"}`, title))
	f.refused("object_records_cells_required", []string{fmt.Sprintf(`required field "late" (id %d) has no cell`, late)},
		insert, classID, fmt.Sprintf(`{"%s": "b"}`, body))

	// A class without fields takes records without cells, and nothing else.
	bare, _ := f.class("bare", "public")
	f.skip()
	f.exec(`INSERT INTO pgcast.object_records (object_class_id) VALUES ($1)`, bare)
	wantKinds(t, f.newEntries(), triggers.KindRecordCreated)
	f.refused("object_records_cells_known", []string{`object class bare has no fields`}, insert, bare, `{"x": 1}`)
}
