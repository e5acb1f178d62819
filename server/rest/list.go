package rest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"github.com/pgcast/pgcast/internal/collections"
	"github.com/pgcast/pgcast/server/auth"
	"github.com/pgcast/pgcast/server/internal/httpjson"
)

// listPage is a page of GET /api/{collection}, bounded in records ($4) and
// in bytes ($5, negative: no budget): the records of class $1 below id $3
// (NULL: all) that user $2 may read (NULL: any), newest first, one at a time
// from the index, each with the bytes of the page so far. It stops at the
// limit or after the first record that does not fit: that one comes back as
// a NULL record (the page is truncated), and no further record is built. So
// the records Postgres builds, sends and pgcast holds stay within the budget
// plus one, whatever ?limit= asks for. The first record is always served,
// however large, so that a client can always make progress.
const listPage = `
WITH RECURSIVE page (id, record, total, n) AS (
    SELECT COALESCE($3::bigint, 9223372036854775807), ''::text, 0::bigint, 0
  UNION ALL
    SELECT nx.id,
           CASE WHEN p.n = 0 OR $5::bigint < 0 OR p.total + octet_length(nx.record) <= $5::bigint THEN nx.record END,
           p.total + octet_length(nx.record),
           p.n + 1
    FROM page p
    CROSS JOIN LATERAL (
        SELECT r.id, (` + recordJSON + `)::text AS record
        FROM pgcast.object_records r
        WHERE r.object_class_id = $1
          AND r.id < p.id
          AND ($2::text IS NULL OR $2::text = ANY (r.owners) OR $2::text = ANY (r.assignees))
        ORDER BY r.id DESC
        LIMIT 1) nx
    WHERE p.n < $4 AND p.record IS NOT NULL
)
SELECT record FROM page WHERE n > 0 ORDER BY n`

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
		body      bytes.Buffer
		n         int
		truncated bool
	)
	body.WriteString(`{"items":[`)
	for rows.Next() {
		var rec []byte
		if err := rows.Scan(&rec); err != nil {
			return fmt.Errorf("list %s: %w", c.Name, err)
		}
		if rec == nil {
			truncated = true
			continue
		}
		if n++; n > 1 {
			body.WriteByte(',')
		}
		// Compact, as every REST record is (jsonb's text has spaces).
		if err := json.Compact(&body, rec); err != nil {
			return fmt.Errorf("list %s: %w", c.Name, err)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list %s: %w", c.Name, err)
	}
	body.WriteByte(']')
	if truncated {
		// Only then: a full page is the contract's {"items":[…]}.
		body.WriteString(`,"truncated":true`)
		s.metrics.Truncated.Inc()
	}
	body.WriteString("}\n")
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, err = w.Write(body.Bytes())
	s.countWriteTimeout(err)
	return nil
}

// writeRecord answers with a record and counts a response cut by the write
// timeout. A failed write leaves nothing to answer: it is never an error
// of the handler's.
func (s *API) writeRecord(w http.ResponseWriter, status int, rec []byte) error {
	s.countWriteTimeout(httpjson.Write(w, status, json.RawMessage(rec)))
	return nil
}
