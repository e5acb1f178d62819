package stream

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// The delta: the entries of transactions that committed since the previous
// read's snapshot ($1 xmax, $2 xip) or, after a restart, above position $3.
// It orders by id + 0 so that no index can provide the order: the planner
// then never walks the whole primary key to avoid a sort of what it wrongly
// thinks is much of the log; it takes the delta from the indexes and sorts
// what it found. Its plan is the same whatever the parameters, so the first
// page runs on the connection's cached generic plan: no planning per read.
//
// Of the transactions of $2 it looks only at those the read's snapshot
// sees (deltaXip): one still running, say a statement writing a million
// entries, has its entries in the xid index already, and every read would
// otherwise visit them all in the heap only to find them invisible, slowing
// every other event down for as long as that statement runs.
//
// The last column is a count event's class count in the read's snapshot,
// for classes not among $4, whose counts the batch reads up front: the
// classes of the count events of the last read that had any, likely those
// of this one while writes keep coming (one query for the usual few classes
// rather than a sum per count event), and never more than the last writes
// touched.
const (
	deltaXip       = `ARRAY(SELECT x FROM unnest($2::text[]::xid8[]) x WHERE pg_visible_in_snapshot(x, pg_current_snapshot()))`
	deltaWhere     = `(xid >= $1::text::xid8 OR xid = ANY (` + deltaXip + `) OR id > $3)`
	deltaFirstPage = `SELECT id, xid::text, created_at, kind, environment_id, object_class_id, object_record_id, task_id, data::text,
  CASE WHEN kind = 'records_count_changed' AND object_class_id <> ALL ($4::bigint[])
    THEN (SELECT coalesce(sum(c.n), 0)::bigint FROM pgcast.object_class_counts c WHERE c.object_class_id = e.object_class_id) END
FROM pgcast.events e
WHERE ` + deltaWhere + `
ORDER BY id + 0
LIMIT $5`
)

const countsQuery = `SELECT object_class_id, sum(n)::bigint FROM pgcast.object_class_counts WHERE object_class_id = ANY ($1) GROUP BY 1`

// readDelta reads and hands over every entry committed since the previous
// read, and returns how many.
//
// Round trips: one pipelined batch begins the repeatable-read transaction,
// takes its snapshot, reads the counts of the classes of the previous read,
// reads the first page, commits and, when the reader stops waiting for the
// doorbell, clears its flag. A first page shorter than PageSize is the whole
// delta: one round trip. A full one is handed over and the rest of the delta
// is read a page per statement (readLarge), outside any transaction.
//
// At most once per PingInterval the snapshot's statement also samples the
// NOTIFY queue's usage (the read is the ping): no statement or round trip
// added, and none of the cluster-wide locking of
// pg_notification_queue_usage() on every read.
func (r *Reader) readDelta(ctx context.Context, conn *pgx.Conn) (int, error) {
	clear := r.waiting && r.busy
	var usage *float64
	started := time.Now()
	if r.usageAt.IsZero() || started.Sub(r.usageAt) >= r.cfg.PingInterval {
		usage = &r.usage
	}
	recent := r.recent
	if recent == nil {
		recent = []int64{} // an empty array: nil would be NULL, and x <> ALL (NULL) is NULL
	}
	r.next = r.next[:0]
	var (
		text   string
		counts map[int64]int64
	)
	page, raw, err := func() ([]pageEntry, int, error) {
		qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.timeout())
		defer cancel()
		br, snap, cs, err := sendRead(qctx, conn, recent, usage, func(b *pgx.Batch) {
			b.Queue(deltaFirstPage, append(r.deltaArgs(recent), r.cfg.PageSize)...)
			b.Queue(`COMMIT`)
			if clear {
				// In its own transaction: the read-only one cannot write.
				b.Queue(`UPDATE pgcast.listeners SET waiting = false, updated_at = now() WHERE pid = pg_backend_pid()`)
			}
		})
		if err != nil {
			return nil, 0, err
		}
		defer br.Close()
		text, counts = snap, cs
		rows, err := br.Query()
		if err != nil {
			return nil, 0, fmt.Errorf("read delta: %w", err)
		}
		page, raw, _, err := r.scanPage(rows)
		if err != nil {
			return nil, 0, err
		}
		if _, err := br.Exec(); err != nil {
			return nil, 0, fmt.Errorf("end read: %w", err)
		}
		if clear {
			if _, err := br.Exec(); err != nil {
				return nil, 0, fmt.Errorf("clear waiting: %w", err)
			}
			r.waiting = false
		}
		return page, raw, br.Close()
	}()
	if err != nil {
		return 0, err
	}
	if usage != nil {
		r.usageAt = started
		r.metrics.notifyQueue.Set(*usage)
		if *usage >= 0.5 {
			r.cfg.Logger.Warn("the NOTIFY queue is filling up: a session listening in a long transaction holds it (see pg_stat_activity); when it is full, commits that NOTIFY fail", "usage", *usage)
		}
	}
	snap, err := parseSnapshot(text)
	if err != nil {
		return 0, err
	}
	var txs int
	total, lastID := r.handOver(page, counts, &txs)
	r.progressed()
	if raw >= r.cfg.PageSize {
		r.interrupted(snap, lastID)
		n, large, err := r.readLarge(ctx, conn, &txs)
		if err != nil {
			return 0, err
		}
		total, snap = total+n, large
	}
	r.prev, r.partials, r.afterRestart = &snap, nil, 0
	if len(r.next) > 0 { // an idle poll keeps the classes of the last writes
		r.recent, r.next = r.next, r.recent[:0]
	}
	r.eased()
	r.observe(time.Now(), txs)
	if total == 0 {
		r.metrics.lag.Set(0)
	}
	r.metrics.position.Set(float64(r.position.Load()))
	return total, nil
}

