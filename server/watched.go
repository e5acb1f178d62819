package server

import (
	"fmt"
	"net/http"

	"github.com/pgcast/pgcast/internal/collections"
)

// refuseWatched answers a record request on a watch's collection with 409
// watched_table: its records are the rows of the application's table,
// which the application reads and writes itself; the REST record endpoints
// serve pgcast's own records (pgcast.object_records) only, and would
// otherwise list nothing and create records no table has.
func refuseWatched(c collections.Collection, err error) error {
	if err != nil || c.Table == "" {
		return err
	}
	return &apiError{status: http.StatusConflict, code: "watched_table",
		message: fmt.Sprintf("collection %q streams table %s: read and write that table itself; subscribe to %s.* on /api/realtime for its changes", c.Name, c.Table, c.Name)}
}

// namespaceQuery says what a realtime namespace ($2) is in the viewer's
// environment ($1): a collection (one of the environment, or a watch whose
// rows carry their environment — env_column: its class lives in the
// environment it was applied to, its rows' events in theirs), and whether
// it is a registered application namespace.
const namespaceQuery = `SELECT EXISTS (SELECT 1 FROM pgcast.object_classes WHERE environment_id = $1 AND name = $2)
        OR EXISTS (SELECT 1 FROM pgcast.watches w JOIN pgcast.object_classes c ON c.id = w.object_class_id
                   WHERE w.env_attnum IS NOT NULL AND c.name = $2),
    EXISTS (SELECT 1 FROM pgcast.publish_namespaces WHERE name = $2)`
