package stream

import (
	"slices"

	"github.com/pgcast/pgcast/db"
)

type pageEntry struct {
	*Event
	xid      uint64
	count    int64 // a count event's class count, when the query computed it (hasCount)
	hasCount bool
}

// pageBuilder collects the decoded entries of one fetched page.
type pageBuilder struct {
	r    *Reader
	page []pageEntry
}

func (r *Reader) newPage() *pageBuilder {
	return &pageBuilder{r: r, page: make([]pageEntry, 0, min(r.cfg.PageSize, 64))}
}

// add decodes one fetched entry onto the page (undecodable entries are
// skipped: the caller still counts them as fetched).
func (b *pageBuilder) add(en *db.Entry) {
	ev, err := decode(en)
	if err != nil {
		// A malformed entry is a bug in triggers or a hand-made row:
		// skip it loudly rather than wedge the stream.
		b.r.metrics.decodeErrors.Inc()
		b.r.cfg.Logger.Error("skipping undecodable log entry", "position", en.ID, "err", err)
		return
	}
	b.page = append(b.page, pageEntry{Event: ev, xid: en.Xid, count: en.Count, hasCount: en.HasCount})
}

// fillCounts sets Count on count events to the class's count in the read's
// snapshot: computed by the delta query itself, or read up front for the
// classes of the previous read (one without shards counts zero).
func (r *Reader) fillCounts(page []pageEntry, counts map[int64]int64) {
	for _, p := range page {
		if p.Kind != KindRecordsCountChanged {
			continue
		}
		if p.hasCount {
			p.Count = p.count
		} else {
			p.Count = counts[p.ClassID]
		}
		if len(r.next) < maxRecentClasses && !slices.Contains(r.next, p.ClassID) {
			r.next = append(r.next, p.ClassID)
		}
	}
}
