package stream

import (
	"github.com/pgcast/pgcast/db"
)

type pageEntry struct {
	*Event
	xid   uint64
	count entryCount // what the entry does to its class's count
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
	ev, count, err := decodeEntry(en)
	if err != nil {
		// A malformed entry is a bug in triggers or a hand-made row:
		// skip it loudly rather than wedge the stream.
		b.r.metrics.decodeErrors.Inc()
		b.r.cfg.Logger.Error("skipping undecodable log entry", "position", en.ID, "err", err)
		return
	}
	b.page = append(b.page, pageEntry{Event: ev, xid: en.Xid, count: count})
}
