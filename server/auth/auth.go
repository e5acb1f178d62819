package auth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgcast/pgcast/internal/startstop"
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

// Config configures an Authenticator. The zero value of every optional
// field means its default.
type Config struct {
	// Secret is the HS256 key, used as raw bytes (not base64-decoded), at
	// least MinSecretLen (32) bytes. Required unless JWKSURLs or OIDCIssuer
	// is set; with them it is optional, and HS256 tokens are accepted only
	// when it is set.
	Secret []byte
	// JWKSURLs are JSON Web Key Set URLs (RFC 7517) whose keys verify
	// asymmetric tokens (RS256/384/512, PS256/384/512, ES256/384/512,
	// EdDSA): fetched at Start, cached for their Cache-Control max-age, and
	// refreshed when a token names a key id the cache lacks (see
	// JWKSConfig). Default: none.
	JWKSURLs []string
	// OIDCIssuer, when set, is an OpenID Connect issuer whose jwks_uri is
	// discovered at Start from OIDCIssuer/.well-known/openid-configuration
	// (whose issuer must equal it exactly), then used as one of JWKSURLs.
	// It is also the default of Issuer.
	OIDCIssuer string
	// JWKS bounds the fetching and caching of key sets.
	JWKS JWKSConfig
	// Claims says which claims carry the user id, role and environment.
	// Default: pgcast's own sub, role and env.
	Claims ClaimsConfig
	// Issuer, when set, must equal the token's iss claim (which is then
	// required), and is written into minted tokens. Default: OIDCIssuer, or
	// not checked.
	Issuer string
	// Audience, when set, must be one of the token's aud values (which is
	// then required), and is written into minted tokens. Default: not
	// checked.
	Audience string
	// Leeway is the clock skew tolerated on exp, nbf and iat. Default 0: the
	// token issuer and pgcast are expected to run NTP; set a few seconds when
	// they do not.
	Leeway time.Duration
	// Now is the clock: of token expiry, and of key-set cache ages and
	// refresh intervals. Default time.Now.
	Now func() time.Time
	// Logger receives key-set fetches and failures (never a token).
	// Default: discard.
	Logger *slog.Logger
	// Registerer receives the key-set metrics (pgcast_jwks_…). Default:
	// none (they are kept but not exported).
	Registerer prometheus.Registerer
}

