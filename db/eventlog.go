package db

import (
	"context"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"
)

// The event log's delta reads, on the reader's ListenConn. Which entries a
// read takes, and why that is commit-safe, is package stream's (see its
// documentation): here are the statements, their round trips and what
// they return.

// Since says which entries a delta read takes: those of the transactions
// that the previous read's snapshot did not see (at or above its Xmax, or
// among its in-progress Xip), and every entry above position Above
// (after a server restart; math.MaxInt64 for none).
type Since struct {
	Xmax  uint64
	Xip   []uint64
	Above int64
}

// args are the delta statements' parameters $1 to $3. The xids go as
// decimal text, cast to xid8 in SQL (pgx has no xid8 type).
func (s Since) args() []any {
	xip := make([]string, len(s.Xip))
	for i, x := range s.Xip {
		xip[i] = strconv.FormatUint(x, 10)
	}
	return []any{strconv.FormatUint(s.Xmax, 10), xip, s.Above}
}

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
const (
	deltaXip       = `ARRAY(SELECT x FROM unnest($2::text[]::xid8[]) x WHERE pg_visible_in_snapshot(x, pg_current_snapshot()))`
	deltaWhere     = `(xid >= $1::text::xid8 OR xid = ANY (` + deltaXip + `) OR id > $3)`
	deltaFirstPage = `SELECT id, xid::text, created_at, kind, environment_id, object_class_id, object_record_id, task_id, data::text
FROM pgcast.events e
WHERE ` + deltaWhere + `
ORDER BY id + 0
LIMIT $4`
)

// DeltaRead describes a read of the first page of a delta.
type DeltaRead struct {
	Since Since
	// Limit is the page's size.
	Limit int
	// Usage also samples the NOTIFY queue's usage (Delta.Usage).
	Usage bool
	// ClearWaiting also clears the listeners row's waiting flag, after the
	// read (Delta.Cleared says it was).
	ClearWaiting bool
}

// Delta is what ReadDelta returns besides the entries.
type Delta struct {
	Snapshot string  // the read's snapshot, pg_current_snapshot()::text
	Usage    float64 // pg_notification_queue_usage(), when asked
	Rows     int     // rows fetched, decodable or not
	Last     int64   // the position of the last row fetched
	Cleared  bool    // the waiting flag was cleared
}

// ReadDelta reads the first page of the delta described by d, handing each
// entry to each, in position order.
//
// Round trips: one pipelined batch begins the repeatable-read transaction,
// takes its snapshot, reads the first page, commits and, with
// d.ClearWaiting, clears the waiting flag. A first page shorter than
// d.Limit is the whole delta: one round trip. A full one leaves the delta
// to DeltaBounds and ReadPage, outside any transaction.
//
// The NOTIFY queue's usage (d.Usage) is sampled by the snapshot's
// statement: no statement or round trip added, and, sampled now and then,
// none of the cluster-wide locking of pg_notification_queue_usage() on
// every read.
func (c *ListenConn) ReadDelta(ctx context.Context, d DeltaRead, each func(*Entry)) (Delta, error) {
	var out Delta
	var usage *float64
	if d.Usage {
		usage = &out.Usage
	}
	br, snap, err := c.sendRead(ctx, usage, func(b *pgx.Batch) {
		b.Queue(deltaFirstPage, append(d.Since.args(), d.Limit)...)
		b.Queue(`COMMIT`)
		if d.ClearWaiting {
			// In its own transaction: the read-only one cannot write.
			b.Queue(`UPDATE pgcast.listeners SET waiting = false, updated_at = now() WHERE pid = pg_backend_pid()`)
		}
	})
	if err != nil {
		return out, err
	}
	defer br.Close()
	out.Snapshot = snap
	rows, err := br.Query()
	if err != nil {
		return out, fmt.Errorf("read delta: %w", err)
	}
	if out.Rows, out.Last, err = scanEntries(rows, each); err != nil {
		return out, err
	}
	if _, err := br.Exec(); err != nil {
		return out, fmt.Errorf("end read: %w", err)
	}
	if d.ClearWaiting {
		if _, err := br.Exec(); err != nil {
			return out, fmt.Errorf("clear waiting: %w", err)
		}
		out.Cleared = true
	}
	return out, br.Close()
}

// sendRead sends a read's batch: a repeatable-read transaction, its snapshot
// (and, when usage is not nil, the NOTIFY queue's usage into it), then what
// queue adds. It reads the snapshot; the caller reads the rest of br and
// closes it.
func (c *ListenConn) sendRead(ctx context.Context, usage *float64, queue func(*pgx.Batch)) (br pgx.BatchResults, snap string, err error) {
	b := &pgx.Batch{}
	b.Queue(`BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY`)
	dest := []any{&snap}
	if usage != nil {
		b.Queue(`SELECT pg_current_snapshot()::text, pg_notification_queue_usage()`)
		dest = append(dest, usage)
	} else {
		b.Queue(`SELECT pg_current_snapshot()::text`)
	}
	queue(b)
	br = c.conn.SendBatch(ctx, b)
	if _, err := br.Exec(); err != nil {
		_ = br.Close()
		return nil, "", fmt.Errorf("begin read: %w", err)
	}
	if err := br.QueryRow().Scan(dest...); err != nil {
		_ = br.Close()
		return nil, "", fmt.Errorf("take snapshot: %w", err)
	}
	return br, snap, nil
}

// scanEntries hands each row of a delta's page to each and returns the
// number of rows and the position of the last.
func scanEntries(rows pgx.Rows, each func(*Entry)) (int, int64, error) {
	defer rows.Close()
	raw := 0
	var last int64
	var en Entry
	var xid string
	for rows.Next() {
		raw++
		if err := rows.Scan(&en.ID, &xid, &en.CreatedAt, &en.Kind, &en.Environment, &en.ClassID, &en.RecordID, &en.TaskID, &en.Data); err != nil {
			return 0, 0, fmt.Errorf("scan entry: %w", err)
		}
		last = en.ID
		x, err := strconv.ParseUint(xid, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("entry %d: xid %q: %w", en.ID, xid, err)
		}
		en.Xid = x
		each(&en)
	}
	if err := rows.Err(); err != nil {
		return 0, 0, fmt.Errorf("fetch: %w", err)
	}
	return raw, last, nil
}
