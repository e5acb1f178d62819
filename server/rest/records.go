package rest

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pgcast/pgcast/db"
	"github.com/pgcast/pgcast/internal/collections"
	"github.com/pgcast/pgcast/server/auth"
	"github.com/pgcast/pgcast/stream"
)

// serverManaged are the record keys a client may not write.
var serverManaged = []string{"id", "createdAt", "updatedAt"}

// maxSafeInteger is the largest integer a JSON client (a float64, as in
// JavaScript) represents exactly: integer fields are bounded by it so that a
// value reads back as written everywhere.
const maxSafeInteger = 1<<53 - 1

// handleRecords serves /api/{collection}: GET lists, POST creates.
func (s *API) handleRecords(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		return methodNotAllowed(http.MethodGet, http.MethodPost)
	}
	id, err := s.identity(r)
	if err != nil {
		return err
	}
	c, err := s.collection(r, id)
	if err != nil {
		return err
	}
	if r.Method == http.MethodGet {
		return s.listRecords(w, r, id, c)
	}
	return s.createRecord(w, r, id, c)
}

// handleRecord serves /api/{collection}/{id}: GET, PUT (partial update),
// DELETE.
func (s *API) handleRecord(w http.ResponseWriter, r *http.Request) error {
	switch r.Method {
	case http.MethodGet, http.MethodPut, http.MethodDelete:
	default:
		return methodNotAllowed(http.MethodGet, http.MethodPut, http.MethodDelete)
	}
	id, err := s.identity(r)
	if err != nil {
		return err
	}
	c, err := s.collection(r, id)
	if err != nil {
		return err
	}
	recID, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || recID < 1 {
		return badRequest("invalid record id %q: want a positive integer", r.PathValue("id"))
	}
	switch r.Method {
	case http.MethodGet:
		return s.getRecord(w, r, id, c, recID)
	case http.MethodPut:
		return s.updateRecord(w, r, id, c, recID)
	}
	return s.deleteRecord(w, r, id, c, recID)
}

// collection looks up the collection named in the path in the caller's
// environment. Reserved names are never served as collections, even when
// an object class of that name was created directly in SQL.
func (s *API) collection(r *http.Request, id auth.Identity) (collections.Collection, error) {
	name := r.PathValue("collection")
	if collections.IsReserved(name) {
		return collections.Collection{}, notFound("collection %q not found", name)
	}
	c, err := db.GetCollection(r.Context(), s.pool, id.Environment, name)
	if errors.Is(err, db.ErrCollectionNotFound) {
		return collections.Collection{}, notFound("collection %q not found", name)
	}
	return c, refuseWatched(c, err)
}

// authorize checks that rule lets the caller at the collection at all, as
// far as stream's read rules (Viewer.Access) decide without the record, and
// returns it as stream's rule for the checks that need the record
// (Viewer.OwnerFilter, Viewer.MayRead). A rule this binary does not know is
// RuleUnknown: admins only.
func authorize(rule collections.Rule, id auth.Identity, what string) (stream.Rule, error) {
	r, _ := stream.ParseRule(string(rule))
	if id.Viewer().Access(r) == stream.AccessNone {
		return r, denied(id, what)
	}
	return r, nil
}

func (s *API) createRecord(w http.ResponseWriter, r *http.Request, id auth.Identity, c collections.Collection) error {
	// For create, "owner" admits any signed-in caller: it becomes the owner.
	if _, err := authorize(c.Permissions.Create, id, "create "+c.Name+" records"); err != nil {
		return err
	}
	members, err := readObject(w, r)
	if err != nil {
		return err
	}
	cells, err := recordCells(c, members, false)
	if err != nil {
		return err
	}
	owners := []string{}
	if !id.Anonymous() {
		owners = append(owners, id.UserID)
	}
	row, err := db.CreateRecord(r.Context(), s.pool, c.ID, cells, owners)
	if err != nil {
		return writeErr(err, c)
	}
	return s.writeRecord(w, http.StatusCreated, &row)
}

