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

// typeFilter keeps the entries a TypeFilter describes ($5 to $9).
const typeFilter = `AND (
        (kind = ANY ($5::text[]) AND data->>'class' = $6)
        OR kind = ANY ($7::text[])
        OR (kind = ANY ($8::text[]) AND starts_with(data->>'type', $9)))`

var (
	replayAll      = fmt.Sprintf(replayQuery, "")
	replayFiltered = fmt.Sprintf(replayQuery, typeFilter)
)

// TypeFilter keeps the entries of some realtime types. The rule that gives
// an entry its type is stream's (stream.RealtimeType), which builds the
// filter for a namespace; db only applies it. An entry is kept when one of
// the three conditions holds (nil kinds: none). starts_with, unlike LIKE, treats "_"
// literally.
type TypeFilter struct {
	// ClassKinds and Class: entries of these kinds (pgcast.events.kind)
	// whose data.class is Class.
	ClassKinds []string
	Class      string
	// Kinds: entries of these kinds, whatever their data.
	Kinds []string
	// TypeKinds and TypePrefix: entries of these kinds whose data.type
	// starts with TypePrefix.
	TypeKinds  []string
	TypePrefix string
}

// ReplayPage describes one page of a replay.
type ReplayPage struct {
	// Environment whose entries are read.
	Environment int64
	// After and Through bound the positions read: (After, Through].
	After, Through int64
	// Limit is the page's size.
	Limit int
	// Types, when set, keeps only the entries it describes (see
	// stream.ReplayOptions.Namespace).
	Types *TypeFilter
}

// ReadReplayPage reads one page of a replay in one statement, handing each
// entry to each in position order, and returns the number of entries read
// and the position of the last (p.After for none). It returns ErrPruned
// when retention deleted entries after p.After: the page may have a hole.
func ReadReplayPage(ctx context.Context, q RowsQuerier, p ReplayPage, each func(*Entry)) (int, int64, error) {
	query, args := replayAll, []any{p.Environment, p.After, p.Through, p.Limit}
	if f := p.Types; f != nil {
		query, args = replayFiltered, append(args, f.ClassKinds, f.Class, f.Kinds, f.TypeKinds, f.TypePrefix)
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
