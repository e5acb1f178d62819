package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// permanentError is a discovery result that retrying will not change while
// the provider and pgcast keep their configuration: Start fails on it.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// discoveryURL is where OpenID Connect Discovery 1.0 §4 puts an issuer's
// configuration: the issuer without its trailing slash, then
// /.well-known/openid-configuration.
func discoveryURL(issuer string) string {
	return strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
}

// discover fetches issuer's discovery document and returns its jwks_uri.
// The document's issuer must be exactly the configured one (§4.3): else a
// document served by someone else, or for another tenant, would choose the
// keys pgcast trusts.
func discover(ctx context.Context, f *fetcher, issuer string) (string, error) {
	u := discoveryURL(issuer)
	jwksURI, err := discoverAt(ctx, f, u, issuer)
	if err != nil {
		if ctx.Err() == nil {
			f.m.refreshes.WithLabelValues(u, "error").Inc()
		}
		return "", fmt.Errorf("oidc: discover %s: %w", u, err)
	}
	f.m.refreshes.WithLabelValues(u, "ok").Inc()
	return jwksURI, nil
}

func discoverAt(ctx context.Context, f *fetcher, u, issuer string) (string, error) {
	body, _, err := f.get(ctx, u)
	if err != nil {
		return "", err
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return "", fmt.Errorf("not a discovery document: %w", err)
	}
	if doc.Issuer != issuer {
		return "", &permanentError{fmt.Errorf("the document's issuer %q is not %q (--oidc-issuer must be the issuer exactly as the provider writes it, trailing slash included)", truncate(doc.Issuer), issuer)}
	}
	if doc.JWKSURI == "" {
		return "", &permanentError{errors.New("the document has no jwks_uri")}
	}
	insecure, err := checkFetchURL(doc.JWKSURI)
	if err != nil {
		return "", &permanentError{fmt.Errorf("jwks_uri %q: %w", truncate(doc.JWKSURI), err)}
	}
	if insecure {
		f.log.Warn("jwks_uri is plain http: keys fetched so can be replaced by anyone on the path", "issuer", issuer, "jwks_uri", doc.JWKSURI)
	}
	return doc.JWKSURI, nil
}

// truncate cuts a string from the network for a message.
func truncate(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}
