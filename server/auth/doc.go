// Package auth says who a caller is: it verifies (and, for `pgcast token`
// and tests, mints) the HS256 JWTs pgcast accepts (Authenticator, Identity,
// Role, BearerToken), and keeps the one-time tickets with which a Catalyst
// client opens its WebSocket (TicketStore, and WSAuthHandler serving
// GET /api/users/ws-auth/). It decides nothing about what a caller may
// read: that is stream's.
package auth
