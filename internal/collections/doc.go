// Package collections defines pgcast's collections: object classes with
// typed fields and one permission rule per operation. It parses and
// validates a collection definition (and any JSON object a request sends,
// ParseObject), and reports what is wrong with one as Problems.
//
// It is a leaf: it imports no pgcast package and runs no SQL. Package db
// stores and reads collections (db.CreateCollection, db.ApplyCollection,
// db.GetCollection, db.ListCollections) and validates watch names with
// its rules; the REST API (package server/rest, POST /api/collections) and
// `pgcast collections apply` both parse definitions here, so a definition
// is accepted or rejected, with the same messages, whichever way it
// arrives.
package collections
