package db

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// DB is a pool, a connection or a transaction (*Pool, *pgx.Conn and pgx.Tx
// satisfy it): the handle of the functions that write. One that runs
// several statements runs them in a transaction it begins on the handle,
// which is a savepoint when the handle is itself a transaction: a caller
// may group several calls into one transaction of its own.
type DB interface {
	RowsQuerier
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Begin(ctx context.Context) (pgx.Tx, error)
}
