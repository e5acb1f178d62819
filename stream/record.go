package stream

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/pgcast/pgcast/db"
)

// Record entries (record_created, record_updated) carry the record's raw
// cells keyed by field id, the class's field names by id as they were at the
// change, and the record's timestamps in UTC; the reader builds from them,
// once per entry, the record as the realtime API shows it. (The trigger used
// to build it, and looking the names up cost a subquery per captured row.)
//
// AppendRecord builds it, and the REST API builds its records with it
// from the rows it reads, so that both show one record byte for byte alike.

// recordFields are an entry's keys that hold its record (record_deleted,
// and record entries written before schema version 4) or that it is built
// from (record_created, record_updated).
type recordFields struct {
	Record    json.RawMessage   `json:"record"`
	Cells     json.RawMessage   `json:"cells"`
	Fields    map[string]string `json:"fields"`
	CreatedAt *string           `json:"created_at"`
	UpdatedAt *string           `json:"updated_at"`
}

// EntryRecord returns the record, as the realtime API shows it, that the
// data of a log entry (pgcast.events.data) of the record with this id holds
// or describes: built from cells and field names for record_created and
// record_updated, data.record as it is for record_deleted, nil for entries
// without one. For tools and tests that read pgcast.events directly; the
// reader does the same for every entry it decodes.
func EntryRecord(recordID int64, data []byte) (json.RawMessage, error) {
	var d recordFields
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("decode entry data: %w", err)
	}
	return d.record(recordID)
}

// record is the record of record id that the entry holds (Record,
// compacted) or that is built from its cells, field names and timestamps.
func (f *recordFields) record(id int64) (json.RawMessage, error) {
	if f.Cells == nil {
		return compact(f.Record), nil
	}
	return AppendRecord(nil, &RecordRow{ID: id, Cells: f.Cells, Fields: f.Fields, CreatedAt: f.CreatedAt, UpdatedAt: f.UpdatedAt}, true)
}

// RecordRow is what a record is built from: a row of pgcast.object_records
// with its class's field names (as package db reads it), or a record
// entry's data.
type RecordRow = db.RecordRow

// AppendRecord appends the record of row as every API shows it: the cells
// under their fields' names (cells of unknown field ids left out), then
// "id", "createdAt" and "updatedAt" (UTC, milliseconds, "Z"; null for
// infinity), which win over a field of the same name, with the keys in
// jsonb's order (shorter keys first, then bytewise), compact, and strings
// as Postgres prints them. With escapeHTML, <, >, &, U+2028 and U+2029 in
// strings are escaped as well: the bytes encoding/json writes for the
// record (a REST record response, a realtime payload); without, the bytes
// json.Compact leaves (the items of a REST listing). Cells must be a JSON
// object.
func AppendRecord(b []byte, row *RecordRow, escapeHTML bool) ([]byte, error) {
	var cells map[string]json.RawMessage
	if err := json.Unmarshal(row.Cells, &cells); err != nil {
		return nil, fmt.Errorf("record %d: cells: %w", row.ID, err)
	}
	type member struct {
		key   string
		value []byte
	}
	members := make([]member, 0, len(cells)+3)
	for fieldID, v := range cells {
		name, ok := row.Fields[fieldID]
		if !ok || name == "id" || name == "createdAt" || name == "updatedAt" {
			continue
		}
		members = append(members, member{name, v})
	}
	members = append(members,
		member{"id", strconv.AppendInt(nil, row.ID, 10)},
		member{"createdAt", apiTime(row.CreatedAt)},
		member{"updatedAt", apiTime(row.UpdatedAt)})
	slices.SortFunc(members, func(a, b member) int {
		if len(a.key) != len(b.key) {
			return len(a.key) - len(b.key)
		}
		return strings.Compare(a.key, b.key)
	})
	n := 2
	for _, m := range members {
		n += len(m.key) + len(m.value) + 4
	}
	b = slices.Grow(b, n)
	b = append(b, '{')
	for i, m := range members {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendPGString(b, m.key, escapeHTML)
		b = append(b, ':')
		b = appendCompactJSON(b, m.value, escapeHTML)
	}
	return append(b, '}'), nil
}

// apiTime formats a UTC timestamp without time zone, as to_jsonb prints
// it ("2026-01-02T03:04:05.678901", "10000-01-01T00:00:00.5", "0044-03-15T00:00:00
// BC", "infinity"), as the APIs show it: what to_char(t,
// 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') makes of it (milliseconds truncated, no
// era, null for infinity), quoted.
func apiTime(s *string) []byte {
	if s == nil || *s == "infinity" || *s == "-infinity" {
		return []byte("null")
	}
	v := strings.TrimSuffix(*s, " BC")
	main, frac, _ := strings.Cut(v, ".")
	frac = (frac + "000")[:3]
	if strings.Trim(main, "0123456789-:T") != "" || strings.Trim(frac, "0123456789") != "" {
		return appendJSONString(nil, *s) // not what Postgres prints: shown as it is
	}
	out := make([]byte, 0, len(main)+7)
	out = append(out, '"')
	out = append(out, main...)
	out = append(out, '.')
	out = append(out, frac...)
	return append(out, 'Z', '"')
}
