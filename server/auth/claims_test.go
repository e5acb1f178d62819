package auth

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TestClaimMapping: paths (nested, namespaced, namespaced then nested),
// role strings and lists, admin and authenticated role sets, env from a
// path, a string or a fixed value, and a custom subject.
func TestClaimMapping(t *testing.T) {
	t.Parallel()
	exp := time.Now().Add(time.Hour).Unix()
	type want struct {
		id  Identity
		err string // substring; "" means accepted
	}
	cases := []struct {
		name   string
		claims ClaimsConfig
		token  map[string]any
		want   want
	}{
		{"nested role", ClaimsConfig{Role: "app_metadata.role"},
			map[string]any{"sub": "u1", "app_metadata": map[string]any{"role": "admin"}}, want{Identity{"u1", RoleAdmin, 1}, ""}},
		{"nested role, other value", ClaimsConfig{Role: "app_metadata.role"},
			map[string]any{"sub": "u1", "role": "admin", "app_metadata": map[string]any{"role": "editor"}}, want{Identity{"u1", RoleAuthenticated, 1}, ""}},
		{"nested role missing", ClaimsConfig{Role: "app_metadata.role"},
			map[string]any{"sub": "u1", "app_metadata": map[string]any{}}, want{Identity{"u1", RoleAuthenticated, 1}, ""}},
		{"namespaced list with admin", ClaimsConfig{Role: "https://example.com/roles"},
			map[string]any{"sub": "u1", "https://example.com/roles": []string{"editor", "admin"}}, want{Identity{"u1", RoleAdmin, 1}, ""}},
		{"namespaced list without admin", ClaimsConfig{Role: "https://example.com/roles"},
			map[string]any{"sub": "u1", "https://example.com/roles": []string{"editor"}}, want{Identity{"u1", RoleAuthenticated, 1}, ""}},
		{"empty list", ClaimsConfig{Role: "https://example.com/roles"},
			map[string]any{"sub": "u1", "https://example.com/roles": []string{}}, want{Identity{"u1", RoleAuthenticated, 1}, ""}},
		{"inside a namespaced claim", ClaimsConfig{Role: "https://example.com/app.role"},
			map[string]any{"sub": "u1", "https://example.com/app": map[string]any{"role": "admin"}}, want{Identity{"u1", RoleAdmin, 1}, ""}},
		{"the whole name wins over the path", ClaimsConfig{Role: "app.role"},
			map[string]any{"sub": "u1", "app.role": "admin", "app": map[string]any{"role": "editor"}}, want{Identity{"u1", RoleAdmin, 1}, ""}},
		{"keycloak realm roles", ClaimsConfig{Role: "realm_access.roles", AdminRoles: []string{"pgcast-admin"}},
			map[string]any{"sub": "u1", "realm_access": map[string]any{"roles": []string{"offline_access", "pgcast-admin"}}}, want{Identity{"u1", RoleAdmin, 1}, ""}},
		{"admin role renamed: admin is no longer admin", ClaimsConfig{AdminRoles: []string{"owner"}},
			map[string]any{"sub": "u1", "role": "admin"}, want{Identity{"u1", RoleAuthenticated, 1}, ""}},
		{"role neither string nor list", ClaimsConfig{Role: "app_metadata.role"},
			map[string]any{"sub": "u1", "app_metadata": map[string]any{"role": 3}}, want{err: "app_metadata.role must be a string or a list of strings"}},
		{"list of non-strings", ClaimsConfig{Role: "roles"},
			map[string]any{"sub": "u1", "roles": []any{"a", 1}}, want{err: "roles must be a string or a list of strings"}},
		{"role null is no role", ClaimsConfig{Role: "roles"},
			map[string]any{"sub": "u1", "roles": nil}, want{Identity{"u1", RoleAuthenticated, 1}, ""}},
		{"role null with authenticated roles required", ClaimsConfig{Role: "roles", AuthenticatedRoles: []string{"member"}},
			map[string]any{"sub": "u1", "roles": nil}, want{err: "roles holds no admin or authenticated role"}},
		{"role object", ClaimsConfig{Role: "roles"},
			map[string]any{"sub": "u1", "roles": map[string]any{"admin": true}}, want{err: "roles must be a string or a list of strings"}},
		{"authenticated roles required: held", ClaimsConfig{Role: "roles", AuthenticatedRoles: []string{"member"}},
			map[string]any{"sub": "u1", "roles": []string{"x", "member"}}, want{Identity{"u1", RoleAuthenticated, 1}, ""}},
		{"authenticated roles required: admin suffices", ClaimsConfig{Role: "roles", AuthenticatedRoles: []string{"member"}},
			map[string]any{"sub": "u1", "roles": "admin"}, want{Identity{"u1", RoleAdmin, 1}, ""}},
		{"authenticated roles required: not held", ClaimsConfig{Role: "roles", AuthenticatedRoles: []string{"member"}},
			map[string]any{"sub": "u1", "roles": []string{"guest"}}, want{err: "roles holds no admin or authenticated role"}},
		{"authenticated roles required: no claim", ClaimsConfig{Role: "roles", AuthenticatedRoles: []string{"member"}},
			map[string]any{"sub": "u1"}, want{err: "roles holds no admin or authenticated role"}},
		{"env path", ClaimsConfig{Env: "app_metadata.tenant"},
			map[string]any{"sub": "u1", "app_metadata": map[string]any{"tenant": 7}}, want{Identity{"u1", RoleAuthenticated, 7}, ""}},
		{"env as a string", ClaimsConfig{Env: "tenant"},
			map[string]any{"sub": "u1", "tenant": "12"}, want{Identity{"u1", RoleAuthenticated, 12}, ""}},
		{"env string not a number", ClaimsConfig{Env: "tenant"},
			map[string]any{"sub": "u1", "tenant": "acme"}, want{err: "tenant must be an integer ≥ 1"}},
		{"env string zero", ClaimsConfig{Env: "tenant"},
			map[string]any{"sub": "u1", "tenant": "0"}, want{err: "tenant must be an integer ≥ 1"}},
		{"env string signed", ClaimsConfig{Env: "tenant"},
			map[string]any{"sub": "u1", "tenant": "+3"}, want{err: "tenant must be an integer ≥ 1"}},
		{"fixed env ignores the claim", ClaimsConfig{FixedEnv: 5},
			map[string]any{"sub": "u1", "env": "garbage"}, want{Identity{"u1", RoleAuthenticated, 5}, ""}},
		{"custom subject", ClaimsConfig{Subject: "https://example.com/user_id"},
			map[string]any{"sub": "auth0|1", "https://example.com/user_id": "u42"}, want{Identity{"u42", RoleAuthenticated, 1}, ""}},
		{"custom subject missing", ClaimsConfig{Subject: "uid"},
			map[string]any{"sub": "u1"}, want{err: "uid is required"}},
		{"custom subject empty", ClaimsConfig{Subject: "uid"},
			map[string]any{"uid": ""}, want{err: "uid is required"}},
		{"custom subject not a string", ClaimsConfig{Subject: "uid"},
			map[string]any{"uid": 5}, want{err: "uid must be a string"}},
		{"claim names are case-sensitive", ClaimsConfig{Role: "roles"},
			map[string]any{"sub": "u1", "Roles": "admin"}, want{Identity{"u1", RoleAuthenticated, 1}, ""}},
		{"mapped mode still needs sub", ClaimsConfig{Role: "roles"},
			map[string]any{"roles": "admin"}, want{err: "sub is required"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			a := newTestAuth(t, Config{Claims: c.claims})
			claims := jwt.MapClaims{"exp": exp}
			for k, v := range c.token {
				claims[k] = v
			}
			id, _, err := a.Verify(signWith(t, jwt.SigningMethodHS256, claims, authTestSecret))
			if c.want.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.want.err) {
					t.Fatalf("err = %v, want %q (identity %+v)", err, c.want.err, id)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if id != c.want.id {
				t.Errorf("identity %+v, want %+v", id, c.want.id)
			}
		})
	}
}