func (s *API) getRecord(w http.ResponseWriter, r *http.Request, id auth.Identity, c collections.Collection, recID int64) error {
	rule, err := authorize(c.Permissions.Read, id, "read "+c.Name+" records")
	if err != nil {
		return err
	}
	rec, err := db.GetRecord(r.Context(), s.pool, c.ID, recID)
	if errors.Is(err, db.ErrRecordNotFound) {
		return notFound("%s record %d not found", c.Name, recID)
	}
	if err != nil {
		return fmt.Errorf("read %s record: %w", c.Name, err)
	}
	if !id.Viewer().MayRead(rule, rec.Owners, rec.Assignees) {
		return denied(id, fmt.Sprintf("read %s record %d", c.Name, recID))
	}
	return s.writeRecord(w, http.StatusOK, &rec.RecordRow)
}

func (s *API) updateRecord(w http.ResponseWriter, r *http.Request, id auth.Identity, c collections.Collection, recID int64) error {
	rule, err := authorize(c.Permissions.Update, id, "update "+c.Name+" records")
	if err != nil {
		return err
	}
	members, err := readObject(w, r)
	if err != nil {
		return err
	}
	cells, err := recordCells(c, members, true)
	if err != nil {
		return err
	}
	row, err := db.UpdateRecord(r.Context(), s.pool, c.ID, recID, id.Viewer().OwnerFilter(rule), cells)
	switch {
	case errors.Is(err, db.ErrRecordNotFound):
		return notFound("%s record %d not found", c.Name, recID)
	case errors.Is(err, db.ErrRecordNotAllowed):
		return denied(id, fmt.Sprintf("update %s record %d", c.Name, recID))
	case err != nil:
		return writeErr(err, c)
	}
	return s.writeRecord(w, http.StatusOK, &row)
}

