package auth

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// TestJWKSAlgorithms: a token of every supported algorithm verifies with its
// key from a key set, and yields the identity of its claims.
func TestJWKSAlgorithms(t *testing.T) {
	t.Parallel()
	clock := newTestClock()
	srv := newJWKSServer(t,
		jwkOf("rsa", testRSA(), ""),
		jwkOf("ec256", testEC256(), ""),
		jwkOf("ec384", testEC384(), "ES384"),
		jwkOf("ec521", testEC521(), ""),
		jwkOf("ed", testEd25519(), "EdDSA"),
	)
	a := jwksAuth(t, clock, nil, Config{}, srv)
	cases := []struct {
		method jwt.SigningMethod
		key    any
		kid    string
	}{
		{jwt.SigningMethodRS256, testRSA(), "rsa"},
		{jwt.SigningMethodRS384, testRSA(), "rsa"},
		{jwt.SigningMethodRS512, testRSA(), "rsa"},
		{jwt.SigningMethodPS256, testRSA(), "rsa"},
		{jwt.SigningMethodPS384, testRSA(), "rsa"},
		{jwt.SigningMethodPS512, testRSA(), "rsa"},
		{jwt.SigningMethodES256, testEC256(), "ec256"},
		{jwt.SigningMethodES384, testEC384(), "ec384"},
		{jwt.SigningMethodES512, testEC521(), "ec521"},
		{jwt.SigningMethodEdDSA, testEd25519(), "ed"},
	}
	for _, c := range cases {
		t.Run(c.method.Alg(), func(t *testing.T) {
			claims := claimsAt(clock, "u-"+c.method.Alg())
			claims["role"], claims["env"] = "admin", 4
			id, exp, err := a.Verify(signJWT(t, c.method, c.key, c.kid, claims))
			if err != nil {
				t.Fatal(err)
			}
			if want := (Identity{UserID: "u-" + c.method.Alg(), Role: RoleAdmin, Environment: 4}); id != want {
				t.Errorf("identity %+v, want %+v", id, want)
			}
			if exp.Unix() != claims["exp"].(int64) {
				t.Errorf("expiry %v", exp)
			}
			// The same claims under another kid's key are refused.
			if _, _, err := a.Verify(signJWT(t, c.method, c.key, "nope", claims)); err == nil {
				t.Error("accepted under an unknown kid")
			}
		})
	}
	// The "nope" tokens asked for refreshes within the minimum interval of
	// the start fetch (the clock did not move): none was made.
	if got := srv.fetches.Load(); got != 1 {
		t.Errorf("%d fetches, want 1", got)
	}
}

