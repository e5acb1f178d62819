package bench

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgcast/pgcast/stream"
)

// sustainedRowsPerTx is the size of the sustained scenario's transactions.
const sustainedRowsPerTx = 100

// sustainedInsertSQL inserts rows $3 … $3+99, each carrying its number.
const sustainedInsertSQL = `INSERT INTO pgcast.object_records (object_class_id, cells)
SELECT $1, jsonb_build_object($2::text, g) FROM generate_series($3::bigint, $3::bigint + 99) g`

// sustainedTarget is the table the sustained scenario inserts into.
type sustainedTarget struct {
	label string // of the scenario database
	table string // as the messages name it
	// prepare readies the scenario database and returns the class whose
	// record_created events count.
	prepare func(ctx context.Context, conn *pgx.Conn, sc *scenario) (classID int64, err error)
	// insertSQL inserts sustainedRowsPerTx rows, with args(first) for the
	// first one's number.
	insertSQL string
	args      func(sc *scenario, first int64) []any
	// idsSQL reads the ids of every row in the table, sorted: the record
	// ids their record_created events must carry.
	idsSQL string
}

// recordsTarget is pgcast's own table of records.
var recordsTarget = sustainedTarget{
	label:     "sustained",
	table:     captureTable,
	prepare:   func(_ context.Context, _ *pgx.Conn, sc *scenario) (int64, error) { return sc.classID, nil },
	insertSQL: sustainedInsertSQL,
	args:      func(sc *scenario, first int64) []any { return []any{sc.classID, sc.fieldKey, first} },
	idsSQL:    `SELECT id FROM pgcast.object_records ORDER BY id`,
}

