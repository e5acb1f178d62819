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
package console

//go:generate sh -c "rm -f static/lib/*.js && cp ../../clients/js/src/*.js static/lib/"
