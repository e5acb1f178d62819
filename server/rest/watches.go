package rest

import (
	"errors"
	"net/http"
	"strings"

	"github.com/pgcast/pgcast/db"
	"github.com/pgcast/pgcast/internal/collections"
	"github.com/pgcast/pgcast/server/internal/httpjson"
)

// The watches API (admin), what `pgcast watch` does over HTTP
// (docs/watch.md):
//
//	GET    /api/watches         {"items":[watch…]}, each with its status and problems
//	GET    /api/watches/{name}  200 watch
//	PUT    /api/watches/{name}  a watch definition (without "name", or the same):
//	                            201 (created) or 200 {"watch", "changes"}; idempotent, repairs drift
//	DELETE /api/watches/{name}  204: the capture triggers are dropped, the table stays
//
// A watch exposes a table of the whole database, whatever environments its
// rows belong to: only admins of environment 1 may create, change or
// remove one (admins of other environments may list theirs).
//
// Errors: 400 validation_error (a malformed definition, or one that does not
// fit the table: the message names the problem), 403 forbidden (the
// server's database role does not own the table), 404 not_found, 409
// validation_error with rule "unique" (the name or the table is taken).

// watchApplied is the answer to PUT /api/watches/{name}.
type watchApplied struct {
	Watch   db.Watch `json:"watch"`
	Changes []string `json:"changes"`
}

func (s *API) handleWatches(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return methodNotAllowed(http.MethodGet)
	}
	id, err := s.requireAdmin(r, "manage watches")
	if err != nil {
		return err
	}
	list, err := db.ListWatches(r.Context(), s.pool, id.Environment)
	if err != nil {
		return err
	}
	if list == nil {
		list = []db.Watch{}
	}
	_ = httpjson.Write(w, http.StatusOK, map[string]any{"items": list})
	return nil
}

func (s *API) handleWatch(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodPut && r.Method != http.MethodDelete {
		return methodNotAllowed(http.MethodGet, http.MethodPut, http.MethodDelete)
	}
	id, err := s.requireAdmin(r, "manage watches")
	if err != nil {
		return err
	}
	ctx, name := r.Context(), r.PathValue("name")
	if r.Method != http.MethodGet && id.Environment != 1 {
		return NewError(http.StatusForbidden, "forbidden",
			"only admins of environment 1 may manage watches: a watch exposes a table of the whole database")
	}
	switch r.Method {
	case http.MethodGet:
		wt, err := db.GetWatch(ctx, s.pool, id.Environment, name)
		if err != nil {
			return watchError(err)
		}
		_ = httpjson.Write(w, http.StatusOK, wt)
	case http.MethodDelete:
		if err := db.RemoveWatch(ctx, s.pool, id.Environment, name); err != nil {
			return watchError(err)
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		data, err := readBody(w, r)
		if err != nil {
			return err
		}
		def, err := db.ParseWatchDefinition(data)
		if err != nil {
			return watchError(err)
		}
		if def.Name != "" && def.Name != name {
			return badRequest("the definition's name %q differs from the path's %q", def.Name, name)
		}
		def.Name = name
		res, err := db.ApplyWatch(ctx, s.pool, id.Environment, def)
		if err != nil {
			return watchError(err)
		}
		status := http.StatusOK
		if res.Created {
			status = http.StatusCreated
		}
		if res.Changes == nil {
			res.Changes = []string{}
		}
		_ = httpjson.Write(w, status, watchApplied{Watch: res.Watch, Changes: res.Changes})
	}
	return nil
}

// watchError maps the db package's watch errors to responses; their
// messages say what to do and contain no secret.
func watchError(err error) error {
	msg := err.Error()
	for _, e := range []error{db.ErrInvalidWatch, db.ErrWatchConflict, db.ErrNotTableOwner, db.ErrWatchNotFound} {
		msg = strings.TrimPrefix(msg, e.Error()+": ")
	}
	switch {
	case errors.Is(err, db.ErrInvalidWatch):
		return validationError(collections.Problems{{Field: "", Rule: "invalid", Message: msg}})
	case errors.Is(err, db.ErrWatchConflict):
		return conflict("name", msg)
	case errors.Is(err, db.ErrNotTableOwner):
		return NewError(http.StatusForbidden, "forbidden", msg)
	case errors.Is(err, db.ErrWatchNotFound):
		return notFound("%s", msg)
	}
	return err
}
