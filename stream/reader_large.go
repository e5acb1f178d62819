package stream

import (
	"context"

	"github.com/pgcast/pgcast/db"
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
// One short repeatable-read transaction (a pipelined batch, never idle:
// db.ListenConn.DeltaBounds) takes the read's snapshot S and, in one pass
// over the delta through the xid index (no sort, no entry decoded), its
// lowest and highest positions and how it changes each class's count (see
// counts.go). The pages (db.ListenConn.ReadPage) then walk the primary
// key from the lowest position and take the entries of the delta that S
// sees (pg_visible_in_snapshot), in position order. Each page's statement
// has a snapshot newer than S, so it sees every transaction S sees (a
// committed transaction stays committed, and the log is only appended
// to), and the visibility test drops the ones S does not see: the pages
// together read exactly the delta as of S, as one transaction would have,
// and S becomes the next read's previous snapshot.
// (The log's pruning deletes entries older than the retention, as it may
// between any two reads.)
//
// Each page's statement walks at most pageSpan pages' worth of positions,
// so one over a sparse stretch of the log (the delta's entries spread
// among many entries read before, say those of a transaction that was long
// in progress) is bounded too.

// pageSpan bounds the positions one page's statement walks, in pages.
const pageSpan = 32

// readLarge reads a delta larger than a page (see above), with a snapshot
// of its own, newer than the first page's (which was not handed over): it
// also takes what committed in between. The counts as of its snapshot come
// with the bounds, before any page is handed over, so that its count events
// carry them (see counts.go). It returns how many events it handed over and
// its snapshot.
func (r *Reader) readLarge(ctx context.Context, conn *db.ListenConn, txs *int) (int, snapshot, error) {
	since := r.since()
	qctx, cancel := r.bounded(ctx)
	b, err := conn.DeltaBounds(qctx, since)
	cancel()
	if err != nil {
		return 0, snapshot{}, err
	}
	snap, err := parseSnapshot(b.Snapshot)
	if err != nil {
		return 0, snapshot{}, err
	}
	r.progressed()
	final := r.countsFromChanges(b.Changes)
	if b.Empty {
		r.announce(final)
		return 0, snap, nil // nothing left: pruned meanwhile
	}
	pr := db.PageRead{Since: since, Snapshot: b.Snapshot, Limit: r.cfg.PageSize}
	span := int64(pageSpan) * int64(r.cfg.PageSize)
	total := 0
	var lastID int64 // the last position handed over
	for last := b.Lo - 1; last < b.Hi; {
		if err := ctx.Err(); err != nil {
			r.interrupted(snap, lastID)
			return 0, snapshot{}, err
		}
		upto := b.Hi
		if b.Hi-last > span {
			upto = last + span
		}
		pr.After, pr.Through = last, upto
		page, raw, lastRaw, err := r.fetchPage(ctx, conn, pr)
		if err != nil {
			r.interrupted(snap, lastID)
			return 0, snapshot{}, err
		}
		n, l := r.handOver(page, final, false, txs)
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
	r.announce(final)
	return total, snap, nil
}

// fetchPage reads one page of a large delta, in a transaction of its own.
func (r *Reader) fetchPage(ctx context.Context, conn *db.ListenConn, p db.PageRead) ([]pageEntry, int, int64, error) {
	pb := r.newPage()
	qctx, cancel := r.bounded(ctx)
	defer cancel()
	raw, last, err := conn.ReadPage(qctx, p, pb.add)
	if err != nil {
		return nil, 0, 0, err
	}
	return pb.page, raw, last, nil
}