// TestJWKSAlgorithmConfusion is S4 for key sets: HS256 tokens keyed with a
// public key's bytes, alg none, and a token whose algorithm does not fit
// the type of the key its kid names are all refused.
func TestJWKSAlgorithmConfusion(t *testing.T) {
	t.Parallel()
	clock := newTestClock()
	rsaJWK := jwkOf("rsa", testRSA(), "")
	octJWK := map[string]any{"kty": "oct", "kid": "oct", "k": b64u([]byte("shared-secret-shared-secret-0123456"))}
	srv := newJWKSServer(t, rsaJWK, jwkOf("ec", testEC256(), ""), octJWK)
	keysOnly := jwksAuth(t, clock, nil, Config{}, srv)
	withSecret := jwksAuth(t, clock, nil, Config{Secret: authTestSecret}, srv)

	der, err := x509.MarshalPKIXPublicKey(&testRSA().PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	jwkJSON, _ := json.Marshal(rsaJWK)
	claims := claimsAt(clock, "u1")
	hmacWith := map[string][]byte{
		"DER": der, "PEM": pemBytes, "modulus": testRSA().N.Bytes(), "JWK JSON": jwkJSON,
		"oct key": []byte("shared-secret-shared-secret-0123456"),
	}
	for name, key := range hmacWith {
		for _, kid := range []string{"rsa", "oct", ""} {
			tok := signJWT(t, jwt.SigningMethodHS256, key, kid, claims)
			if _, _, err := keysOnly.Verify(tok); err == nil || !strings.Contains(err.Error(), "signing method not allowed") {
				t.Errorf("HS256 keyed with the %s, kid %q, key sets only: err = %v", name, kid, err)
			}
			if _, _, err := withSecret.Verify(tok); err == nil || !strings.Contains(err.Error(), "bad signature") {
				t.Errorf("HS256 keyed with the %s, kid %q, with a secret: err = %v", name, kid, err)
			}
		}
	}
	none := signJWT(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "rsa", claims)
	for _, a := range []*Authenticator{keysOnly, withSecret} {
		if _, _, err := a.Verify(none); err == nil || !strings.Contains(err.Error(), "signing method not allowed") {
			t.Errorf("alg none: err = %v", err)
		}
	}
	// A key pgcast does hold, under an algorithm of another key type.
	ecAsRSA := signJWT(t, jwt.SigningMethodRS256, testRSA(), "ec", claims)
	if _, _, err := keysOnly.Verify(ecAsRSA); err == nil || !strings.Contains(err.Error(), `key "ec" is a EC P-256 key for ES256, not RS256`) {
		t.Errorf("RS256 against an EC key: err = %v", err)
	}
	rsaAsEC := signJWT(t, jwt.SigningMethodES256, testEC256(), "rsa", claims)
	if _, _, err := keysOnly.Verify(rsaAsEC); err == nil || !strings.Contains(err.Error(), "not ES256") {
		t.Errorf("ES256 against an RSA key: err = %v", err)
	}
	wrongCurve := signJWT(t, jwt.SigningMethodES384, testEC384(), "ec", claims)
	if _, _, err := keysOnly.Verify(wrongCurve); err == nil || !strings.Contains(err.Error(), "not ES384") {
		t.Errorf("ES384 against a P-256 key: err = %v", err)
	}
	// A PS256 signature is no RS256 signature.
	ps := strings.Split(signJWT(t, jwt.SigningMethodPS256, testRSA(), "rsa", claims), ".")
	rs := strings.Split(signJWT(t, jwt.SigningMethodRS256, testRSA(), "rsa", claims), ".")
	if _, _, err := keysOnly.Verify(rs[0] + "." + rs[1] + "." + ps[2]); err == nil || !strings.Contains(err.Error(), "bad signature") {
		t.Errorf("RS256 header with a PSS signature: err = %v", err)
	}
	// crit names extensions pgcast does not understand; a kid must be a
	// string.
	crit := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	crit.Header["kid"], crit.Header["crit"] = "rsa", []string{"exp"}
	critTok, _ := crit.SignedString(testRSA())
	if _, _, err := keysOnly.Verify(critTok); err == nil || !strings.Contains(err.Error(), "crit") {
		t.Errorf("crit header: err = %v", err)
	}
	numKid := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	numKid.Header["kid"] = 7
	numKidTok, _ := numKid.SignedString(testRSA())
	if _, _, err := keysOnly.Verify(numKidTok); err == nil || !strings.Contains(err.Error(), "kid header must be a string") {
		t.Errorf("numeric kid: err = %v", err)
	}
	// The secret still verifies HS256 next to the key sets.
	if _, _, err := withSecret.Verify(signJWT(t, jwt.SigningMethodHS256, authTestSecret, "", claims)); err != nil {
		t.Errorf("HS256 with the secret: %v", err)
	}
}

// TestJWKSNoKid: a token without kid is tried against every key of its
// algorithm's type, and only those.
func TestJWKSNoKid(t *testing.T) {
	t.Parallel()
	clock := newTestClock()
	srv := newJWKSServer(t, jwkOf("a", testRSA(), ""), jwkOf("b", testRSA2(), "RS256"), jwkOf("ec", testEC256(), ""))
	a := jwksAuth(t, clock, nil, Config{}, srv)
	for _, k := range []any{testRSA(), testRSA2()} {
		if id, _, err := a.Verify(signJWT(t, jwt.SigningMethodRS256, k, "", claimsAt(clock, "u1"))); err != nil || id.UserID != "u1" {
			t.Errorf("RS256 without kid: %+v, %v", id, err)
		}
	}
	// Key b is RS256 only: its PS256 tokens find no key (a takes PS256 but
	// is not the signer).
	if _, _, err := a.Verify(signJWT(t, jwt.SigningMethodPS256, testRSA2(), "", claimsAt(clock, "u1"))); err == nil || !strings.Contains(err.Error(), "bad signature") {
		t.Errorf("PS256 by an RS256-only key: %v", err)
	}
	if _, _, err := a.Verify(signJWT(t, jwt.SigningMethodEdDSA, testEd25519(), "", claimsAt(clock, "u1"))); err == nil || !strings.Contains(err.Error(), "no key for EdDSA") {
		t.Errorf("EdDSA without a key: %v", err)
	}
}

// TestJWKSRotation: a new kid is picked up without a restart (one refresh,
// caused by its first token), and a withdrawn key verifies until the cache
// age of the set that had it, then no more.
func TestJWKSRotation(t *testing.T) {
	t.Parallel()
	clock := newTestClock()
	reg := prometheus.NewRegistry()
	srv := newJWKSServer(t, jwkOf("k1", testRSA(), ""))
	a := jwksAuth(t, clock, reg, Config{}, srv)
	tok1 := signJWT(t, jwt.SigningMethodRS256, testRSA(), "k1", jwt.MapClaims{"sub": "u1", "exp": clock.Now().Add(24 * time.Hour).Unix()})
	tok2 := signJWT(t, jwt.SigningMethodRS256, testRSA2(), "k2", jwt.MapClaims{"sub": "u2", "exp": clock.Now().Add(24 * time.Hour).Unix()})
	if _, _, err := a.Verify(tok1); err != nil {
		t.Fatal(err)
	}
	if n := srv.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches at start", n)
	}
	// Within the minimum refresh interval of the start fetch, the new kid
	// waits; past it, its first token fetches.
	srv.setKeys(jwkOf("k1", testRSA(), ""), jwkOf("k2", testRSA2(), ""))
	if _, _, err := a.Verify(tok2); err == nil {
		t.Fatal("refreshed within the minimum interval")
	}
	clock.Advance(31 * time.Second)
	if id, _, err := a.Verify(tok2); err != nil || id.UserID != "u2" {
		t.Fatalf("new kid: %+v, %v", id, err)
	}
	if n := srv.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches after the new kid, want 2", n)
	}
	// k1 is withdrawn: still good within the set's max-age (300 s).
	srv.setKeys(jwkOf("k2", testRSA2(), ""))
	clock.Advance(299 * time.Second)
	for range 5 {
		if _, _, err := a.Verify(tok1); err != nil {
			t.Fatalf("withdrawn key refused before its cache age: %v", err)
		}
	}
	if n := srv.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches within the cache age, want 2", n)
	}
	// Past it, the next token wakes the scheduled refresh, after which k1
	// is unknown.
	clock.Advance(2 * time.Second)
	waitFor(t, "k1 to be dropped", func() bool {
		_, _, err := a.Verify(tok1)
		return err != nil && strings.Contains(err.Error(), `unknown key id "k1"`)
	})
	if _, _, err := a.Verify(tok2); err != nil {
		t.Fatalf("k2 after the refresh: %v", err)
	}
	// The k1 tokens asked for refreshes, within the minimum interval of
	// the scheduled one: none was made.
	if n := srv.fetches.Load(); n != 3 {
		t.Errorf("%d fetches, want 3", n)
	}
	if v := metricValue(t, reg, "pgcast_jwks_refresh_total", map[string]string{"url": srv.URL, "result": "ok"}); v != 3 {
		t.Errorf("pgcast_jwks_refresh_total{result=ok} = %v, want 3", v)
	}
	if v := metricValue(t, reg, "pgcast_jwks_keys", map[string]string{"url": srv.URL}); v != 1 {
		t.Errorf("pgcast_jwks_keys = %v, want 1", v)
	}
	if v := metricValue(t, reg, "pgcast_jwks_refresh_limited_total", map[string]string{"url": srv.URL}); v < 1 {
		t.Errorf("pgcast_jwks_refresh_limited_total = %v, want ≥ 1", v)
	}
}

