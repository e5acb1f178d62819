package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrPruned is returned by Replay when entries after the requested position
// have been deleted by retention (pgcast.event_log.pruned_through): the
// replay would have a gap, and the subscriber must reload its state.
var ErrPruned = errors.New("stream: resume position is older than the event log's retention")

// Querier is what Replay needs from a database handle; *pgxpool.Pool and
// *pgx.Conn satisfy it.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// ReplayOptions describes a replay. The zero value of an optional field
// means its default.
type ReplayOptions struct {
	// Environment whose entries are replayed. Required (≥ 1).
	Environment int64
	// After is the position replayed from, exclusive: entries with a
	// position above it are replayed. 0 replays the whole log.
	After int64
	// Namespace, when set, limits the replay to events whose realtime type
	// (see RealtimeType) is in that namespace: "posts" gives the posts
	// record events, "system" the system.* events, "job" the job.* events.
	// The filter runs in the database. Default: every entry.
	Namespace string
	// PageSize is how many entries are read and held at once, which bounds
	// the replay's memory. Default 1000.
	PageSize int
	// Logger receives undecodable entries (skipped, like the Reader does).
	// Default: discard.
	Logger *slog.Logger
	// Acquire, when set, is called before each database statement and the
	// function it returns after it: a way to bound the database work of
	// concurrent replays without holding a slot while fn waits on a slow
	// consumer. Default: no limit.
	Acquire func(context.Context) (release func(), err error)
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
// It mirrors RealtimeType: record events are "<class>.<verb>",
// collection_created is "system.collection.created", published events carry
// their type. starts_with, unlike LIKE, treats "_" literally.
const namespaceFilter = `AND (
        (kind IN ('record_created', 'record_updated', 'record_deleted') AND data->>'class' = $5)
        OR (kind = 'collection_created' AND $5 = 'system')
        OR (kind = 'published' AND starts_with(data->>'type', $5 || '.')))`

// Replay calls fn, in position order, for the committed entries of an
// environment with a position above o.After, up to the last position
// committed when Replay starts: it ends even while writers keep appending.
//
// It reads a page at a time, each page one short statement (never a
// transaction held open while fn blocks on a slow client), so its memory is
// bounded by PageSize and it holds no database connection while fn runs. An
// entry that commits during the replay with a position in the range not yet
// read is included; one whose position was already passed is not. Callers
// that switch from a replay to live events must therefore subscribe to the
// Hub before calling Replay (an entry above the end Replay picks then
// commits after the subscription, so the Hub offers it), hold live events
// until the replay ends, and drop live events it already replayed (see the
// /api/realtime resume in package server).
//
// Events are decoded as the Reader decodes them, except that Count is not
// filled in (counts are state, not history). When retention has deleted
// entries after o.After (or deletes them while the replay runs), Replay
// returns ErrPruned; events passed to fn before that were genuine. An error
// returned by fn ends the replay and is returned as is.
func Replay(ctx context.Context, db Querier, o ReplayOptions, fn func(*Event) error) error {
	if o.Environment < 1 {
		return errors.New("stream: Replay needs an environment")
	}
	if o.After < 0 {
		return errors.New("stream: Replay position must not be negative")
	}
	if o.PageSize <= 0 {
		o.PageSize = 1000
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Acquire == nil {
		o.Acquire = func(context.Context) (func(), error) { return func() {}, nil }
	}
	release, err := o.Acquire(ctx)
	if err != nil {
		return err
	}
	var through int64
	err = db.QueryRow(ctx, `SELECT coalesce(max(id), 0) FROM pgcast.events`).Scan(&through)
	release()
	if err != nil {
		return fmt.Errorf("replay: find log end: %w", err)
	}
	query := fmt.Sprintf(replayQuery, "")
	args := []any{o.Environment, o.After, through, o.PageSize}
	if o.Namespace != "" {
		query = fmt.Sprintf(replayQuery, namespaceFilter)
		args = append(args, o.Namespace)
	}
	cursor := o.After
	page := make([]*Event, 0, o.PageSize)
	for {
		args[1] = cursor
		release, err := o.Acquire(ctx)
		if err != nil {
			return err
		}
		var full bool
		page, cursor, full, err = replayPage(ctx, db, query, args, cursor, page[:0], o.PageSize, o.Logger)
		release()
		if err != nil {
			return err
		}
		for i, ev := range page {
			if err := fn(ev); err != nil {
				return err
			}
			page[i] = nil // let the event go once handed over
		}
		if !full {
			return nil
		}
	}
}

// replayPage reads the page after cursor into page and returns it with the
// position of its last entry (decodable or not) and whether it was full.
func replayPage(ctx context.Context, db Querier, query string, args []any, cursor int64, page []*Event, size int, logger *slog.Logger) ([]*Event, int64, bool, error) {
	rows, err := db.Query(ctx, query, args...)
	if err != nil {
		return nil, 0, false, fmt.Errorf("replay: read page after %d: %w", cursor, err)
	}
	defer rows.Close()
	var (
		pruned    int64
		id, env   *int64 // NULL in the LEFT JOIN's row for an empty page
		createdAt *time.Time
		kind      *string
		en        entry
		n         int
	)
	last := cursor
	for rows.Next() {
		if err := rows.Scan(&pruned, &id, &createdAt, &kind, &env, &en.classID, &en.recordID, &en.taskID, &en.data); err != nil {
			return nil, 0, false, fmt.Errorf("replay: scan entry: %w", err)
		}
		// pruned_through is read in the page's own snapshot: if retention
		// has deleted anything after the cursor, this page may have a hole.
		if pruned > cursor {
			return nil, 0, false, ErrPruned
		}
		if id == nil {
			continue // no entries: the LEFT JOIN's single row
		}
		n++
		en.id, last = *id, *id
		en.createdAt, en.kind, en.environment = *createdAt, *kind, *env
		ev, err := decode(&en)
		if err != nil {
			logger.Error("replay: skipping undecodable log entry", "position", en.id, "err", err)
			continue
		}
		page = append(page, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, false, fmt.Errorf("replay: read page after %d: %w", cursor, err)
	}
	return page, last, n == size, nil
}

// ChannelMatches reports whether a realtime channel ("posts.created",
// "posts.*", "system.collection.*") matches an event type: exactly, or for a
// channel ending in ".*", every type that starts with the part before the
// "*". It is the rule the Hub's channel index implements.
func ChannelMatches(channel, typ string) bool {
	if typ == "" {
		return false
	}
	if p, ok := strings.CutSuffix(channel, "*"); ok {
		return len(p) > 0 && p[len(p)-1] == '.' && strings.HasPrefix(typ, p)
	}
	return channel == typ
}

// Visible reports whether viewer may receive realtime event ev: the same
// rules the Hub applies when it fans out (a collection's read rule for
// record events, the namespace rules of the realtime contract for the
// others). ev must have a realtime form (RealtimeType(ev) != "").
func Visible(viewer Viewer, ev *Event) bool {
	return visibilityOf(ev).allows(viewer, ev)
}
