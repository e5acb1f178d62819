package auth

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// oidcServer serves a discovery document and, at /jwks, a key set.
type oidcServer struct {
	*httptest.Server
	mu        sync.Mutex
	issuer    string // the document's issuer; default the server's URL
	down      bool
	discovery atomic.Int64
	jwks      atomic.Int64
	keys      []map[string]any
}

func newOIDCServer(t *testing.T, keys ...map[string]any) *oidcServer {
	t.Helper()
	s := &oidcServer{keys: keys}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		down, issuer := s.down, s.issuer
		s.mu.Unlock()
		if issuer == "" {
			issuer = s.URL
		}
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			s.discovery.Add(1)
			if down {
				http.Error(w, "down", http.StatusBadGateway)
				return
			}
			_ = json.NewEncoder(w).Encode(map[string]any{
				"issuer": issuer, "jwks_uri": s.URL + "/jwks", "id_token_signing_alg_values_supported": []string{"RS256"},
			})
		case "/jwks":
			s.jwks.Add(1)
			_ = json.NewEncoder(w).Encode(map[string]any{"keys": s.keys})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

// TestOIDCDiscovery: the jwks_uri is discovered at Start, the issuer
// becomes the required iss, and a token from the provider verifies.
func TestOIDCDiscovery(t *testing.T) {
	t.Parallel()
	srv := newOIDCServer(t, jwkOf("k1", testRSA(), "RS256"))
	clock := newTestClock()
	a := jwksAuth(t, clock, nil, Config{OIDCIssuer: srv.URL, JWKS: JWKSConfig{HTTPClient: srv.Client()}})
	if srv.discovery.Load() != 1 || srv.jwks.Load() != 1 {
		t.Fatalf("discovery %d, jwks %d fetches", srv.discovery.Load(), srv.jwks.Load())
	}
	claims := claimsAt(clock, "u1")
	claims["iss"] = srv.URL
	if id, _, err := a.Verify(signJWT(t, jwt.SigningMethodRS256, testRSA(), "k1", claims)); err != nil || id.UserID != "u1" {
		t.Fatalf("%+v, %v", id, err)
	}
	claims["iss"] = "https://evil.example"
	if _, _, err := a.Verify(signJWT(t, jwt.SigningMethodRS256, testRSA(), "k1", claims)); err == nil || !strings.Contains(err.Error(), "wrong issuer") {
		t.Errorf("another issuer: %v", err)
	}
	delete(claims, "iss")
	if _, _, err := a.Verify(signJWT(t, jwt.SigningMethodRS256, testRSA(), "k1", claims)); err == nil || !strings.Contains(err.Error(), "iss claim is required") {
		t.Errorf("no issuer: %v", err)
	}
	if ready, detail := a.KeyStatus(); !ready || detail != "ok" {
		t.Errorf("KeyStatus = %v, %q", ready, detail)
	}
}

// TestOIDCIssuerMismatch: a document naming another issuer fails Start.
func TestOIDCIssuerMismatch(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ configured, served string }{
		{"", "https://other.example"},
		{"/", ""}, // a trailing slash is part of the issuer
	} {
		srv := newOIDCServer(t, jwkOf("k1", testRSA(), ""))
		srv.mu.Lock()
		srv.issuer = c.served
		srv.mu.Unlock()
		issuer := srv.URL + c.configured
		a, err := NewAuthenticator(Config{OIDCIssuer: issuer, JWKS: JWKSConfig{HTTPClient: srv.Client()}})
		if err != nil {
			t.Fatal(err)
		}
		err = a.Start(context.Background())
		if err == nil || !strings.Contains(err.Error(), "is not \""+issuer+"\"") {
			t.Errorf("configured %q, served %q: Start err = %v", issuer, c.served, err)
		}
		if srv.jwks.Load() != 0 {
			t.Errorf("the key set of a mismatched issuer was fetched")
		}
		if err := a.Stop(context.Background()); err != nil {
			t.Error(err)
		}
	}
}

// TestOIDCDiscoveryRetried: a provider down at Start does not fail it; the
// discovery is retried with backoff until it succeeds.
func TestOIDCDiscoveryRetried(t *testing.T) {
	t.Parallel()
	srv := newOIDCServer(t, jwkOf("k1", testEC256(), ""))
	srv.mu.Lock()
	srv.down = true
	srv.mu.Unlock()
	clock := newTestClock()
	a := jwksAuth(t, clock, nil, Config{OIDCIssuer: srv.URL, JWKS: JWKSConfig{HTTPClient: srv.Client(), RetryMin: time.Second}})
	ready, detail := a.KeyStatus()
	if ready || !strings.Contains(detail, "oidc "+srv.URL+": no keys: oidc: discover "+srv.URL+"/.well-known/openid-configuration: status 502") {
		t.Fatalf("KeyStatus = %v, %q", ready, detail)
	}
	srv.mu.Lock()
	srv.down = false
	srv.mu.Unlock()
	// The retry is due after the backoff; a token wakes it.
	clock.Advance(2 * time.Second)
	tok := signJWT(t, jwt.SigningMethodES256, testEC256(), "", jwt.MapClaims{"sub": "u1", "iss": srv.URL, "exp": clock.Now().Add(time.Hour).Unix()})
	waitFor(t, "discovery and keys", func() bool { _, _, err := a.Verify(tok); return err == nil })
	if ready, detail := a.KeyStatus(); !ready || detail != "ok" {
		t.Errorf("KeyStatus = %v, %q", ready, detail)
	}
	if n := srv.discovery.Load(); n != 2 {
		t.Errorf("%d discovery fetches, want 2", n)
	}
}
