package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgcast/pgcast/db"
	"github.com/pgcast/pgcast/stream"
)

// The watched-table scenarios measure `pgcast watch` on a typical
// application table: the same DDL twice, one watched (through db.ApplyWatch,
// what `pgcast watch apply` runs) and one not.
const (
	watchedTable   = "public.bench_orders"
	unwatchedTable = "public.bench_orders_plain"
	// watchedName is the watch's (collection) name.
	watchedName = "orders"
)

// watchedDDL creates one application table (%[1]s: its name): an identity
// key and 7 columns of mixed types, plus 2 secondary indexes.
const watchedDDL = `CREATE TABLE %[1]s (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer   text NOT NULL,
    status     text NOT NULL DEFAULT 'new',
    total      numeric(12,2) NOT NULL,
    quantity   integer NOT NULL,
    paid       boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now(),
    details    jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX ON %[1]s (customer);
CREATE INDEX ON %[1]s (status, updated_at)`

// WatchedTableDDL is the table of the watched-table scenarios, as reported.
var WatchedTableDDL = fmt.Sprintf(watchedDDL, "<table>")

// watchedDefinition is the watch of the scenarios: every column, read rule
// public, no owner or environment column, no counts (each a definition's
// default but the read rule).
var watchedDefinition = db.WatchDefinition{Table: watchedTable, Name: watchedName, Read: "public"}

// Statements of the watched-table write scenario. The application sends
// its values as parameters: $1 customer, $2 status, $3 total, $4 quantity,
// $5 paid, $6 details (insert); $1 the row's id, $2 status, $3 total
// (update: a new total every time, so every UPDATE changes the row).
const (
	watchedInsertSQL = `INSERT INTO %s (customer, status, total, quantity, paid, details)
VALUES ($1::text, $2::text, $3::numeric, $4::integer, $5::boolean, $6::jsonb)`
	watchedUpdateSQL = `UPDATE %s SET status = $2::text, total = $3::numeric, updated_at = now() WHERE id = $1`
)

// watchedPopulateSQL inserts rows $1 … $2 as the statements above would.
const watchedPopulateSQL = `INSERT INTO %s (customer, status, total, quantity, paid, details)
SELECT 'customer-' || (g %% 1000), (ARRAY['new', 'paid', 'shipped', 'delivered'])[1 + g %% 4], (g %% 100000) / 100.0,
       1 + g %% 10, g %% 2 = 0, jsonb_build_object('sku', 'SKU-' || (g %% 5000), 'note', 'order ' || g)
FROM generate_series($1::bigint, $2::bigint) g`

var watchedStatuses = [...]string{"new", "paid", "shipped", "delivered"}

// prepareWatched creates the watched table with rows rows, and the
// unwatched one with as many when plain, then watches the first. It returns
// the watch's class.
func prepareWatched(ctx context.Context, conn *pgx.Conn, rows int, plain bool) (int64, error) {
	tables := []string{watchedTable}
	if plain {
		tables = append(tables, unwatchedTable)
	}
	for _, t := range tables {
		if _, err := conn.Exec(ctx, fmt.Sprintf(watchedDDL, t)); err != nil {
			return 0, fmt.Errorf("create %s: %w", t, err)
		}
		// Filled before the watch exists: the entries of the rows to
		// update are not part of the scenario.
		if rows > 0 {
			if _, err := conn.Exec(ctx, fmt.Sprintf(watchedPopulateSQL, t), 1, rows); err != nil {
				return 0, fmt.Errorf("populate %s: %w", t, err)
			}
		}
	}
	var res db.WatchApplyResult
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		var err error
		res, err = db.ApplyWatch(ctx, tx, 1, watchedDefinition)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("watch %s: %w", watchedTable, err)
	}
	vacuum := `VACUUM ANALYZE pgcast.events, pgcast.watches, pgcast.object_classes, ` + strings.Join(tables, ", ")
	if _, err := conn.Exec(ctx, vacuum); err != nil {
		return 0, fmt.Errorf("vacuum: %w", err)
	}
	return res.Watch.ClassID, nil
}

// execWatched runs one single-row autocommit transaction of op on table,
// with values derived from *value (incremented first; unique across writers,
// so every UPDATE changes its row and is captured), and ids the rows to
// update (1 … ids).
func execWatched(ctx context.Context, c *pgx.Conn, table, op string, ids int, value *int64) error {
	*value++
	v := *value
	total := fmt.Sprintf("%d.%02d", v/100, v%100)
	status := watchedStatuses[v%int64(len(watchedStatuses))]
	var err error
	if op == "insert" {
		details := fmt.Sprintf(`{"sku": "SKU-%d", "note": "order %d"}`, v%5000, v)
		_, err = c.Exec(ctx, table+"/insert", "customer-"+strconv.FormatInt(v%1000, 10), status, total, 1+v%10, v%2 == 0, details)
	} else {
		_, err = c.Exec(ctx, table+"/update", 1+rand.N(ids), status, total)
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", op, table, err)
	}
	return nil
}

