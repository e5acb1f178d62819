package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgcast/pgcast/stream"
)

// Statements of the write-overhead scenario, on the capture table and the
// plain one. $1 class id (insert) or record id (update), $2 the field key, $3
// a value never written before by this writer, so every UPDATE changes a cell.
const (
	insertSQL = `INSERT INTO %s (object_class_id, cells) VALUES ($1, jsonb_build_object($2::text, $3::bigint))`
	updateSQL = `UPDATE %s SET cells = jsonb_set(cells, ARRAY[$2::text], to_jsonb($3::bigint)), updated_at = now() WHERE id = $1`
)

const (
	captureTable = "pgcast.object_records"
	plainTable   = "public.plain_records"
)

type writeSide struct {
	table string
	ids   []int64 // rows to update
}

// runWriteOverhead measures one variant in its own database: for each number
// of writers and each statement, the capture and the plain rates.
func runWriteOverhead(ctx context.Context, cfg CaptureConfig, srv *server, variant string) (_ []WriteResult, err error) {
	sc, err := srv.newScenario(ctx, variant)
	if err != nil {
		return nil, err
	}
	defer sc.drop()
	setup, err := connect(ctx, sc.url)
	if err != nil {
		return nil, err
	}
	defer setup.Close(context.WithoutCancel(ctx))
	capture, plain := &writeSide{table: captureTable}, &writeSide{table: plainTable}
	for _, side := range []*writeSide{capture, plain} {
		rows, err := setup.Query(ctx, fmt.Sprintf(`INSERT INTO %s (object_class_id, cells)
SELECT $1, jsonb_build_object($2::text, g) FROM generate_series(1, $3::int) g RETURNING id`, side.table), sc.classID, sc.fieldKey, cfg.updateRows)
		if err != nil {
			return nil, fmt.Errorf("populate %s: %w", side.table, err)
		}
		if side.ids, err = pgx.CollectRows(rows, pgx.RowTo[int64]); err != nil {
			return nil, fmt.Errorf("populate %s: %w", side.table, err)
		}
	}
	if _, err := setup.Exec(ctx, `VACUUM ANALYZE pgcast.object_records, public.plain_records, pgcast.events`); err != nil {
		return nil, fmt.Errorf("vacuum: %w", err)
	}
	if _, err := setup.Exec(ctx, `CHECKPOINT`); err != nil {
		cfg.Logger.Debug("checkpoint failed (not superuser?)", "err", err)
	}

	cfg.Logger.Debug("write overhead database ready", "variant", variant)
	var decoded, reads atomic.Int64
	reader, err := stream.NewReader(stream.ReaderConfig{
		URL: sc.url,
		Handler: func(evs []*stream.Event) {
			reads.Add(1)
			decoded.Add(int64(len(evs)))
		},
		PollOnly: variant == VariantPollOnly,
		Logger:   cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	if err := reader.Start(ctx); err != nil {
		return nil, err
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if serr := reader.Stop(stopCtx); err == nil && serr != nil {
			err = serr
		}
	}()
	if variant == VariantRingAll {
		// A listener that always waits and never clears its flag: every
		// capturing transaction rings.
		if _, err := setup.Exec(ctx, `INSERT INTO pgcast.listeners (pid, waiting) VALUES (-1, true)`); err != nil {
			return nil, fmt.Errorf("insert fake listener: %w", err)
		}
		defer func() {
			_, _ = setup.Exec(context.WithoutCancel(ctx), `DELETE FROM pgcast.listeners WHERE pid = -1`)
		}()
	}

	conns, err := connectN(ctx, sc.url, slices.Max(cfg.Writers))
	if err != nil {
		return nil, err
	}
	defer closeAll(ctx, conns)
	for _, c := range conns {
		for _, side := range []*writeSide{capture, plain} {
			if _, err := c.Prepare(ctx, side.table+"/insert", fmt.Sprintf(insertSQL, side.table)); err != nil {
				return nil, fmt.Errorf("prepare: %w", err)
			}
			if _, err := c.Prepare(ctx, side.table+"/update", fmt.Sprintf(updateSQL, side.table)); err != nil {
				return nil, fmt.Errorf("prepare: %w", err)
			}
		}
	}
	values := make([]int64, len(conns)) // per writer: the last value written
	for i := range values {
		values[i] = int64(i+1) * 1_000_000_000_000
	}
	// Warm every connection's plans and caches, unmeasured.
	for _, op := range []string{"insert", "update"} {
		for _, side := range []*writeSide{capture, plain} {
			if _, _, err := runWriters(ctx, conns, 50, 0, func(ctx context.Context, w int, c *pgx.Conn) error {
				return execOne(ctx, c, side, op, sc, &values[w])
			}); err != nil {
				return nil, err
			}
		}
	}

	cfg.Logger.Debug("write overhead writers warm", "variant", variant)
	var out []WriteResult
	for _, n := range cfg.Writers {
		for _, op := range []string{"insert", "update"} {
			pr, err := alternate(ctx, conns[:n], cfg.Duration, [2]writeFunc{
				func(ctx context.Context, w int, c *pgx.Conn) error {
					return execOne(ctx, c, capture, op, sc, &values[w])
				},
				func(ctx context.Context, w int, c *pgx.Conn) error { return execOne(ctx, c, plain, op, sc, &values[w]) },
			}, &decoded, &reads)
			if err != nil {
				return nil, err
			}
			res := pr.result(variant, op, n, variant != VariantRingAll)
			cfg.Logger.Info("write overhead cell", "variant", variant, "op", op, "writers", n,
				"capture_rows_per_s", res.CaptureRowsPerS, "plain_rows_per_s", res.PlainRowsPerS, "ratio", res.Ratio)
			out = append(out, res)
		}
	}
	return out, nil
}

// writeFunc runs one transaction on writer w's connection c.
type writeFunc func(ctx context.Context, w int, c *pgx.Conn) error

// pairRun is one write-overhead cell as measured: the rows and time of the
// capturing side ([0]) and the plain one ([1]), and what the reader decoded
// and in how many reads during the capturing side's halves.
type pairRun struct {
	rows          [2]int64
	took          [2]time.Duration
	events, reads int64
}

// alternate runs sides[0] (capturing) and sides[1] (plain) on every writer
// of ws, d each in halves ordered capture, plain, plain, capture, so that
// drift hits both alike. decoded and reads are the reader's counters.
func alternate(ctx context.Context, ws []*pgx.Conn, d time.Duration, sides [2]writeFunc, decoded, reads *atomic.Int64) (pairRun, error) {
	var pr pairRun
	for _, i := range []int{0, 1, 1, 0} {
		ev0, rd0 := decoded.Load(), reads.Load()
		r, took, err := runWriters(ctx, ws, 0, d/2, sides[i])
		if err != nil {
			return pr, err
		}
		pr.rows[i] += r
		pr.took[i] += took
		if i == 0 {
			pr.events += decoded.Load() - ev0
			pr.reads += reads.Load() - rd0
		}
	}
	return pr, nil
}

// result is the cell's report; with targeted, its verdict against the
// target for n writers.
func (pr pairRun) result(variant, op string, n int, targeted bool) WriteResult {
	res := WriteResult{
		Variant:         variant,
		Op:              op,
		Writers:         n,
		CaptureRowsPerS: perSecond(pr.rows[0], pr.took[0]),
		PlainRowsPerS:   perSecond(pr.rows[1], pr.took[1]),
		CaptureTx:       pr.rows[0],
		EventsDecoded:   pr.events,
		ReaderReads:     pr.reads,
	}
	if res.PlainRowsPerS > 0 {
		res.Ratio = round3(res.CaptureRowsPerS / res.PlainRowsPerS)
	}
	res.CaptureRowsPerS, res.PlainRowsPerS = round1(res.CaptureRowsPerS), round1(res.PlainRowsPerS)
	if targeted {
		res.Target = TargetRatioOneWriter
		if n > 1 {
			res.Target = TargetRatioManyWriters
		}
		pass := res.Ratio >= res.Target
		res.Pass = &pass
	}
	return res
}

// execOne runs one single-row autocommit transaction.
func execOne(ctx context.Context, c *pgx.Conn, side *writeSide, op string, sc *scenario, value *int64) error {
	*value++
	var err error
	if op == "insert" {
		_, err = c.Exec(ctx, side.table+"/insert", sc.classID, sc.fieldKey, *value)
	} else {
		_, err = c.Exec(ctx, side.table+"/update", side.ids[rand.N(len(side.ids))], sc.fieldKey, *value)
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", op, side.table, err)
	}
	return nil
}

// runWriters runs f on every connection, each in its own goroutine, started
// together: count times each when count > 0, otherwise until d has passed
// (a call in flight then finishes). It returns the calls made and the time
// from the start until the last writer finished.
func runWriters(ctx context.Context, conns []*pgx.Conn, count int, d time.Duration, f func(ctx context.Context, w int, c *pgx.Conn) error) (int64, time.Duration, error) {
	var (
		wg    sync.WaitGroup
		total atomic.Int64
		mu    sync.Mutex
		first error
	)
	start := time.Now()
	end := start.Add(d)
	for w, c := range conns {
		wg.Go(func() {
			var n int64
			for i := 0; count > 0 && i < count || count == 0 && time.Now().Before(end); i++ {
				if err := f(ctx, w, c); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					break
				}
				n++
			}
			total.Add(n)
		})
	}
	wg.Wait()
	took := time.Since(start)
	if first != nil {
		return 0, 0, first
	}
	return total.Load(), took, nil
}

func perSecond(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

func round1(f float64) float64 { return float64(int64(f*10+0.5)) / 10 }
func round3(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }
