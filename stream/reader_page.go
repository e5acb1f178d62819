package stream

import (
	"fmt"
	"slices"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

type pageEntry struct {
	*Event
	xid   uint64
	count pgtype.Int8 // a count event's class count, when the query computed it
}

// scanPage decodes one fetched page and returns it with the number of rows
// fetched and the position of the last (undecodable entries are counted but
// skipped).
func (r *Reader) scanPage(rows pgx.Rows) ([]pageEntry, int, int64, error) {
	defer rows.Close()
	page := make([]pageEntry, 0, min(r.cfg.PageSize, 64))
	raw := 0
	var last int64
	var en entry
	var xid string
	var count pgtype.Int8
	for rows.Next() {
		raw++
		if err := rows.Scan(&en.id, &xid, &en.createdAt, &en.kind, &en.environment, &en.classID, &en.recordID, &en.taskID, &en.data, &count); err != nil {
			return nil, 0, 0, fmt.Errorf("scan entry: %w", err)
		}
		last = en.id
		x, err := strconv.ParseUint(xid, 10, 64)
		if err != nil {
			return nil, 0, 0, fmt.Errorf("entry %d: xid %q: %w", en.id, xid, err)
		}
		ev, err := decode(&en)
		if err != nil {
			// A malformed entry is a bug in triggers or a hand-made row:
			// skip it loudly rather than wedge the stream.
			r.metrics.decodeErrors.Inc()
			r.cfg.Logger.Error("skipping undecodable log entry", "position", en.id, "err", err)
			continue
		}
		page = append(page, pageEntry{Event: ev, xid: x, count: count})
	}
	if err := rows.Err(); err != nil {
		return nil, 0, 0, fmt.Errorf("fetch: %w", err)
	}
	return page, raw, last, nil
}

// fillCounts sets Count on count events to the class's count in the read's
// snapshot: computed by the delta query itself, or read up front for the
// classes of the previous read (one without shards counts zero).
func (r *Reader) fillCounts(page []pageEntry, counts map[int64]int64) {
	for _, p := range page {
		if p.Kind != KindRecordsCountChanged {
			continue
		}
		if p.count.Valid {
			p.Count = p.count.Int64
		} else {
			p.Count = counts[p.ClassID]
		}
		if len(r.next) < maxRecentClasses && !slices.Contains(r.next, p.ClassID) {
			r.next = append(r.next, p.ClassID)
		}
	}
}
