// Package console serves pgcast's live console: a page at /console/ where a
// person signs in with a token and watches their events, a live grid of a
// collection and the Catalyst frames, built only on the public APIs through
// the JavaScript client (clients/js).
//
// The files are embedded (plain ES modules, no build step). The client
// library's modules are served from static/lib/, a copy of clients/js/src
// (Go's embed cannot reach outside this directory): `go generate
// ./server/console` refreshes it, and TestLibIsTheClientSource fails while
// the two differ, so clients/js/src stays the one source.
//
// Development tokens: the sign-in asks GET /console/dev-token once when the
// page loads. A server that mints development tokens (`pgcast dev`, never
// `pgcast serve`) answers 200 with {"token":"<jwt>"} (Cache-Control:
// no-store), and the page then shows a "Mint a development token" button,
// which asks again and signs in with the answer; it also asks again when
// that token expires. Any other answer hides the button. Handler answers
// 404 there: the endpoint is registered by the server, as a more specific
// pattern than Prefix.
package console

//go:generate sh -c "rm -f static/lib/*.js && cp ../../clients/js/src/*.js static/lib/"
