package db_test

import (
	"context"
	"errors"
	"testing"

	"github.com/pgcast/pgcast/db"
	"github.com/pgcast/pgcast/internal/pgtest"
)

func TestPublish(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := pgtest.NewPool(t)
	mustExec(t, pool, `INSERT INTO pgcast.environments (id, name) VALUES (2, 'two')`)
	ev, err := db.Publish(ctx, pool, 2, "job.completed", []byte(`{"name": "nightly"}`))
	if err != nil {
		t.Fatal(err)
	}
	if ev.Position == 0 || ev.CreatedAt.IsZero() || ev.Source != "jobs" || string(ev.Payload) != `{"name": "nightly"}` {
		t.Fatalf("published %+v", ev)
	}
	var env int64
	var kind string
	if err := pool.QueryRow(ctx, `SELECT environment_id, kind FROM pgcast.events WHERE id = $1`, ev.Position).Scan(&env, &kind); err != nil || env != 2 || kind != db.KindPublished {
		t.Fatalf("entry %d: environment %d, kind %q, %v; want 2, %q", ev.Position, env, kind, err, db.KindPublished)
	}
	// The environment is the transaction's setting only.
	if next, err := db.Publish(ctx, pool, 1, "job.completed", []byte(`{}`)); err != nil || next.Position <= ev.Position {
		t.Fatalf("published %+v, %v", next, err)
	}
	if err := pool.QueryRow(ctx, `SELECT environment_id FROM pgcast.events ORDER BY id DESC LIMIT 1`).Scan(&env); err != nil || env != 1 {
		t.Fatalf("second entry in environment %d, %v; want 1", env, err)
	}

	cases := []struct {
		typ, payload string
		wantPayload  bool
	}{
		{"no-dot", `{}`, false},
		{"nonamespace.x", `{}`, false},
		{"job.completed", `[1]`, true},
	}
	for _, c := range cases {
		_, err := db.Publish(ctx, pool, 1, c.typ, []byte(c.payload))
		var inv *db.InvalidEventError
		if !errors.As(err, &inv) || inv.Payload != c.wantPayload || inv.Message == "" {
			t.Errorf("publish %q %s: %v, want an InvalidEventError (payload %t)", c.typ, c.payload, err, c.wantPayload)
		}
	}
}

func TestLookupNamespace(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := pgtest.NewPool(t)
	mustExec(t, pool, `INSERT INTO pgcast.environments (id, name) VALUES (2, 'two')`)
	mustCollection(t, pool, postsDef())
	mustExec(t, pool, `INSERT INTO pgcast.publish_namespaces (name, source) VALUES ('billing', 'billing'), ('posts', 'posts')`)
	mustExec(t, pool, `CREATE TABLE tenant_orders (id int PRIMARY KEY, env bigint)`)
	if _, err := db.ApplyWatch(ctx, pool, 1, db.WatchDefinition{Table: "public.tenant_orders", EnvColumn: "env"}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		env  int64
		name string
		want db.Namespace
	}{
		{1, "posts", db.Namespace{Collection: true, Published: true}},
		{2, "posts", db.Namespace{Published: true}},
		{1, "billing", db.Namespace{Published: true}},
		{2, "tenant_orders", db.Namespace{Collection: true}}, // its rows carry their environment
		{1, "nothing", db.Namespace{}},
	}
	for _, c := range cases {
		if got, err := db.LookupNamespace(ctx, pool, c.env, c.name); err != nil || got != c.want {
			t.Errorf("LookupNamespace(%d, %q) = %+v, %v; want %+v", c.env, c.name, got, err, c.want)
		}
	}
}
