package db

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The records of a collection (pgcast.object_records), as the REST API
// reads and writes them. A record is returned raw (RecordRow): package
// stream builds the record every API shows from it (stream.AppendRecord),
// as it builds a record event's from a log entry, so that REST and realtime
// show one record byte for byte alike. Who may read or change a record is
// package stream's decision (stream.Viewer); a write restricted to the
// records of one user (their owner or assignee) is told that user and
// checks it in the statement that writes.

// Errors of the record functions (wrapped, test with errors.Is). A write
// to a class deleted meanwhile gives ErrCollectionNotFound; cells Postgres
// refuses, a *CellsError.
var (
	ErrRecordNotFound = errors.New("record not found")
	// ErrRecordNotAllowed: the record exists, but the user a write was
	// restricted to neither owns it nor is assigned to it. Nothing changed.
	ErrRecordNotAllowed = errors.New("record belongs to other users")
)

// RecordRow is what a record is built from: a row of pgcast.object_records
// with its class's field names, or a record entry's data. Read from the
// database, a row is
//
//	r.id, r.cells, c.field_names,
//	to_jsonb(r.created_at AT TIME ZONE 'UTC') #>> '{}',
//	to_jsonb(r.updated_at AT TIME ZONE 'UTC') #>> '{}'
//
// of pgcast.object_records r and its class c (pgcast.object_classes), read
// in one statement so that the names are those of the row's snapshot.
type RecordRow struct {
	ID int64
	// Cells are the record's values by field id (r.cells).
	Cells json.RawMessage
	// Fields are the class's field names by field id (c.field_names).
	Fields map[string]string
	// CreatedAt and UpdatedAt are the timestamps in UTC as to_jsonb prints
	// a timestamp without time zone ("2026-01-02T03:04:05.678901",
	// "infinity", "... BC"); nil is null.
	CreatedAt, UpdatedAt *string
}

// Record is a record with the users it belongs to.
type Record struct {
	RecordRow
	Owners, Assignees []string
}

// recordColumns are a RecordRow of the row r of pgcast.object_records, its
// class's field names read in the same statement; scanned by recordDest.
const recordColumns = `r.id, r.cells,
    (SELECT c.field_names FROM pgcast.object_classes c WHERE c.id = r.object_class_id),
    to_jsonb(r.created_at AT TIME ZONE 'UTC') #>> '{}', to_jsonb(r.updated_at AT TIME ZONE 'UTC') #>> '{}'`

// recordDest are the scan destinations of recordColumns.
func recordDest(row *RecordRow) []any {
	return []any{&row.ID, &row.Cells, &row.Fields, &row.CreatedAt, &row.UpdatedAt}
}

// CellsReason is why Postgres refused a record's cells.
type CellsReason int

// The reasons: the constraints with which the triggers refuse cells
// (SQLSTATE 23514, check_violation; see package triggers), and a value
// jsonb cannot store.
const (
	// CellsInvalid: another check of the cells.
	CellsInvalid CellsReason = iota
	// CellsUnknown: a key that is not a field id of the record's class
	// (constraint object_records_cells_known).
	CellsUnknown
	// CellsRequired: a required field without a value (constraint
	// object_records_cells_required).
	CellsRequired
	// CellsUnstorable: a value jsonb cannot store, such as \u0000
	// (SQLSTATE 22P05).
	CellsUnstorable
)

// CellsError is a record write that Postgres refused for its cells. The
// REST API checks the cells against the collection before it writes, so
// the triggers refuse them only when a field was deleted or made required
// between that check and the write.
type CellsError struct {
	Reason CellsReason
	// Message is Postgres's, which says what is wrong (no secret in it).
	Message string
}

func (e *CellsError) Error() string { return "cells refused: " + e.Message }

// recordWriteError classifies the error of a statement that writes a
// record: the class gone (a foreign key violation), refused cells, or
// anything else, wrapped with what.
func recordWriteError(err error, what string) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "23503": // foreign key: the class is gone
			return fmt.Errorf("%s: %w", what, ErrCollectionNotFound)
		case "22P05": // untranslatable character
			return &CellsError{Reason: CellsUnstorable, Message: pe.Message}
		case "23514":
			reason := CellsInvalid
			switch pe.ConstraintName {
			case "object_records_cells_known":
				reason = CellsUnknown
			case "object_records_cells_required":
				reason = CellsRequired
			}
			return &CellsError{Reason: reason, Message: pe.Message}
		}
	}
	return fmt.Errorf("%s: %w", what, err)
}