// runWatchedOverhead measures, in its own database, single-row INSERT and
// UPDATE transactions on the watched table against the same on the
// unwatched one, for each number of writers, with a reader decoding (the
// default doorbell).
//
// Then, once the reader has caught up, it checks that every watched
// transaction (warm-up included) was decoded as exactly one record_created or
// record_updated event of the watch: check says how many of each.
func runWatchedOverhead(ctx context.Context, cfg CaptureConfig, srv *server) (_ []WriteResult, check *DecodeCheck, err error) {
	sc, err := srv.newScenario(ctx, "watched")
	if err != nil {
		return nil, nil, err
	}
	defer sc.drop()
	setup, err := connect(ctx, sc.url)
	if err != nil {
		return nil, nil, err
	}
	defer setup.Close(context.WithoutCancel(ctx))
	classID, err := prepareWatched(ctx, setup, cfg.updateRows, true)
	if err != nil {
		return nil, nil, err
	}
	if _, err := setup.Exec(ctx, `CHECKPOINT`); err != nil {
		cfg.Logger.Debug("checkpoint failed (not superuser?)", "err", err)
	}

	var decoded, reads, mine atomic.Int64
	reader, err := stream.NewReader(stream.ReaderConfig{
		URL: sc.url,
		Handler: func(evs []*stream.Event) {
			reads.Add(1)
			decoded.Add(int64(len(evs)))
			n := 0
			for _, ev := range evs {
				if ev.ClassID == classID && (ev.Kind == stream.KindRecordCreated || ev.Kind == stream.KindRecordValueChanged) && len(ev.Record) > 0 {
					n++
				}
			}
			mine.Add(int64(n))
		},
		Logger: cfg.Logger,
	})
	if err != nil {
		return nil, nil, err
	}
	if err := reader.Start(ctx); err != nil {
		return nil, nil, err
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if serr := reader.Stop(stopCtx); err == nil && serr != nil {
			err = serr
		}
	}()

	conns, err := connectN(ctx, sc.url, slices.Max(cfg.Writers))
	if err != nil {
		return nil, nil, err
	}
	defer closeAll(ctx, conns)
	tables := [2]string{watchedTable, unwatchedTable}
	for _, c := range conns {
		for _, t := range tables {
			if _, err := c.Prepare(ctx, t+"/insert", fmt.Sprintf(watchedInsertSQL, t)); err != nil {
				return nil, nil, fmt.Errorf("prepare: %w", err)
			}
			if _, err := c.Prepare(ctx, t+"/update", fmt.Sprintf(watchedUpdateSQL, t)); err != nil {
				return nil, nil, fmt.Errorf("prepare: %w", err)
			}
		}
	}
	values := make([]int64, len(conns)) // per writer: the last value written
	for i := range values {
		values[i] = int64(i+1) * 100_000_000 // totals up to 5,000,000.00 apart
	}
	var written int64
	side := func(t, op string) writeFunc {
		return func(ctx context.Context, w int, c *pgx.Conn) error {
			return execWatched(ctx, c, t, op, cfg.updateRows, &values[w])
		}
	}
	// Warm every connection's plans and caches (and the capture
	// functions' plans, per connection), unmeasured.
	for _, op := range []string{"insert", "update"} {
		for _, t := range tables {
			n, _, err := runWriters(ctx, conns, 50, 0, side(t, op))
			if err != nil {
				return nil, nil, err
			}
			if t == watchedTable {
				written += n
			}
		}
	}

	var out []WriteResult
	for _, n := range cfg.Writers {
		for _, op := range []string{"insert", "update"} {
			pr, err := alternate(ctx, conns[:n], cfg.Duration, [2]writeFunc{side(watchedTable, op), side(unwatchedTable, op)}, &decoded, &reads)
			if err != nil {
				return nil, nil, err
			}
			written += pr.rows[0]
			res := pr.result(VariantWatched, op, n, true)
			cfg.Logger.Info("watched table cell", "op", op, "writers", n,
				"watched_rows_per_s", res.CaptureRowsPerS, "unwatched_rows_per_s", res.PlainRowsPerS, "ratio", res.Ratio)
			out = append(out, res)
		}
	}
	if err := waitDecoded(ctx, mine.Load, written, time.Minute); err != nil {
		return nil, nil, err
	}
	check = &DecodeCheck{Transactions: written, Events: mine.Load()}
	if check.Events != check.Transactions {
		return nil, nil, fmt.Errorf("the watched table's %d transactions were decoded as %d events", check.Transactions, check.Events)
	}
	return out, check, nil
}

// DecodeCheck compares the transactions committed on a watched table with
// the events of its watch the reader decoded for them (one each).
type DecodeCheck struct {
	Transactions int64 `json:"transactions"`
	Events       int64 `json:"events_decoded"`
}

// watchedTarget is the sustained scenario's table when watched: rows
// numbered $1 … $1+99, ids from the identity column.
var watchedTarget = sustainedTarget{
	label: "watched_sustained",
	table: watchedTable,
	prepare: func(ctx context.Context, conn *pgx.Conn, _ *scenario) (int64, error) {
		return prepareWatched(ctx, conn, 0, false)
	},
	insertSQL: fmt.Sprintf(watchedPopulateSQL, watchedTable),
	args:      func(_ *scenario, first int64) []any { return []any{first, first + sustainedRowsPerTx - 1} },
	idsSQL:    `SELECT id FROM ` + watchedTable + ` ORDER BY id`,
}
