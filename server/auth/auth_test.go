package auth

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgcast/pgcast/internal/pgtest"
)

var authTestSecret = []byte("pgcast-test-secret-0123456789abcdef")

func newTestAuth(t *testing.T, cfg Config) *Authenticator {
	t.Helper()
	if cfg.Secret == nil {
		cfg.Secret = authTestSecret
	}
	a, err := NewAuthenticator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// rawToken builds a JWT from literal header and payload JSON and signs it
// with HMAC-SHA256 under key whatever the header's alg says, so tests control
// every byte the verifier sees.
func rawToken(header, payload string, key []byte) string {
	in := b64(header) + "." + b64(payload)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(in))
	return in + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

const hs256 = `{"alg":"HS256","typ":"JWT"}`

func expIn(d time.Duration) string { return authJSONInt(time.Now().Add(d).Unix()) }

func authJSONInt(v int64) string { b, _ := json.Marshal(v); return string(b) }

func signWith(t *testing.T, m jwt.SigningMethod, claims jwt.MapClaims, key any) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestNewAuthenticatorSecret(t *testing.T) {
	t.Parallel()
	if _, err := NewAuthenticator(Config{}); err == nil || !strings.Contains(err.Error(), "Secret is required") {
		t.Errorf("no secret: err = %v", err)
	}
	short := "tooshort-but-secret"
	_, err := NewAuthenticator(Config{Secret: []byte(short)})
	if err == nil || !strings.Contains(err.Error(), "at least 32") {
		t.Errorf("short secret: err = %v", err)
	}
	if err != nil && strings.Contains(err.Error(), short) {
		t.Errorf("error repeats the secret: %v", err)
	}
	if _, err := NewAuthenticator(Config{Secret: authTestSecret, Leeway: -time.Second}); err == nil {
		t.Error("negative leeway accepted")
	}
	// The authenticator keeps its own copy of the secret.
	sec := bytes.Clone(authTestSecret)
	a := newTestAuth(t, Config{Secret: sec})
	tok, err := a.Mint("u1", RoleAuthenticated, 1, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	sec[0] ^= 0xff
	if _, _, err := a.Verify(tok); err != nil {
		t.Errorf("changing the caller's slice changed the key: %v", err)
	}
}

func TestVerifyAccepts(t *testing.T) {
	t.Parallel()
	a := newTestAuth(t, Config{})
	cases := []struct {
		name    string
		payload string
		want    Identity
	}{
		{"defaults", `{"sub":"u1","exp":` + expIn(time.Hour) + `}`, Identity{"u1", RoleAuthenticated, 1}},
		{"admin env 7", `{"sub":"u2","role":"admin","env":7,"exp":` + expIn(time.Hour) + `}`, Identity{"u2", RoleAdmin, 7}},
		{"authenticated", `{"sub":"u3","role":"authenticated","env":2,"exp":` + expIn(time.Hour) + `}`, Identity{"u3", RoleAuthenticated, 2}},
		{"integral float env", `{"sub":"u4","env":3.0,"exp":` + expIn(time.Hour) + `}`, Identity{"u4", RoleAuthenticated, 3}},
		{"big env", `{"sub":"u5","env":9007199254740993,"exp":` + expIn(time.Hour) + `}`, Identity{"u5", RoleAuthenticated, 9007199254740993}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			got, expiry, err := a.Verify(rawToken(hs256, c.payload, authTestSecret))
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("identity = %+v, want %+v", got, c.want)
			}
			if d := time.Until(expiry); d < 59*time.Minute || d > time.Hour {
				t.Errorf("expiry in %s, want ~1h", d)
			}
		})
	}

	t.Run("minted", func(t *testing.T) {
		t.Parallel()
		a := newTestAuth(t, Config{Issuer: "https://idp.example", Audience: "pgcast"})
		tok, err := a.Mint("u9", RoleAdmin, 4, 10*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		got, _, err := a.Verify(tok)
		if err != nil || got != (Identity{"u9", RoleAdmin, 4}) || !got.IsAdmin() || got.Anonymous() {
			t.Errorf("Verify(Mint) = %+v, %v", got, err)
		}
	})

	t.Run("leeway", func(t *testing.T) {
		t.Parallel()
		a := newTestAuth(t, Config{Leeway: 30 * time.Second})
		if _, _, err := a.Verify(rawToken(hs256, `{"sub":"u1","exp":`+expIn(-10*time.Second)+`}`, authTestSecret)); err != nil {
			t.Errorf("token expired 10 s ago rejected despite 30 s leeway: %v", err)
		}
	})
}

// TestVerifyRejects is S4: every token below must be refused, with the
// right sentinel, and no error may contain the token.
func TestVerifyRejects(t *testing.T) {
	t.Parallel()
	plain := newTestAuth(t, Config{})
	strict := newTestAuth(t, Config{Issuer: "https://idp.example", Audience: "pgcast"})
	good := `"sub":"u1","exp":` + expIn(time.Hour)
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(time.Hour).Unix()
	cases := []struct {
		name    string
		auth    *Authenticator
		token   string
		want    error
		message string // substring of the error
	}{
		{"alg none", plain, b64(`{"alg":"none","typ":"JWT"}`) + "." + b64(`{`+good+`}`) + ".", ErrInvalidToken, "signing method not allowed"},
		{"alg none via library", plain, signWith(t, jwt.SigningMethodNone, jwt.MapClaims{"sub": "u1", "exp": future}, jwt.UnsafeAllowNoneSignatureType), ErrInvalidToken, "signing method not allowed"},
		{"alg None capitalised", plain, rawToken(`{"alg":"None"}`, `{`+good+`}`, authTestSecret), ErrInvalidToken, "signing method not allowed"},
		{"HS512 same secret", plain, signWith(t, jwt.SigningMethodHS512, jwt.MapClaims{"sub": "u1", "exp": future}, authTestSecret), ErrInvalidToken, "signing method not allowed"},
		{"HS384 same secret", plain, signWith(t, jwt.SigningMethodHS384, jwt.MapClaims{"sub": "u1", "exp": future}, authTestSecret), ErrInvalidToken, "signing method not allowed"},
		{"RS256 header, HMAC signature (alg confusion)", plain, rawToken(`{"alg":"RS256","typ":"JWT"}`, `{`+good+`}`, authTestSecret), ErrInvalidToken, "signing method not allowed"},
		{"ES256 properly signed", plain, signWith(t, jwt.SigningMethodES256, jwt.MapClaims{"sub": "u1", "exp": future}, ecKey), ErrInvalidToken, "signing method not allowed"},
		{"unknown alg", plain, rawToken(`{"alg":"XX1"}`, `{`+good+`}`, authTestSecret), ErrInvalidToken, "signing method not allowed"},
		{"expired", plain, rawToken(hs256, `{"sub":"u1","exp":`+expIn(-time.Minute)+`}`, authTestSecret), ErrTokenExpired, "token expired"},
		{"expired just now", plain, rawToken(hs256, `{"sub":"u1","exp":`+expIn(0)+`}`, authTestSecret), ErrTokenExpired, "token expired"},
		{"missing exp", plain, rawToken(hs256, `{"sub":"u1"}`, authTestSecret), ErrInvalidToken, "exp claim is required"},
		{"exp a string", plain, rawToken(hs256, `{"sub":"u1","exp":"tomorrow"}`, authTestSecret), ErrInvalidToken, "malformed"},
		{"not valid yet", plain, rawToken(hs256, `{`+good+`,"nbf":`+expIn(time.Minute)+`}`, authTestSecret), ErrInvalidToken, "not valid yet"},
		{"bad signature", plain, rawToken(hs256, `{`+good+`}`, []byte("another-secret-another-secret-0123")), ErrInvalidToken, "bad signature"},
		{"tampered payload", plain, func() string {
			parts := strings.Split(rawToken(hs256, `{"sub":"u1","exp":`+expIn(time.Hour)+`}`, authTestSecret), ".")
			return parts[0] + "." + b64(`{"sub":"u1","role":"admin","exp":`+expIn(time.Hour)+`}`) + "." + parts[2]
		}(), ErrInvalidToken, "bad signature"},
		{"wrong issuer", strict, rawToken(hs256, `{`+good+`,"iss":"https://evil.example","aud":"pgcast"}`, authTestSecret), ErrInvalidToken, "wrong issuer"},
		{"missing issuer", strict, rawToken(hs256, `{`+good+`,"aud":"pgcast"}`, authTestSecret), ErrInvalidToken, "iss claim is required"},
		{"wrong audience", strict, rawToken(hs256, `{`+good+`,"iss":"https://idp.example","aud":"other"}`, authTestSecret), ErrInvalidToken, "wrong audience"},
		{"missing audience", strict, rawToken(hs256, `{`+good+`,"iss":"https://idp.example"}`, authTestSecret), ErrInvalidToken, "aud claim is required"},
		{"expired and wrong issuer", strict, rawToken(hs256, `{"sub":"u1","exp":`+expIn(-time.Minute)+`,"iss":"x","aud":"pgcast"}`, authTestSecret), ErrInvalidToken, "wrong issuer"},
		{"expired and bad role", plain, rawToken(hs256, `{"sub":"u1","role":"root","exp":`+expIn(-time.Minute)+`}`, authTestSecret), ErrInvalidToken, "role must be"},
		{"non-string sub", plain, rawToken(hs256, `{"sub":123,"exp":`+expIn(time.Hour)+`}`, authTestSecret), ErrInvalidToken, `claim "sub" has the wrong type`},
		{"missing sub", plain, rawToken(hs256, `{"exp":`+expIn(time.Hour)+`}`, authTestSecret), ErrInvalidToken, "sub is required"},
		{"empty sub", plain, rawToken(hs256, `{"sub":"","exp":`+expIn(time.Hour)+`}`, authTestSecret), ErrInvalidToken, "sub is required"},
		{"role root", plain, rawToken(hs256, `{`+good+`,"role":"root"}`, authTestSecret), ErrInvalidToken, "role must be"},
		{"role anonymous", plain, rawToken(hs256, `{`+good+`,"role":"anonymous"}`, authTestSecret), ErrInvalidToken, "role must be"},
		{"role Admin", plain, rawToken(hs256, `{`+good+`,"role":"Admin"}`, authTestSecret), ErrInvalidToken, "role must be"},
		{"role number", plain, rawToken(hs256, `{`+good+`,"role":1}`, authTestSecret), ErrInvalidToken, "role must be a string"},
		{"role null", plain, rawToken(hs256, `{`+good+`,"role":null}`, authTestSecret), ErrInvalidToken, "role must be a string"},
		{"env string", plain, rawToken(hs256, `{`+good+`,"env":"1"}`, authTestSecret), ErrInvalidToken, "env must be an integer"},
		{"env fraction", plain, rawToken(hs256, `{`+good+`,"env":1.5}`, authTestSecret), ErrInvalidToken, "env must be an integer"},
		{"env zero", plain, rawToken(hs256, `{`+good+`,"env":0}`, authTestSecret), ErrInvalidToken, "env must be an integer"},
		{"env negative", plain, rawToken(hs256, `{`+good+`,"env":-3}`, authTestSecret), ErrInvalidToken, "env must be an integer"},
		{"env null", plain, rawToken(hs256, `{`+good+`,"env":null}`, authTestSecret), ErrInvalidToken, "env must be an integer"},
		{"env bool", plain, rawToken(hs256, `{`+good+`,"env":true}`, authTestSecret), ErrInvalidToken, "env must be an integer"},
		{"env huge float", plain, rawToken(hs256, `{`+good+`,"env":1e300}`, authTestSecret), ErrInvalidToken, "env must be an integer"},
		{"two bad claims", plain, rawToken(hs256, `{`+good+`,"role":"root","env":"1"}`, authTestSecret), ErrInvalidToken, "role must be"},
		{"garbage", plain, "not-a-jwt", ErrInvalidToken, "malformed"},
		{"three garbage parts", plain, "a.b.c", ErrInvalidToken, "malformed"},
		{"empty", plain, "", ErrInvalidToken, "empty token"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			id, _, err := c.auth.Verify(c.token)
			if err == nil {
				t.Fatalf("accepted: %+v", id)
			}
			if !errors.Is(err, c.want) {
				t.Errorf("err = %v, want %v", err, c.want)
			}
			other := ErrInvalidToken
			if c.want == ErrInvalidToken {
				other = ErrTokenExpired
			}
			if errors.Is(err, other) {
				t.Errorf("err = %v is both %v and %v", err, c.want, other)
			}
			if !strings.Contains(err.Error(), c.message) {
				t.Errorf("err = %q, want it to contain %q", err, c.message)
			}
			if c.token != "" && strings.Contains(err.Error(), c.token) {
				t.Errorf("error contains the token: %v", err)
			}
			if id != (Identity{}) {
				t.Errorf("identity %+v returned with an error", id)
			}
		})
	}
}

