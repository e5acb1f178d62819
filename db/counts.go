package db

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// Record counts are derived from the log (docs/design.md, "Counts"): every
// record_created entry is +1 to its class's count and every record_deleted
// entry -1; a collection_created entry sets its class's count to 0 (a
// class id used again starts afresh) and a records_count_changed entry
// with "count" sets it to that (a watch that starts counting is seeded
// with its table's row count). pgcast.count_checkpoint holds the counts
// as of a snapshot; the counts as of a later snapshot are the checkpoint's
// with the changes of the entries that snapshot sees and the checkpoint's
// did not (a delta, read like the reader's: see Since) applied.

// Count changes over a delta, as SQL over the delta's condition
// (deltaWhere: $1 xmax, $2 xip, $3 above). deltaClasses groups the delta
// by class in one pass through the xid index: its lowest and highest
// positions, the sum of its steps (+1, -1) and the position of its last
// absolute count (set_at). countsOf turns the groups (a) into one row per
// class: set, and n, the count after its last absolute count (set) or the
// change (not set). Absolute counts are rare (a class created, a watch
// seeded), so the steps after one are summed by a second, short walk of the
// primary key from it.
const (
	countSteps   = `sum(CASE kind WHEN 'record_created' THEN 1 WHEN 'record_deleted' THEN -1 ELSE 0 END)`
	countSet     = `kind = 'collection_created' OR (kind = 'records_count_changed' AND data ? 'count')`
	deltaClasses = `SELECT object_class_id AS c, min(id) AS lo, max(id) AS hi, ` + countSteps + ` AS n,
    max(id) FILTER (WHERE ` + countSet + `) AS set_at
  FROM pgcast.events e
  WHERE ` + deltaWhere + `
  GROUP BY 1`
	countsOf = `SELECT a.c, a.set_at IS NOT NULL AS set, CASE WHEN a.set_at IS NULL THEN a.n ELSE s.n END AS n
  FROM a LEFT JOIN LATERAL (
    SELECT CASE WHEN x.kind = 'collection_created' THEN 0 ELSE (x.data->>'count')::bigint END
      + (SELECT coalesce(` + countSteps + `, 0) FROM pgcast.events e
         WHERE e.id > a.set_at AND e.object_class_id = a.c AND ` + deltaWhere + `) AS n
    FROM pgcast.events x WHERE x.id = a.set_at) s ON true
  WHERE a.c IS NOT NULL`
	countChanges = `WITH a AS MATERIALIZED (` + deltaClasses + `)
` + countsOf
)

// CountChange is how a delta changes one class's count: to N when Set,
// else by N.
type CountChange struct {
	Set bool
	N   int64
}

// ApplyCounts applies changes to counts (nil: none yet) and returns it.
// A class without a count counts 0.
func ApplyCounts(counts map[int64]int64, changes map[int64]CountChange) map[int64]int64 {
	if counts == nil {
		counts = make(map[int64]int64, len(changes))
	}
	for c, ch := range changes {
		if ch.Set {
			counts[c] = ch.N
		} else {
			counts[c] += ch.N
		}
	}
	return counts
}

// scanCountChanges reads rows of (class, set, n) into out.
func scanCountChanges(rows pgx.Rows, out map[int64]CountChange) error {
	var class, n int64
	var set bool
	_, err := pgx.ForEachRow(rows, []any{&class, &set, &n}, func() error {
		out[class] = CountChange{Set: set, N: n}
		return nil
	})
	return err
}

// Checkpoint is a row of pgcast.count_checkpoint: the counts as of a log
// position.
type Checkpoint struct {
	// Since selects the entries the checkpoint's counts leave out: those
	// of transactions its snapshot did not see and, when the server has
	// restarted since it was taken, every entry above its highest
	// position (a crash can hand out again the transaction ids that never
	// reached disk).
	Since  Since
	Counts map[int64]int64
}

