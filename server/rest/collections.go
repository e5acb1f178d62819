package rest

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/pgcast/pgcast/db"
	"github.com/pgcast/pgcast/internal/collections"
	"github.com/pgcast/pgcast/server/internal/httpjson"
)

// handleCollections serves /api/collections (admin): GET lists the
// collections of the caller's environment, POST creates one.
//
// A name already taken is a 409 with code validation_error and a detail of
// rule "unique" on "name": the contract's code list has no "conflict", and
// the status tells clients that retrying the same request cannot succeed.
func (s *API) handleCollections(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		return methodNotAllowed(http.MethodGet, http.MethodPost)
	}
	id, err := s.requireAdmin(r, "manage collections")
	if err != nil {
		return err
	}
	if r.Method == http.MethodGet {
		list, err := db.ListCollections(r.Context(), s.pool, id.Environment)
		if err != nil {
			return err
		}
		_ = httpjson.Write(w, http.StatusOK, map[string]any{"items": list})
		return nil
	}
	data, err := readBody(w, r)
	if err != nil {
		return err
	}
	def, err := collections.ParseDefinition(data)
	if err != nil {
		var ps collections.Problems
		if errors.As(err, &ps) {
			return validationError(ps)
		}
		return badRequest("%s", err.Error())
	}
	c, err := db.CreateCollection(r.Context(), s.pool, id.Environment, def)
	switch {
	case errors.Is(err, db.ErrCollectionExists):
		return conflict("name", fmt.Sprintf("a collection named %q already exists", def.Name))
	case errors.Is(err, db.ErrNoEnvironment):
		return notFound("environment %d does not exist", id.Environment)
	case err != nil:
		return err
	}
	_ = httpjson.Write(w, http.StatusCreated, c)
	return nil
}

// handleCollection serves GET /api/collections/{name} (admin).
func (s *API) handleCollection(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return methodNotAllowed(http.MethodGet)
	}
	id, err := s.requireAdmin(r, "manage collections")
	if err != nil {
		return err
	}
	c, err := db.GetCollection(r.Context(), s.pool, id.Environment, r.PathValue("name"))
	if errors.Is(err, db.ErrCollectionNotFound) {
		return notFound("collection %q not found", r.PathValue("name"))
	}
	if err != nil {
		return err
	}
	_ = httpjson.Write(w, http.StatusOK, c)
	return nil
}

// publishedEvent is the answer to POST /api/events: the event as realtime
// subscribers receive it.
type publishedEvent struct {
	ID        string          `json:"id"`
	Type      string          `json:"type"`
	Timestamp string          `json:"timestamp"`
	Source    string          `json:"source"`
	Payload   json.RawMessage `json:"payload"`
}

// handleEvents serves POST /api/events (admin) {"type", "payload"}: it
// calls pgcast.publish in the caller's environment, so the event joins the
// durable stream exactly like one published in SQL. payload may be left
// out or null (meaning {}). A type pgcast.publish refuses (malformed, or in
// a namespace missing from pgcast.publish_namespaces) is a validation_error
// on "type" carrying the database's message.
func (s *API) handleEvents(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return methodNotAllowed(http.MethodPost)
	}
	id, err := s.requireAdmin(r, "publish events")
	if err != nil {
		return err
	}
	members, err := readObject(w, r)
	if err != nil {
		return err
	}
	var (
		ps      collections.Problems
		typ     string
		hasType bool
		payload = json.RawMessage(`{}`)
	)
	for _, m := range members {
		switch m.Key {
		case "type":
			if typ, hasType = jsonString(m.Value); !hasType {
				ps = append(ps, collections.Problem{Field: "type", Rule: "type", Message: `type must be a string such as "job.completed"`})
			}
		case "payload":
			if string(m.Value) == "null" {
				continue
			}
			if m.Value[0] != '{' {
				ps = append(ps, collections.Problem{Field: "payload", Rule: "type", Message: "payload must be a JSON object"})
				continue
			}
			if hasNUL(m.Value) {
				ps = append(ps, collections.Problem{Field: "payload", Rule: "type", Message: `payload must not contain the NUL character (\u0000) in any string`})
				continue
			}
			if loneSurrogate(m.Value) {
				ps = append(ps, collections.Problem{Field: "payload", Rule: "type", Message: "payload " + loneSurrogateMessage})
				continue
			}
			payload = m.Value
		default:
			ps = append(ps, collections.Problem{Field: m.Key, Rule: "unknown", Message: fmt.Sprintf("unknown key %q (known: type, payload)", m.Key)})
		}
	}
	if !hasType && !hasProblem(ps, "type") {
		ps = append(ps, collections.Problem{Field: "type", Rule: "required", Message: "type is required"})
	}
	if ps != nil {
		return validationError(ps)
	}
	pub, err := db.Publish(r.Context(), s.pool, id.Environment, typ, payload)
	var invalid *db.InvalidEventError
	if errors.As(err, &invalid) {
		field := "type"
		if invalid.Payload {
			field = "payload"
		}
		return validationError(collections.Problems{{Field: field, Rule: "invalid", Message: invalid.Message}})
	}
	if err != nil {
		return err
	}
	ev := publishedEvent{
		ID: "evt_" + strconv.FormatInt(pub.Position, 10), Type: typ, Timestamp: pub.CreatedAt.UTC().Format("2006-01-02T15:04:05.000Z"),
		Source: pub.Source, Payload: pub.Payload,
	}
	_ = httpjson.Write(w, http.StatusCreated, ev)
	return nil
}

func hasProblem(ps collections.Problems, field string) bool {
	for _, p := range ps {
		if p.Field == field {
			return true
		}
	}
	return false
}
