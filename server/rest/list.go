package rest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"github.com/pgcast/pgcast/internal/collections"
	"github.com/pgcast/pgcast/server/auth"
	"github.com/pgcast/pgcast/server/internal/httpjson"
	"github.com/pgcast/pgcast/stream"
)

// listPage is a page of GET /api/{collection}, bounded in records ($4) and
// in bytes ($5, negative: no budget): the records of class $1 below id $3
// (NULL: all) that user $2 may read (NULL: any), newest first, one at a time
// from the index. pgcast builds each record and cuts the page exactly at the
// budget (listRecords). Postgres keeps its own bound, on an estimate of each
// record's size, its cells' text without jsonb's spaces after "," and ":"
// (below the built record's size: that has id and timestamps too): it stops
// after the first record whose estimate does not fit, which comes back with
// NULL cells (the page is truncated), and reads no further. So the rows
// Postgres sends and pgcast holds stay within about the budget, whatever
// ?limit= asks for. The first record is always sent, however large, so that
// a client can always make progress. The class's field names come with the
// first row only: one statement, one snapshot, the same names for every row.
const listPage = `
WITH RECURSIVE page (id, cells, created_at, updated_at, total, n, fits) AS (
    SELECT COALESCE($3::bigint, 9223372036854775807), NULL::jsonb, NULL::text, NULL::text, 0::bigint, 0, true
  UNION ALL
    SELECT nx.id, nx.cells, nx.created_at, nx.updated_at,
           p.total + nx.size,
           p.n + 1,
           p.n = 0 OR $5::bigint < 0 OR p.total + nx.size <= $5::bigint
    FROM page p
    CROSS JOIN LATERAL (
        SELECT r.id, r.cells, octet_length(replace(replace(r.cells::text, ', ', ','), ': ', ':')) AS size,
               to_jsonb(r.created_at AT TIME ZONE 'UTC') #>> '{}' AS created_at,
               to_jsonb(r.updated_at AT TIME ZONE 'UTC') #>> '{}' AS updated_at
        FROM pgcast.object_records r
        WHERE r.object_class_id = $1
          AND r.id < p.id
          AND ($2::text IS NULL OR $2::text = ANY (r.owners) OR $2::text = ANY (r.assignees))
        ORDER BY r.id DESC
        LIMIT 1) nx
    WHERE p.n < $4 AND p.fits
)
SELECT id, CASE WHEN fits THEN cells END,
       CASE WHEN n = 1 THEN (SELECT c.field_names FROM pgcast.object_classes c WHERE c.id = $1) END,
       created_at, updated_at
FROM page WHERE n > 0 ORDER BY n`

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
	rows, err := s.pool.Query(r.Context(), listPage, c.ID, id.Viewer().OwnerFilter(rule), before, limit, int64(s.maxListBytes))
	if err != nil {
		return fmt.Errorf("list %s: %w", c.Name, err)
	}
	defer rows.Close()
	var (
		body      = []byte(`{"items":[`)
		row       stream.RecordRow
		n         int
		truncated bool
	)
	for rows.Next() {
		var fields map[string]string
		if err := rows.Scan(&row.ID, &row.Cells, &fields, &row.CreatedAt, &row.UpdatedAt); err != nil {
			return fmt.Errorf("list %s: %w", c.Name, err)
		}
		if n == 0 {
			row.Fields = fields
		}
		if len(row.Cells) == 0 { // NULL: past Postgres's estimate of the budget
			truncated = true
			break
		}
		mark := len(body)
		if n > 0 {
			body = append(body, ',')
		}
		// Compact and not HTML-escaped, as json.Compact left the items.
		if body, err = stream.AppendRecord(body, &row, false); err != nil {
			return fmt.Errorf("list %s: %w", c.Name, err)
		}
		if n > 0 && s.maxListBytes >= 0 && len(body)+len(truncatedTail) > s.maxListBytes {
			body, truncated = body[:mark], true
			break
		}
		n++
	}
	if err := rows.Err(); err != nil {
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