func (c Config) withDefaults() Config {
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Issuer == "" {
		c.Issuer = c.OIDCIssuer
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.JWKS = c.JWKS.withDefaults()
	c.Claims = c.Claims.withDefaults()
	return c
}

func (c Config) fetchesKeys() bool { return len(c.JWKSURLs) > 0 || c.OIDCIssuer != "" }

func (c Config) validate() error {
	if len(c.Secret) == 0 && !c.fetchesKeys() {
		return errors.New("auth: Config.Secret is required (the HS256 key JWTs are signed with), unless Config.JWKSURLs or Config.OIDCIssuer is set")
	}
	if len(c.Secret) > 0 && len(c.Secret) < MinSecretLen {
		return fmt.Errorf("auth: Config.Secret is %d bytes, want at least %d for HS256 (e.g. `openssl rand -base64 48`)", len(c.Secret), MinSecretLen)
	}
	if c.Leeway < 0 {
		return errors.New("auth: Config.Leeway must not be negative")
	}
	for _, u := range c.JWKSURLs {
		if _, err := checkFetchURL(u); err != nil {
			return fmt.Errorf("auth: Config.JWKSURLs %q: %w", u, err)
		}
	}
	if c.OIDCIssuer != "" {
		if _, err := checkFetchURL(c.OIDCIssuer); err != nil {
			return fmt.Errorf("auth: Config.OIDCIssuer %q: %w", c.OIDCIssuer, err)
		}
	}
	if err := c.JWKS.validate(); err != nil {
		return err
	}
	return c.Claims.validate()
}

// Authenticator verifies and mints pgcast JWTs. It is safe for concurrent
// use. With key sets (Config.JWKSURLs, Config.OIDCIssuer) it is a
// long-lived component: Start fetches them and keeps them fresh until Stop.
// With only a secret, Start and Stop do nothing and need not be called.
type Authenticator struct {
	cfg     Config
	parser  *jwt.Parser
	algs    []string // accepted algorithms, in the order messages list them
	claims  *claimMapper
	sources []*source
	metrics *keyMetrics // nil without key sets
	life    startstop.Base

	// testHookAwaiting, set by tests before use, is called by each Verify
	// that waits for a refresh.
	testHookAwaiting func()
}

// NewAuthenticator validates cfg. It copies the secret, so the caller may
// reuse its slice. Nothing is fetched until Start.
func NewAuthenticator(cfg Config) (*Authenticator, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.Secret = bytes.Clone(cfg.Secret)
	a := &Authenticator{
		cfg:    cfg,
		claims: &claimMapper{cfg: cfg.Claims, legacy: !cfg.fetchesKeys() && cfg.Claims.isDefault()},
		life:   startstop.Base{Name: "auth: key sets"},
	}
	if len(cfg.Secret) > 0 {
		a.algs = append(a.algs, jwt.SigningMethodHS256.Alg())
	}
	if cfg.fetchesKeys() {
		a.algs = append(a.algs, asymmetricAlgs...)
		f := &fetcher{cfg: cfg.JWKS, now: cfg.Now, log: cfg.Logger, m: newKeyMetrics()}
		if cfg.Registerer != nil {
			if err := f.m.register(cfg.Registerer); err != nil {
				return nil, err
			}
		}
		a.metrics = f.m
		seen := map[string]bool{}
		for _, u := range cfg.JWKSURLs {
			if seen[u] {
				continue
			}
			seen[u] = true
			if insecure, _ := checkFetchURL(u); insecure {
				f.log.Warn("JWKS URL is plain http: keys fetched so can be replaced by anyone on the path", "url", u)
			}
			a.sources = append(a.sources, newSource(f, u, ""))
		}
		if cfg.OIDCIssuer != "" {
			if insecure, _ := checkFetchURL(cfg.OIDCIssuer); insecure {
				f.log.Warn("OIDC issuer is plain http: its discovery document (which names the keys) can be replaced by anyone on the path", "issuer", cfg.OIDCIssuer)
			}
			a.sources = append(a.sources, newSource(f, "", cfg.OIDCIssuer))
		}
	}
	opts := []jwt.ParserOption{
		// The allow-list is what stops alg "none"; the key lookup (key)
		// then hands each algorithm only keys of its own type, which is
		// what stops algorithm confusion (an HS256 header "verified" with
		// a public key as the HMAC secret).
		jwt.WithValidMethods(a.algs),
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
	a.parser = jwt.NewParser(opts...)
	return a, nil
}

// Start discovers the OIDC issuer's jwks_uri and fetches every key set,
// then keeps them fresh in the background until Stop. It returns once each
// source has made its first attempt (bounded by JWKSConfig.FetchTimeout per
// fetch). A provider that cannot be reached does not fail Start: it is
// retried with backoff, reported by KeyStatus (and so /readyz), and its
// tokens are refused until its keys arrive. Start fails only on what
// retrying cannot mend (an OIDC document naming another issuer), or when
// ctx ends first. Without key sets it does nothing.
func (a *Authenticator) Start(ctx context.Context) error {
	runCtx, started, stopped, err := a.life.StartInit(ctx)
	if err != nil {
		return err
	}
	if len(a.sources) == 0 {
		stopped()
		return nil
	}
	first := make(chan error, len(a.sources))
	var wg sync.WaitGroup
	for _, s := range a.sources {
		s.mu.Lock()
		s.running = true
		s.mu.Unlock()
		wg.Go(func() { s.run(runCtx, first) })
	}
	go func() { wg.Wait(); stopped() }()
	started()
	var errs []error
	for range a.sources {
		select {
		case err := <-first:
			if pe := (*permanentError)(nil); errors.As(err, &pe) {
				errs = append(errs, err)
			}
		case <-ctx.Done():
			_ = a.Stop(context.WithoutCancel(ctx))
			return fmt.Errorf("auth: start: %w", ctx.Err())
		}
	}
	if len(errs) > 0 {
		_ = a.Stop(context.WithoutCancel(ctx))
		return fmt.Errorf("auth: start: %w", errors.Join(errs...))
	}
	return nil
}

// Stop ends the background refreshes and waits for them, or for ctx. The
// cached keys stay in use. Idempotent.
func (a *Authenticator) Stop(ctx context.Context) error { return a.life.Stop(ctx) }

// Verify is VerifyContext without a context: a refresh a token causes is
// still bounded by the fetch timeout.
func (a *Authenticator) Verify(token string) (Identity, time.Time, error) {
	return a.VerifyContext(context.Background(), token)
}

// VerifyContext checks token's signature (HS256 with the secret, or a key
// of the key sets), exp (required), nbf, the configured iss and aud, and
// the identity claims, and returns the identity and the token's expiry.
// A token naming a key id no cached key has may wait for one rate-limited
// refresh of the key sets (until ctx ends). Errors wrap ErrTokenExpired
// when the only problem is that the token has expired, ErrInvalidToken
// otherwise. No error contains the token.
func (a *Authenticator) VerifyContext(ctx context.Context, token string) (Identity, time.Time, error) {
	if token == "" {
		return Identity{}, time.Time{}, fmt.Errorf("%w: empty token", ErrInvalidToken)
	}
	c := tokenClaims{m: a.claims}
	t, err := a.parser.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) { return a.key(ctx, t) })
	if err != nil {
		if onlyExpired(err) {
			return Identity{}, time.Time{}, ErrTokenExpired
		}
		return Identity{}, time.Time{}, fmt.Errorf("%w: %s", ErrInvalidToken, describe(t, err, a.algs))
	}
	return Identity{UserID: c.sub, Role: c.role, Environment: c.env}, c.ExpiresAt.Time, nil
}

// Leeway is the clock skew Verify tolerates (Config.Leeway): a
// connection accepted with a token that expires is kept that much longer.
func (a *Authenticator) Leeway() time.Duration { return a.cfg.Leeway }

// Mint signs an HS256 token for sub with role and env, valid for ttl from
// now, carrying the configured iss and aud. It is for `pgcast token` and
// tests; production tokens come from the application's identity provider.
func (a *Authenticator) Mint(sub string, role Role, env int64, ttl time.Duration) (string, error) {
	if len(a.cfg.Secret) == 0 {
		return "", errors.New("mint token: no HS256 secret configured")
	}
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
