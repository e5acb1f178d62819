// Package sql holds pgcast's versioned schema migrations, embedded into the
// binary. Files are named NNNNNN_title.up.sql / NNNNNN_title.down.sql, the
// layout golang-migrate's iofs source reads.
//
// Import it under an alias (it shadows database/sql):
//
//	import pgsql "github.com/pgcast/pgcast/sql"
//
// Rules for a new migration: never edit one that has shipped; every up has a
// down that restores the previous version exactly; all objects live in the
// "pgcast" schema. Trigger functions are not migrations: they live in package
// triggers and are re-applied idempotently after every migrate.
package sql
