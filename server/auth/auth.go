package auth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pgcast/pgcast/stream"
)

// Role is what a caller may do. The zero value is RoleAnonymous.
type Role uint8

const (
	// RoleAnonymous is the zero Identity: no verified token. It is never the
	// result of Verify and can never be given a ticket.
	RoleAnonymous Role = iota
	// RoleAuthenticated is a signed-in user (JWT role "authenticated", or no
	// role claim).
	RoleAuthenticated
	// RoleAdmin may read everything in its environment (JWT role "admin").
	RoleAdmin
)

// String is the role's JWT and database spelling.
func (r Role) String() string {
	switch r {
	case RoleAnonymous:
		return "anonymous"
	case RoleAuthenticated:
		return "authenticated"
	case RoleAdmin:
		return "admin"
	}
	return "Role(" + strconv.Itoa(int(r)) + ")"
}

// ParseRole parses a role claim: "admin" or "authenticated". Anything else,
// including "anonymous", is an error: no token may claim to be anonymous.
func ParseRole(s string) (Role, error) {
	switch s {
	case "admin":
		return RoleAdmin, nil
	case "authenticated":
		return RoleAuthenticated, nil
	}
	return RoleAnonymous, errors.New(`role must be "admin" or "authenticated"`)
}

// Identity is who a request or connection acts as: the JWT's sub, role and
// env claims. The zero value is anonymous.
type Identity struct {
	UserID      string
	Role        Role
	Environment int64
}

// IsAdmin reports whether the identity has the admin role.
func (i Identity) IsAdmin() bool { return i.Role == RoleAdmin }

// Anonymous reports whether the identity carries no verified user.
func (i Identity) Anonymous() bool { return i.Role == RoleAnonymous || i.UserID == "" }

// Viewer is who the identity reads as, for stream's read rules (the Hub's,
// replay's and REST's alike).
func (i Identity) Viewer() stream.Viewer {
	return stream.Viewer{UserID: i.UserID, Admin: i.IsAdmin(), Environment: i.Environment}
}

// MinSecretLen is the shortest HS256 secret NewAuthenticator accepts, in
// bytes: a key shorter than the 256-bit hash output weakens HMAC-SHA256 and is
// within reach of offline brute force on a captured token.
const MinSecretLen = 32

// Sentinel errors of Verify. Every Verify error wraps exactly one of them,
// so callers can tell a client to refresh its token (expired) from a token
// that will never work (invalid).
var (
	ErrInvalidToken = errors.New("invalid token")
	ErrTokenExpired = errors.New("token expired")
)