// TestJWKSUnknownKidFlood: however many tokens with made-up kids arrive, in
// a row or at once, a URL is fetched at most once per minimum refresh
// interval.
func TestJWKSUnknownKidFlood(t *testing.T) {
	t.Parallel()
	clock := newTestClock()
	reg := prometheus.NewRegistry()
	srv := newJWKSServer(t, jwkOf("k1", testRSA(), ""))
	a := jwksAuth(t, clock, reg, Config{JWKS: JWKSConfig{MinRefreshInterval: 30 * time.Second}}, srv)
	bogus := func(i int) string {
		return signJWT(t, jwt.SigningMethodRS256, testRSA(), fmt.Sprintf("bogus-%d", i), claimsAt(clock, "u1"))
	}
	flood := func(round int) {
		var wg sync.WaitGroup
		for g := range 20 {
			wg.Go(func() {
				for i := range 10 {
					if _, _, err := a.Verify(bogus(round*1000 + g*10 + i)); err == nil {
						t.Error("accepted a bogus kid")
					}
				}
			})
		}
		wg.Wait()
	}
	flood(0)
	if n := srv.fetches.Load(); n > 2 {
		t.Fatalf("%d fetches after a flood of 200 bogus kids, want at most 2 (start + 1)", n)
	}
	clock.Advance(10 * time.Second)
	flood(1)
	if n := srv.fetches.Load(); n > 2 {
		t.Fatalf("%d fetches within the interval, want at most 2", n)
	}
	clock.Advance(25 * time.Second)
	flood(2)
	if n := srv.fetches.Load(); n > 3 {
		t.Fatalf("%d fetches after the interval, want at most 3", n)
	}
	if v := metricValue(t, reg, "pgcast_jwt_unknown_kid_total", nil); v != 600 {
		t.Errorf("pgcast_jwt_unknown_kid_total = %v, want 600", v)
	}
	if v := metricValue(t, reg, "pgcast_jwks_refresh_limited_total", map[string]string{"url": srv.URL}); v < 500 {
		t.Errorf("pgcast_jwks_refresh_limited_total = %v, want most of the 600", v)
	}
}

