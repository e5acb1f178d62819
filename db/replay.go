package db

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// RowsQuerier is a database handle that runs queries: *pgxpool.Pool,
// *pgx.Conn and pgx.Tx satisfy it.
type RowsQuerier interface {
	Querier
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// ErrPruned is returned by ReadReplayPage when retention has deleted
// entries after the page's starting position.
var ErrPruned = errors.New("db: entries after the position were pruned")

// LogEnd returns the log's highest position (0 when empty).
func LogEnd(ctx context.Context, q Querier) (int64, error) {
	var through int64
	err := q.QueryRow(ctx, `SELECT coalesce(max(id), 0) FROM pgcast.events`).Scan(&through)
	return through, err
}

// replayQuery reads one page. The pruning horizon is read in the same
// statement, hence the same snapshot, as the page (the LEFT JOIN yields one
// row of NULLs when the page is empty).
const replayQuery = `SELECT l.pruned_through, e.id, e.created_at, e.kind, e.environment_id, e.object_class_id, e.object_record_id, e.task_id, e.data::text
FROM pgcast.event_log l
LEFT JOIN LATERAL (
    SELECT id, created_at, kind, environment_id, object_class_id, object_record_id, task_id, data
    FROM pgcast.events
    WHERE environment_id = $1 AND id > $2 AND id <= $3 %s
    ORDER BY id
    LIMIT $4
) e ON true
ORDER BY e.id`

// namespaceFilter keeps the entries whose realtime type is in namespace $5.
// It mirrors stream.RealtimeType: record events are "<class>.<verb>",
// collection_created is "system.collection.created", published events carry
// their type. starts_with, unlike LIKE, treats "_" literally.
const namespaceFilter = `AND (
        (kind IN ('record_created', 'record_updated', 'record_deleted') AND data->>'class' = $5)
        OR (kind = 'collection_created' AND $5 = 'system')
        OR (kind = 'published' AND starts_with(data->>'type', $5 || '.')))`

var (
	replayAll       = fmt.Sprintf(replayQuery, "")
	replayNamespace = fmt.Sprintf(replayQuery, namespaceFilter)
)

// ReplayPage describes one page of a replay.
type ReplayPage struct {
	// Environment whose entries are read.
	Environment int64
	// After and Through bound the positions read: (After, Through].
	After, Through int64
	// Limit is the page's size.
	Limit int
	// Namespace, when set, keeps the entries whose realtime type is in
	// that namespace (see stream.ReplayOptions).
	Namespace string
}

// ReadReplayPage reads one page of a replay in one statement, handing each
// entry to each in position order, and returns the number of entries read
// and the position of the last (p.After for none). It returns ErrPruned
// when retention deleted entries after p.After: the page may have a hole.
func ReadReplayPage(ctx context.Context, q RowsQuerier, p ReplayPage, each func(*Entry)) (int, int64, error) {
	query, args := replayAll, []any{p.Environment, p.After, p.Through, p.Limit}
	if p.Namespace != "" {
		query, args = replayNamespace, append(args, p.Namespace)
	}
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return 0, 0, fmt.Errorf("replay: read page after %d: %w", p.After, err)
	}
	defer rows.Close()
	var (
		pruned    int64
		id, env   *int64 // NULL in the LEFT JOIN's row for an empty page
		createdAt *time.Time
		kind      *string
		en        Entry
		n         int
	)
	last := p.After
	for rows.Next() {
		if err := rows.Scan(&pruned, &id, &createdAt, &kind, &env, &en.ClassID, &en.RecordID, &en.TaskID, &en.Data); err != nil {
			return 0, 0, fmt.Errorf("replay: scan entry: %w", err)
		}
		// pruned_through is read in the page's own snapshot: if retention
		// has deleted anything after the cursor, this page may have a hole.
		if pruned > p.After {
			return 0, 0, ErrPruned
		}
		if id == nil {
			continue // no entries: the LEFT JOIN's single row
		}
		n++
		en.ID, last = *id, *id
		en.CreatedAt, en.Kind, en.Environment = *createdAt, *kind, *env
		each(&en)
	}
	if err := rows.Err(); err != nil {
		return 0, 0, fmt.Errorf("replay: read page after %d: %w", p.After, err)
	}
	return n, last, nil
}