func (s *API) deleteRecord(w http.ResponseWriter, r *http.Request, id auth.Identity, c collections.Collection, recID int64) error {
	rule, err := authorize(c.Permissions.Delete, id, "delete "+c.Name+" records")
	if err != nil {
		return err
	}
	err = db.DeleteRecord(r.Context(), s.pool, c.ID, recID, id.Viewer().OwnerFilter(rule))
	switch {
	case errors.Is(err, db.ErrRecordNotFound):
		return notFound("%s record %d not found", c.Name, recID)
	case errors.Is(err, db.ErrRecordNotAllowed):
		return denied(id, fmt.Sprintf("delete %s record %d", c.Name, recID))
	case err != nil:
		return fmt.Errorf("delete %s record: %w", c.Name, err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// writeErr maps a write's database error: the collection deleted meanwhile
// is a 404; a value Postgres cannot store (jsonb refuses \u0000) or cells
// the triggers refuse (a field changed meanwhile) a validation error.
func writeErr(err error, c collections.Collection) error {
	if errors.Is(err, db.ErrCollectionNotFound) {
		return notFound("collection %q not found", c.Name)
	}
	var ce *db.CellsError
	if errors.As(err, &ce) {
		return validationError(collections.Problems{storeProblem(ce)})
	}
	return fmt.Errorf("write %s record: %w", c.Name, err)
}

// recordCells validates a record body against c's fields and returns the
// cells to write as a JSON object keyed by field id. On create (partial
// false) every required field must be present; on update only the given
// fields are checked. null is a value for optional fields and refused for
// required ones; a missing optional field has no cell and is left out of
// the record. Every problem is reported, not just the first.
func recordCells(c collections.Collection, members []collections.Member, partial bool) ([]byte, error) {
	var ps collections.Problems
	cells := make(map[string]json.RawMessage, len(members))
	given := make(map[string]bool, len(members))
	for _, m := range members {
		if slices.Contains(serverManaged, m.Key) {
			ps = append(ps, collections.Problem{Field: m.Key, Rule: "read_only", Message: m.Key + " is server-managed and cannot be set"})
			continue
		}
		f, ok := c.Field(m.Key)
		if !ok {
			ps = append(ps, collections.Problem{Field: m.Key, Rule: "unknown", Message: fmt.Sprintf("%s has no field %q", c.Name, m.Key)})
			continue
		}
		given[f.Name] = true
		if string(m.Value) == "null" {
			if f.Required {
				ps = append(ps, collections.Problem{Field: f.Name, Rule: "required", Message: f.Name + " is required and cannot be null"})
				continue
			}
			cells[strconv.FormatInt(f.ID, 10)] = m.Value
			continue
		}
		v, p := fieldValue(f, m.Value)
		if p != nil {
			ps = append(ps, *p)
			continue
		}
		cells[strconv.FormatInt(f.ID, 10)] = v
	}
	if !partial {
		for _, f := range c.Fields {
			if f.Required && !given[f.Name] {
				ps = append(ps, collections.Problem{Field: f.Name, Rule: "required", Message: f.Name + " is required"})
			}
		}
	}
	if ps != nil {
		return nil, validationError(ps)
	}
	return json.Marshal(cells)
}

// fieldValue checks one non-null value against its field's type and
// returns it as stored.
func fieldValue(f collections.Field, raw json.RawMessage) (json.RawMessage, *collections.Problem) {
	bad := func(rule, format string, args ...any) (json.RawMessage, *collections.Problem) {
		return nil, &collections.Problem{Field: f.Name, Rule: rule, Message: f.Name + " " + fmt.Sprintf(format, args...)}
	}
	switch f.Type {
	case collections.TypeString, collections.TypeText:
		s, ok := jsonString(raw)
		if !ok {
			return bad("type", "must be a string")
		}
		if strings.IndexByte(s, 0) >= 0 {
			return bad("type", `must not contain the NUL character (\u0000)`)
		}
		if loneSurrogate(raw) {
			return bad("type", loneSurrogateMessage)
		}
		if f.Type == collections.TypeString && utf8.RuneCountInString(s) > collections.MaxStringLen {
			return bad("max_length", "is %d characters, at most %d allowed (use a text field for longer values)", utf8.RuneCountInString(s), collections.MaxStringLen)
		}
		return raw, nil
	case collections.TypeInteger:
		if !isNumber(raw) {
			return bad("type", "must be an integer")
		}
		// Parsed as a float so that 1.0 and 1e3 count as integers; every
		// integer within the bound is exact in a float64.
		v, err := strconv.ParseFloat(string(raw), 64)
		switch {
		case err != nil || math.Abs(v) > maxSafeInteger:
			return bad("range", "must be within ±%d", maxSafeInteger)
		case v != math.Trunc(v):
			return bad("type", "must be an integer")
		}
		n := int64(v)
		return json.RawMessage(strconv.FormatInt(n, 10)), nil
	case collections.TypeFloat:
		if !isNumber(raw) {
			return bad("type", "must be a number")
		}
		v, err := strconv.ParseFloat(string(raw), 64)
		if err != nil {
			return bad("range", "is out of the range of a 64-bit float")
		}
		return json.RawMessage(strconv.FormatFloat(v, 'g', -1, 64)), nil
	case collections.TypeBoolean:
		if s := string(raw); s != "true" && s != "false" {
			return bad("type", "must be true or false")
		}
		return raw, nil
	case collections.TypeDatetime:
		s, ok := jsonString(raw)
		if !ok {
			return bad("type", "must be an RFC 3339 date-time string, e.g. 2026-06-08T12:00:00Z")
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return bad("type", "must be an RFC 3339 date-time string with a time zone, e.g. 2026-06-08T12:00:00Z")
		}
		return json.RawMessage(strconv.Quote(formatDatetime(t))), nil
	case collections.TypeJSON:
		if hasNUL(raw) {
			return bad("type", `must not contain the NUL character (\u0000) in any string`)
		}
		if loneSurrogate(raw) {
			return bad("type", loneSurrogateMessage)
		}
		return raw, nil
	}
	return bad("type", "has type %q, which this server does not know", f.Type)
}

// formatDatetime is how datetime values are stored: UTC, with at least
// milliseconds (like createdAt), more digits only when the value has them.
func formatDatetime(t time.Time) string {
	t = t.UTC()
	if t.Nanosecond()%int(time.Millisecond) == 0 {
		return t.Format("2006-01-02T15:04:05.000Z")
	}
	return t.Format(time.RFC3339Nano)
}