func TestMintRejectsBadInput(t *testing.T) {
	t.Parallel()
	a := newTestAuth(t, Config{})
	for _, c := range []struct {
		name string
		sub  string
		role Role
		env  int64
		ttl  time.Duration
	}{
		{"empty sub", "", RoleAdmin, 1, time.Hour},
		{"anonymous", "u1", RoleAnonymous, 1, time.Hour},
		{"unknown role", "u1", Role(9), 1, time.Hour},
		{"env 0", "u1", RoleAdmin, 0, time.Hour},
		{"ttl 0", "u1", RoleAdmin, 1, 0},
	} {
		if tok, err := a.Mint(c.sub, c.role, c.env, c.ttl); err == nil {
			t.Errorf("%s: minted %q", c.name, tok)
		}
	}
}

func TestIdentityAndRole(t *testing.T) {
	t.Parallel()
	if !(Identity{}).Anonymous() || (Identity{}).IsAdmin() {
		t.Error("zero Identity must be anonymous and not admin")
	}
	if (Identity{UserID: "u", Role: RoleAuthenticated, Environment: 1}).Anonymous() {
		t.Error("authenticated identity reported anonymous")
	}
	for _, r := range []Role{RoleAdmin, RoleAuthenticated} {
		if got, err := ParseRole(r.String()); err != nil || got != r {
			t.Errorf("ParseRole(%q) = %v, %v", r.String(), got, err)
		}
	}
	for _, s := range []string{"anonymous", "", "ADMIN", "root"} {
		if _, err := ParseRole(s); err == nil {
			t.Errorf("ParseRole(%q) accepted", s)
		}
	}
}

