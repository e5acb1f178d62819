package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/pgcast/pgcast/server/auth"
)

// identityOptions are the server's settings for tokens from an identity
// provider: where its keys are, and which claims say who the user is.
// `pgcast token` has none of them: it mints pgcast's own HS256 tokens.
type identityOptions struct {
	jwksURLs           []string
	oidcIssuer         string
	subClaim           string
	roleClaim          string
	adminRoles         []string
	authenticatedRoles []string
	envClaim           string
	env                int64
	minRefresh         time.Duration
	maxCacheAge        time.Duration
	fetchTimeout       time.Duration
}

func (o *identityOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringSliceVar(&o.jwksURLs, "jwks-url", nil, "JWKS URL of an identity provider whose RS/PS/ES/EdDSA tokens are accepted (repeatable, or comma-separated); keys are fetched at start, cached for the response's max-age and refreshed when a token names an unknown kid")
	fs.StringVar(&o.oidcIssuer, "oidc-issuer", "", "OpenID Connect issuer URL: its jwks_uri is discovered from <issuer>/.well-known/openid-configuration at start (the document's issuer must equal it exactly), and it is the default of --jwt-issuer")
	fs.StringVar(&o.subClaim, "jwt-sub-claim", "sub", "claim holding the user id (a path: see --jwt-role-claim)")
	fs.StringVar(&o.roleClaim, "jwt-role-claim", "role", `claim holding the role, a string or a list of strings; a path such as app_metadata.role or realm_access.roles, or a namespaced claim such as https://example.com/roles (at each level the longest name present wins)`)
	fs.StringSliceVar(&o.adminRoles, "jwt-admin-role", []string{"admin"}, "role values that make a token admin (repeatable, or comma-separated)")
	fs.StringSliceVar(&o.authenticatedRoles, "jwt-authenticated-role", nil, `role values a non-admin token must hold to be accepted (repeatable, or comma-separated); default: any token with a user id is authenticated (with only --jwt-secret and the default claims, pgcast's own rule: role "admin", "authenticated" or none)`)
	fs.StringVar(&o.envClaim, "jwt-env-claim", "env", "claim holding the environment id, an integer ≥ 1 (a path like --jwt-role-claim); missing means 1")
	fs.Int64Var(&o.env, "jwt-env", 0, "environment id of every token, the env claim unread (0: from --jwt-env-claim)")
	fs.DurationVar(&o.minRefresh, "jwks-min-refresh-interval", 30*time.Second, "least time between two fetches of a JWKS URL caused by tokens with unknown key ids (and the shortest cache age)")
	fs.DurationVar(&o.maxCacheAge, "jwks-max-cache-age", 12*time.Hour, "longest a key set is used before it is fetched again, whatever its Cache-Control says (how long a withdrawn key still verifies)")
	fs.DurationVar(&o.fetchTimeout, "jwks-fetch-timeout", 10*time.Second, "bound on one fetch of a JWKS or OIDC discovery document")
}

func (o *identityOptions) fetchesKeys() bool { return len(o.jwksURLs) > 0 || o.oidcIssuer != "" }

// check validates the options with errors that name their flags.
func (o *identityOptions) check() error {
	for _, u := range o.jwksURLs {
		if err := checkURLFlag(u); err != nil {
			return fmt.Errorf("--jwks-url %q: %w", u, err)
		}
	}
	if o.oidcIssuer != "" {
		if err := checkURLFlag(o.oidcIssuer); err != nil {
			return fmt.Errorf("--oidc-issuer %q: %w", o.oidcIssuer, err)
		}
	}
	if o.env < 0 {
		return fmt.Errorf("invalid --jwt-env %d: want an environment id ≥ 1, or 0 to read --jwt-env-claim", o.env)
	}
	if len(o.adminRoles) == 0 {
		return errors.New("--jwt-admin-role is empty: name at least one admin role")
	}
	if o.minRefresh <= 0 || o.maxCacheAge < o.minRefresh || o.fetchTimeout <= 0 {
		return fmt.Errorf("--jwks-min-refresh-interval (%s) and --jwks-fetch-timeout (%s) must be positive, and --jwks-max-cache-age (%s) at least the former", o.minRefresh, o.fetchTimeout, o.maxCacheAge)
	}
	return nil
}

func checkURLFlag(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return errors.New("want an absolute https:// URL")
	}
	return nil
}

// serverAuthenticator builds the server's Authenticator from the secret and
// the identity provider's settings, with errors that name flags.
func (o *authOptions) serverAuthenticator(idp *identityOptions, reg prometheus.Registerer, logger *slog.Logger) (*auth.Authenticator, error) {
	if !idp.fetchesKeys() || o.secret != "" {
		if o.secret == "" {
			return nil, errors.New("no JWT secret: set PGCAST_JWT_SECRET or --jwt-secret (or --jwks-url / --oidc-issuer to accept your identity provider's tokens)")
		}
		if len(o.secret) < auth.MinSecretLen {
			return nil, fmt.Errorf("--jwt-secret (PGCAST_JWT_SECRET) is %d bytes, want at least %d (e.g. `openssl rand -base64 48`)", len(o.secret), auth.MinSecretLen)
		}
	}
	if err := idp.check(); err != nil {
		return nil, err
	}
	// An empty list flag (--jwt-authenticated-role=) means its default,
	// not "no role is accepted".
	authenticatedRoles := idp.authenticatedRoles
	if len(authenticatedRoles) == 0 {
		authenticatedRoles = nil
	}
	cfg := auth.Config{
		Issuer:     o.issuer,
		Audience:   o.audience,
		JWKSURLs:   idp.jwksURLs,
		OIDCIssuer: idp.oidcIssuer,
		JWKS: auth.JWKSConfig{
			FetchTimeout:       idp.fetchTimeout,
			MinRefreshInterval: idp.minRefresh,
			MaxCacheAge:        idp.maxCacheAge,
		},
		Claims: auth.ClaimsConfig{
			Subject:            idp.subClaim,
			Role:               idp.roleClaim,
			AdminRoles:         idp.adminRoles,
			AuthenticatedRoles: authenticatedRoles,
			Env:                idp.envClaim,
			FixedEnv:           idp.env,
		},
		Logger:     logger.With("component", "auth"),
		Registerer: reg,
	}
	if o.secret != "" {
		cfg.Secret = []byte(o.secret)
	}
	a, err := auth.NewAuthenticator(cfg)
	if err != nil {
		return nil, fmt.Errorf("identity provider settings: %w", err)
	}
	return a, nil
}
