package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pgcast/pgcast/internal/pgtest"
)

// newOIDCProvider serves a discovery document naming issuer (default: its
// own URL) and a JWKS with key as kid "k1".
func newOIDCProvider(t *testing.T, key *rsa.PrivateKey, issuer string) *httptest.Server {
	t.Helper()
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/realms/app/.well-known/openid-configuration":
			iss := issuer
			if iss == "" {
				iss = srv.URL + "/realms/app"
			}
			_ = json.NewEncoder(w).Encode(map[string]string{"issuer": iss, "jwks_uri": srv.URL + "/realms/app/certs"})
		case "/realms/app/certs":
			_ = json.NewEncoder(w).Encode(map[string]any{"keys": []any{map[string]string{
				"kty": "RSA", "kid": "k1", "use": "sig", "alg": "RS256",
				"n": base64.RawURLEncoding.EncodeToString(key.N.Bytes()),
				"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(key.E)).Bytes()),
			}}})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestServeWithOIDCIssuer: serve with an OIDC issuer and no secret takes the
// provider's tokens (Keycloak's realm roles mapped to admin), reports the
// key set in /readyz and /metrics, and stops cleanly.
func TestServeWithOIDCIssuer(t *testing.T) {
	t.Parallel()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	idp := newOIDCProvider(t, key, "")
	issuer := idp.URL + "/realms/app"
	url := pgtest.NewDatabase(t)
	stderr := newWatch(`msg=listening addr=(\S+) internal_addr=(\S+)`)
	sig := make(chan os.Signal, 2)
	done := make(chan int, 1)
	go func() {
		done <- execute(context.Background(), []string{"serve", "--addr", "127.0.0.1:0", "--internal-addr", "127.0.0.1:0", "--migrate",
			"--oidc-issuer", issuer, "--jwt-role-claim", "realm_access.roles", "--jwt-admin-role", "pgcast-admin"},
			testEnv(map[string]string{"DATABASE_URL": url}), io.Discard, stderr, sig)
	}()
	select {
	case <-stderr.found:
	case code := <-done:
		t.Fatalf("serve exited early with %d: %s", code, stderr)
	case <-time.After(60 * time.Second):
		t.Fatalf("serve did not start: %s", stderr)
	}
	public, internal := "http://"+stderr.match[1], "http://"+stderr.match[2]
	get := func(u, token string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	sign := func(roles ...string) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
			"iss": issuer, "sub": "kc-user", "exp": time.Now().Add(time.Hour).Unix(),
			"realm_access": map[string]any{"roles": roles},
		})
		tok.Header["kid"] = "k1"
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if code, body := get(public+"/readyz", ""); code != 200 || !strings.Contains(body, `"jwks":"ok"`) {
		t.Errorf("readyz: %d %s", code, body)
	}
	if code, body := get(internal+"/metrics", ""); code != 200 || !strings.Contains(body, `pgcast_jwks_keys{url="`+issuer+`/certs"} 1`) {
		t.Errorf("metrics lack pgcast_jwks_keys: %d", code)
	}
	if code, body := get(public+"/api/collections", sign("offline_access", "pgcast-admin")); code != 200 {
		t.Errorf("admin by realm role: %d %s", code, body)
	}
	if code, body := get(public+"/api/collections", sign("offline_access")); code != 403 {
		t.Errorf("no admin realm role: %d %s", code, body)
	}
	if code, body := get(public+"/api/users/ws-auth/", sign()); code != 200 || !strings.Contains(body, `"uuid"`) {
		t.Errorf("ws-auth: %d %s", code, body)
	}
	sig <- syscall.SIGTERM
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit code after SIGTERM = %d: %s", code, stderr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop within 30 s of SIGTERM")
	}
}

// TestServeIdentityFlagErrors: bad identity-provider settings are one clear
// line naming the flag, before anything is served.
func TestServeIdentityFlagErrors(t *testing.T) {
	t.Parallel()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	other := newOIDCProvider(t, key, "https://login.example/realms/app")
	url := pgtest.NewDatabase(t)
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"no secret, no provider", []string{"serve"}, "no JWT secret: set PGCAST_JWT_SECRET or --jwt-secret (or --jwks-url / --oidc-issuer"},
		{"jwks url not http", []string{"serve", "--jwks-url", "ftp://idp.example/jwks"}, `--jwks-url "ftp://idp.example/jwks": want an absolute https:// URL`},
		{"issuer not a URL", []string{"serve", "--oidc-issuer", "idp.example"}, `--oidc-issuer "idp.example"`},
		{"negative env", []string{"serve", "--jwks-url", "https://idp.example/jwks", "--jwt-env", "-1"}, "invalid --jwt-env -1"},
		{"short secret with a provider", []string{"serve", "--jwks-url", "https://idp.example/jwks", "--jwt-secret", "short"}, "at least 32"},
		{"bad claim path", []string{"serve", "--jwks-url", "https://idp.example/jwks", "--jwt-role-claim", "roles."}, "ClaimsConfig.Role"},
		{"issuer mismatch", []string{"serve", "--addr", "127.0.0.1:0", "--internal-addr", "off", "--oidc-issuer", other.URL + "/realms/app"},
			`the document's issuer "https://login.example/realms/app" is not "` + other.URL + `/realms/app"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, map[string]string{"DATABASE_URL": url}, c.args...)
			if code == 0 {
				t.Fatalf("exit code 0; stderr: %s", stderr)
			}
			if lines := strings.Split(strings.TrimSpace(stderr), "\n"); len(lines) != 1 {
				t.Errorf("want one line on stderr, got %d:\n%s", len(lines), stderr)
			}
			if !strings.Contains(stderr, c.want) {
				t.Errorf("stderr %q lacks %q", stderr, c.want)
			}
		})
	}
}
