package bench

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgcast/pgcast/internal/pgtest"
	"github.com/pgcast/pgcast/stream"
)

// The sustained scenarios drain by counting the events delivered, not by
// waiting for the reader's position to reach the log's last id: the reader
// delivers in commit order, so a transaction that took lower ids and
// committed last leaves its position below that id for good (run 2 of the
// watched sustained scenario waited 2 minutes for it, 100 entries short).
func TestDrainCountsEventsNotPosition(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := newServer(pgtest.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	defer srv.close()
	sc, err := srv.newScenario(ctx, "drain")
	if err != nil {
		t.Fatal(err)
	}
	defer sc.drop()
	var created atomic.Int64
	delivered := make(chan struct{}, 16)
	reader, err := stream.NewReader(stream.ReaderConfig{
		URL: sc.url,
		Handler: func(evs []*stream.Event) {
			for _, ev := range evs {
				if ev.Kind == stream.KindRecordCreated {
					created.Add(1)
				}
			}
			select {
			case delivered <- struct{}{}:
			default: // a wake-up is pending already
			}
		},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := reader.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := reader.Stop(context.Background()); err != nil {
			t.Error(err)
		}
	}()
	conns, err := connectN(ctx, sc.url, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll(ctx, conns)
	insert := `INSERT INTO pgcast.object_records (object_class_id, cells) VALUES ($1, '{}')`

	// The first transaction takes the lower ids and commits last.
	first, err := conns[0].Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = first.Rollback(context.Background()) }()
	if _, err := first.Exec(ctx, insert, sc.classID); err != nil {
		t.Fatal(err)
	}
	if _, err := conns[1].Exec(ctx, insert, sc.classID); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, delivered, func() bool { return created.Load() == 1 })
	if err := first.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := waitDecoded(ctx, created.Load, 2, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	var last int64
	if err := conns[1].QueryRow(ctx, `SELECT max(id) FROM pgcast.events`).Scan(&last); err != nil {
		t.Fatal(err)
	}
	if p := reader.Position(); p >= last {
		t.Errorf("reader position %d, log end %d: the premise (position ends below the last id) no longer holds", p, last)
	}
}

// waitFor waits for cond, checking it after each delivery.
func waitFor(ctx context.Context, t *testing.T, delivered <-chan struct{}, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-delivered:
		case <-ctx.Done():
			t.Fatal("timed out")
		}
	}
}
