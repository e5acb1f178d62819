package server

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgcast/pgcast/server/auth"
	"github.com/pgcast/pgcast/server/internal/wstest"
	"github.com/pgcast/pgcast/server/realtime"
)

var idpKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

// testIDP is an identity provider's JWKS endpoint, serving idpKey as kid
// "k1", that a test can take down.
type testIDP struct {
	*httptest.Server
	mu     sync.Mutex
	status int
}

func newTestIDP(t *testing.T, cacheControl string) *testIDP {
	t.Helper()
	k := idpKey()
	body, _ := json.Marshal(map[string]any{"keys": []any{map[string]any{
		"kty": "RSA", "kid": "k1", "use": "sig", "alg": "RS256",
		"n": base64.RawURLEncoding.EncodeToString(k.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(k.E)).Bytes()),
	}}})
	p := &testIDP{}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		p.mu.Lock()
		status := p.status
		p.mu.Unlock()
		if status != 0 {
			http.Error(w, "down", status)
			return
		}
		w.Header().Set("Cache-Control", cacheControl)
		_, _ = w.Write(body)
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *testIDP) setStatus(code int) { p.mu.Lock(); defer p.mu.Unlock(); p.status = code }

// token signs an RS256 token as the provider would: a namespaced roles
// claim, expiring after ttl.
func (p *testIDP) token(t *testing.T, sub string, roles []string, ttl time.Duration) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"sub": sub, "https://pgcast.test/roles": roles, "exp": time.Now().Add(ttl).Unix(),
	})
	tok.Header["kid"] = "k1"
	s, err := tok.SignedString(idpKey())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// newIDPStack is a stack whose Authenticator takes the provider's tokens
// only (no HS256 secret), mapping its namespaced roles claim.
func newIDPStack(t *testing.T, p *testIDP, jwks auth.JWKSConfig) (*stack, *prometheus.Registry) {
	t.Helper()
	var reg *prometheus.Registry
	s := newStack(t, func(c *Config) {
		reg = c.Registry
		jwks.HTTPClient = p.Client()
		a, err := auth.NewAuthenticator(auth.Config{
			JWKSURLs:   []string{p.URL},
			JWKS:       jwks,
			Claims:     auth.ClaimsConfig{Role: "https://pgcast.test/roles"},
			Logger:     c.Logger,
			Registerer: c.Registry,
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = a.Stop(context.Background()) })
		c.Auth = a
	})
	return s, reg
}

func (s *stack) readyz() (int, map[string]string) {
	s.t.Helper()
	resp, err := http.Get(s.base + "/readyz")
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Checks map[string]string `json:"checks"`
	}
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &body); err != nil {
		s.t.Fatalf("readyz: %s", b)
	}
	return resp.StatusCode, body.Checks
}

