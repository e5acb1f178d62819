package auth

import (
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// Sentinel errors of Verify. Every Verify error wraps exactly one of them,
// so callers can tell a client to refresh its token (expired) from a token
// that will never work (invalid).
var (
	ErrInvalidToken = errors.New("invalid token")
	ErrTokenExpired = errors.New("token expired")
)

// errNoKey marks the key lookup's refusals (unknown kid, a key that does
// not take the token's algorithm) inside jwt's joined errors.
var errNoKey = errors.New("no key")

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
		jwt.ErrTokenNotValidYet, jwt.ErrTokenUsedBeforeIssued, errBadClaim, errNoKey,
	} {
		if errors.Is(err, other) {
			return false
		}
	}
	return true
}

// describe turns a jwt error into one short line for the client. jwt's
// messages never contain the token, but they nest and repeat ("token has
// invalid claims: token is expired") and name Go types. algs are the
// algorithms the authenticator accepts.
func describe(t *jwt.Token, err error, algs []string) string {
	notAllowed := "signing method not allowed (want " + strings.Join(algs, ", ") + ")"
	if t != nil && t.Method != nil && !slices.Contains(algs, t.Method.Alg()) {
		return notAllowed
	}
	if errors.Is(err, jwt.ErrTokenMalformed) {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			name := te.Field[strings.LastIndexByte(te.Field, '.')+1:]
			return "malformed: claim " + strconv.Quote(name) + " has the wrong type"
		}
		return "malformed"
	}
	if errors.Is(err, errNoKey) {
		return strings.Join(details(err, errNoKey), "; ")
	}
	if errors.Is(err, jwt.ErrTokenUnverifiable) {
		return notAllowed
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
