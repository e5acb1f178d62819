package stream_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgcast/pgcast/internal/pgcluster"
	"github.com/pgcast/pgcast/internal/pgtest"
	"github.com/pgcast/pgcast/stream"
)

// TestNotifyQueueUsageExported is reliability case R5: a session LISTENs and
// then sits in an open transaction while other sessions commit NOTIFYs that
// fill several of the queue's 8 KiB pages. A listener reads the queue only
// outside a transaction, so the cluster's queue tail stays behind it: the
// reader's pgcast_notify_queue_usage gauge must show usage above 0, and 0
// again once the session has ended its transaction and left.
//
// On a private cluster: the NOTIFY queue is cluster-wide, and on the shared
// test cluster other tests' listeners (in other databases they lag up to
// three pages behind until signalled, and one inside a long transaction does
// not read at all) would keep the usage above 0 at unpredictable times.
func TestNotifyQueueUsageExported(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, url, pool := pgtest.PrivateCluster(t, pgcluster.Config{})
	reg := prometheus.NewRegistry()
	startReader(t, stream.ReaderConfig{URL: url, Handler: func([]*stream.Event) {}, PollInterval: 20 * time.Millisecond,
		PingInterval: 50 * time.Millisecond, Registerer: reg})

	listener, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close(ctx)
	if _, err := listener.Exec(ctx, `LISTEN pgcast_r5_idle`); err != nil {
		t.Fatal(err)
	}
	tx, err := listener.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) // if the test fails before the commit below
	if _, err := tx.Exec(ctx, `SELECT 1`); err != nil {
		t.Fatal(err)
	}
	// 400 distinct notifications of about 230 bytes each in the queue: about
	// 11 pages, committed.
	mustExec(t, pool, `SELECT count(pg_notify('pgcast_r5_idle', g || repeat('x', 200))) FROM generate_series(1, 400) g`)
	waitGauge(t, reg, "pgcast_notify_queue_usage", "> 0 while a listener sits in a transaction", func(v float64) bool { return v > 0 })

	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := listener.Close(ctx); err != nil {
		t.Fatal(err)
	}
	waitGauge(t, reg, "pgcast_notify_queue_usage", "0 once the listener has left its transaction", func(v float64) bool { return v == 0 })
}

// waitGauge waits until the gauge name in reg satisfies ok, or fails t. The
// gauge offers no change signal: it polls, with a deadline.
func waitGauge(t testing.TB, reg *prometheus.Registry, name, what string, ok func(float64) bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		v := metricValue(t, reg, name)
		if ok(v) {
			t.Logf("%s: %g", name, v)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is %g after 20 s, want %s", name, v, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// metricValue is the value of the counter or gauge name in reg; t fails when
// reg has no such metric.
func metricValue(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name || len(mf.GetMetric()) == 0 {
			continue
		}
		m := mf.GetMetric()[0]
		if m.GetCounter() != nil {
			return m.GetCounter().GetValue()
		}
		return m.GetGauge().GetValue()
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}
