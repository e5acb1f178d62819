package db

import "github.com/jackc/pgx/v5/pgconn"

// IsTimeout reports whether err is a statement or connection that ran out
// of time (a context deadline or a network timeout, as pgconn tells them),
// rather than a failure of the statement itself.
func IsTimeout(err error) bool { return pgconn.Timeout(err) }