func TestBearerToken(t *testing.T) {
	t.Parallel()
	cases := []struct {
		headers   []string
		wantTok   string
		wantFound bool
	}{
		{nil, "", false},
		{[]string{""}, "", false},
		{[]string{"Bearer abc.def.ghi"}, "abc.def.ghi", true},
		{[]string{"bearer abc"}, "abc", true},
		{[]string{"BEARER   abc  "}, "abc", true},
		{[]string{"JWT abc"}, "abc", true},
		{[]string{"jwt abc"}, "abc", true},
		{[]string{"Basic dXNlcjpwdw=="}, "", true},
		{[]string{"Bearer"}, "", true},
		{[]string{"Bearer "}, "", true},
		{[]string{"abc.def.ghi"}, "", true},
		{[]string{"Bearer a b"}, "", true},
		{[]string{"Bearer a", "Bearer b"}, "", true},
		{[]string{"Token abc"}, "", true},
	}
	for _, c := range cases {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		for _, h := range c.headers {
			r.Header.Add("Authorization", h)
		}
		tok, ok := BearerToken(r)
		if tok != c.wantTok || ok != c.wantFound {
			t.Errorf("BearerToken(%q) = %q, %v; want %q, %v", c.headers, tok, ok, c.wantTok, c.wantFound)
		}
	}
}

