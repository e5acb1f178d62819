package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// key is the jwt key lookup: the secret for HS256, and for the other
// algorithms the key-set keys of the token's kid (or, without a kid, every
// key) that take the token's algorithm. A key's type fixes the algorithms
// it takes (verifyKey.algs), so an RSA key never meets an HMAC or ECDSA
// verifier.
func (a *Authenticator) key(ctx context.Context, t *jwt.Token) (any, error) {
	// RFC 7515 §4.1.11: a token whose crit header names extensions must be
	// refused by a verifier that does not understand them, and pgcast
	// understands none.
	if _, ok := t.Header["crit"]; ok {
		return nil, fmt.Errorf("%w: crit header not supported", errNoKey)
	}
	alg := t.Method.Alg()
	if alg == jwt.SigningMethodHS256.Alg() {
		// Belt and braces with WithValidMethods: never hand the HMAC secret
		// to a non-HMAC verifier.
		if t.Method != jwt.SigningMethodHS256 || len(a.cfg.Secret) == 0 {
			return nil, errors.New("unexpected signing method")
		}
		return a.cfg.Secret, nil
	}
	if len(a.sources) == 0 {
		return nil, errors.New("unexpected signing method")
	}
	kid, hasKid := "", false
	if v, ok := t.Header["kid"]; ok {
		if kid, hasKid = v.(string); !hasKid {
			return nil, fmt.Errorf("%w: kid header must be a string", errNoKey)
		}
	}
	now := a.cfg.Now()
	for _, s := range a.sources {
		s.pokeIfDue(now)
	}
	keys, err := a.match(alg, kid, hasKid)
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		a.awaitRefresh(ctx)
		if keys, err = a.match(alg, kid, hasKid); err != nil {
			return nil, err
		}
	}
	if len(keys) == 0 {
		if hasKid {
			a.metrics.unknownKid.Inc()
			return nil, fmt.Errorf("%w: unknown key id %s", errNoKey, quoteKid(kid))
		}
		return nil, fmt.Errorf("%w: no key for %s (and no kid)", errNoKey, alg)
	}
	return jwt.VerificationKeySet{Keys: keys}, nil
}

// match returns the cached keys a token of alg (and kid, if it has one) may
// be verified with. A kid whose keys all refuse alg is an error: the token
// claims an algorithm its key was not made for (an RS256 token against an
// EC key), and a refresh would not change that.
func (a *Authenticator) match(alg, kid string, hasKid bool) ([]jwt.VerificationKey, error) {
	var out []jwt.VerificationKey
	var refused *verifyKey
	for _, s := range a.sources {
		set := s.keys.Load()
		if set == nil {
			continue
		}
		for _, k := range set.keys {
			if hasKid && k.kid != kid {
				continue
			}
			if k.allows(alg) {
				out = append(out, k.key)
			} else if refused == nil {
				refused = k
			}
		}
	}
	if len(out) == 0 && hasKid && refused != nil {
		return nil, fmt.Errorf("%w: key %s is a %s key for %s, not %s", errNoKey, quoteKid(kid), describeKeyType(refused), strings.Join(refused.algs, ", "), alg)
	}
	return out, nil
}

// awaitRefresh asks every source for a refresh (each rate-limited and
// coalesced, see source.requestRefresh) and waits for those it gets, at
// most two fetch timeouts (a discovery and a key set).
func (a *Authenticator) awaitRefresh(ctx context.Context) {
	var waits []<-chan struct{}
	for _, s := range a.sources {
		if ch := s.requestRefresh(); ch != nil {
			waits = append(waits, ch)
		}
	}
	if len(waits) == 0 {
		return
	}
	if a.testHookAwaiting != nil {
		a.testHookAwaiting()
	}
	ctx, cancel := context.WithTimeout(ctx, 2*a.cfg.JWKS.FetchTimeout)
	defer cancel()
	for _, ch := range waits {
		select {
		case <-ch:
		case <-ctx.Done():
			return
		}
	}
}

// FetchesKeys reports whether the authenticator has key sets
// (Config.JWKSURLs, Config.OIDCIssuer): only then does it need Start, and
// does KeyStatus say anything.
func (a *Authenticator) FetchesKeys() bool { return len(a.sources) > 0 }

// KeyStatus is the key sets' readiness, for /readyz. ready is false while a
// source has no key set (never fetched, or not started): every token of its
// provider would be refused, so the node should get no traffic yet (and a
// rolling deploy waits, keeping the nodes that have keys). Once a set is
// cached, a failing refresh keeps the node ready, since the cached keys
// still verify and every node shares the provider (failing readiness would
// take them all out at once), and is reported in detail. detail is "ok",
// or one clause per source with a problem.
func (a *Authenticator) KeyStatus() (ready bool, detail string) {
	ready = true
	var problems []string
	for _, s := range a.sources {
		ok, d := s.status()
		ready = ready && ok
		if d != "" {
			problems = append(problems, d)
		}
	}
	if len(problems) == 0 {
		return ready, "ok"
	}
	return ready, strings.Join(problems, "; ")
}