// runSustained has writers insert transactions of 100 rows into the target
// table as fast as they can while a reader decodes, then checks every
// inserted row's record_created event was decoded exactly once.
func runSustained(ctx context.Context, cfg CaptureConfig, srv *server, target sustainedTarget) (_ SustainedResult, err error) {
	res := SustainedResult{
		DurationS: cfg.SustainedDuration.Seconds(),
		Writers:   cfg.SustainedWriters,
		RowsPerTx: sustainedRowsPerTx,
		Target:    TargetSustainedPerS,
	}
	sc, err := srv.newScenario(ctx, target.label)
	if err != nil {
		return res, err
	}
	defer sc.drop()
	setup, err := connect(ctx, sc.url)
	if err != nil {
		return res, err
	}
	defer setup.Close(context.WithoutCancel(ctx))
	classID, err := target.prepare(ctx, setup, sc)
	if err != nil {
		return res, err
	}
	conns, err := connectN(ctx, sc.url, cfg.SustainedWriters)
	if err != nil {
		return res, err
	}
	defer closeAll(ctx, conns)
	for _, c := range conns {
		if _, err := c.Prepare(ctx, "insert", target.insertSQL); err != nil {
			return res, fmt.Errorf("prepare: %w", err)
		}
	}

	var (
		mu      sync.Mutex
		ids     []int64      // record ids of record_created events, in delivery order
		created atomic.Int64 // len(ids), readable without the lock
		all     atomic.Int64
		empty   atomic.Int64 // record_created events without a record
	)
	reader, err := stream.NewReader(stream.ReaderConfig{
		URL: sc.url,
		Handler: func(evs []*stream.Event) {
			n := 0
			mu.Lock()
			for _, ev := range evs {
				if ev.Kind == stream.KindRecordCreated && ev.ClassID == classID {
					ids = append(ids, ev.RecordID)
					if len(ev.Record) == 0 {
						empty.Add(1)
					}
					n++
				}
			}
			mu.Unlock()
			created.Add(int64(n))
			all.Add(int64(len(evs)))
		},
		Logger: cfg.Logger,
	})
	if err != nil {
		return res, err
	}
	if err := reader.Start(ctx); err != nil {
		return res, err
	}
	readerStopped := false
	stopReader := func() error {
		if readerStopped {
			return nil
		}
		readerStopped = true
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		return reader.Stop(sctx)
	}
	defer func() {
		if serr := stopReader(); err == nil && serr != nil {
			err = serr
		}
	}()

	// Sample the decoded count every second while the writers run.
	samplerDone := make(chan []int64)
	samplerStop := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		var per []int64
		last := created.Load()
		for {
			select {
			case <-samplerStop:
				samplerDone <- per
				return
			case <-t.C:
				c := created.Load()
				per = append(per, c-last)
				last = c
			}
		}
	}()
	var next atomic.Int64
	before := created.Load()
	rows, took, err := runWriters(ctx, conns, 0, cfg.SustainedDuration, func(ctx context.Context, _ int, c *pgx.Conn) error {
		first := next.Add(sustainedRowsPerTx) - sustainedRowsPerTx
		if _, err := c.Exec(ctx, "insert", target.args(sc, first)...); err != nil {
			return fmt.Errorf("insert into %s: %w", target.table, err)
		}
		return nil
	})
	inWindow := created.Load() - before
	close(samplerStop)
	perSec := <-samplerDone
	if err != nil {
		return res, err
	}
	stopped := time.Now()
	res.RowsInserted = rows * sustainedRowsPerTx
	res.InsertedPerS = round1(perSecond(res.RowsInserted, took))
	res.DecodedPerS = round1(perSecond(inWindow, took))
	if len(perSec) > 0 {
		res.MinDecodedPerS = float64(slices.Min(perSec))
	}

	// Drain: wait for the reader to deliver everything committed.
	if err := waitDecoded(ctx, created.Load, res.RowsInserted, max(time.Minute, 2*cfg.SustainedDuration)); err != nil {
		return res, fmt.Errorf("after the writers stopped: %w", err)
	}
	res.DrainS = round3(time.Since(stopped).Seconds())
	if err := stopReader(); err != nil {
		return res, err
	}
	res.AllEventsDecoded = all.Load()

	// Check: each inserted row decoded exactly once.
	dbRows, err := setup.Query(ctx, target.idsSQL)
	if err != nil {
		return res, fmt.Errorf("read the rows of %s: %w", target.table, err)
	}
	inserted, err := pgx.CollectRows(dbRows, pgx.RowTo[int64])
	if err != nil {
		return res, fmt.Errorf("read the rows of %s: %w", target.table, err)
	}
	mu.Lock()
	got := slices.Clone(ids)
	mu.Unlock()
	slices.Sort(got)
	res.Lost, res.Duplicates, res.Unexpected = compareIDs(inserted, got)
	res.Unexpected += empty.Load()
	if int64(len(inserted)) != res.RowsInserted {
		return res, fmt.Errorf("writers committed %d rows but %s holds %d", res.RowsInserted, target.table, len(inserted))
	}
	res.Pass = res.DecodedPerS >= res.Target && res.Lost == 0 && res.Duplicates == 0 && res.Unexpected == 0
	cfg.Logger.Info("sustained done", "table", target.table, "inserted_per_s", res.InsertedPerS, "decoded_per_s", res.DecodedPerS, "drain_s", res.DrainS,
		"lost", res.Lost, "duplicates", res.Duplicates)
	return res, nil
}

// waitDecoded waits, up to limit, until have() reaches want: the reader
// has delivered as many events as were committed. (Not until its position
// reaches the log's last id: it delivers in commit order, and a transaction
// that took lower ids and committed last leaves the position below that.)
func waitDecoded(ctx context.Context, have func() int64, want int64, limit time.Duration) error {
	start := time.Now()
	for have() < want {
		if time.Since(start) > limit {
			return fmt.Errorf("reader did not deliver every event within %s (%d of %d)", limit, have(), want)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		time.Sleep(2 * time.Millisecond)
	}
	return nil
}

// compareIDs compares two sorted lists: want (each once) against got.
func compareIDs(want, got []int64) (lost, dups, unexpected int64) {
	i, j := 0, 0
	for i < len(want) || j < len(got) {
		switch {
		case j >= len(got) || i < len(want) && want[i] < got[j]:
			lost++
			i++
		case i >= len(want) || got[j] < want[i]:
			unexpected++
			j++
		default: // equal
			v := want[i]
			i++
			j++
			for j < len(got) && got[j] == v {
				dups++
				j++
			}
		}
	}
	return lost, dups, unexpected
}
