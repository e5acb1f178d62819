package main

import (
	"strings"
	"testing"
	"time"

	"github.com/pgcast/pgcast/server/auth"
)

const testJWTSecret = "cli-test-secret-0123456789abcdefghij"

func TestTokenMintsVerifiableJWT(t *testing.T) {
	t.Parallel()
	code, out, stderr := runCLI(t, nil, "token", "--sub", "u1", "--role", "admin", "--jwt-secret", testJWTSecret)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 1 {
		t.Fatalf("want the token alone on stdout, got %q", out)
	}
	a, err := auth.NewAuthenticator(auth.Config{Secret: []byte(testJWTSecret)})
	if err != nil {
		t.Fatal(err)
	}
	id, exp, err := a.Verify(lines[0])
	if err != nil {
		t.Fatal(err)
	}
	if want := (auth.Identity{UserID: "u1", Role: auth.RoleAdmin, Environment: 1}); id != want {
		t.Errorf("identity %+v, want %+v", id, want)
	}
	if d := time.Until(exp); d < 59*time.Minute || d > time.Hour {
		t.Errorf("token expires in %s, want the default 1h", d)
	}
}

func TestTokenFromEnvironmentWithIssuerAndAudience(t *testing.T) {
	t.Parallel()
	vars := map[string]string{"PGCAST_JWT_SECRET": testJWTSecret}
	code, out, stderr := runCLI(t, vars, "token", "--sub", "u2", "--env", "7", "--ttl", "5m",
		"--jwt-issuer", "https://idp.example", "--jwt-audience", "pgcast")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if strings.Contains(stderr, "PGCAST_JWT_SECRET") {
		t.Errorf("PGCAST_JWT_SECRET reported as unknown: %s", stderr)
	}
	a, err := auth.NewAuthenticator(auth.Config{Secret: []byte(testJWTSecret), Issuer: "https://idp.example", Audience: "pgcast"})
	if err != nil {
		t.Fatal(err)
	}
	id, exp, err := a.Verify(strings.TrimSpace(out))
	if err != nil {
		t.Fatal(err)
	}
	if want := (auth.Identity{UserID: "u2", Role: auth.RoleAuthenticated, Environment: 7}); id != want {
		t.Errorf("identity %+v, want %+v", id, want)
	}
	if d := time.Until(exp); d < 4*time.Minute || d > 5*time.Minute {
		t.Errorf("token expires in %s, want 5m", d)
	}
}

func TestTokenBadInput(t *testing.T) {
	t.Parallel()
	short := "short-secret-xyz"
	cases := []struct {
		name string
		vars map[string]string
		args []string
		want string
	}{
		{"no secret", nil, []string{"token", "--sub", "u1"}, "no JWT secret: set PGCAST_JWT_SECRET or --jwt-secret"},
		{"short secret", nil, []string{"token", "--sub", "u1", "--jwt-secret", short}, "want at least 32"},
		{"short secret from env", map[string]string{"PGCAST_JWT_SECRET": short}, []string{"token", "--sub", "u1"}, "want at least 32"},
		{"no sub", nil, []string{"token", "--jwt-secret", testJWTSecret}, "--sub is required"},
		{"bad role", nil, []string{"token", "--sub", "u1", "--role", "root", "--jwt-secret", testJWTSecret}, `invalid --role "root"`},
		{"bad env", nil, []string{"token", "--sub", "u1", "--env", "0", "--jwt-secret", testJWTSecret}, "invalid --env 0"},
		{"bad ttl", nil, []string{"token", "--sub", "u1", "--ttl", "-1h", "--jwt-secret", testJWTSecret}, "invalid --ttl"},
		{"env not a number", nil, []string{"token", "--sub", "u1", "--env", "one", "--jwt-secret", testJWTSecret}, "invalid argument"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			code, out, stderr := runCLI(t, c.vars, c.args...)
			if code == 0 {
				t.Fatalf("exit 0, want non-zero; stdout %q", out)
			}
			if out != "" {
				t.Errorf("stdout %q, want nothing", out)
			}
			if lines := strings.Split(strings.TrimSpace(stderr), "\n"); len(lines) != 1 {
				t.Errorf("want one line on stderr, got %d:\n%s", len(lines), stderr)
			}
			if !strings.Contains(stderr, c.want) {
				t.Errorf("stderr %q lacks %q", stderr, c.want)
			}
			if strings.Contains(stderr, short) || strings.Contains(stderr, testJWTSecret) {
				t.Errorf("stderr repeats the secret: %s", stderr)
			}
		})
	}
}

func TestTokenHelp(t *testing.T) {
	t.Parallel()
	code, out, _ := runCLI(t, nil, "token", "--help")
	if code != 0 || !strings.Contains(out, "Examples:") || !strings.Contains(out, "PGCAST_JWT_SECRET") {
		t.Errorf("token --help: %d %s", code, out)
	}
}
