package db_test

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgcast/pgcast/db"
	"github.com/pgcast/pgcast/internal/collections"
	"github.com/pgcast/pgcast/internal/pgtest"
)

// postsDef is a collection with a required field, an optional one and the
// default rules.
func postsDef() collections.Definition {
	return collections.Definition{
		Name: "posts",
		Fields: []collections.FieldDef{
			{Name: "title", Type: collections.TypeString, Required: true},
			{Name: "body", Type: collections.TypeText},
		},
		Permissions: collections.DefaultPermissions(),
	}
}

func mustCollection(t *testing.T, pool *pgxpool.Pool, def collections.Definition) collections.Collection {
	t.Helper()
	c, err := db.CreateCollection(context.Background(), pool, 1, def)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCollectionCreateGetList(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := pgtest.NewPool(t)
	if list, err := db.ListCollections(ctx, pool, 1); err != nil || list == nil || len(list) != 0 {
		t.Fatalf("empty environment: %#v, %v; want an empty list", list, err)
	}
	c := mustCollection(t, pool, postsDef())
	if c.ID == 0 || len(c.Fields) != 2 || c.Fields[0].ID == 0 || c.Fields[1].ID == 0 || c.Fields[0].ID == c.Fields[1].ID {
		t.Fatalf("created %+v: want ids for the class and each field", c)
	}
	got, err := db.GetCollection(ctx, pool, 1, "posts")
	if err != nil || !reflect.DeepEqual(got, c) {
		t.Fatalf("GetCollection = %+v, %v; want %+v", got, err, c)
	}
	list, err := db.ListCollections(ctx, pool, 1)
	if err != nil || len(list) != 1 || !reflect.DeepEqual(list[0], c) {
		t.Fatalf("ListCollections = %+v, %v", list, err)
	}

	if _, err := db.GetCollection(ctx, pool, 1, "nope"); !errors.Is(err, db.ErrCollectionNotFound) {
		t.Errorf("GetCollection of a missing name: %v, want ErrCollectionNotFound", err)
	}
	if _, err := db.GetCollection(ctx, pool, 2, "posts"); !errors.Is(err, db.ErrCollectionNotFound) {
		t.Errorf("GetCollection in another environment: %v, want ErrCollectionNotFound", err)
	}
	if _, err := db.CreateCollection(ctx, pool, 1, postsDef()); !errors.Is(err, db.ErrCollectionExists) {
		t.Errorf("CreateCollection of a taken name: %v, want ErrCollectionExists", err)
	}
	if _, err := db.CreateCollection(ctx, pool, 99, postsDef()); !errors.Is(err, db.ErrNoEnvironment) {
		t.Errorf("CreateCollection in a missing environment: %v, want ErrNoEnvironment", err)
	}
	for env, want := range map[int64]bool{1: true, 99: false} {
		if got, err := db.EnvironmentExists(ctx, pool, env); err != nil || got != want {
			t.Errorf("EnvironmentExists(%d) = %t, %v; want %t", env, got, err, want)
		}
	}
}

// ApplyCollection runs in a savepoint of a caller's transaction: rolled
// back with it, it leaves nothing; applied again, it changes nothing.
func TestCollectionApply(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := pgtest.NewPool(t)
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := db.ApplyCollection(ctx, tx, 1, postsDef()); err != nil || !res.Created {
		t.Fatalf("apply in a transaction: %+v, %v", res, err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := db.GetCollection(ctx, pool, 1, "posts"); !errors.Is(err, db.ErrCollectionNotFound) {
		t.Fatalf("after the rollback: %v, want ErrCollectionNotFound", err)
	}

	res, err := db.ApplyCollection(ctx, pool, 1, postsDef())
	if err != nil || !res.Created {
		t.Fatalf("apply: %+v, %v", res, err)
	}
	again, err := db.ApplyCollection(ctx, pool, 1, postsDef())
	if err != nil || again.Created || len(again.Changes) != 0 || !reflect.DeepEqual(again.Collection, res.Collection) {
		t.Fatalf("apply again: %+v, %v; want no change", again, err)
	}
	def := postsDef()
	def.Fields[1].Required = true
	def.Fields = append(def.Fields, collections.FieldDef{Name: "n", Type: collections.TypeInteger})
	def.Permissions.Read = collections.RulePublic
	changed, err := db.ApplyCollection(ctx, pool, 1, def)
	if err != nil || len(changed.Changes) != 3 || len(changed.Collection.Fields) != 3 || !changed.Collection.Fields[1].Required {
		t.Fatalf("apply a change: %+v, %v; want 3 changes", changed, err)
	}
	if got, _ := db.GetCollection(ctx, pool, 1, "posts"); !reflect.DeepEqual(got, changed.Collection) {
		t.Errorf("stored %+v, want %+v", got, changed.Collection)
	}
	def.Fields[2].Type = collections.TypeText
	if _, err := db.ApplyCollection(ctx, pool, 1, def); err == nil {
		t.Error("a field's type changed: applied, want an error")
	}

	// A watch's class is not a collection to apply.
	mustExec(t, pool, `CREATE TABLE orders (id int PRIMARY KEY)`)
	if _, err := db.ApplyWatch(ctx, pool, 1, db.WatchDefinition{Table: "public.orders"}); err != nil {
		t.Fatal(err)
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		_, err := db.ApplyCollection(ctx, tx, 1, collections.Definition{Name: "orders", Permissions: collections.DefaultPermissions()})
		return err
	})
	if !errors.Is(err, db.ErrCollectionExists) {
		t.Errorf("apply over a watch: %v, want ErrCollectionExists", err)
	}
}