// authClock is a settable clock for expiry tests.
type authClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *authClock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *authClock) Advance(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.t = c.t.Add(d) }

func newTestStore(t *testing.T, ttl time.Duration) (*TicketStore, *prometheus.Registry) {
	t.Helper()
	pool, _ := pgtest.NewPool(t)
	m := NewTicketMetrics()
	reg := prometheus.NewRegistry()
	if err := m.Register(reg); err != nil {
		t.Fatal(err)
	}
	s, err := NewTicketStore(pool, ttl, WithTicketMetrics(m))
	if err != nil {
		t.Fatal(err)
	}
	return s, reg
}

// counterValue reads a counter (with an optional reason label) from reg.
func counterValue(t *testing.T, reg *prometheus.Registry, name, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := reason == ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					match = true
				}
			}
			if match {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("metric %s{reason=%q} not found", name, reason)
	return 0
}

func ticketCount(t *testing.T, s *TicketStore) int {
	t.Helper()
	var n int
	if err := s.pool.QueryRow(context.Background(), `SELECT count(*) FROM pgcast.tickets`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestTicketSingleUse is S3: a ticket works once.
func TestTicketSingleUse(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, reg := newTestStore(t, 0)
	want := Identity{UserID: "u1", Role: RoleAdmin, Environment: 3}
	before := time.Now()
	id, expires, err := s.Issue(ctx, want)
	if err != nil {
		t.Fatal(err)
	}
	if id.Version() != 4 {
		t.Errorf("ticket is a version %d UUID, want 4", id.Version())
	}
	if d := expires.Sub(before); d < DefaultTicketTTL-time.Second || d > DefaultTicketTTL+time.Second {
		t.Errorf("ticket expires in %s, want the default %s", d, DefaultTicketTTL)
	}
	got, err := s.Redeem(ctx, id.String())
	if err != nil || got != want {
		t.Fatalf("Redeem = %+v, %v; want %+v", got, err, want)
	}
	if _, err := s.Redeem(ctx, id.String()); !errors.Is(err, ErrInvalidTicket) {
		t.Fatalf("second Redeem: err = %v, want ErrInvalidTicket", err)
	}
	if got := counterValue(t, reg, "pgcast_tickets_issued_total", ""); got != 1 {
		t.Errorf("issued = %v", got)
	}
	if got := counterValue(t, reg, "pgcast_tickets_redeemed_total", ""); got != 1 {
		t.Errorf("redeemed = %v", got)
	}
	if got := counterValue(t, reg, "pgcast_tickets_rejected_total", "used"); got != 1 {
		t.Errorf("rejected{used} = %v", got)
	}
}

func TestTicketExpired(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, reg := newTestStore(t, 10*time.Second)
	clock := &authClock{t: time.Now()}
	s.now = clock.Now
	id, expires, err := s.Issue(ctx, Identity{UserID: "u1", Role: RoleAuthenticated, Environment: 1})
	if err != nil {
		t.Fatal(err)
	}
	if !expires.Equal(clock.Now().Add(10 * time.Second).Truncate(time.Microsecond)) {
		t.Errorf("expires_at %s, want now + 10 s", expires)
	}
	clock.Advance(10 * time.Second) // expires_at <= now: expired
	if _, err := s.Redeem(ctx, id.String()); !errors.Is(err, ErrInvalidTicket) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("Redeem expired: err = %v, want ErrInvalidTicket (expired)", err)
	}
	if n := ticketCount(t, s); n != 0 {
		t.Errorf("expired ticket not deleted on redemption: %d rows", n)
	}
	if got := counterValue(t, reg, "pgcast_tickets_rejected_total", "expired"); got != 1 {
		t.Errorf("rejected{expired} = %v", got)
	}
}

func TestTicketUnknownAndMalformed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, reg := newTestStore(t, 0)
	if _, err := s.Redeem(ctx, uuid.NewString()); !errors.Is(err, ErrInvalidTicket) {
		t.Errorf("unknown uuid: err = %v", err)
	}
	// A non-UUID must be refused before any query: on a closed pool a query
	// would fail with a pool error instead of ErrInvalidTicket.
	s.pool.Close()
	for _, bad := range []string{"", "nope", "'; DROP TABLE pgcast.tickets; --", strings.Repeat("a", 10000), "00000000-0000-0000-0000-00000000000g"} {
		_, err := s.Redeem(ctx, bad)
		if !errors.Is(err, ErrInvalidTicket) {
			t.Errorf("Redeem(%.40q): err = %v, want ErrInvalidTicket", bad, err)
		}
		if bad != "" && strings.Contains(err.Error(), bad) {
			t.Errorf("error repeats the ticket: %v", err)
		}
	}
	if got := counterValue(t, reg, "pgcast_tickets_rejected_total", "invalid"); got != 5 {
		t.Errorf("rejected{invalid} = %v, want 5", got)
	}
}

