package db

import "github.com/jackc/pgx/v5"

// The delta's statements, for the tests of their plans.
const (
	DeltaFirstPage = deltaFirstPage
	DeltaBounds    = deltaBounds
	DeltaPage      = deltaPage
)

// IdleInTransactionTimeout is the reader connection's
// idle_in_transaction_session_timeout.
const IdleInTransactionTimeout = idleInTransactionTimeout

// PgxConn is the connection under c, for tests that look at its settings
// and plans.
func (c *ListenConn) PgxConn() *pgx.Conn { return c.conn }
