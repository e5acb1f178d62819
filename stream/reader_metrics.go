package stream

import "github.com/prometheus/client_golang/prometheus"

type readerMetrics struct {
	events, reconnects, decodeErrors, timeouts prometheus.Counter
	lag, position, notifyQueue, queryTimeout   prometheus.Gauge
}

func newReaderMetrics() readerMetrics {
	return readerMetrics{
		events:       prometheus.NewCounter(prometheus.CounterOpts{Name: "pgcast_reader_events_total", Help: "Log entries read and decoded."}),
		reconnects:   prometheus.NewCounter(prometheus.CounterOpts{Name: "pgcast_reader_reconnects_total", Help: "Times the reader's connection was lost and re-established."}),
		decodeErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "pgcast_reader_decode_errors_total", Help: "Log entries skipped because they could not be decoded."}),
		lag:          prometheus.NewGauge(prometheus.GaugeOpts{Name: "pgcast_reader_lag_seconds", Help: "Age of the last entry read when it was read (0 when caught up)."}),
		position:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "pgcast_reader_position", Help: "Log position of the last entry handed over."}),
		notifyQueue: prometheus.NewGauge(prometheus.GaugeOpts{Name: "pgcast_notify_queue_usage",
			Help: "Fraction of the cluster's NOTIFY queue in use, from pg_notification_queue_usage(); near 1 NOTIFY fails."}),
		timeouts: prometheus.NewCounter(prometheus.CounterOpts{Name: "pgcast_reader_query_timeouts_total",
			Help: "Reader statements that outlasted their bound; each ends the connection and doubles the bound for the next one."}),
		queryTimeout: prometheus.NewGauge(prometheus.GaugeOpts{Name: "pgcast_reader_query_timeout_seconds",
			Help: "Bound of the reader's statements: --reader-query-timeout, stretched after timeouts."}),
	}
}

func (m readerMetrics) register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.events, m.reconnects, m.decodeErrors, m.lag, m.position, m.notifyQueue, m.timeouts, m.queryTimeout} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
