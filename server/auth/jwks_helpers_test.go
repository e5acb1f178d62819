package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Test keys, generated once per test binary (RSA generation is slow under
// -race).
var (
	testRSA     = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA(2048) })
	testRSA2    = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA(2048) })
	testEC256   = sync.OnceValue(func() *ecdsa.PrivateKey { return mustEC(elliptic.P256()) })
	testEC384   = sync.OnceValue(func() *ecdsa.PrivateKey { return mustEC(elliptic.P384()) })
	testEC521   = sync.OnceValue(func() *ecdsa.PrivateKey { return mustEC(elliptic.P521()) })
	testEd25519 = sync.OnceValue(func() ed25519.PrivateKey {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			panic(err)
		}
		return k
	})
)

func mustRSA(bits int) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		panic(err)
	}
	return k
}

func mustEC(c elliptic.Curve) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

func b64u(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// jwkOf is the public JWK of a private key, with kid and (when not "") alg.
func jwkOf(kid string, priv any, alg string) map[string]any {
	m := map[string]any{"kid": kid, "use": "sig"}
	if alg != "" {
		m["alg"] = alg
	}
	switch k := priv.(type) {
	case *rsa.PrivateKey:
		m["kty"], m["n"], m["e"] = "RSA", b64u(k.N.Bytes()), b64u(big.NewInt(int64(k.E)).Bytes())
	case *ecdsa.PrivateKey:
		size := (k.Curve.Params().BitSize + 7) / 8
		x, y := make([]byte, size), make([]byte, size)
		k.X.FillBytes(x)
		k.Y.FillBytes(y)
		m["kty"], m["crv"], m["x"], m["y"] = "EC", k.Curve.Params().Name, b64u(x), b64u(y)
	case ed25519.PrivateKey:
		m["kty"], m["crv"], m["x"] = "OKP", "Ed25519", b64u(k.Public().(ed25519.PublicKey))
	default:
		panic("jwkOf: unsupported key type")
	}
	return m
}

// signJWT signs claims with method and key, with kid in the header unless
// kid is "".
func signJWT(t testing.TB, m jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// testClock is a settable clock: cache ages and refresh intervals follow
// it, so tests move time instead of sleeping.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock() *testClock { return &testClock{t: time.Now()} }

func (c *testClock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) Advance(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.t = c.t.Add(d) }

// claimsAt are valid claims for sub at the clock's time.
func claimsAt(c *testClock, sub string) jwt.MapClaims {
	return jwt.MapClaims{"sub": sub, "exp": c.Now().Add(time.Hour).Unix()}
}

// jwksServer serves a key set that tests change, counts the fetches, and can
// fail or hold them.
type jwksServer struct {
	*httptest.Server
	mu           sync.Mutex
	keys         []map[string]any
	body         []byte // when set, served instead of keys
	status       int    // when not 0 and not 200, answered instead
	cacheControl string
	hold         chan struct{} // when set, fetches wait for it to close
	holding      chan struct{} // signalled when a fetch starts waiting
	fetches      atomic.Int64
}

func newJWKSServer(t testing.TB, keys ...map[string]any) *jwksServer {
	t.Helper()
	s := &jwksServer{keys: keys, cacheControl: "public, max-age=300", holding: make(chan struct{}, 100)}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) serve(w http.ResponseWriter, r *http.Request) {
	s.fetches.Add(1)
	s.mu.Lock()
	hold, status, cc, body := s.hold, s.status, s.cacheControl, s.body
	if body == nil {
		body, _ = json.Marshal(map[string]any{"keys": s.keys})
	}
	s.mu.Unlock()
	if hold != nil {
		s.holding <- struct{}{}
		select {
		case <-hold:
		case <-r.Context().Done():
			return
		}
	}
	if status != 0 && status != http.StatusOK {
		http.Error(w, "down", status)
		return
	}
	if cc != "" {
		w.Header().Set("Cache-Control", cc)
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

func (s *jwksServer) setKeys(keys ...map[string]any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys, s.body = keys, nil
}

func (s *jwksServer) setStatus(code int) { s.mu.Lock(); defer s.mu.Unlock(); s.status = code }

func (s *jwksServer) setBody(b []byte) { s.mu.Lock(); defer s.mu.Unlock(); s.body = b }

// jwksAuth builds and starts an Authenticator on the servers' key sets,
// with their client and the clock, and stops it at cleanup.
func jwksAuth(t *testing.T, clock *testClock, reg prometheus.Registerer, cfg Config, servers ...*jwksServer) *Authenticator {
	t.Helper()
	for _, s := range servers {
		cfg.JWKSURLs = append(cfg.JWKSURLs, s.URL)
		cfg.JWKS.HTTPClient = s.Client()
	}
	if clock != nil {
		cfg.Now = clock.Now
	}
	cfg.Registerer = reg
	a, err := NewAuthenticator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := a.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return a
}

// waitFor polls cond until it holds, failing the test after a generous
// deadline (the machine may be loaded).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, not waiting for time to pass
	}
}

// metricValue reads a counter or gauge with the given labels (nil: no
// labels) from reg; 0 when absent.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue metrics
				}
			}
			return value(m)
		}
	}
	return 0
}

func value(m *dto.Metric) float64 {
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}
