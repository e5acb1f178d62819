// Package collections defines pgcast's collections: object classes with
// typed fields and one permission rule per operation. It parses and
// validates a collection definition and creates, updates and lists
// collections in Postgres.
//
// The REST API (package server, POST /api/collections) and
// `pgcast collections apply` both use it, so a definition is accepted or
// rejected, with the same messages, whichever way it arrives.
package collections