// TestTicketConcurrentRedeem is S3: of 20 simultaneous redemptions of one
// ticket exactly one succeeds.
func TestTicketConcurrentRedeem(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newTestStore(t, 0)
	id, _, err := s.Issue(ctx, Identity{UserID: "u1", Role: RoleAuthenticated, Environment: 1})
	if err != nil {
		t.Fatal(err)
	}
	const n = 20
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		errs  = make([]error, n)
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, errs[i] = s.Redeem(ctx, id.String())
		}()
	}
	close(start)
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, ErrInvalidTicket):
			t.Errorf("unexpected error: %v", err)
		}
	}
	if ok != 1 {
		t.Errorf("%d of %d concurrent redemptions succeeded, want exactly 1", ok, n)
	}
}

func TestTicketIssueRules(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newTestStore(t, time.Minute)
	if _, _, err := s.Issue(ctx, Identity{}); err == nil {
		t.Error("anonymous identity got a ticket")
	}
	if _, _, err := s.Issue(ctx, Identity{UserID: "u1", Role: RoleAuthenticated}); err == nil {
		t.Error("environment 0 got a ticket")
	}
	// A ticket does not outlive the token it was issued for.
	notAfter := time.Now().Add(5 * time.Second)
	_, expires, err := s.IssueUntil(ctx, Identity{UserID: "u1", Role: RoleAuthenticated, Environment: 1}, notAfter)
	if err != nil {
		t.Fatal(err)
	}
	if expires.After(notAfter) {
		t.Errorf("ticket expires %s, after the token's %s", expires, notAfter)
	}
	if _, err := NewTicketStore(s.pool, -time.Second); err == nil {
		t.Error("negative TTL accepted")
	}
	if _, err := NewTicketStore(nil, 0); err == nil {
		t.Error("nil pool accepted")
	}
}

