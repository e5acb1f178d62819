// Package wstest holds what the tests of the WebSocket transport (ws) and
// of its protocols share: loopback sockets and a parser of the frames a
// server writes.
package wstest
