// Package db owns pgcast's connections to PostgreSQL: the pgx pool, the
// migration runner (golang-migrate with the migrations embedded from package
// sql) and the schema-version check that keeps a binary off a schema it was
// not built for.
package db
