package db

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// A delta larger than a page is read a page per statement, each in a
// transaction of its own (package stream says why): DeltaBounds takes the
// read's snapshot S and the delta's bounds in one short repeatable-read
// transaction (a pipelined batch, never idle), and ReadPage reads the
// entries of the delta that S sees, a stretch of positions at a time.
//
// deltaBounds takes, in one pass over the delta through the xid index (no
// sort, no entry decoded), its lowest and highest positions and how it
// changes each class's count (see countChanges). deltaPage walks the primary key
// over a stretch of positions ($4, $5] and takes the entries of the delta
// that S ($6) sees (pg_visible_in_snapshot), in position order. Each page's
// statement has a snapshot newer than S, so it sees every transaction S
// sees (a committed transaction stays committed, and the log is only
// appended to), and the visibility test drops the ones S does not see: the
// pages together read exactly the delta as of S, as one transaction would
// have.
const (
	deltaBounds = `WITH a AS MATERIALIZED (` + deltaClasses + `)
SELECT (SELECT min(lo) FROM a), (SELECT max(hi) FROM a), k.c, k.set, k.n
FROM (SELECT) one LEFT JOIN (` + countsOf + `) k ON true`
	deltaPage = `SELECT id, xid::text, created_at, kind, environment_id, object_class_id, object_record_id, task_id, data::text
FROM pgcast.events e
WHERE id > $4 AND id <= $5
  AND (xid >= $1::text::xid8 OR xid = ANY ($2::text[]::xid8[]) OR id > $3)
  AND pg_visible_in_snapshot(xid, $6::text::pg_snapshot)
ORDER BY id
LIMIT $7`
)

// Bounds is what DeltaBounds returns.
type Bounds struct {
	Snapshot string // the read's snapshot S, pg_current_snapshot()::text
	// Lo and Hi are the delta's lowest and highest positions; Empty when
	// it has none (pruned meanwhile).
	Lo, Hi int64
	Empty  bool
	// Changes are how the delta changes the counts of its classes.
	Changes map[int64]CountChange
}

// DeltaBounds takes a large read's snapshot and the bounds of the delta
// since s, in one pipelined batch ending in COMMIT.
func (c *ListenConn) DeltaBounds(ctx context.Context, s Since) (Bounds, error) {
	out := Bounds{Changes: map[int64]CountChange{}}
	br, snap, err := c.sendRead(ctx, nil, func(b *pgx.Batch) {
		b.Queue(deltaBounds, s.args()...)
		b.Queue(`COMMIT`)
	})
	if err != nil {
		return Bounds{}, err
	}
	defer br.Close()
	out.Snapshot = snap
	rows, _ := br.Query()
	var lo, hi, class, n pgtype.Int8
	var set pgtype.Bool
	if _, err := pgx.ForEachRow(rows, []any{&lo, &hi, &class, &set, &n}, func() error {
		if class.Valid {
			out.Changes[class.Int64] = CountChange{Set: set.Bool, N: n.Int64}
		}
		return nil
	}); err != nil {
		return Bounds{}, fmt.Errorf("bound delta: %w", err)
	}
	if _, err := br.Exec(); err != nil {
		return Bounds{}, fmt.Errorf("end read: %w", err)
	}
	out.Lo, out.Hi, out.Empty = lo.Int64, hi.Int64, !lo.Valid
	return out, br.Close()
}

// PageRead describes one page of a large delta.
type PageRead struct {
	Since Since
	// After and Through bound the stretch of positions the page's
	// statement walks: (After, Through].
	After, Through int64
	// Snapshot is the large read's snapshot (Bounds.Snapshot): the page
	// takes the entries it sees.
	Snapshot string
	// Limit is the page's size.
	Limit int
}

// ReadPage reads one page of a large delta, in a statement (and
// transaction) of its own, handing each entry to each in position order.
// It returns the number of rows fetched and the position of the last.
func (c *ListenConn) ReadPage(ctx context.Context, p PageRead, each func(*Entry)) (int, int64, error) {
	rows, err := c.conn.Query(ctx, deltaPage, append(p.Since.args(), p.After, p.Through, p.Snapshot, p.Limit)...)
	if err != nil {
		return 0, 0, fmt.Errorf("read page: %w", err)
	}
	return scanEntries(rows, each)
}
