package stream

import (
	"context"
	"math"
	"time"

	"github.com/pgcast/pgcast/db"
)

// readDelta reads and hands over every entry committed since the previous
// read, and returns how many events it handed over.
//
// Round trips (see db.ListenConn.ReadDelta): one pipelined batch reads the
// snapshot and the first page, and, when the reader stops waiting for the
// doorbell, clears its flag. A first page shorter than PageSize is the
// whole delta: one round trip, and the counts as of the read come from the
// page itself (see counts.go). A full one is not handed over: the delta is
// read again by readLarge, whose bounds give the counts as of its own
// snapshot, a page per statement, outside any transaction.
//
// At most once per PingInterval the read also samples the NOTIFY queue's
// usage (the read is the ping).
func (r *Reader) readDelta(ctx context.Context, conn *db.ListenConn) (int, error) {
	started := time.Now()
	read := db.DeltaRead{
		Since:        r.since(),
		Limit:        r.cfg.PageSize,
		Usage:        r.usageAt.IsZero() || started.Sub(r.usageAt) >= r.cfg.PingInterval,
		ClearWaiting: r.waiting && r.busy,
	}
	pb := r.newPage()
	qctx, cancel := r.bounded(ctx)
	d, err := conn.ReadDelta(qctx, read, pb.add)
	cancel()
	if d.Cleared {
		r.waiting = false
	}
	if err != nil {
		return 0, err
	}
	if read.Usage {
		r.usageAt, r.usage = started, d.Usage
		r.metrics.notifyQueue.Set(r.usage)
		if r.usage >= 0.5 {
			r.cfg.Logger.Warn("the NOTIFY queue is filling up: a session listening in a long transaction holds it (see pg_stat_activity); when it is full, commits that NOTIFY fail", "usage", r.usage)
		}
	}
	snap, err := parseSnapshot(d.Snapshot)
	if err != nil {
		return 0, err
	}
	var txs, total int
	if d.Rows >= r.cfg.PageSize {
		n, large, err := r.readLarge(ctx, conn, &txs)
		if err != nil {
			return 0, err
		}
		total, snap = n, large
	} else {
		final := r.countsFromPage(pb.page)
		total, _ = r.handOver(pb.page, final, true, &txs)
		r.announce(final)
	}
	r.progressed()
	r.prev, r.partials, r.afterRestart = &snap, nil, 0
	r.eased()
	r.observe(time.Now(), txs)
	if total == 0 {
		r.metrics.lag.Set(0)
	}
	r.metrics.position.Set(float64(r.position.Load()))
	return total, nil
}

// since says which entries the next read takes: those its previous
// snapshot did not see and, after a restart, those above afterRestart.
func (r *Reader) since() db.Since {
	above := int64(math.MaxInt64) // nothing: the snapshot alone decides
	if r.afterRestart > 0 {
		above = r.afterRestart
	}
	return db.Since{Xmax: r.prev.xmax, Xip: r.prev.xip, Above: above}
}

// handOver hands a page over (without what interrupted reads already handed
// over, with the count events it calls for: see withCounts; complete: the
// page ends the read, and the run still open with it), counts its
// transactions into txs (as changes of xid from one entry to the next:
// interleaved transactions count more than once, which only errs towards
// draining when commits overlap), and returns how many events it handed
// over and the page's last position.
func (r *Reader) handOver(page []pageEntry, final map[int64]int64, complete bool, txs *int) (int, int64) {
	events := r.withCounts(r.skipDelivered(page), final)
	if complete && len(r.pending) > 0 {
		events = r.flushCounts(events, final)
	}
	if len(events) > 0 {
		r.cfg.Handler(events)
		r.position.Store(events[len(events)-1].Position)
		for _, ev := range events {
			r.maxPos = max(r.maxPos, ev.Position)
		}
		r.metrics.events.Add(float64(len(events)))
		r.metrics.lag.Set(time.Since(events[len(events)-1].Time).Seconds())
	}
	if len(page) == 0 {
		return len(events), 0
	}
	var lastXid uint64
	for _, p := range page {
		if p.xid != lastXid {
			*txs, lastXid = *txs+1, p.xid
		}
	}
	return len(events), page[len(page)-1].Position
}

// observe updates the commit-rate estimate with a read that found entries
// of txs transactions, and with it whether the reader is busy: above
// DoorbellMaxRate it stops waiting for the doorbell (writers stop ringing)
// and reads every DrainInterval; below two thirds of it, it waits again.
func (r *Reader) observe(now time.Time, txs int) {
	if r.windowStart.IsZero() {
		r.windowStart = now
	}
	r.windowTxs += txs
	elapsed := now.Sub(r.windowStart)
	if elapsed < rateWindow {
		return
	}
	rate := float64(r.windowTxs) / elapsed.Seconds()
	r.windowStart, r.windowTxs = now, 0
	switch {
	case r.cfg.DoorbellMaxRate < 0:
		r.busy = true
	case rate > float64(r.cfg.DoorbellMaxRate):
		r.busy = true
	case rate < float64(r.cfg.DoorbellMaxRate)*2/3:
		r.busy = false
	}
}

// rateWindow is how long the reader counts transactions for one estimate of
// the commit rate.
const rateWindow = 100 * time.Millisecond

// interrupted remembers a read that handed over entries up to lastID before
// failing, so the retry does not hand them over again.
func (r *Reader) interrupted(snap snapshot, lastID int64) {
	if lastID > 0 {
		r.partials = append(r.partials, partial{snap: snap, lastID: lastID})
	}
}

// skipDelivered drops entries an interrupted read already handed over: those
// at or below its last position that its snapshot could see.
func (r *Reader) skipDelivered(page []pageEntry) []pageEntry {
	if len(r.partials) == 0 {
		return page
	}
	out := make([]pageEntry, 0, len(page))
	for _, p := range page {
		dup := false
		for _, pt := range r.partials {
			if p.Position <= pt.lastID && pt.snap.sees(p.xid) {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, p)
		}
	}
	return out
}