// TestLegacyClaimsUnchanged: with a secret only and default claims, the
// rules are pgcast's own, as before; with a key set configured, the same
// claims are mapped (a role list is read, an unknown role is
// authenticated).
func TestLegacyClaimsUnchanged(t *testing.T) {
	t.Parallel()
	legacy := newTestAuth(t, Config{})
	mapped := newTestAuth(t, Config{JWKSURLs: []string{"https://idp.example/jwks"}})
	exp := time.Now().Add(time.Hour).Unix()
	for _, c := range []struct {
		claims     jwt.MapClaims
		legacyErr  string
		mappedRole Role
	}{
		{jwt.MapClaims{"role": []string{"admin"}}, "role must be a string", RoleAdmin},
		{jwt.MapClaims{"role": "editor"}, `role must be "admin" or "authenticated"`, RoleAuthenticated},
		{jwt.MapClaims{"ROLE": "admin"}, "", RoleAuthenticated}, // legacy matched case-insensitively, as always
		{jwt.MapClaims{"env": "3"}, "env must be an integer", RoleAuthenticated},
	} {
		c.claims["sub"], c.claims["exp"] = "u1", exp
		tok := signWith(t, jwt.SigningMethodHS256, c.claims, authTestSecret)
		id, _, err := legacy.Verify(tok)
		if c.legacyErr == "" {
			if err != nil || id.Role != RoleAdmin {
				t.Errorf("legacy %v: %+v, %v", c.claims, id, err)
			}
		} else if err == nil || !strings.Contains(err.Error(), c.legacyErr) {
			t.Errorf("legacy %v: err = %v, want %q", c.claims, err, c.legacyErr)
		}
		// The mapped authenticator has no secret: build the verdict from
		// its claim mapper directly.
		tc := tokenClaims{m: mapped.claims}
		b, _ := json.Marshal(c.claims)
		if err := json.Unmarshal(b, &tc); err != nil {
			t.Fatal(err)
		}
		if err := tc.Validate(); err != nil || tc.role != c.mappedRole {
			t.Errorf("mapped %v: role %v, err %v; want %v", c.claims, tc.role, err, c.mappedRole)
		}
	}
}

// TestLookupClaim: the longest existing name wins at each level.
func TestLookupClaim(t *testing.T) {
	t.Parallel()
	var claims map[string]json.RawMessage
	if err := json.Unmarshal([]byte(`{
		"a": {"b": {"c": 1}, "b.c": 2},
		"x.y": {"z": 3},
		"x": {"y": {"z": 4}},
		"https://e.com/r": ["admin"],
		"https://e.com/app": {"role": "r1", "deep": {"er": 5}},
		"s": "str"
	}`), &claims); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		"a.b.c":                     "2", // "b.c" is a member of a
		"a.b":                       `{"c": 1}`,
		"x.y.z":                     "3", // "x.y" is longer than "x"
		"https://e.com/r":           `["admin"]`,
		"https://e.com/app.role":    `"r1"`,
		"https://e.com/app.deep.er": "5",
		"s":                         `"str"`,
		"s.t":                       "",
		"missing":                   "",
		"a.missing":                 "",
		"https://e.com/app.":        "",
		"https://e.com":             "",
	} {
		got, ok := lookupClaim(claims, path)
		if (want == "") == ok || (ok && string(got) != want) {
			t.Errorf("lookupClaim(%q) = %s, %v; want %s", path, got, ok, want)
		}
	}
}