// TestJWKSRefreshCoalesced: tokens with a new kid that arrive while its
// refresh is in flight wait for that refresh (one fetch) and all pass.
func TestJWKSRefreshCoalesced(t *testing.T) {
	t.Parallel()
	clock := newTestClock()
	srv := newJWKSServer(t, jwkOf("k1", testRSA(), ""))
	a := jwksAuth(t, clock, nil, Config{}, srv)
	const n = 20
	awaiting := make(chan struct{}, n)
	a.testHookAwaiting = func() { awaiting <- struct{}{} }
	clock.Advance(time.Minute) // past the minimum refresh interval of the start fetch
	hold := make(chan struct{})
	srv.mu.Lock()
	srv.hold = hold
	srv.mu.Unlock()
	srv.setKeys(jwkOf("k1", testRSA(), ""), jwkOf("k2", testRSA2(), ""))
	tok := signJWT(t, jwt.SigningMethodRS256, testRSA2(), "k2", claimsAt(clock, "u2"))
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range n {
		wg.Go(func() {
			if _, _, err := a.Verify(tok); err != nil {
				failed.Add(1)
				t.Errorf("verify during the refresh: %v", err)
			}
		})
	}
	<-srv.holding // the refresh is in flight
	for range n {
		select {
		case <-awaiting:
		case <-time.After(20 * time.Second):
			t.Fatal("the tokens did not all wait for the refresh")
		}
	}
	close(hold)
	wg.Wait()
	if got := srv.fetches.Load(); got != 2 {
		t.Errorf("%d fetches, want 2 (start + one coalesced refresh)", got)
	}
}

