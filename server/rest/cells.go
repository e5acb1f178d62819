package rest

import (
	"github.com/pgcast/pgcast/db"
	"github.com/pgcast/pgcast/internal/collections"
)

// storeProblem is the validation problem of a record write that Postgres
// refused for its values: jsonb cannot store \u0000, or the triggers'
// check of the cells (a key that is not a field id of the class, a
// required field without a value). The REST API checks the cells against
// the collection before it writes, so the second happens only when a field
// was deleted or made required between that check and the write; the
// answer is still a 400, never a 500.
func storeProblem(e *db.CellsError) collections.Problem {
	rule := "invalid"
	switch e.Reason {
	case db.CellsUnstorable:
		return collections.Problem{Field: "", Rule: "type", Message: "a value cannot be stored: " + e.Message}
	case db.CellsUnknown:
		rule = "unknown"
	case db.CellsRequired:
		rule = "required"
	}
	return collections.Problem{Field: "", Rule: rule, Message: e.Message}
}
