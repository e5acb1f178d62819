package db

import (
	"context"
	"fmt"
	"math"
)

// RecordPage asks ListRecords for a page of a class's records, newest
// first.
type RecordPage struct {
	// Class is the records' object class.
	Class int64
	// User, when set, restricts the page to the records that user owns or
	// is assigned to.
	User *string
	// Before, when set, starts the page below that record id (the next
	// page after a page that ended at it).
	Before *int64
	// Limit is the most records the page has (≥ 1).
	Limit int
	// MaxBytes is the page's byte budget, negative for none: see
	// ListRecords.
	MaxBytes int64
}

// listPage is a page of records, bounded in records ($4) and in bytes ($5,
// negative: no budget): the records of class $1 below id $3 (NULL: all)
// that user $2 may read (NULL: any), newest first, one at a time from the
// index. Postgres bounds the page on an estimate of each record's size, its
// cells' text without jsonb's spaces after "," and ":" (below the built
// record's size: that has id and timestamps too): it stops after the first
// record whose estimate does not fit, which comes back with NULL cells (the
// page is truncated), and reads no further. So the rows Postgres sends and
// pgcast holds stay within about the budget, whatever the limit. The first
// record is always sent, however large, so that a client can always make
// progress. The class's field names come with the first row only: one
// statement, one snapshot, the same names for every row.
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

// ListRecords reads the page p, one statement, and calls each for its
// records in order (newest first), all with the field names of that
// statement's snapshot. The row handed to each is reused for the next
// record: each must not keep it. Postgres stops the page after p.Limit
// records, or early at its estimate of p.MaxBytes (see listPage), which
// stays below the size of the records as built; each makes the exact cut
// by returning false, which stops the page. truncated reports a page that
// ended early, at Postgres's estimate or at each's cut; an error of each
// ends the page and is returned.
func ListRecords(ctx context.Context, q RowsQuerier, p RecordPage, each func(*RecordRow) (bool, error)) (truncated bool, err error) {
	if p.Limit < 1 {
		return false, fmt.Errorf("list records: limit %d, want at least 1", p.Limit)
	}
	// $4 is compared with an integer (int4) counter.
	limit := min(p.Limit, math.MaxInt32)
	rows, err := q.Query(ctx, listPage, p.Class, p.User, p.Before, limit, p.MaxBytes)
	if err != nil {
		return false, fmt.Errorf("list records of class %d: %w", p.Class, err)
	}
	defer rows.Close()
	var (
		row   RecordRow
		first = true
	)
	for rows.Next() {
		var fields map[string]string
		if err := rows.Scan(&row.ID, &row.Cells, &fields, &row.CreatedAt, &row.UpdatedAt); err != nil {
			return false, fmt.Errorf("list records of class %d: %w", p.Class, err)
		}
		if first {
			row.Fields, first = fields, false
		}
		if len(row.Cells) == 0 { // NULL: past Postgres's estimate of the budget
			truncated = true
			break
		}
		more, err := each(&row)
		if err != nil {
			return false, err
		}
		if !more {
			truncated = true
			break
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return false, fmt.Errorf("list records of class %d: %w", p.Class, err)
	}
	return truncated, nil
}