// TestJWKSProviderDownAtStart: a provider that fails at start does not fail
// Start, but leaves the node not ready with the reason, and its tokens
// refused, until a retry gets the keys.
func TestJWKSProviderDownAtStart(t *testing.T) {
	t.Parallel()
	clock := newTestClock()
	reg := prometheus.NewRegistry()
	srv := newJWKSServer(t, jwkOf("k1", testRSA(), ""))
	srv.setStatus(http.StatusServiceUnavailable)
	a := jwksAuth(t, clock, reg, Config{}, srv)
	ready, detail := a.KeyStatus()
	if ready || !strings.Contains(detail, srv.URL+": no keys: jwks: fetch "+srv.URL+": status 503") {
		t.Fatalf("KeyStatus = %v, %q", ready, detail)
	}
	tok := signJWT(t, jwt.SigningMethodRS256, testRSA(), "k1", claimsAt(clock, "u1"))
	if _, _, err := a.Verify(tok); !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), `unknown key id "k1"`) {
		t.Fatalf("token without keys: %v", err)
	}
	if v := metricValue(t, reg, "pgcast_jwks_refresh_total", map[string]string{"result": "error"}); v < 1 {
		t.Errorf("pgcast_jwks_refresh_total{result=error} = %v", v)
	}
	// The provider comes back; past the backoff (and the minimum refresh
	// interval) a token causes the retry.
	srv.setStatus(0)
	clock.Advance(time.Minute)
	waitFor(t, "the keys", func() bool { _, _, err := a.Verify(tok); return err == nil })
	if ready, detail := a.KeyStatus(); !ready || detail != "ok" {
		t.Errorf("KeyStatus after recovery = %v, %q", ready, detail)
	}
}

// TestJWKSUnreachableAtStart: nothing listens at the URL.
func TestJWKSUnreachableAtStart(t *testing.T) {
	t.Parallel()
	srv := newJWKSServer(t)
	url := srv.URL
	srv.Close()
	a, err := NewAuthenticator(Config{JWKSURLs: []string{url}, JWKS: JWKSConfig{HTTPClient: srv.Client()}})
	if err != nil {
		t.Fatal(err)
	}
	if _, detail := a.KeyStatus(); !strings.Contains(detail, "not started") {
		t.Errorf("before Start: %q", detail)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatalf("Start failed on an unreachable provider: %v", err)
	}
	defer func() { _ = a.Stop(context.Background()) }()
	ready, detail := a.KeyStatus()
	if ready || !strings.Contains(detail, "no keys") || !strings.Contains(detail, "connect") {
		t.Errorf("KeyStatus = %v, %q", ready, detail)
	}
}

// TestJWKSProviderDownMidRun: once keys are cached, a failing provider
// leaves them working; readiness stays, with the failure in its detail and
// the metrics.
func TestJWKSProviderDownMidRun(t *testing.T) {
	t.Parallel()
	clock := newTestClock()
	reg := prometheus.NewRegistry()
	srv := newJWKSServer(t, jwkOf("k1", testRSA(), ""))
	a := jwksAuth(t, clock, reg, Config{}, srv)
	success := metricValue(t, reg, "pgcast_jwks_last_success_timestamp_seconds", map[string]string{"url": srv.URL})
	if success < float64(clock.Now().Add(-time.Minute).Unix()) {
		t.Fatalf("last success %v", success)
	}
	srv.setStatus(http.StatusInternalServerError)
	clock.Advance(time.Hour) // past the max-age: the next token wakes the refresh
	tok := signJWT(t, jwt.SigningMethodRS256, testRSA(), "k1", claimsAt(clock, "u1"))
	errorsSeen := func() float64 {
		return metricValue(t, reg, "pgcast_jwks_refresh_total", map[string]string{"url": srv.URL, "result": "error"})
	}
	waitFor(t, "a failed refresh", func() bool {
		if _, _, err := a.Verify(tok); err != nil {
			t.Fatalf("cached key refused while the provider is down: %v", err)
		}
		return errorsSeen() >= 1
	})
	ready, detail := a.KeyStatus()
	if !ready || !strings.Contains(detail, "refresh failing since") || !strings.Contains(detail, "status 500") || !strings.Contains(detail, "serving 1 keys") {
		t.Errorf("KeyStatus = %v, %q", ready, detail)
	}
	if v := metricValue(t, reg, "pgcast_jwks_last_success_timestamp_seconds", map[string]string{"url": srv.URL}); v != success {
		t.Errorf("last success moved from %v to %v on a failure", success, v)
	}
	if v := metricValue(t, reg, "pgcast_jwks_keys", map[string]string{"url": srv.URL}); v != 1 {
		t.Errorf("pgcast_jwks_keys = %v", v)
	}
	// Failures back off: the next attempts are not made on every token.
	before := srv.fetches.Load()
	for range 50 {
		if _, _, err := a.Verify(tok); err != nil {
			t.Fatal(err)
		}
	}
	if got := srv.fetches.Load(); got > before+1 {
		t.Errorf("%d fetches for 50 tokens during the backoff", got-before)
	}
}

