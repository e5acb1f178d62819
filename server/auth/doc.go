// Package auth says who a caller is: it verifies JWTs (Authenticator,
// Identity, Role, BearerToken) — pgcast's own HS256 tokens, which it also
// mints for `pgcast token` and tests, and an identity provider's asymmetric
// tokens, whose keys it fetches from JWKS URLs or an OIDC issuer's discovery
// document and keeps fresh (jwks.go, jwk.go, oidc.go), mapping the
// provider's claims to a user id, role and environment (claims.go) — and
// keeps the one-time tickets with which a Catalyst client opens its
// WebSocket (TicketStore, and WSAuthHandler serving GET
// /api/users/ws-auth/). It decides nothing about what a caller may read:
// that is stream's.
//
// Key sets are the only outbound calls: on a schedule (the response's
// max-age, clamped), after failures (backoff), and when a token names a key
// id no cached key has (at most once per URL per minimum interval, every
// such token waiting for the one fetch). A verification never fetches
// otherwise.
package auth
