package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgcast/pgcast/db"
	"github.com/pgcast/pgcast/internal/collections"
	"github.com/pgcast/pgcast/internal/pgtest"
)

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// schemaSnapshot is everything apply may change, as one comparable string.
func schemaSnapshot(t *testing.T, pool *pgxpool.Pool) string {
	t.Helper()
	var s string
	err := pool.QueryRow(context.Background(), `
		SELECT concat_ws(' | ',
		  (SELECT string_agg(concat_ws(',', id, environment_id, name, create_rule, read_rule, update_rule, delete_rule), ';' ORDER BY id) FROM pgcast.object_classes),
		  (SELECT string_agg(concat_ws(',', id, object_class_id, name, type, required, position), ';' ORDER BY id) FROM pgcast.object_class_fields),
		  (SELECT count(*) FROM pgcast.events))`).Scan(&s)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestCollectionsApplyIdempotent(t *testing.T) {
	t.Parallel()
	pool, url := pgtest.NewPool(t)
	vars := map[string]string{"DATABASE_URL": url}
	dir := t.TempDir()
	apply := func(content string) (int, string, string) {
		t.Helper()
		return runCLI(t, vars, "collections", "apply", writeFile(t, dir, "c.yaml", content))
	}

	v1 := `collections:
  - name: posts
    fields:
      - {name: title, type: string, required: true}
      - {name: body, type: text}
    permissions: {create: authenticated, read: public}
  - name: comments
    fields:
      - name: text
        type: text
`
	code, out, stderr := apply(v1)
	if code != 0 {
		t.Fatalf("apply: %d %s", code, stderr)
	}
	for _, want := range []string{"created collection posts", "created collection comments"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	ctx := context.Background()
	posts, err := db.GetCollection(ctx, pool, 1, "posts")
	if err != nil {
		t.Fatal(err)
	}
	want := collections.Permissions{Create: "authenticated", Read: "public", Update: "owner", Delete: "owner"}
	if posts.Permissions != want || len(posts.Fields) != 2 || posts.Fields[0].Name != "title" || !posts.Fields[0].Required || posts.Fields[1].Type != "text" {
		t.Errorf("posts = %+v", posts)
	}
	var created int64
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pgcast.events WHERE kind = 'collection_created'`).Scan(&created); err != nil || created != 2 {
		t.Errorf("%d collection_created entries, want 2 (%v)", created, err)
	}

	// Re-applying the same file changes nothing, not even the event log.
	before := schemaSnapshot(t, pool)
	code, out, stderr = apply(v1)
	if code != 0 {
		t.Fatalf("re-apply: %d %s", code, stderr)
	}
	if out != "posts: unchanged (id "+itoa(uint(posts.ID))+")\ncomments: unchanged (id "+itoa(uint(posts.ID+1))+")\n" {
		t.Errorf("re-apply output:\n%s", out)
	}
	if after := schemaSnapshot(t, pool); after != before {
		t.Errorf("re-apply changed the database:\n%s\n%s", before, after)
	}

	// Adding a field adds it; rules and required flags are updated; a field
	// left out of the file is kept.
	v2 := `- name: posts
  fields:
    - {name: title, type: string}
    - {name: body, type: text}
    - {name: views, type: integer}
  permissions: {create: authenticated, read: owner}
`
	code, out, stderr = apply(v2)
	if code != 0 {
		t.Fatalf("apply v2: %d %s", code, stderr)
	}
	for _, want := range []string{"posts: read rule public → owner", "posts.title: required true → false", "posts: added field views (integer, id "} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	got, err := db.GetCollection(ctx, pool, 1, "posts")
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != posts.ID || got.Permissions.Read != "owner" || len(got.Fields) != 3 || got.Fields[0].ID != posts.Fields[0].ID ||
		got.Fields[0].Required || got.Fields[2].Name != "views" {
		t.Errorf("posts after v2 = %+v", got)
	}
	before = schemaSnapshot(t, pool)
	if code, out, _ = apply(v2); code != 0 || out != "posts: unchanged (id "+itoa(uint(posts.ID))+")\n" {
		t.Errorf("re-apply v2: %d %q", code, out)
	}
	code, out, _ = apply(`{"name":"posts","fields":[{"name":"title","type":"string"}],"permissions":{"read":"owner"}}`)
	if code != 0 || !strings.Contains(out, "posts.body: kept") || !strings.Contains(out, "posts.views: kept") {
		t.Errorf("fields left out: %d %s", code, out)
	}
	if after := schemaSnapshot(t, pool); after != before {
		t.Errorf("leaving fields out changed the database:\n%s\n%s", before, after)
	}

	// Changing a field's type is refused, and the whole file is rolled back.
	code, _, stderr = apply(`[{"name":"newone"},{"name":"posts","fields":[{"name":"title","type":"integer"}]}]`)
	if code == 0 || !strings.Contains(stderr, "changing a field's type is not supported") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("type change: %d %q", code, stderr)
	}
	if after := schemaSnapshot(t, pool); after != before {
		t.Errorf("a refused file changed the database:\n%s\n%s", before, after)
	}
}

func TestCollectionsApplyFormatsAndErrors(t *testing.T) {
	t.Parallel()
	pool, url := pgtest.NewPool(t)
	vars := map[string]string{"DATABASE_URL": url}
	dir := t.TempDir()
	for name, content := range map[string]string{
		"one.json":   `{"name":"a","fields":[{"name":"x","type":"json"}]}`,
		"list.json":  `[{"name":"b"},{"name":"c"}]`,
		"wrap.json":  `{"collections":[{"name":"d"}]}`,
		"one.yaml":   "name: e\nfields:\n  - name: when\n    type: datetime\n",
		"noext":      "- name: f\n",
		"brace.conf": `{"name":"g"}`,
	} {
		if code, _, stderr := runCLI(t, vars, "collections", "apply", writeFile(t, dir, name, content)); code != 0 {
			t.Errorf("%s: %d %s", name, code, stderr)
		}
	}
	list, err := db.ListCollections(context.Background(), pool, 1)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range list {
		names = append(names, c.Name)
	}
	slices.Sort(names)
	if strings.Join(names, ",") != "a,b,c,d,e,f,g" {
		t.Errorf("collections %v", names)
	}

	before := schemaSnapshot(t, pool)
	for _, c := range []struct{ name, content, want string }{
		{"reserved.yaml", "name: auth\n", `name: collection name "auth" is reserved`},
		{"badname.json", `{"name":"Bad"}`, "name: collection name \"Bad\" must start with a lower-case letter"},
		{"badtype.yaml", "name: h\nfields: [{name: x, type: uuid}]\n", `fields[0].type: fields[0].type "uuid" is not a field type`},
		{"unknown.json", `{"name":"h","color":1}`, `color: unknown key "color"`},
		{"second.json", `[{"name":"h"},{"name":"i","permissions":{"read":"all"}}]`, "collection 2: permissions.read"},
		{"dup.json", `[{"name":"h"},{"name":"h"}]`, `collection 2: "h" is already defined by collection 1`},
		{"empty.yaml", "  \n", "the file is empty"},
		{"nothing.json", `[]`, "no collections in the file"},
		{"bad.yaml", "name: [unclosed\n", "invalid YAML"},
		{"bad.json", `{"name":`, "invalid JSON"},
		{"scalar.yaml", "just a string\n", "want a collection"},
		{"wrapextra.json", `{"collections":[],"x":1}`, `no other top-level key`},
	} {
		code, _, stderr := runCLI(t, vars, "collections", "apply", writeFile(t, dir, c.name, c.content))
		if code == 0 || !strings.Contains(stderr, c.want) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%s: exit %d, stderr %q, want one line with %q", c.name, code, stderr, c.want)
		}
	}
	ok := writeFile(t, dir, "ok.json", `{"name":"h"}`)
	for _, c := range []struct {
		vars map[string]string
		args []string
		want string
	}{
		{vars, []string{"collections", "apply", filepath.Join(dir, "missing.json")}, "no such file"},
		{vars, []string{"collections", "apply", ok, "--env", "5"}, "environment 5 does not exist"},
		{vars, []string{"collections", "apply", ok, "--env", "0"}, "invalid --env 0"},
		{vars, []string{"collections", "apply"}, "accepts 1 arg"},
		{nil, []string{"collections", "apply", ok}, "no database"},
	} {
		code, _, stderr := runCLI(t, c.vars, c.args...)
		if code == 0 || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q, want %q", c.args, code, stderr, c.want)
		}
	}
	if after := schemaSnapshot(t, pool); after != before {
		t.Errorf("refused files changed the database:\n%s\n%s", before, after)
	}

	// Another environment.
	if _, err := pool.Exec(context.Background(), `INSERT INTO pgcast.environments (id, name) VALUES (2, 'two')`); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := runCLI(t, vars, "collections", "apply", ok, "--env", "2"); code != 0 {
		t.Fatalf("apply --env 2: %s", stderr)
	}
	code, out, stderr := runCLI(t, vars, "collections", "list", "--env", "2")
	if code != 0 || !strings.Contains(out, `"name": "h"`) || strings.Contains(out, `"name": "a"`) {
		t.Errorf("list --env 2: %d %s %s", code, out, stderr)
	}
	code, out, _ = runCLI(t, vars, "collections", "list")
	if code != 0 || !strings.Contains(out, `"items": [`) || !strings.Contains(out, `"type": "datetime"`) {
		t.Errorf("list: %d %s", code, out)
	}
}

func TestCollectionsHelp(t *testing.T) {
	t.Parallel()
	for _, c := range []string{"collections", "collections apply", "collections list"} {
		code, out, _ := runCLI(t, nil, append(strings.Fields(c), "--help")...)
		if code != 0 || !strings.Contains(out, "Examples:") {
			t.Errorf("%s --help lacks an example: %s", c, out)
		}
	}
}

func TestDevSeedsPostsCollection(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDatabase(t)
	stderr := newWatch(`msg=listening addr=(\S+)`)
	sig := make(chan os.Signal, 2)
	done := make(chan int, 1)
	go func() {
		done <- execute(context.Background(), []string{"dev", "--addr", "127.0.0.1:0", "--internal-addr", "off"},
			testEnv(map[string]string{"DATABASE_URL": url}), io.Discard, stderr, sig)
	}()
	select {
	case <-stderr.found:
	case code := <-done:
		t.Fatalf("dev exited early with %d: %s", code, stderr)
	case <-time.After(30 * time.Second):
		t.Fatalf("dev did not start: %s", stderr)
	}
	// The README's first request works on a fresh database.
	resp, err := http.Post("http://"+stderr.match[1]+"/api/posts", "application/json", strings.NewReader(`{"title":"Hello"}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || !strings.Contains(string(body), `"title":"Hello"`) {
		t.Errorf("POST /api/posts: %d %s", resp.StatusCode, body)
	}
	sig <- syscall.SIGTERM
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("dev exit code %d: %s", code, stderr)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("dev did not stop")
	}

	// Seeding again leaves an existing collection exactly as it is.
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(context.Background(), `UPDATE pgcast.object_classes SET read_rule = 'admin' WHERE name = 'posts'`); err != nil {
		t.Fatal(err)
	}
	a := &app{logger: slog.New(slog.DiscardHandler)}
	if err := a.seedDev(context.Background(), pool); err != nil {
		t.Fatal(err)
	}
	c, err := db.GetCollection(context.Background(), pool, 1, "posts")
	if err != nil {
		t.Fatal(err)
	}
	if c.Permissions.Read != "admin" || c.Permissions.Create != "public" || len(c.Fields) != 1 {
		t.Errorf("posts after a second seed: %+v", c)
	}
	checkDevOrders(t, a, pool)
}

// checkDevOrders checks the watched sample table `pgcast dev` seeded: three
// rows, watched as orders (read: authenticated), changes captured; seeding
// again leaves the table, its rows and the watch as they are, and does not
// watch the table again once its watch was removed.
func checkDevOrders(t *testing.T, a *app, pool *pgxpool.Pool) {
	t.Helper()
	ctx := context.Background()
	w, err := db.GetWatch(ctx, pool, 1, devOrdersWatch)
	if err != nil {
		t.Fatalf("no seeded watch: %v", err)
	}
	if w.Table != devOrdersTable || w.Status != "ok" || w.Read != "authenticated" || !w.Catalyst || len(w.Columns) != 5 {
		t.Errorf("seeded watch %+v", w)
	}
	count := func(sql string, args ...any) int64 {
		t.Helper()
		var n int64
		if err := pool.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(`SELECT count(*) FROM public.orders`); n != 3 {
		t.Errorf("seeded %d orders, want 3", n)
	}
	if _, err := pool.Exec(ctx, `UPDATE public.orders SET status = 'paid' WHERE customer = 'grace'`); err != nil {
		t.Fatal(err)
	}
	if n := count(`SELECT count(*) FROM pgcast.events WHERE kind = 'record_updated' AND object_class_id = $1
		AND data->'record'->>'status' = 'paid' AND data->'record'->>'customer' = 'grace'`, w.ClassID); n != 1 {
		t.Errorf("%d entries for the update of a seeded order, want 1", n)
	}

	if _, err := pool.Exec(ctx, `DELETE FROM public.orders WHERE customer = 'ada'`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `UPDATE pgcast.object_classes SET read_rule = 'admin' WHERE id = $1`, w.ClassID); err != nil {
		t.Fatal(err)
	}
	if err := a.seedDev(ctx, pool); err != nil {
		t.Fatal(err)
	}
	again, err := db.GetWatch(ctx, pool, 1, devOrdersWatch)
	if err != nil || again.ClassID != w.ClassID || again.Read != "admin" || count(`SELECT count(*) FROM public.orders`) != 2 {
		t.Errorf("after a second seed: watch %+v (%v), %d orders", again, err, count(`SELECT count(*) FROM public.orders`))
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return db.RemoveWatch(ctx, tx, 1, devOrdersWatch) })
	if err != nil {
		t.Fatal(err)
	}
	if err := a.seedDev(ctx, pool); err != nil {
		t.Fatal(err)
	}
	if _, err := db.GetWatch(ctx, pool, 1, devOrdersWatch); !errors.Is(err, db.ErrWatchNotFound) {
		t.Errorf("a removed watch was seeded again: %v", err)
	}
}
