package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// ClaimsConfig says where a token carries the user id, role and environment.
// The zero value of every field means its default, which is pgcast's own
// claims: sub, role ("admin" or "authenticated") and env.
//
// A claim is named by a path. At each level of the token's JSON the longest
// name that exists is taken, then the rest of the path (after a dot) is looked
// up inside it: "app_metadata.role" is the role member of the app_metadata
// object, unless the token has a top-level claim named "app_metadata.role",
// which wins; "https://example.com/roles" is that namespaced top-level claim
// even though it contains dots, and "https://example.com/app.role" finds
// role inside a claim named "https://example.com/app". Names are
// case-sensitive (RFC 7519 §4).
type ClaimsConfig struct {
	// Subject is the path of the user id, a non-empty string. Default "sub".
	Subject string
	// Role is the path of the role claim: a string or a list of strings
	// (null or absent: no role). Default "role".
	Role string
	// AdminRoles are the role values that make a token admin: a token whose
	// role claim holds any of them is admin. Default ["admin"].
	AdminRoles []string
	// AuthenticatedRoles, when set, are the role values that let a token in
	// as authenticated: a token holding none of them (and no admin role),
	// or no role claim at all, is refused. Default: every token that is not
	// admin is authenticated, whatever its role claim holds.
	//
	// Exception, pgcast's own HS256 tokens: with no key sets (no JWKSURLs,
	// no OIDCIssuer) and every field of ClaimsConfig at its default, the role
	// claim must be the string "admin" or "authenticated", or be absent
	// (authenticated), and env must be a JSON number: the rules pgcast has
	// always had for the tokens `pgcast token` mints.
	AuthenticatedRoles []string
	// Env is the path of the environment id: an integer ≥ 1, as a JSON
	// number or (for providers whose custom claims are strings) a string of
	// decimal digits; missing means 1. Default "env".
	Env string
	// FixedEnv, when ≥ 1, is every token's environment, and the env claim is
	// not read. Default 0: from the claim.
	FixedEnv int64
}

// maxClaimPath bounds a configured claim path (and so the work of a
// lookup).
const maxClaimPath = 256

func (c ClaimsConfig) withDefaults() ClaimsConfig {
	if c.Subject == "" {
		c.Subject = "sub"
	}
	if c.Role == "" {
		c.Role = "role"
	}
	if c.AdminRoles == nil {
		c.AdminRoles = []string{"admin"}
	}
	if c.Env == "" {
		c.Env = "env"
	}
	return c
}

func (c ClaimsConfig) validate() error {
	for _, p := range []struct{ field, path string }{{"Subject", c.Subject}, {"Role", c.Role}, {"Env", c.Env}} {
		if len(p.path) > maxClaimPath {
			return fmt.Errorf("auth: ClaimsConfig.%s is %d bytes, at most %d", p.field, len(p.path), maxClaimPath)
		}
		if strings.TrimSpace(p.path) != p.path || strings.HasPrefix(p.path, ".") || strings.HasSuffix(p.path, ".") {
			return fmt.Errorf("auth: ClaimsConfig.%s %q: a claim path has no surrounding spaces and neither starts nor ends with a dot", p.field, p.path)
		}
	}
	if len(c.AdminRoles) == 0 {
		return errors.New("auth: ClaimsConfig.AdminRoles is empty: name at least one admin role")
	}
	for _, r := range slices.Concat(c.AdminRoles, c.AuthenticatedRoles) {
		if r == "" {
			return errors.New("auth: ClaimsConfig role values must not be empty")
		}
	}
	if c.FixedEnv < 0 {
		return fmt.Errorf("auth: ClaimsConfig.FixedEnv %d must be ≥ 1 (or 0: from the claim)", c.FixedEnv)
	}
	return nil
}

// isDefault reports whether c (after withDefaults) is pgcast's own claims.
func (c ClaimsConfig) isDefault() bool {
	return c.Subject == "sub" && c.Role == "role" && slices.Equal(c.AdminRoles, []string{"admin"}) &&
		c.AuthenticatedRoles == nil && c.Env == "env" && c.FixedEnv == 0
}