// TestJWKSBounds: an oversized body, too many keys, a set without a usable
// key and a slow provider are all failed fetches.
func TestJWKSBounds(t *testing.T) {
	t.Parallel()
	many := make([]map[string]any, 101)
	for i := range many {
		many[i] = jwkOf(fmt.Sprint(i), testEC256(), "")
	}
	manyBody, _ := json.Marshal(map[string]any{"keys": many})
	cases := []struct {
		name string
		body []byte
		want string
	}{
		{"body over 1 MiB", []byte(`{"keys":[],"pad":"` + strings.Repeat("x", 1<<20) + `"}`), "body larger than 1048576 bytes"},
		{"101 keys", manyBody, "101 keys, more than the 100 allowed"},
		{"no usable key", []byte(`{"keys":[{"kty":"RSA","kid":"enc","use":"enc","n":"AQAB","e":"AQAB"}]}`), `no usable signing key among 1 (key 0: kid "enc": use "enc" is not sig)`},
		{"not a set", []byte(`[1,2]`), "not a JWK set"},
		{"no keys member", []byte(`{}`), `no "keys" array`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			srv := newJWKSServer(t)
			srv.setBody(c.body)
			a := jwksAuth(t, nil, nil, Config{}, srv)
			if ready, detail := a.KeyStatus(); ready || !strings.Contains(detail, c.want) {
				t.Errorf("KeyStatus = %v, %q; want it to contain %q", ready, detail, c.want)
			}
		})
	}
	t.Run("slow", func(t *testing.T) {
		t.Parallel()
		srv := newJWKSServer(t, jwkOf("k1", testRSA(), ""))
		srv.mu.Lock()
		srv.hold = make(chan struct{}) // never released: the client gives up
		srv.mu.Unlock()
		start := time.Now()
		a := jwksAuth(t, nil, nil, Config{JWKS: JWKSConfig{FetchTimeout: 200 * time.Millisecond}}, srv)
		if ready, detail := a.KeyStatus(); ready || !strings.Contains(detail, "deadline exceeded") {
			t.Errorf("KeyStatus = %v, %q", ready, detail)
		}
		if d := time.Since(start); d > 15*time.Second {
			t.Errorf("Start took %s with a 200ms fetch timeout", d)
		}
	})
}

// TestCacheAge: Cache-Control decides the cache age, within bounds.
func TestCacheAge(t *testing.T) {
	t.Parallel()
	f := &fetcher{cfg: JWKSConfig{}.withDefaults()}
	for _, c := range []struct {
		headers map[string][]string
		want    time.Duration
	}{
		{nil, time.Hour},
		{map[string][]string{"Cache-Control": {"public, max-age=600"}}, 10 * time.Minute},
		{map[string][]string{"Cache-Control": {"public", "max-age=600, must-revalidate"}}, 10 * time.Minute},
		{map[string][]string{"Cache-Control": {"Max-Age=\"900\""}}, 15 * time.Minute},
		{map[string][]string{"Cache-Control": {"max-age=5"}}, 30 * time.Second},
		{map[string][]string{"Cache-Control": {"max-age=99999999999999"}}, 12 * time.Hour},
		{map[string][]string{"Cache-Control": {"no-store"}}, 30 * time.Second},
		{map[string][]string{"Cache-Control": {"no-cache, max-age=600"}}, 30 * time.Second},
		{map[string][]string{"Cache-Control": {"max-age=600"}, "Age": {"300"}}, 5 * time.Minute},
		{map[string][]string{"Cache-Control": {"max-age=600"}, "Age": {"3000"}}, 30 * time.Second},
		{map[string][]string{"Cache-Control": {"max-age=-1"}}, time.Hour},
		{map[string][]string{"Cache-Control": {"private"}}, time.Hour},
	} {
		h := http.Header{}
		for k, vs := range c.headers {
			for _, v := range vs {
				h.Add(k, v)
			}
		}
		if got := f.cacheAge(h); got != c.want {
			t.Errorf("cacheAge(%v) = %s, want %s", c.headers, got, c.want)
		}
	}
}