func TestTicketPruneExpired(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newTestStore(t, 10*time.Second)
	clock := &authClock{t: time.Now()}
	s.now = clock.Now
	ident := Identity{UserID: "u1", Role: RoleAuthenticated, Environment: 1}
	if _, _, err := s.Issue(ctx, ident); err != nil {
		t.Fatal(err)
	}
	clock.Advance(5 * time.Second)
	live, _, err := s.Issue(ctx, ident)
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(6 * time.Second) // first expired, second has 4 s left
	n, err := s.PruneExpired(ctx)
	if err != nil || n != 1 {
		t.Fatalf("PruneExpired = %d, %v; want 1", n, err)
	}
	if _, err := s.Redeem(ctx, live.String()); err != nil {
		t.Errorf("live ticket pruned: %v", err)
	}
}

func getWSAuth(h http.Handler, method, authorization string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, "/api/users/ws-auth/", nil)
	if authorization != "" {
		r.Header.Set("Authorization", authorization)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec
}

// errorDetail is the error body's "error" object.
type errorDetail struct{ Code, Message string }

func decodeError(t *testing.T, rec *httptest.ResponseRecorder) errorDetail {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var body map[string]map[string]string
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("error body is not JSON: %v: %s", err, rec.Body)
	}
	e, ok := body["error"]
	if !ok || len(body) != 1 || len(e) != 2 || e["code"] == "" || e["message"] == "" {
		t.Fatalf("error body %s, want {\"error\":{\"code\":…,\"message\":…}}", rec.Body)
	}
	return errorDetail{Code: e["code"], Message: e["message"]}
}

