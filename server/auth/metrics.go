package auth

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// keyMetrics are the key-set metrics, labelled by the URL fetched (the JWKS
// URL, or an OIDC discovery document's): a handful of configured URLs, never
// anything a client chooses.
type keyMetrics struct {
	refreshes   *prometheus.CounterVec // {url, result}
	limited     *prometheus.CounterVec // {url}
	keys        *prometheus.GaugeVec   // {url}
	lastSuccess *prometheus.GaugeVec   // {url}
	unknownKid  prometheus.Counter
}

func newKeyMetrics() *keyMetrics {
	return &keyMetrics{
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pgcast_jwks_refresh_total",
			Help: "Fetches of a JWKS (or of an OIDC discovery document), by URL and result (ok, error).",
		}, []string{"url", "result"}),
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pgcast_jwks_refresh_limited_total",
			Help: "Refreshes a token with an unknown key id asked for and did not get, the key set having been fetched less than the minimum refresh interval before.",
		}, []string{"url"}),
		keys: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pgcast_jwks_keys",
			Help: "Usable signing keys in the cached key set of a JWKS URL.",
		}, []string{"url"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pgcast_jwks_last_success_timestamp_seconds",
			Help: "Unix time of the last successful fetch of a JWKS URL.",
		}, []string{"url"}),
		unknownKid: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pgcast_jwt_unknown_kid_total",
			Help: "Tokens refused because no cached key has their key id, after any refresh they caused.",
		}),
	}
}

func (m *keyMetrics) register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.refreshes, m.limited, m.keys, m.lastSuccess, m.unknownKid} {
		if err := r.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return fmt.Errorf("auth: register metrics: %w (one Authenticator per registry)", err)
			}
			return fmt.Errorf("auth: register metrics: %w", err)
		}
	}
	return nil
}
