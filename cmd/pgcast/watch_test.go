package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/pgcast/pgcast/db"
	"github.com/pgcast/pgcast/internal/pgtest"
)

func TestWatchCommands(t *testing.T) {
	t.Parallel()
	pool, url := pgtest.NewPool(t)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `CREATE TABLE orders (id bigint PRIMARY KEY, customer_id uuid, status text, card_token text)`); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"DATABASE_URL": url}
	dir := t.TempDir()
	file := writeFile(t, dir, "watches.yaml", `watches:
  - table: public.orders
    columns: {exclude: [card_token]}
    read: owner
    owner_columns: [customer_id]
    counts: true
`)
	code, out, stderr := runCLI(t, vars, "watch", "apply", file)
	if code != 0 || !strings.Contains(out, "created watch orders") {
		t.Fatalf("apply: %d %s %s", code, out, stderr)
	}
	code, out, stderr = runCLI(t, vars, "watch", "apply", file)
	if code != 0 || strings.TrimSpace(out) != "orders: unchanged (class id 1)" {
		t.Fatalf("second apply: %d %q %s", code, out, stderr)
	}

	// Listed with the collections, and by watch list.
	list, err := db.ListCollections(ctx, pool, 1)
	if err != nil || len(list) != 1 || list[0].Table != "public.orders" || len(list[0].Fields) != 3 {
		t.Fatalf("collections: %+v %v", list, err)
	}
	code, out, _ = runCLI(t, vars, "watch", "list")
	var listed struct {
		Items []struct {
			Name     string   `json:"name"`
			Table    string   `json:"table"`
			Status   string   `json:"status"`
			Excluded []string `json:"excluded"`
		} `json:"items"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &listed) != nil || len(listed.Items) != 1 ||
		listed.Items[0].Status != "ok" || listed.Items[0].Excluded[0] != "card_token" {
		t.Fatalf("list: %d %s", code, out)
	}

	// Drift shows in list; apply repairs it.
	if _, err := pool.Exec(ctx, `DROP TRIGGER pgcast_watch_delete ON orders`); err != nil {
		t.Fatal(err)
	}
	if _, out, _ = runCLI(t, vars, "watch", "list"); !strings.Contains(out, `"status": "drift"`) || !strings.Contains(out, "pgcast_watch_delete on public.orders is missing") {
		t.Fatalf("list after a dropped trigger: %s", out)
	}
	if code, out, _ = runCLI(t, vars, "watch", "apply", file); code != 0 || !strings.Contains(out, "orders: repaired: trigger pgcast_watch_delete on public.orders is missing") {
		t.Fatalf("repair: %d %s", code, out)
	}

	// Errors are one line, naming the problem.
	bad := writeFile(t, dir, "bad.json", `{"table": "public.orders", "columns": {"exclude": ["card_tokn"]}}`)
	code, _, stderr = runCLI(t, vars, "watch", "apply", bad)
	if code != 1 || !strings.Contains(stderr, `columns.exclude: table public.orders has no column "card_tokn"`) || strings.Count(stderr, "\n") != 1 {
		t.Fatalf("bad column: %d %s", code, stderr)
	}
	typo := writeFile(t, dir, "typo.yaml", "table: public.orders\ncolumns: {exlude: [card_token]}\n")
	if code, _, stderr = runCLI(t, vars, "watch", "apply", typo); code != 1 || !strings.Contains(stderr, `unknown key "exlude"`) {
		t.Fatalf("typo: %d %s", code, stderr)
	}

	code, out, stderr = runCLI(t, vars, "watch", "remove", "orders")
	if code != 0 || !strings.Contains(out, "removed watch orders: capture triggers dropped from public.orders") {
		t.Fatalf("remove: %d %s %s", code, out, stderr)
	}
	var triggers int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_trigger WHERE tgrelid = 'orders'::regclass`).Scan(&triggers); err != nil || triggers != 0 {
		t.Fatalf("%d triggers left (%v)", triggers, err)
	}
	if code, _, stderr = runCLI(t, vars, "watch", "remove", "orders"); code != 1 || !strings.Contains(stderr, `no watch "orders" in environment 1`) {
		t.Fatalf("second remove: %d %s", code, stderr)
	}
}
