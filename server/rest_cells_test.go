package server

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// REST checks a record against its collection before it writes; the
// database checks the cells again (package triggers). When a field changes
// in between, the database's refusal is a 400 validation_error, never a
// 500. The change in between is made here by a trigger of the test's own,
// which runs inside the write.
func TestRESTWriteRefusedByCellsCheckIs400(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	c := s.define(1, `{"name":"posts","fields":[{"name":"title","type":"string"},{"name":"body","type":"text"}],
		"permissions":{"create":"public","read":"public","update":"public","delete":"public"}}`)
	classID := num(t, c["id"])
	s.exec(fmt.Sprintf(`
CREATE FUNCTION pgcast_test_change_fields() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE pgcast.object_class_fields SET required = true WHERE object_class_id = %[1]d AND name = 'body';
    ELSE
        DELETE FROM pgcast.object_class_fields WHERE object_class_id = %[1]d AND name = 'title';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER pgcast_test_change_fields BEFORE INSERT OR UPDATE ON pgcast.object_records
    FOR EACH ROW WHEN (pg_trigger_depth() = 0 AND NEW.cells <> '{}') EXECUTE FUNCTION pgcast_test_change_fields();`, classID))

	// body made required while the record without it is written.
	e := s.expectError(s.do("POST", "/api/posts", "", `{"title":"Hello"}`), http.StatusBadRequest, "validation_error")
	if !hasDetail(e, "", "required") || !strings.Contains(e.Message, `"body"`) {
		t.Errorf("create: %+v, want a required problem naming body", e)
	}
	// title deleted while a record's title is written.
	id := s.queryInt(`INSERT INTO pgcast.object_records (object_class_id) VALUES ($1) RETURNING id`, classID)
	e = s.expectError(s.do("PUT", fmt.Sprintf("/api/posts/%d", id), "", `{"title":"Bye"}`), http.StatusBadRequest, "validation_error")
	if !hasDetail(e, "", "unknown") || !strings.Contains(e.Message, "is not a field id") {
		t.Errorf("update: %+v, want an unknown problem", e)
	}
	if strings.Contains(s.logBuf.String(), "level=ERROR") {
		t.Errorf("refused writes logged as errors:\n%s", s.logBuf.String())
	}
}
