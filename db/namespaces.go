package db

import (
	"context"
	"fmt"
)

// Namespace says what a realtime namespace (the part of a channel before
// its first ".") is in an environment.
type Namespace struct {
	// Collection: a collection of the environment, or a watch whose rows
	// carry their environment (env_column: its class lives in the
	// environment it was applied to, its rows' events in theirs).
	Collection bool
	// Published: an application namespace registered in
	// pgcast.publish_namespaces (events can be published to it).
	Published bool
}

// namespaceQuery says what namespace $2 is in environment $1.
const namespaceQuery = `SELECT EXISTS (SELECT 1 FROM pgcast.object_classes WHERE environment_id = $1 AND name = $2)
        OR EXISTS (SELECT 1 FROM pgcast.watches w JOIN pgcast.object_classes c ON c.id = w.object_class_id
                   WHERE w.env_attnum IS NOT NULL AND c.name = $2),
    EXISTS (SELECT 1 FROM pgcast.publish_namespaces WHERE name = $2)`

// LookupNamespace says what the namespace name is in environment env (the
// zero Namespace: nothing).
func LookupNamespace(ctx context.Context, q Querier, env int64, name string) (Namespace, error) {
	var ns Namespace
	if err := q.QueryRow(ctx, namespaceQuery, env, name).Scan(&ns.Collection, &ns.Published); err != nil {
		return Namespace{}, fmt.Errorf("look up namespace %q: %w", name, err)
	}
	return ns, nil
}
