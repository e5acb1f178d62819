package stream

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// A delta larger than a page (a statement that wrote a million entries, a
// catch-up after a long disconnection) is read a page per statement, each
// in a transaction of its own, so that:
//   - the reader's listening connection is never left idle in a
//     transaction between pages (a listening session in a transaction holds
//     the cluster's NOTIFY queue, and once it is full every NOTIFY fails);
//   - every page is handed over as soon as it is read, and marks progress
//     for readiness (see Ready);
//   - no statement but the one that bounds the delta does work that grows
//     with the delta: no cursor whose first FETCH sorts the whole of it.
//
// One short repeatable-read transaction (a pipelined batch, never idle)
// takes the read's snapshot S and, in one pass over the delta through the
// xid index (no sort, no entry decoded), its lowest and highest positions
// and the counts, in S, of the classes of its count events. The pages then
// walk the primary key from the lowest position and take the entries of the
// delta that S sees (pg_visible_in_snapshot), in position order. Each
// page's statement has a snapshot newer than S, so it sees every
// transaction S sees (a committed transaction stays committed, and the log
// is only appended to), and the visibility test drops the ones S does not
// see: the pages together read exactly the delta as of S, as one
// transaction would have, and S becomes the next read's previous snapshot.
// (The log's pruning deletes entries older than the retention, as it may
// between any two reads.)
//
// Each page's statement walks at most pageSpan pages' worth of positions,
// so one over a sparse stretch of the log (the delta's entries spread
// among many entries read before, say those of a transaction that was long
// in progress) is bounded too.
const (
	deltaBounds = `WITH d AS (
  SELECT min(id) AS lo, max(id) AS hi,
    array_agg(DISTINCT object_class_id) FILTER (WHERE kind = 'records_count_changed') AS classes
  FROM pgcast.events e
  WHERE ` + deltaWhere + `)
SELECT d.lo, d.hi, c.object_class_id, c.n
FROM d LEFT JOIN LATERAL (
  SELECT object_class_id, sum(n)::bigint AS n FROM pgcast.object_class_counts
  WHERE object_class_id = ANY (d.classes) GROUP BY 1) c ON true`
	deltaPage = `SELECT id, xid::text, created_at, kind, environment_id, object_class_id, object_record_id, task_id, data::text, NULL::bigint
FROM pgcast.events e
WHERE id > $4 AND id <= $5
  AND (xid >= $1::text::xid8 OR xid = ANY ($2::text[]::xid8[]) OR id > $3)
  AND pg_visible_in_snapshot(xid, $6::text::pg_snapshot)
ORDER BY id
LIMIT $7`
)

// pageSpan bounds the positions one page's statement walks, in pages.
const pageSpan = 32

// readLarge reads a delta larger than a page (see above), with a snapshot
// of its own, newer than the first page's: it also takes what committed in
// between, and what the first page handed over is skipped, as after an
// interrupted read. It returns how many entries it handed over and its
// snapshot.
func (r *Reader) readLarge(ctx context.Context, conn *pgx.Conn, txs *int) (int, snapshot, error) {
	args := r.deltaArgs(nil)[:3]
	var (
		text   string
		lo, hi pgtype.Int8
	)
	counts := map[int64]int64{}
	err := func() error {
		qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.timeout())
		defer cancel()
		br, snap, _, err := sendRead(qctx, conn, nil, nil, func(b *pgx.Batch) {
			b.Queue(deltaBounds, args...)
			b.Queue(`COMMIT`)
		})
		if err != nil {
			return err
		}
		defer br.Close()
		text = snap
		rows, _ := br.Query()
		var class, n pgtype.Int8
		if _, err := pgx.ForEachRow(rows, []any{&lo, &hi, &class, &n}, func() error {
			if class.Valid {
				counts[class.Int64] = n.Int64
			}
			return nil
		}); err != nil {
			return fmt.Errorf("bound delta: %w", err)
		}
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("end read: %w", err)
		}
		return br.Close()
	}()
	if err != nil {
		return 0, snapshot{}, err
	}
	snap, err := parseSnapshot(text)
	if err != nil {
		return 0, snapshot{}, err
	}
	r.progressed()
	if !lo.Valid {
		return 0, snap, nil // nothing left: pruned meanwhile
	}
	pageArgs := append(args, int64(0), int64(0), text, r.cfg.PageSize)
	span := int64(pageSpan) * int64(r.cfg.PageSize)
	total := 0
	var lastID int64 // the last position handed over
	for last := lo.Int64 - 1; last < hi.Int64; {
		if err := ctx.Err(); err != nil {
			r.interrupted(snap, lastID)
			return 0, snapshot{}, err
		}
		upto := hi.Int64
		if hi.Int64-last > span {
			upto = last + span
		}
		pageArgs[3], pageArgs[4] = last, upto
		page, raw, lastRaw, err := r.fetchPage(ctx, conn, pageArgs)
		if err != nil {
			r.interrupted(snap, lastID)
			return 0, snapshot{}, err
		}
		n, l := r.handOver(page, counts, txs)
		total += n
		if len(page) > 0 {
			lastID = l
		}
		r.progressed()
		if raw < r.cfg.PageSize {
			last = upto // this stretch is done
		} else {
			last = lastRaw
		}
	}
	return total, snap, nil
}

// fetchPage reads one page of a large delta, in a transaction of its own.
func (r *Reader) fetchPage(ctx context.Context, conn *pgx.Conn, args []any) ([]pageEntry, int, int64, error) {
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.timeout())
	defer cancel()
	rows, err := conn.Query(qctx, deltaPage, args...)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("read page: %w", err)
	}
	return r.scanPage(rows)
}