// TestAuthenticatorLifecycle: Start once, Stop idempotent (and fine before
// Start), a secret-only authenticator needs neither, Mint needs the secret.
func TestAuthenticatorLifecycle(t *testing.T) {
	t.Parallel()
	srv := newJWKSServer(t, jwkOf("k1", testEd25519(), ""))
	a, err := NewAuthenticator(Config{JWKSURLs: []string{srv.URL}, JWKS: JWKSConfig{HTTPClient: srv.Client()}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := a.Stop(ctx); err != nil {
		t.Fatalf("Stop before Start: %v", err)
	}
	tok := signJWT(t, jwt.SigningMethodEdDSA, testEd25519(), "k1", jwt.MapClaims{"sub": "u", "exp": time.Now().Add(time.Hour).Unix()})
	if _, _, err := a.Verify(tok); err == nil {
		t.Fatal("verified before Start")
	}
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Start(ctx); err == nil {
		t.Error("second Start accepted")
	}
	if _, _, err := a.Verify(tok); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Mint("u", RoleAdmin, 1, time.Hour); err == nil || !strings.Contains(err.Error(), "no HS256 secret") {
		t.Errorf("Mint without a secret: %v", err)
	}
	for range 2 {
		if err := a.Stop(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Stopped: the cached keys still verify, nothing is fetched.
	if _, _, err := a.Verify(tok); err != nil {
		t.Errorf("after Stop: %v", err)
	}
	if _, detail := a.KeyStatus(); detail != "ok" {
		t.Errorf("KeyStatus after Stop: %q", detail)
	}
	plain := newTestAuth(t, Config{})
	if plain.FetchesKeys() {
		t.Error("a secret-only authenticator fetches keys")
	}
	if err := plain.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := plain.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestNewAuthenticatorKeySetConfig: configuration errors name the field.
func TestNewAuthenticatorKeySetConfig(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{JWKSURLs: []string{"ftp://idp.example/jwks"}}, "Config.JWKSURLs"},
		{Config{JWKSURLs: []string{"/jwks"}}, "absolute http(s) URL"},
		{Config{OIDCIssuer: "idp.example"}, "Config.OIDCIssuer"},
		{Config{JWKSURLs: []string{"https://idp.example/jwks"}, Secret: []byte("short")}, "at least 32"},
		{Config{JWKSURLs: []string{"https://idp.example/jwks"}, JWKS: JWKSConfig{MaxCacheAge: time.Second}}, "MaxCacheAge"},
		{Config{JWKSURLs: []string{"https://idp.example/jwks"}, JWKS: JWKSConfig{RetryMin: time.Hour}}, "RetryMax"},
		{Config{Secret: authTestSecret, Claims: ClaimsConfig{Role: ".role"}}, "ClaimsConfig.Role"},
		{Config{Secret: authTestSecret, Claims: ClaimsConfig{Env: strings.Repeat("a", 300)}}, "ClaimsConfig.Env"},
		{Config{Secret: authTestSecret, Claims: ClaimsConfig{AdminRoles: []string{}}}, "AdminRoles"},
		{Config{Secret: authTestSecret, Claims: ClaimsConfig{AuthenticatedRoles: []string{""}}}, "must not be empty"},
		{Config{Secret: authTestSecret, Claims: ClaimsConfig{FixedEnv: -1}}, "FixedEnv"},
	} {
		if _, err := NewAuthenticator(c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err = %v, want %q", c.cfg, err, c.want)
		}
	}
	// Key sets alone need no secret.
	if _, err := NewAuthenticator(Config{JWKSURLs: []string{"https://idp.example/jwks"}}); err != nil {
		t.Error(err)
	}
}