// claimMapper turns verified claims into an Identity.
type claimMapper struct {
	cfg ClaimsConfig
	// legacy: pgcast's own HS256 claims, checked exactly as they always
	// were (see ClaimsConfig.AuthenticatedRoles).
	legacy bool
}

// tokenClaims are the claims pgcast reads. In legacy mode role and env stay
// raw (matched case-insensitively by encoding/json, as they always were) so
// that a wrong JSON type is an error instead of being coerced; otherwise every
// top-level claim is kept raw for the configured paths.
type tokenClaims struct {
	jwt.RegisteredClaims
	RoleClaim json.RawMessage `json:"role,omitempty"`
	EnvClaim  json.RawMessage `json:"env,omitempty"`

	m   *claimMapper
	all map[string]json.RawMessage

	// Filled by Validate.
	sub  string
	role Role
	env  int64
}

// UnmarshalJSON decodes the registered claims (with jwt's own types and
// errors, so that `"sub":123` still reads "claim "sub" has the wrong type"),
// then, unless in legacy mode, every claim raw.
func (c *tokenClaims) UnmarshalJSON(b []byte) error {
	type fields tokenClaims // without this method
	if err := json.Unmarshal(b, (*fields)(c)); err != nil {
		return err
	}
	if c.m.legacy {
		return nil
	}
	return json.Unmarshal(b, &c.all)
}

// errBadClaim marks pgcast's own claim checks inside jwt's joined errors.
var errBadClaim = errors.New("bad claim")

// Validate is called by the jwt parser after the registered-claim checks
// (and after the signature), and its error joined with theirs.
func (c *tokenClaims) Validate() error {
	var errs []error
	sub, err := c.subject()
	if err != nil {
		errs = append(errs, err)
	}
	var role Role
	if c.m.legacy {
		role, err = parseRoleClaim(c.RoleClaim)
	} else {
		role, err = c.m.role(c.all)
	}
	if err != nil {
		errs = append(errs, err)
	}
	env, err := c.environment()
	if err != nil {
		errs = append(errs, err)
	}
	c.sub, c.role, c.env = sub, role, env
	return errors.Join(errs...)
}

func (c *tokenClaims) subject() (string, error) {
	if c.m.cfg.Subject == "sub" {
		if c.Subject == "" {
			return "", fmt.Errorf("%w: sub is required", errBadClaim)
		}
		return c.Subject, nil
	}
	raw, ok := lookupClaim(c.all, c.m.cfg.Subject)
	if !ok {
		return "", fmt.Errorf("%w: %s is required", errBadClaim, c.m.cfg.Subject)
	}
	var s string
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return "", fmt.Errorf("%w: %s must be a string", errBadClaim, c.m.cfg.Subject)
	}
	if s == "" {
		return "", fmt.Errorf("%w: %s is required", errBadClaim, c.m.cfg.Subject)
	}
	return s, nil
}

func (c *tokenClaims) environment() (int64, error) {
	if c.m.cfg.FixedEnv > 0 {
		return c.m.cfg.FixedEnv, nil
	}
	if c.m.legacy {
		return parseEnvClaim(c.EnvClaim, "env", false)
	}
	raw, ok := lookupClaim(c.all, c.m.cfg.Env)
	if !ok {
		return 1, nil
	}
	return parseEnvClaim(raw, c.m.cfg.Env, true)
}

