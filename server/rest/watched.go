package rest

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
	return NewError(http.StatusConflict, "watched_table",
		fmt.Sprintf("collection %q streams table %s: read and write that table itself; subscribe to %s.* on /api/realtime for its changes", c.Name, c.Table, c.Name))
}