func TestWSAuthIssuesRedeemableTicket(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := newTestAuth(t, Config{})
	s, _ := newTestStore(t, 0)
	h := WSAuthHandler(a, s, nil)
	tok, err := a.Mint("u1", RoleAdmin, 2, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, scheme := range []string{"Bearer", "JWT", "bearer"} {
		t.Run(scheme, func(t *testing.T) {
			t.Parallel()
			before := time.Now().Truncate(time.Second)
			rec := getWSAuth(h, http.MethodGet, scheme+" "+tok)
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if cc := rec.Header().Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control %q, want no-store", cc)
			}
			var body map[string]string
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || len(body) != 2 {
				t.Fatalf("body %s: %v", rec.Body, err)
			}
			id, err := uuid.Parse(body["uuid"])
			if err != nil || id.Version() != 4 || id.String() != body["uuid"] {
				t.Errorf("uuid %q is not a canonical v4 UUID: %v", body["uuid"], err)
			}
			expires, err := time.Parse(time.RFC3339, body["expires_at"])
			if err != nil {
				t.Fatalf("expires_at %q: %v", body["expires_at"], err)
			}
			if d := expires.Sub(before); d < DefaultTicketTTL-2*time.Second || d > DefaultTicketTTL+2*time.Second {
				t.Errorf("expires_at %s is %s away, want ~%s", expires, d, DefaultTicketTTL)
			}
			got, err := s.Redeem(ctx, body["uuid"])
			if want := (Identity{"u1", RoleAdmin, 2}); err != nil || got != want {
				t.Fatalf("Redeem = %+v, %v; want %+v", got, err, want)
			}
			if _, err := s.Redeem(ctx, body["uuid"]); !errors.Is(err, ErrInvalidTicket) {
				t.Errorf("second Redeem: %v", err)
			}
		})
	}

	t.Run("ticket capped at token expiry", func(t *testing.T) {
		t.Parallel()
		short, err := a.Mint("u1", RoleAuthenticated, 1, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_, tokExp, err := a.Verify(short)
		if err != nil {
			t.Fatal(err)
		}
		rec := getWSAuth(h, http.MethodGet, "Bearer "+short)
		var body map[string]string
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		expires, err := time.Parse(time.RFC3339, body["expires_at"])
		if err != nil || expires.After(tokExp) {
			t.Errorf("ticket expires_at %s, after the token's exp %s (%v)", body["expires_at"], tokExp, err)
		}
	})
}

func TestWSAuthRejects(t *testing.T) {
	t.Parallel()
	a := newTestAuth(t, Config{})
	s, _ := newTestStore(t, 0)
	h := WSAuthHandler(a, s, nil)
	past := newTestAuth(t, Config{Now: func() time.Time { return time.Now().Add(-2 * time.Hour) }})
	expired, err := past.Mint("u1", RoleAuthenticated, 1, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	other := newTestAuth(t, Config{Secret: []byte("a-different-secret-0123456789abcdef")})
	forged, err := other.Mint("u1", RoleAdmin, 1, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, header, token, message string
	}{
		{"missing header", "", "", "missing token"},
		{"garbage token", "Bearer garbage-token-xyz", "garbage-token-xyz", "invalid token"},
		{"expired token", "Bearer " + expired, expired, "token expired"},
		{"wrong secret", "JWT " + forged, forged, "invalid token: bad signature"},
		{"basic auth", "Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA==", "invalid Authorization header"},
		{"scheme only", "Bearer", "", "invalid Authorization header"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			rec := getWSAuth(h, http.MethodGet, c.header)
			if rec.Code != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401: %s", rec.Code, rec.Body)
			}
			e := decodeError(t, rec)
			if e.Code != "unauthorized" || !strings.Contains(e.Message, c.message) {
				t.Errorf("error %+v, want code unauthorized and message containing %q", e, c.message)
			}
			if c.token != "" && strings.Contains(rec.Body.String(), c.token) {
				t.Errorf("response echoes the token: %s", rec.Body)
			}
			if rec.Header().Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			if rec.Header().Get("Cache-Control") != "no-store" {
				t.Error("401 without Cache-Control: no-store")
			}
		})
	}
	if n := ticketCount(t, s); n != 0 {
		t.Errorf("%d tickets issued to rejected callers", n)
	}

	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodHead} {
		t.Run(m, func(t *testing.T) {
			t.Parallel()
			tok, err := a.Mint("u1", RoleAdmin, 1, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			rec := getWSAuth(h, m, "Bearer "+tok)
			if rec.Code != http.StatusMethodNotAllowed {
				t.Fatalf("status %d, want 405", rec.Code)
			}
			if allow := rec.Header().Get("Allow"); allow != "GET" {
				t.Errorf("Allow %q, want GET", allow)
			}
			if e := decodeError(t, rec); e.Code != "method_not_allowed" {
				t.Errorf("code %q", e.Code)
			}
		})
	}
}