// CreateRecord inserts a record of class classID with cells (a JSON object
// keyed by field id) and owners (nil: none), and returns it as stored.
func CreateRecord(ctx context.Context, q Querier, classID int64, cells []byte, owners []string) (RecordRow, error) {
	if owners == nil {
		owners = []string{} // not NULL
	}
	var row RecordRow
	err := q.QueryRow(ctx, `
		INSERT INTO pgcast.object_records AS r (object_class_id, cells, owners)
		VALUES ($1, $2::jsonb, $3::text[])
		RETURNING `+recordColumns, classID, cells, owners).Scan(recordDest(&row)...)
	if err != nil {
		return RecordRow{}, recordWriteError(err, "create record")
	}
	return row, nil
}

// GetRecord returns record recID of class classID, or an error wrapping
// ErrRecordNotFound.
func GetRecord(ctx context.Context, q Querier, classID, recID int64) (Record, error) {
	var rec Record
	err := q.QueryRow(ctx, `
		SELECT `+recordColumns+`, r.owners, r.assignees
		FROM pgcast.object_records r
		WHERE r.id = $1 AND r.object_class_id = $2`, recID, classID).Scan(append(recordDest(&rec.RecordRow), &rec.Owners, &rec.Assignees)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return Record{}, fmt.Errorf("%w: %d", ErrRecordNotFound, recID)
	}
	if err != nil {
		return Record{}, fmt.Errorf("read record %d: %w", recID, err)
	}
	return rec, nil
}

// targetRecord is the record a write is about, locked, with whether the
// write may change it ($3: the user it must belong to, or NULL), so that
// the check and the write are one statement with no race between them.
const targetRecord = `
WITH target AS (
    SELECT r.id, ($3::text IS NULL OR $3::text = ANY (r.owners) OR $3::text = ANY (r.assignees)) AS allowed
    FROM pgcast.object_records r
    WHERE r.id = $1 AND r.object_class_id = $2
    FOR UPDATE
)`

// UpdateRecord merges cells (a JSON object keyed by field id) into record
// recID of class classID and returns it as stored. With user set, the
// record must be one the user owns or is assigned to (ErrRecordNotAllowed
// otherwise); a record that does not exist gives ErrRecordNotFound.
func UpdateRecord(ctx context.Context, q Querier, classID, recID int64, user *string, cells []byte) (RecordRow, error) {
	var (
		allowed bool
		row     RecordRow
	)
	// Not allowed, nothing changed: the record's columns are NULL (its id
	// 0) and unused.
	err := q.QueryRow(ctx, targetRecord+`, changed (id, cells, field_names, created_at, updated_at) AS (
		    UPDATE pgcast.object_records r SET cells = r.cells || $4::jsonb
		    FROM target t
		    WHERE r.id = t.id AND t.allowed
		    RETURNING `+recordColumns+`
		)
		SELECT t.allowed, COALESCE(c.id, 0), c.cells, c.field_names, c.created_at, c.updated_at
		FROM target t LEFT JOIN changed c ON true`,
		recID, classID, user, cells).Scan(append([]any{&allowed}, recordDest(&row)...)...)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return RecordRow{}, fmt.Errorf("%w: %d", ErrRecordNotFound, recID)
	case err != nil:
		return RecordRow{}, recordWriteError(err, fmt.Sprintf("update record %d", recID))
	case !allowed:
		return RecordRow{}, fmt.Errorf("%w: %d", ErrRecordNotAllowed, recID)
	}
	return row, nil
}

// DeleteRecord deletes record recID of class classID. With user set, the
// record must be one the user owns or is assigned to (ErrRecordNotAllowed
// otherwise); a record that does not exist gives ErrRecordNotFound.
func DeleteRecord(ctx context.Context, q Querier, classID, recID int64, user *string) error {
	var allowed bool
	err := q.QueryRow(ctx, targetRecord+`, gone AS (
		    DELETE FROM pgcast.object_records r
		    USING target t
		    WHERE r.id = t.id AND t.allowed
		)
		SELECT t.allowed FROM target t`,
		recID, classID, user).Scan(&allowed)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("%w: %d", ErrRecordNotFound, recID)
	case err != nil:
		return fmt.Errorf("delete record %d: %w", recID, err)
	case !allowed:
		return fmt.Errorf("%w: %d", ErrRecordNotAllowed, recID)
	}
	return nil
}
