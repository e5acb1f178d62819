package rest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"github.com/pgcast/pgcast/db"
	"github.com/pgcast/pgcast/internal/collections"
	"github.com/pgcast/pgcast/server/auth"
	"github.com/pgcast/pgcast/server/internal/httpjson"
	"github.com/pgcast/pgcast/stream"
)

// A page of GET /api/{collection} is bounded in records (?limit=) and in
// bytes (Config.MaxListBytes). Postgres bounds the rows it sends on an
// estimate of each record's size, below the record's as built
// (db.ListRecords); listRecords builds each record and cuts the page
// exactly at the budget. The first record is always sent, however large,
// so that a client can always make progress.

// truncatedTail ends a truncated page; a page's bytes with it stay within
// the budget (but for its first record).
const truncatedTail = `],"truncated":true}` + "\n"

// listRecords serves GET /api/{collection}: {"items":[…]}, with
// "truncated":true when the page stopped early at the byte budget.
func (s *API) listRecords(w http.ResponseWriter, r *http.Request, id auth.Identity, c collections.Collection) error {
	rule, err := authorize(c.Permissions.Read, id, "list "+c.Name)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	limit := DefaultListLimit
	var ps collections.Problems
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxListLimit {
			ps = append(ps, collections.Problem{Field: "limit", Rule: "range", Message: fmt.Sprintf("limit must be an integer from 1 to %d", MaxListLimit)})
		}
		limit = n
	}
	var before *int64
	if v := q.Get("before"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			ps = append(ps, collections.Problem{Field: "before", Rule: "type", Message: "before must be a record id (a positive integer)"})
		}
		before = &n
	}
	if ps != nil {
		return validationError(ps)
	}
	body := []byte(`{"items":[`)
	n := 0
	truncated, err := db.ListRecords(r.Context(), s.pool, db.RecordPage{
		Class: c.ID, User: id.Viewer().OwnerFilter(rule), Before: before, Limit: limit, MaxBytes: int64(s.maxListBytes),
	}, func(row *db.RecordRow) (bool, error) {
		mark := len(body)
		if n > 0 {
			body = append(body, ',')
		}
		// Compact and not HTML-escaped, as json.Compact left the items.
		var err error
		if body, err = stream.AppendRecord(body, row, false); err != nil {
			return false, err
		}
		if n > 0 && s.maxListBytes >= 0 && len(body)+len(truncatedTail) > s.maxListBytes {
			body = body[:mark]
			return false, nil
		}
		n++
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("list %s: %w", c.Name, err)
	}
	if truncated {
		// Only then: a full page is the contract's {"items":[…]}.
		body = append(body, truncatedTail...)
		s.metrics.Truncated.Inc()
	} else {
		body = append(body, "]}\n"...)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, err = w.Write(body)
	s.countWriteTimeout(err)
	return nil
}

// writeRecord answers with a record and counts a response cut by the write
// timeout. A failed write leaves nothing to answer: it is never an error
// of the handler's.
func (s *API) writeRecord(w http.ResponseWriter, status int, row *stream.RecordRow) error {
	rec, err := stream.AppendRecord(nil, row, true)
	if err != nil {
		return err
	}
	s.countWriteTimeout(httpjson.Write(w, status, json.RawMessage(rec)))
	return nil
}