// deltaArgs are the delta queries' parameters $1 to $4.
func (r *Reader) deltaArgs(recent []int64) []any {
	above := int64(math.MaxInt64) // nothing: the snapshot alone decides
	if r.afterRestart > 0 {
		above = r.afterRestart
	}
	return []any{strconv.FormatUint(r.prev.xmax, 10), r.prev.xipText(), above, recent}
}

// sendRead sends a read's batch: a repeatable-read transaction, its snapshot
// (and, when usage is not nil, the NOTIFY queue's usage into it), for the
// classes recent their counts, then what queue adds. It reads the snapshot
// and the counts; the caller reads the rest of br and closes it.
func sendRead(ctx context.Context, conn *pgx.Conn, recent []int64, usage *float64, queue func(*pgx.Batch)) (br pgx.BatchResults, snap string, counts map[int64]int64, err error) {
	b := &pgx.Batch{}
	b.Queue(`BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY`)
	dest := []any{&snap}
	if usage != nil {
		b.Queue(`SELECT pg_current_snapshot()::text, pg_notification_queue_usage()`)
		dest = append(dest, usage)
	} else {
		b.Queue(`SELECT pg_current_snapshot()::text`)
	}
	if len(recent) > 0 {
		b.Queue(countsQuery, recent)
	}
	queue(b)
	br = conn.SendBatch(ctx, b)
	counts = make(map[int64]int64, len(recent))
	if err := func() error {
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("begin read: %w", err)
		}
		if err := br.QueryRow().Scan(dest...); err != nil {
			return fmt.Errorf("take snapshot: %w", err)
		}
		if len(recent) == 0 {
			return nil
		}
		rows, _ := br.Query()
		var id, n int64
		if _, err := pgx.ForEachRow(rows, []any{&id, &n}, func() error { counts[id] = n; return nil }); err != nil {
			return fmt.Errorf("read counts: %w", err)
		}
		return nil
	}(); err != nil {
		_ = br.Close()
		return nil, "", nil, err
	}
	return br, snap, counts, nil
}

// handOver hands a page over (without what interrupted reads already handed
// over), counts its transactions into txs (as changes of xid from one entry
// to the next: interleaved transactions count more than once, which only errs
// towards draining when commits overlap), and returns how many entries it
// handed over and the page's last position.
func (r *Reader) handOver(page []pageEntry, counts map[int64]int64, txs *int) (int, int64) {
	if len(page) == 0 {
		return 0, 0
	}
	r.fillCounts(page, counts)
	events := r.skipDelivered(page)
	if len(events) > 0 {
		r.cfg.Handler(events)
		r.position.Store(events[len(events)-1].Position)
		for _, ev := range events {
			r.maxPos = max(r.maxPos, ev.Position)
		}
		r.metrics.events.Add(float64(len(events)))
		r.metrics.lag.Set(time.Since(events[len(events)-1].Time).Seconds())
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

// maxRecentClasses bounds the classes whose counts a read fetches up front.
const maxRecentClasses = 64

// interrupted remembers a read that handed over entries up to lastID before
// failing, so the retry does not hand them over again.
func (r *Reader) interrupted(snap snapshot, lastID int64) {
	if lastID > 0 {
		r.partials = append(r.partials, partial{snap: snap, lastID: lastID})
	}
}

// skipDelivered drops entries an interrupted read already handed over: those
// at or below its last position that its snapshot could see.
func (r *Reader) skipDelivered(page []pageEntry) []*Event {
	out := make([]*Event, 0, len(page))
	for _, p := range page {
		dup := false
		for _, pt := range r.partials {
			if p.Position <= pt.lastID && pt.snap.sees(p.xid) {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, p.Event)
		}
	}
	return out
}
