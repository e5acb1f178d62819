// Package pgtest gives every test its own freshly migrated PostgreSQL
// database.
//
// The server is TEST_DATABASE_URL when set; otherwise a private throwaway
// cluster started from the locally installed Postgres binaries (the same code
// as `pgcast dev`), one per test process, stopped when the tests end. A
// template database is migrated once per process (keyed by a hash of the
// migrations and triggers) and each test clones it, which takes milliseconds.
// Test databases are dropped at the end of their test; those left by crashed
// runs are dropped at the next start. When no Postgres can be had, tests fail
// with instructions: they never skip.
//
// Use it from TestMain:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
// and in a test:
//
//	dsn := pgtest.NewDatabase(t)
package pgtest
