package db

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// PublishedEvent is an event Publish appended to the log, as stored.
type PublishedEvent struct {
	// Position is the entry's log position (pgcast.events.id).
	Position  int64
	CreatedAt time.Time
	// Source and Payload are the entry's data.source and data.payload.
	Source  string
	Payload json.RawMessage
}

// InvalidEventError is an event pgcast.publish refused (SQLSTATE 22023,
// invalid_parameter_value): a malformed type, a type in a namespace missing
// from pgcast.publish_namespaces, or a payload it does not take.
type InvalidEventError struct {
	// Payload tells that the payload is at fault, rather than the type.
	Payload bool
	// Message is pgcast.publish's, which says what is wrong.
	Message string
}

func (e *InvalidEventError) Error() string { return "invalid event: " + e.Message }

// Publish calls pgcast.publish(typ, payload) in environment env, exactly
// as an application publishes in SQL, so the event joins the durable
// stream like any other, and returns the entry it appended. payload is a
// JSON object. A refused event gives an *InvalidEventError.
func Publish(ctx context.Context, d DB, env int64, typ string, payload []byte) (PublishedEvent, error) {
	var ev PublishedEvent
	err := pgx.BeginFunc(ctx, d, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT set_config('pgcast.environment', $1, true)`, strconv.FormatInt(env, 10)); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT pgcast.publish($1, $2::jsonb)`, typ, payload).Scan(&ev.Position); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `SELECT created_at, data->>'source', data->'payload' FROM pgcast.events WHERE id = $1`, ev.Position).
			Scan(&ev.CreatedAt, &ev.Source, &ev.Payload)
	})
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "22023" { // raised by pgcast.publish
		return PublishedEvent{}, &InvalidEventError{Payload: strings.HasPrefix(pe.Message, "event payload"), Message: pe.Message}
	}
	if err != nil {
		return PublishedEvent{}, fmt.Errorf("publish %q: %w", typ, err)
	}
	return ev, nil
}