func (s *stack) get(path, token string) (int, string) {
	s.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.base+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestIdentityProviderEndToEnd: through the real server, an RS256 token from
// the provider's key set gets a ws-auth ticket that opens a Catalyst stream,
// is admin or not by its roles claim on REST, opens /api/realtime, and is
// closed with 4001 when it expires; pgcast's own HS256 tokens are refused
// (no secret is configured).
func TestIdentityProviderEndToEnd(t *testing.T) {
	t.Parallel()
	p := newTestIDP(t, "max-age=300")
	s, _ := newIDPStack(t, p, auth.JWKSConfig{})
	if code, checks := s.readyz(); code != 200 || checks["jwks"] != "ok" {
		t.Fatalf("readyz %d %v", code, checks)
	}

	// Catalyst: ticket, then the stream.
	code, body := s.get("/api/users/ws-auth/", p.token(t, "u1", []string{"member"}, time.Hour))
	var ticket struct {
		UUID string `json:"uuid"`
	}
	if code != 200 || json.Unmarshal([]byte(body), &ticket) != nil || ticket.UUID == "" {
		t.Fatalf("ws-auth: %d %s", code, body)
	}
	s.connect("/ws/events/object-records/?uuid=" + ticket.UUID)

	// REST: the roles claim decides admin.
	if code, body := s.get("/api/collections", p.token(t, "boss", []string{"member", "admin"}, time.Hour)); code != 200 {
		t.Errorf("admin token on /api/collections: %d %s", code, body)
	}
	if code, body := s.get("/api/collections", p.token(t, "u1", []string{"member"}, time.Hour)); code != 403 {
		t.Errorf("member token on /api/collections: %d %s", code, body)
	}
	// An HS256 token is refused: no secret, and never the provider's key.
	if code, body := s.get("/api/users/ws-auth/", s.token("u1", auth.RoleAuthenticated, 1)); code != 401 || !strings.Contains(body, "signing method not allowed") {
		t.Errorf("HS256 token: %d %s", code, body)
	}

	// Realtime: closed with 4001 at the token's expiry, not before.
	tok := p.token(t, "u1", nil, 3*time.Second)
	_, exp, err := s.srv.cfg.Auth.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	ws := s.rtConnect(tok)
	rtSubscribe(t, ws, "job.*")
	code2, err := wstest.ReadUntilClose(ws, 15*time.Second)
	closedAt := time.Now()
	if code2 != realtime.CloseTokenExpired {
		t.Fatalf("closed with %d (%v), want 4001", code2, err)
	}
	var ce *websocket.CloseError
	if errors.As(err, &ce) && ce.Text != "token expired" {
		t.Errorf("close reason %q", ce.Text)
	}
	if closedAt.Before(exp) {
		t.Fatalf("closed at %s, before the token's expiry %s", closedAt, exp)
	}
}

// TestIdentityProviderReadiness: /readyz is 503 while the key set was never
// loaded, 200 once it is, and stays 200 (with the failure in its detail and
// the metrics) when a later refresh fails.
func TestIdentityProviderReadiness(t *testing.T) {
	t.Parallel()
	// max-age=0: the set is refetched every MinRefreshInterval.
	p := newTestIDP(t, "max-age=0")
	p.setStatus(http.StatusServiceUnavailable)
	s, reg := newIDPStack(t, p, auth.JWKSConfig{MinRefreshInterval: 100 * time.Millisecond, RetryMin: 50 * time.Millisecond, RetryMax: 100 * time.Millisecond})
	code, checks := s.readyz()
	if code != 503 || !strings.Contains(checks["jwks"], p.URL+": no keys: jwks: fetch "+p.URL+": status 503") {
		t.Fatalf("provider down at start: readyz %d %v", code, checks)
	}
	if code, _ := s.get("/api/users/ws-auth/", p.token(t, "u1", nil, time.Hour)); code != 401 {
		t.Errorf("token without keys: %d", code)
	}
	p.setStatus(0)
	waitReadyz(t, s, func(code int, checks map[string]string) bool { return code == 200 && checks["jwks"] == "ok" })
	if code, body := s.get("/api/users/ws-auth/", p.token(t, "u1", nil, time.Hour)); code != 200 {
		t.Fatalf("token with keys: %d %s", code, body)
	}

	p.setStatus(http.StatusBadGateway)
	waitReadyz(t, s, func(code int, checks map[string]string) bool {
		return code == 200 && strings.Contains(checks["jwks"], "refresh failing since") && strings.Contains(checks["jwks"], "status 502")
	})
	if code, body := s.get("/api/users/ws-auth/", p.token(t, "u1", nil, time.Hour)); code != 200 {
		t.Fatalf("cached key while the provider is down: %d %s", code, body)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, mf := range mfs {
		seen[mf.GetName()] = true
		if mf.GetName() == "pgcast_jwks_refresh_total" {
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "result" && l.GetValue() == "error" && m.GetCounter().GetValue() > 0 {
						seen["error"] = true
					}
				}
			}
		}
	}
	for _, name := range []string{"pgcast_jwks_refresh_total", "pgcast_jwks_keys", "pgcast_jwks_last_success_timestamp_seconds", "error"} {
		if !seen[name] {
			t.Errorf("metric %s not exported", name)
		}
	}
}

func waitReadyz(t *testing.T, s *stack, cond func(int, map[string]string) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, checks := s.readyz()
		if cond(code, checks) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz still %d %v after 30 s", code, checks)
		}
		time.Sleep(20 * time.Millisecond) // polling /readyz: there is no signal to await
	}
}
