package db

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// One-time WebSocket connection tickets (pgcast.tickets), kept in the
// database so that any node redeems a ticket another node issued. Package
// server/auth issues and checks them; the functions here store, take and
// prune the rows.

// ErrTicketNotFound is TakeTicket's error for a ticket that is not stored:
// unknown, or already taken.
var ErrTicketNotFound = errors.New("ticket not found")

// Ticket is a row of pgcast.tickets.
type Ticket struct {
	// ID is the ticket, a UUID in its text form.
	ID          string
	UserID      string
	Role        string
	Environment int64
	ExpiresAt   time.Time
	// CreatedAt is set by the database when the ticket is issued.
	CreatedAt time.Time
}

// IssueTicket stores a new ticket; its CreatedAt is ignored (the
// database's now()).
func IssueTicket(ctx context.Context, d DB, t Ticket) error {
	_, err := d.Exec(ctx,
		`INSERT INTO pgcast.tickets (id, user_id, role, environment_id, expires_at) VALUES ($1, $2, $3, $4, $5)`,
		t.ID, t.UserID, t.Role, t.Environment, t.ExpiresAt)
	if err != nil {
		return fmt.Errorf("store ticket: %w", err)
	}
	return nil
}

// TakeTicket deletes the ticket id and returns it, expired or not. The
// DELETE ... RETURNING is one atomic statement: of concurrent takes of one
// ticket exactly one gets the row; the others get ErrTicketNotFound.
func TakeTicket(ctx context.Context, q Querier, id string) (Ticket, error) {
	t := Ticket{ID: id}
	err := q.QueryRow(ctx,
		`DELETE FROM pgcast.tickets WHERE id = $1 RETURNING user_id, role, environment_id, expires_at, created_at`,
		id).Scan(&t.UserID, &t.Role, &t.Environment, &t.ExpiresAt, &t.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Ticket{}, ErrTicketNotFound
	}
	if err != nil {
		return Ticket{}, fmt.Errorf("take ticket: %w", err)
	}
	return t, nil
}

// RestoreTicket stores a taken ticket again, as it was (CreatedAt
// included). A ticket stored meanwhile under the same id is left as it is.
func RestoreTicket(ctx context.Context, d DB, t Ticket) error {
	_, err := d.Exec(ctx,
		`INSERT INTO pgcast.tickets (id, user_id, role, environment_id, expires_at, created_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING`,
		t.ID, t.UserID, t.Role, t.Environment, t.ExpiresAt, t.CreatedAt)
	if err != nil {
		return fmt.Errorf("restore ticket: %w", err)
	}
	return nil
}

// DeleteExpiredTickets deletes the tickets whose expiry is at or before
// now and returns how many.
func DeleteExpiredTickets(ctx context.Context, d DB, now time.Time) (int64, error) {
	tag, err := d.Exec(ctx, `DELETE FROM pgcast.tickets WHERE expires_at <= $1`, now)
	if err != nil {
		return 0, fmt.Errorf("delete expired tickets: %w", err)
	}
	return tag.RowsAffected(), nil
}
