package rest

import (
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgcast/pgcast/internal/collections"
)

// Constraint names of the errors (SQLSTATE 23514, check_violation) with
// which the triggers refuse a record's cells (see package triggers):
// a key that is not a field id of the class, a required field without a
// value.
const (
	constraintCellsKnown    = "object_records_cells_known"
	constraintCellsRequired = "object_records_cells_required"
)

// storeProblem is the validation problem of a record write that Postgres
// refused for its values: 22P05 (jsonb cannot store \u0000) or 23514 (the
// triggers' check of the cells). The REST API checks the cells against the
// collection before it writes, so the second happens only when a field was
// deleted or made required between that check and the write; the answer is
// still a 400, never a 500.
func storeProblem(pe *pgconn.PgError) collections.Problem {
	if pe.Code != "23514" {
		return collections.Problem{Field: "", Rule: "type", Message: "a value cannot be stored: " + pe.Message}
	}
	rule := "invalid"
	switch pe.ConstraintName {
	case constraintCellsKnown:
		rule = "unknown"
	case constraintCellsRequired:
		rule = "required"
	}
	return collections.Problem{Field: "", Rule: rule, Message: pe.Message}
}