// role maps the role claim: any admin role makes an admin; then, with
// AuthenticatedRoles set, one of them is required; without, anything goes.
func (m *claimMapper) role(all map[string]json.RawMessage) (Role, error) {
	path := m.cfg.Role
	raw, ok := lookupClaim(all, path)
	var roles []string
	if ok && string(raw) != "null" { // null: no role, as providers write an unset one
		var err error
		if roles, err = parseRoleList(raw); err != nil {
			return RoleAnonymous, fmt.Errorf("%w: %s must be a string or a list of strings", errBadClaim, path)
		}
	}
	for _, r := range roles {
		if slices.Contains(m.cfg.AdminRoles, r) {
			return RoleAdmin, nil
		}
	}
	if m.cfg.AuthenticatedRoles == nil {
		return RoleAuthenticated, nil
	}
	for _, r := range roles {
		if slices.Contains(m.cfg.AuthenticatedRoles, r) {
			return RoleAuthenticated, nil
		}
	}
	return RoleAnonymous, fmt.Errorf("%w: %s holds no admin or authenticated role", errBadClaim, path)
}

// parseRoleList reads a string or an array of strings.
func parseRoleList(raw json.RawMessage) ([]string, error) {
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, err
		}
		return []string{s}, nil
	}
	if len(raw) == 0 || raw[0] != '[' {
		return nil, errors.New("not a string or an array")
	}
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, err
	}
	out := make([]string, 0, len(list))
	for _, e := range list {
		var s string
		if len(e) == 0 || e[0] != '"' || json.Unmarshal(e, &s) != nil {
			return nil, errors.New("an element is not a string")
		}
		out = append(out, s)
	}
	return out, nil
}

// lookupClaim finds path in the token's claims: at each level the longest
// name (the whole rest of the path, or the part before one of its dots) that
// is a member wins, and the rest is looked up inside it. It never backtracks,
// so its work is linear in the path whatever the token holds.
func lookupClaim(obj map[string]json.RawMessage, path string) (json.RawMessage, bool) {
	for {
		if v, ok := obj[path]; ok {
			return v, true
		}
		var next json.RawMessage
		rest := ""
		for i := strings.LastIndexByte(path, '.'); i > 0; i = strings.LastIndexByte(path[:i], '.') {
			if v, ok := obj[path[:i]]; ok {
				next, rest = v, path[i+1:]
				break
			}
		}
		if next == nil || rest == "" || len(next) == 0 || next[0] != '{' {
			return nil, false
		}
		var inner map[string]json.RawMessage
		if json.Unmarshal(next, &inner) != nil {
			return nil, false
		}
		obj, path = inner, rest
	}
}

// parseRoleClaim is the legacy rule: missing means "authenticated"; anything
// but the two role strings (including null) is an error.
func parseRoleClaim(raw json.RawMessage) (Role, error) {
	if raw == nil {
		return RoleAuthenticated, nil
	}
	var s string
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return RoleAnonymous, fmt.Errorf("%w: role must be a string", errBadClaim)
	}
	r, err := ParseRole(s)
	if err != nil {
		return RoleAnonymous, fmt.Errorf("%w: %v", errBadClaim, err)
	}
	return r, nil
}

// maxExactFloat is the largest integer every float64 in [1, it] represents
// exactly; a fractional-looking env above it cannot be trusted to be an
// integer.
const maxExactFloat = 1 << 53

// parseEnvClaim: missing means environment 1; otherwise a JSON number with an
// integral value ≥ 1 (1, 1.0 and 1e0 all mean 1), or, when allowString is set, a
// JSON string of decimal digits. Fractions, null and booleans are errors.
func parseEnvClaim(raw json.RawMessage, name string, allowString bool) (int64, error) {
	if raw == nil {
		return 1, nil
	}
	bad := fmt.Errorf("%w: %s must be an integer ≥ 1", errBadClaim, name)
	if allowString && len(raw) > 0 && raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return 0, bad
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 1 || s[0] == '+' {
			return 0, bad
		}
		return n, nil
	}
	if len(raw) == 0 || !(raw[0] == '-' || (raw[0] >= '0' && raw[0] <= '9')) {
		return 0, bad
	}
	s := string(raw)
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 1 {
			return 0, bad
		}
		return n, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f != math.Trunc(f) || f < 1 || f > maxExactFloat {
		return 0, bad
	}
	return int64(f), nil
}