// Config configures an Authenticator. The zero value of every optional
// field means its default.
type Config struct {
	// Secret is the HS256 key, used as raw bytes (not base64-decoded).
	// Required; at least MinSecretLen (32) bytes.
	Secret []byte
	// Issuer, when set, must equal the token's iss claim (which is then
	// required), and is written into minted tokens. Default: not checked.
	Issuer string
	// Audience, when set, must be one of the token's aud values (which is
	// then required), and is written into minted tokens. Default: not
	// checked.
	Audience string
	// Leeway is the clock skew tolerated on exp, nbf and iat. Default 0: the
	// token issuer and pgcast are expected to run NTP; set a few seconds when
	// they do not.
	Leeway time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

func (c Config) validate() error {
	if len(c.Secret) == 0 {
		return errors.New("auth: Config.Secret is required (the HS256 key JWTs are signed with)")
	}
	if len(c.Secret) < MinSecretLen {
		return fmt.Errorf("auth: Config.Secret is %d bytes, want at least %d for HS256 (e.g. `openssl rand -base64 48`)", len(c.Secret), MinSecretLen)
	}
	if c.Leeway < 0 {
		return errors.New("auth: Config.Leeway must not be negative")
	}
	return nil
}

// Authenticator verifies and mints pgcast JWTs. It is safe for concurrent
// use.
type Authenticator struct {
	cfg    Config
	parser *jwt.Parser
}

// NewAuthenticator validates cfg. It copies the secret, so the caller may
// reuse its slice.
func NewAuthenticator(cfg Config) (*Authenticator, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.Secret = bytes.Clone(cfg.Secret)
	opts := []jwt.ParserOption{
		// The allow-list is what stops alg "none" and algorithm confusion
		// (an RS256 header verified with the HMAC secret as "public key").
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithTimeFunc(cfg.Now),
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	return &Authenticator{cfg: cfg, parser: jwt.NewParser(opts...)}, nil
}

// tokenClaims are the claims pgcast reads. role and env stay raw so that a
// wrong JSON type is an error instead of being coerced.
type tokenClaims struct {
	jwt.RegisteredClaims
	RoleClaim json.RawMessage `json:"role,omitempty"`
	EnvClaim  json.RawMessage `json:"env,omitempty"`

	// Filled by Validate.
	role Role
	env  int64
}

// errBadClaim marks pgcast's own claim checks inside jwt's joined errors.
var errBadClaim = errors.New("bad claim")

// Validate is called by the jwt parser after the registered-claim checks,
// and its error joined with theirs.
func (c *tokenClaims) Validate() error {
	var errs []error
	if c.Subject == "" {
		errs = append(errs, fmt.Errorf("%w: sub is required", errBadClaim))
	}
	role, err := parseRoleClaim(c.RoleClaim)
	if err != nil {
		errs = append(errs, err)
	}
	env, err := parseEnvClaim(c.EnvClaim)
	if err != nil {
		errs = append(errs, err)
	}
	c.role, c.env = role, env
	return errors.Join(errs...)
}

// parseRoleClaim: missing means "authenticated"; anything but the two role
// strings (including null) is an error.
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
// integral value ≥ 1 (1, 1.0 and 1e0 all mean 1). Strings, fractions, null
// and booleans are errors.
func parseEnvClaim(raw json.RawMessage) (int64, error) {
	if raw == nil {
		return 1, nil
	}
	bad := fmt.Errorf("%w: env must be an integer ≥ 1", errBadClaim)
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

// Verify checks token's signature (HS256 only), exp (required), nbf, the
// configured iss and aud, and pgcast's claims, and returns the identity and
// the token's expiry. Errors wrap ErrTokenExpired when the only problem is
// that the token has expired, ErrInvalidToken otherwise. No error contains
// the token.
func (a *Authenticator) Verify(token string) (Identity, time.Time, error) {
	if token == "" {
		return Identity{}, time.Time{}, fmt.Errorf("%w: empty token", ErrInvalidToken)
	}
	var c tokenClaims
	t, err := a.parser.ParseWithClaims(token, &c, a.key)
	if err != nil {
		if onlyExpired(err) {
			return Identity{}, time.Time{}, ErrTokenExpired
		}
		return Identity{}, time.Time{}, fmt.Errorf("%w: %s", ErrInvalidToken, describe(t, err))
	}
	return Identity{UserID: c.Subject, Role: c.role, Environment: c.env}, c.ExpiresAt.Time, nil
}

// Leeway is the clock skew Verify tolerates (Config.Leeway): a
// connection accepted with a token that expires is kept that much longer.
func (a *Authenticator) Leeway() time.Duration { return a.cfg.Leeway }

func (a *Authenticator) key(t *jwt.Token) (any, error) {
	// Belt and braces with WithValidMethods: never hand the HMAC secret to a
	// non-HMAC verifier.
	if t.Method != jwt.SigningMethodHS256 {
		return nil, errors.New("unexpected signing method")
	}
	return a.cfg.Secret, nil
}

// onlyExpired reports whether err says the token expired and nothing else:
// a token that is both expired and otherwise wrong is invalid, since
// refreshing it will not help.
func onlyExpired(err error) bool {
	if !errors.Is(err, jwt.ErrTokenExpired) {
		return false
	}
	for _, other := range []error{
		jwt.ErrTokenMalformed, jwt.ErrTokenUnverifiable, jwt.ErrTokenSignatureInvalid,
		jwt.ErrTokenRequiredClaimMissing, jwt.ErrTokenInvalidAudience, jwt.ErrTokenInvalidIssuer,
		jwt.ErrTokenNotValidYet, jwt.ErrTokenUsedBeforeIssued, errBadClaim,
	} {
		if errors.Is(err, other) {
			return false
		}
	}
	return true
}

// describe turns a jwt error into one short line for the client. jwt's
// messages never contain the token, but they nest and repeat ("token has
// invalid claims: token is expired") and name Go types.
func describe(t *jwt.Token, err error) string {
	if t != nil && t.Method != nil && t.Method.Alg() != jwt.SigningMethodHS256.Alg() {
		return "signing method not allowed (want HS256)"
	}
	if errors.Is(err, jwt.ErrTokenMalformed) {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			name := te.Field[strings.LastIndexByte(te.Field, '.')+1:]
			return "malformed: claim " + strconv.Quote(name) + " has the wrong type"
		}
		return "malformed"
	}
	if errors.Is(err, jwt.ErrTokenUnverifiable) {
		return "signing method not allowed (want HS256)"
	}
	if errors.Is(err, jwt.ErrTokenSignatureInvalid) {
		return "bad signature"
	}
	msgs := details(err, jwt.ErrTokenRequiredClaimMissing) // "exp claim is required"
	for _, s := range []struct {
		err error
		msg string
	}{
		{jwt.ErrTokenInvalidIssuer, "wrong issuer"},
		{jwt.ErrTokenInvalidAudience, "wrong audience"},
		{jwt.ErrTokenNotValidYet, "not valid yet"},
		{jwt.ErrTokenUsedBeforeIssued, "issued in the future"},
		{jwt.ErrTokenExpired, "expired"},
	} {
		if errors.Is(err, s.err) {
			msgs = append(msgs, s.msg)
		}
	}
	msgs = append(msgs, details(err, errBadClaim)...)
	if len(msgs) == 0 {
		return "rejected"
	}
	return strings.Join(msgs, "; ")
}

// details collects, from jwt's tree of joined errors, the messages of the
// errors that directly wrap sentinel, without the sentinel's own text.
func details(err, sentinel error) []string {
	var out []string
	var walk func(error)
	walk = func(e error) {
		switch w := e.(type) {
		case nil:
		case interface{ Unwrap() []error }:
			for _, x := range w.Unwrap() {
				walk(x)
			}
		default:
			if errors.Unwrap(e) == sentinel {
				out = append(out, strings.TrimPrefix(e.Error(), sentinel.Error()+": "))
				return
			}
			walk(errors.Unwrap(e))
		}
	}
	walk(err)
	return out
}

// Mint signs an HS256 token for sub with role and env, valid for ttl from
// now, carrying the configured iss and aud. It is for `pgcast token` and
// tests; production tokens come from the application's identity provider.
func (a *Authenticator) Mint(sub string, role Role, env int64, ttl time.Duration) (string, error) {
	if sub == "" {
		return "", errors.New("mint token: sub is required")
	}
	if role != RoleAdmin && role != RoleAuthenticated {
		return "", fmt.Errorf("mint token: role must be admin or authenticated, not %s", role)
	}
	if env < 1 {
		return "", fmt.Errorf("mint token: env must be ≥ 1, not %d", env)
	}
	if ttl <= 0 {
		return "", fmt.Errorf("mint token: ttl must be positive, not %s", ttl)
	}
	now := a.cfg.Now()
	claims := jwt.MapClaims{
		"sub":  sub,
		"role": role.String(),
		"env":  env,
		"iat":  jwt.NewNumericDate(now),
		"exp":  jwt.NewNumericDate(now.Add(ttl)),
	}
	if a.cfg.Issuer != "" {
		claims["iss"] = a.cfg.Issuer
	}
	if a.cfg.Audience != "" {
		claims["aud"] = a.cfg.Audience
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(a.cfg.Secret)
	if err != nil {
		return "", fmt.Errorf("mint token: %w", err)
	}
	return s, nil
}

// BearerToken extracts the JWT from "Authorization: Bearer <jwt>" or the
// Catalyst form "Authorization: JWT <jwt>" (scheme case-insensitive). ok is
// false when there is no Authorization header. A header that is present but
// unusable (another scheme, no token, several Authorization headers) gives
// ok true and token "", which Verify rejects.
func BearerToken(r *http.Request) (token string, ok bool) {
	vals := r.Header.Values("Authorization")
	if len(vals) == 0 || (len(vals) == 1 && strings.TrimSpace(vals[0]) == "") {
		return "", false
	}
	if len(vals) > 1 {
		return "", true
	}
	scheme, rest, found := strings.Cut(strings.TrimSpace(vals[0]), " ")
	if !found || !(strings.EqualFold(scheme, "Bearer") || strings.EqualFold(scheme, "JWT")) {
		return "", true
	}
	rest = strings.TrimSpace(rest)
	if rest == "" || strings.ContainsAny(rest, " \t") {
		return "", true
	}
	return rest, true
}