func TestWSAuthDatabaseDown(t *testing.T) {
	t.Parallel()
	a := newTestAuth(t, Config{})
	s, _ := newTestStore(t, 0)
	s.pool.Close()
	var logs bytes.Buffer
	h := WSAuthHandler(a, s, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	tok, err := a.Mint("u1", RoleAdmin, 1, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	rec := getWSAuth(h, http.MethodGet, "Bearer "+tok)
	if rec.Code != http.StatusInternalServerError {
		t.Fatalf("status %d, want 500", rec.Code)
	}
	if e := decodeError(t, rec); e.Code != "internal" {
		t.Errorf("code %q", e.Code)
	}
	if !strings.Contains(logs.String(), "issue ws ticket") {
		t.Errorf("database failure not logged: %s", logs.String())
	}
	if strings.Contains(logs.String()+rec.Body.String(), tok) {
		t.Error("token in the log or the response")
	}
}

// TestWSAuthLogsNoSecrets is S2: with Debug logging on, neither JWTs nor
// tickets reach the log, whatever the outcome.
func TestWSAuthLogsNoSecrets(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var logs bytes.Buffer // the handler runs on this goroutine only
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a := newTestAuth(t, Config{})
	s, _ := newTestStore(t, 0)
	h := WSAuthHandler(a, s, logger)

	var secrets []string
	mint := func(auth *Authenticator, ttl time.Duration) string {
		tok, err := auth.Mint("u1", RoleAdmin, 1, ttl)
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, tok)
		// The signature alone is as sensitive as the token.
		secrets = append(secrets, tok[strings.LastIndexByte(tok, '.')+1:])
		return tok
	}
	good := mint(a, time.Hour)
	expired := mint(newTestAuth(t, Config{Now: func() time.Time { return time.Now().Add(-2 * time.Hour) }}), time.Hour)
	forged := mint(newTestAuth(t, Config{Secret: []byte("a-different-secret-0123456789abcdef")}), time.Hour)

	for i := 0; i < 3; i++ {
		rec := getWSAuth(h, http.MethodGet, "Bearer "+good)
		var body map[string]string
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || rec.Code != http.StatusOK {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		secrets = append(secrets, body["uuid"], strings.ReplaceAll(body["uuid"], "-", ""))
		if _, err := s.Redeem(ctx, body["uuid"]); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Redeem(ctx, body["uuid"]); err == nil {
			t.Fatal("ticket redeemed twice")
		}
	}
	for _, hdr := range []string{"Bearer " + expired, "JWT " + forged, "Bearer " + good + "x", "Basic " + good, ""} {
		if rec := getWSAuth(h, http.MethodGet, hdr); rec.Code != http.StatusUnauthorized {
			t.Fatalf("status %d, want 401", rec.Code)
		}
	}
	getWSAuth(h, http.MethodPost, "Bearer "+good)

	out := logs.String()
	for _, want := range []string{"ws ticket issued", "reason=token_expired", "reason=invalid_token", "reason=missing_token"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q (is Debug logging reaching the buffer?):\n%s", want, out)
		}
	}
	for _, sec := range secrets {
		if sec != "" && strings.Contains(out, sec) {
			t.Errorf("log contains a token or ticket %.12q…:\n%s", sec, out)
		}
	}
}
