package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/pgcast/pgcast/db"
)

// ErrPruned is returned by Replay when entries after the requested position
// have been deleted by retention (pgcast.event_log.pruned_through): the
// replay would have a gap, and the subscriber must reload its state.
var ErrPruned = errors.New("stream: resume position is older than the event log's retention")

// Querier is what Replay needs from a database handle; *pgxpool.Pool and
// *pgx.Conn satisfy it.
type Querier = db.RowsQuerier

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
func Replay(ctx context.Context, q Querier, o ReplayOptions, fn func(*Event) error) error {
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
	through, err := db.LogEnd(ctx, q)
	release()
	if err != nil {
		return fmt.Errorf("replay: find log end: %w", err)
	}
	p := db.ReplayPage{Environment: o.Environment, After: o.After, Through: through, Limit: o.PageSize}
	if o.Namespace != "" {
		p.Types = namespaceFilter(o.Namespace)
	}
	page := make([]*Event, 0, o.PageSize)
	for {
		release, err := o.Acquire(ctx)
		if err != nil {
			return err
		}
		var full bool
		page, p.After, full, err = replayPage(ctx, q, p, page[:0], o.Logger)
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

// replayPage reads the page after p.After into page and returns it with the
// position of its last entry (decodable or not) and whether it was full.
func replayPage(ctx context.Context, q Querier, p db.ReplayPage, page []*Event, logger *slog.Logger) ([]*Event, int64, bool, error) {
	n, last, err := db.ReadReplayPage(ctx, q, p, func(en *db.Entry) {
		ev, err := decode(en)
		if err != nil {
			logger.Error("replay: skipping undecodable log entry", "position", en.ID, "err", err)
			return
		}
		page = append(page, ev)
	})
	if errors.Is(err, db.ErrPruned) {
		return nil, 0, false, ErrPruned
	}
	if err != nil {
		return nil, 0, false, err
	}
	return page, last, n == p.Limit, nil
}