// readCheckpoint reads the checkpoint; q must be a transaction whose
// snapshot later statements share (or the caller's own, under the
// pruner's lock).
func readCheckpoint(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) (Checkpoint, error) {
	var xmax string
	var xip []string
	var above *int64
	var counts []byte
	err := q.QueryRow(ctx, `SELECT pg_snapshot_xmax(snapshot)::text, ARRAY(SELECT x::text FROM pg_snapshot_xip(snapshot) x),
  CASE WHEN server_start = pg_postmaster_start_time() THEN NULL ELSE max_position END, counts::text
FROM pgcast.count_checkpoint`).Scan(&xmax, &xip, &above, &counts)
	if errors.Is(err, pgx.ErrNoRows) {
		return Checkpoint{}, errors.New("read count checkpoint: pgcast.count_checkpoint is empty (run pgcast migrate up)")
	}
	if err != nil {
		return Checkpoint{}, fmt.Errorf("read count checkpoint: %w", err)
	}
	cp := Checkpoint{Since: Since{Above: math.MaxInt64}}
	if cp.Since.Xmax, err = strconv.ParseUint(xmax, 10, 64); err != nil {
		return Checkpoint{}, fmt.Errorf("count checkpoint: xmax %q: %w", xmax, err)
	}
	for _, x := range xip {
		v, err := strconv.ParseUint(x, 10, 64)
		if err != nil {
			return Checkpoint{}, fmt.Errorf("count checkpoint: xip %q: %w", x, err)
		}
		cp.Since.Xip = append(cp.Since.Xip, v)
	}
	if above != nil {
		cp.Since.Above = *above
	}
	var byText map[string]int64
	if err := json.Unmarshal(counts, &byText); err != nil {
		return Checkpoint{}, fmt.Errorf("count checkpoint: counts: %w", err)
	}
	cp.Counts = make(map[int64]int64, len(byText))
	for k, n := range byText {
		c, err := strconv.ParseInt(k, 10, 64)
		if err != nil {
			return Checkpoint{}, fmt.Errorf("count checkpoint: class %q: %w", k, err)
		}
		cp.Counts[c] = n
	}
	return cp, nil
}

// countsNow reads, in tx (repeatable read), the checkpoint and the changes
// since, and returns every class's count in tx's snapshot.
func countsNow(ctx context.Context, tx pgx.Tx) (map[int64]int64, error) {
	cp, err := readCheckpoint(ctx, tx)
	if err != nil {
		return nil, err
	}
	rows, _ := tx.Query(ctx, countChanges, cp.Since.args()...)
	changes := map[int64]CountChange{}
	if err := scanCountChanges(rows, changes); err != nil {
		return nil, fmt.Errorf("read count changes since the checkpoint: %w", err)
	}
	return ApplyCounts(cp.Counts, changes), nil
}

// ClassCounts returns every class's record count now (classes without
// records may be left out): the count the reader derives, read from the
// checkpoint and the log after it in one snapshot. It costs a pass over
// the log since the last checkpoint (at most a pruning interval's worth
// while a pruner runs). For tools and tests: the reader keeps the counts
// as it reads.
func ClassCounts(ctx context.Context, pool *Pool) (map[int64]int64, error) {
	var out map[int64]int64
	err := pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var err error
		out, err = countsNow(ctx, tx)
		return err
	})
	return out, err
}

// StartPoint is where a reader starts: its first snapshot, the highest
// position that snapshot sees, and every class's count in it.
type StartPoint struct {
	Snapshot string // pg_current_snapshot()::text
	MaxPos   int64
	Counts   map[int64]int64
}

// StartingPoint takes the snapshot a reader starts from, the log's highest
// position in it and the counts as of it (the checkpoint and the log after
// it), in one short repeatable-read transaction.
func (c *ListenConn) StartingPoint(ctx context.Context) (StartPoint, error) {
	var sp StartPoint
	err := pgx.BeginTxFunc(ctx, c.conn, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT pg_current_snapshot()::text, coalesce((SELECT max(id) FROM pgcast.events), 0)`).Scan(&sp.Snapshot, &sp.MaxPos); err != nil {
			return fmt.Errorf("take snapshot: %w", err)
		}
		var err error
		sp.Counts, err = countsNow(ctx, tx)
		return err
	})
	return sp, err
}

// checkpointCounts advances the checkpoint, in the pruner's transaction
// (under its lock, so checkpoints only move forward), to the statement's
// snapshot: the counts are the previous checkpoint's with the changes of
// the log since applied, for the classes that exist (a deleted class's
// count goes with it), zeros left out.
const checkpointCounts = `WITH a AS MATERIALIZED (` + deltaClasses + `),
d AS (` + countsOf + `)
UPDATE pgcast.count_checkpoint k
SET snapshot = pg_current_snapshot(),
    max_position = (SELECT coalesce(max(id), 0) FROM pgcast.events),
    server_start = pg_postmaster_start_time(),
    taken_at = $4,
    counts = (SELECT coalesce(jsonb_object_agg(v.c::text, v.n), '{}')
              FROM (SELECT coalesce(d.c, o.c) AS c,
                           CASE WHEN d.set THEN d.n ELSE coalesce(o.n, 0) + coalesce(d.n, 0) END AS n
                    FROM (SELECT key::bigint AS c, value::bigint AS n FROM jsonb_each_text(k.counts)) o
                    FULL JOIN d ON d.c = o.c) v
              WHERE v.n <> 0 AND EXISTS (SELECT 1 FROM pgcast.object_classes oc WHERE oc.id = v.c))`

// advanceCheckpoint moves the checkpoint to now, in tx (the pruner's).
func advanceCheckpoint(ctx context.Context, tx pgx.Tx, now time.Time) error {
	cp, err := readCheckpoint(ctx, tx)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, checkpointCounts, append(cp.Since.args(), now)...); err != nil {
		return fmt.Errorf("advance count checkpoint: %w", err)
	}
	return nil
}
