package server

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pgcast/pgcast/server/auth"
	"github.com/pgcast/pgcast/server/catalyst"
)

const recordsPath = "/ws/events/object-records/"

func TestCatalystBatching(t *testing.T) {
	t.Parallel()
	s := newStack(t, func(c *Config) { c.Catalyst = catalyst.Config{MessageLimit: 1000, MessageTime: time.Second} })
	cls, f := s.class(1, "posts", "public", "title")
	ws := s.connect(recordsPath + "?uuid=" + s.ticket("admin", auth.RoleAdmin, 1))
	start := time.Now()
	// 2,500 records in one statement: 2,500 created items plus one count.
	s.exec(`INSERT INTO pgcast.object_records (object_class_id, cells)
SELECT $1, jsonb_build_object($2::text, 'r' || g) FROM generate_series(1, 2500) g`, cls, fmt.Sprint(f["title"]))
	// 2,501 items: full frames of 1,000 go at once, the rest waits for a
	// tick, which falls on a whole number of seconds after the connection
	// started. Usually that is [1000 1000 501]; on a loaded machine the
	// reader's pages can straddle a tick, which then sends what it has
	// ([1000 1000 386] and 115 on the next tick): still full frames at once
	// and partial ones on ticks only, which is what is asserted.
	var frames []frame
	for got := 0; got < 2501; {
		fr, err := readFrame(t, ws, 10*time.Second)
		if err != nil {
			t.Fatalf("frame %d (%d items so far): %v", len(frames)+1, got, err)
		}
		frames = append(frames, fr)
		got += len(fr.items)
	}
	full := 0
	var prev time.Time
	for i, fr := range frames {
		switch n := len(fr.items); {
		case n > 1000 || n == 0:
			t.Fatalf("frame %d has %d items (limit 1000, never empty)", i+1, n)
		case n == 1000:
			full++
			// "At once" = as fast as the reader pages the log (slower under
			// -race), and well before the next tick.
			if i > 0 && len(frames[i-1].items) == 1000 {
				if gap := fr.at.Sub(prev); gap > 900*time.Millisecond {
					t.Errorf("full frame %d came %s after the one before", i+1, gap)
				}
			}
		default:
			sinceStart := fr.at.Sub(start)
			if off := sinceStart - sinceStart.Round(time.Second); off < -50*time.Millisecond || off > 400*time.Millisecond {
				t.Errorf("partial frame %d (%d items) at %s after start, not on a tick", i+1, n, sinceStart)
			}
		}
		prev = fr.at
	}
	if full == 0 {
		t.Errorf("frame sizes %v: the full frames were not sent at once", frameSizes(frames))
	}
	var ids []int64
	counts := 0
	for _, fr := range frames {
		for _, it := range fr.items {
			switch it.Event {
			case "object_record_created":
				ids = append(ids, it.ObjectRecordID)
			case "object_records_count_changed":
				counts++
				if *it.Count != 2500 {
					t.Errorf("count %d, want 2500", *it.Count)
				}
			default:
				t.Errorf("unexpected %s", it)
			}
		}
	}
	if counts != 1 || len(ids) != 2500 || !slices.IsSorted(ids) {
		t.Fatalf("%d created (sorted %v), %d counts", len(ids), slices.IsSorted(ids), counts)
	}
	expectSilence(t, ws, 1500*time.Millisecond) // no empty frames on later ticks
}

// frameSizes lists the frames' numbers of items.
func frameSizes(frames []frame) []int {
	n := make([]int, len(frames))
	for i, fr := range frames {
		n[i] = len(fr.items)
	}
	return n
}

func TestCatalystEveryEventKind(t *testing.T) {
	t.Parallel()
	s := newStack(t, func(c *Config) { c.Catalyst = catalyst.Config{MessageLimit: 1000, MessageTime: 100 * time.Millisecond} })
	cls, f := s.class(1, "deals", "public", "name", "stage")
	recs := s.connect(recordsPath + "?uuid=" + s.ticket("admin", auth.RoleAdmin, 1))
	tasks := s.connect("/ws/events/tasks/?uuid=" + s.ticket("admin", auth.RoleAdmin, 1))
	name, stage := fmt.Sprint(f["name"]), fmt.Sprint(f["stage"])

	rec := s.queryInt(`INSERT INTO pgcast.object_records (object_class_id, cells, owners) VALUES ($1, jsonb_build_object($2::text, 'a'), '{o1}') RETURNING id`, cls, name)
	s.exec(`UPDATE pgcast.object_records SET cells = jsonb_build_object($2::text, 'b', $3::text, 'won') WHERE id = $1`, rec, name, stage)
	s.exec(`UPDATE pgcast.object_records SET cells = cells WHERE id = $1`, rec) // no-op: nothing
	s.exec(`UPDATE pgcast.object_records SET owners = '{o2}', assignees = '{a1}' WHERE id = $1`, rec)
	s.exec(`UPDATE pgcast.object_records SET assignees = '{}' WHERE id = $1`, rec)
	doc := s.queryInt(`INSERT INTO pgcast.object_record_documents (object_record_id, name) VALUES ($1, 'quote.pdf') RETURNING id`, rec)
	s.exec(`DELETE FROM pgcast.object_records WHERE id = $1`, rec)

	// Count items coalesce while they share a buffer (a newer count takes
	// the buffered one's place), so there are one or two of them (after the
	// insert: 1, after the delete: 0); read until the deletion has arrived
	// and the latest count is 0.
	deleted, lastCount := false, int64(-1)
	got := readUntil(t, recs, 10*time.Second, func(it item) bool {
		switch it.Event {
		case "object_record_deleted":
			deleted = true
		case "object_records_count_changed":
			lastCount = *it.Count
		}
		return deleted && lastCount == 0
	})
	want := []string{
		"object_record_created", "object_record_value_changed",
		"object_record_owner_added", "object_record_owner_removed", "object_record_assignee_added",
		"object_record_assignee_removed", "object_record_document_generated", "object_record_deleted",
	}
	var kinds []string
	for _, it := range got {
		if it.Event != "object_records_count_changed" {
			kinds = append(kinds, it.Event)
		}
	}
	if !slices.Equal(sortedCopy(kinds), sortedCopy(want)) || kinds[0] != want[0] || kinds[len(kinds)-1] != "object_record_deleted" {
		t.Fatalf("kinds %v, want %v", kinds, want)
	}
	for _, it := range got {
		if it.ObjectClassID != cls {
			t.Errorf("%s: class %d", it, it.ObjectClassID)
		}
		if !strings.HasSuffix(it.Timestamp, "+00:00") || len(it.Timestamp) != len("2025-01-16T11:07:57.954470+00:00") {
			t.Errorf("%s: timestamp %q", it, it.Timestamp)
		}
		switch it.Event {
		case "object_records_count_changed":
			if _, ok := it.raw["object_record_id"]; ok {
				t.Error("count item carries object_record_id")
			}
		default:
			if it.ObjectRecordID != rec {
				t.Errorf("%s: record %d", it, it.ObjectRecordID)
			}
		}
		switch it.Event {
		case "object_record_value_changed":
			if !slices.Equal(it.FieldIDs, []int64{f["name"], f["stage"]}) {
				t.Errorf("field_ids %v", it.FieldIDs)
			}
		case "object_record_owner_added":
			if it.UserID != "o2" {
				t.Errorf("owner added %q", it.UserID)
			}
		case "object_record_owner_removed":
			if it.UserID != "o1" {
				t.Errorf("owner removed %q", it.UserID)
			}
		case "object_record_assignee_added", "object_record_assignee_removed":
			if it.UserID != "a1" {
				t.Errorf("%s user %q", it.Event, it.UserID)
			}
		case "object_record_document_generated":
			if it.DocumentID != doc {
				t.Errorf("document %d, want %d", it.DocumentID, doc)
			}
		}
	}

	task := s.queryInt(`INSERT INTO pgcast.tasks (object_class_id, status) VALUES ($1, 'open') RETURNING id`, cls)
	s.exec(`UPDATE pgcast.tasks SET "values" = '{"x":1}' WHERE id = $1`, task)
	s.exec(`UPDATE pgcast.tasks SET status = 'done' WHERE id = $1`, task)
	s.exec(`UPDATE pgcast.tasks SET owners = '{t1}', assignees = '{t2}' WHERE id = $1`, task)
	s.exec(`UPDATE pgcast.tasks SET owners = '{}', assignees = '{}' WHERE id = $1`, task)
	s.exec(`DELETE FROM pgcast.tasks WHERE id = $1`, task)
	tgot := readItems(t, tasks, 8, 10*time.Second)
	var tkinds []string
	for _, it := range tgot {
		tkinds = append(tkinds, it.Event)
		if it.TaskID != task || it.ObjectClassID != cls {
			t.Errorf("%s", it)
		}
		if strings.Contains(it.Event, "owner") || strings.Contains(it.Event, "assignee") {
			if it.UserID == "" {
				t.Errorf("%s without user_id", it)
			}
		}
	}
	wantTasks := []string{"task_created", "task_value_changed", "task_status_changed", "task_owner_added", "task_assignee_added", "task_owner_removed", "task_assignee_removed", "task_deleted"}
	if !slices.Equal(sortedCopy(tkinds), sortedCopy(wantTasks)) || tkinds[0] != "task_created" || tkinds[7] != "task_deleted" {
		t.Fatalf("task kinds %v", tkinds)
	}
}

// readUntil reads frames until an item satisfies stop, returning all items.
func readUntil(t *testing.T, ws *websocket.Conn, timeout time.Duration, stop func(item) bool) []item {
	t.Helper()
	var out []item
	deadline := time.Now().Add(timeout)
	for {
		f, err := readFrame(t, ws, time.Until(deadline))
		if err != nil {
			t.Fatalf("after %d items %v: %v", len(out), out, err)
		}
		for _, it := range f.items {
			out = append(out, it)
			if stop(it) {
				return out
			}
		}
	}
}

func sortedCopy(s []string) []string { c := slices.Clone(s); slices.Sort(c); return c }

func TestCatalystFiltersAndPermissions(t *testing.T) {
	t.Parallel()
	s := newStack(t, func(c *Config) { c.Catalyst = catalyst.Config{MessageLimit: 1000, MessageTime: 100 * time.Millisecond} })
	s.exec(`INSERT INTO pgcast.environments (id, name) VALUES (2, 'second')`)
	pub, pf := s.class(1, "pub", "public", "a", "b")
	own, of := s.class(1, "own", "owner", "a")
	other, _ := s.class(2, "pub", "public", "a")
	_ = other

	// Bad filters: 400 and the ticket survives.
	tk := s.ticket("u1", auth.RoleAuthenticated, 1)
	for _, q := range []string{"object_class_ids=1,x", "object_class_ids=0", "field_ids=-3", "object_class_ids=1,,2", "field_ids=1.5"} {
		_, code, body := s.dial(recordsPath+"?uuid="+tk+"&"+q, nil)
		if code != 400 || !strings.Contains(body, `"invalid_filter"`) {
			t.Errorf("%s: %d %s", q, code, body)
		}
	}
	classOnly := s.connect(fmt.Sprintf("%s?uuid=%s&object_class_ids=%%20%d%%20&field_ids=", recordsPath, tk, pub)) // spaces, empty field_ids
	fieldB := s.connect(fmt.Sprintf("%s?uuid=%s&field_ids=%d", recordsPath, s.ticket("u1", auth.RoleAuthenticated, 1), pf["b"]))
	owner := s.connect(fmt.Sprintf("%s?uuid=%s&object_class_ids=%d", recordsPath, s.ticket("o1", auth.RoleAuthenticated, 1), own))
	stranger := s.connect(fmt.Sprintf("%s?uuid=%s&object_class_ids=%d", recordsPath, s.ticket("u9", auth.RoleAuthenticated, 1), own))
	admin := s.connect(fmt.Sprintf("%s?uuid=%s&object_class_ids=%d", recordsPath, s.ticket("root", auth.RoleAdmin, 1), own))
	env2 := s.connect(recordsPath + "?uuid=" + s.ticket("admin2", auth.RoleAdmin, 2))

	r1 := s.queryInt(`INSERT INTO pgcast.object_records (object_class_id) VALUES ($1) RETURNING id`, pub)
	s.exec(`UPDATE pgcast.object_records SET cells = jsonb_build_object($2::text, 1) WHERE id = $1`, r1, fmt.Sprint(pf["a"]))
	s.exec(`UPDATE pgcast.object_records SET cells = cells || jsonb_build_object($2::text, 2) WHERE id = $1`, r1, fmt.Sprint(pf["b"]))
	r2 := s.queryInt(`INSERT INTO pgcast.object_records (object_class_id, owners, cells) VALUES ($1, '{o1}', jsonb_build_object($2::text, 1)) RETURNING id`, own, fmt.Sprint(of["a"]))

	// classOnly: pub created, count, changed(a), changed(b) = 4.
	if got := readItems(t, classOnly, 4, 10*time.Second); got[0].ObjectClassID != pub {
		t.Errorf("class filter: %v", got)
	}
	// fieldB: pub created+count, changed(b) only, own created+count are
	// not readable (owner rule, u1 not owner): 3 items.
	got := readItems(t, fieldB, 3, 10*time.Second)
	for _, it := range got {
		if it.Event == "object_record_value_changed" && !slices.Equal(it.FieldIDs, []int64{pf["b"]}) {
			t.Errorf("field filter let through %v", it.FieldIDs)
		}
		if it.ObjectClassID == own {
			t.Errorf("owner rule leaked %s to u1", it)
		}
	}
	// The owner sees the record; the class's count (how many records
	// everyone has) of an owner-rule class goes to admins only.
	if got := readItems(t, owner, 1, 10*time.Second); got[0].Event != "object_record_created" || got[0].ObjectRecordID != r2 {
		t.Errorf("owner got %v", got)
	}
	readItems(t, admin, 2, 10*time.Second) // created + count
	expectSilence(t, owner, 500*time.Millisecond)
	expectSilence(t, stranger, 300*time.Millisecond)
	expectSilence(t, env2, 300*time.Millisecond)
}

func TestCatalystTickets(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	for name, q := range map[string]string{"missing": "", "unknown": "?uuid=6f1c2b1e-9a7b-4c53-8d1e-2f1f0f6b7a10", "garbage": "?uuid=x"} {
		_, code, body := s.dial(recordsPath+q, nil)
		if code != 401 || !strings.Contains(body, `"invalid_ticket"`) {
			t.Errorf("%s: %d %s", name, code, body)
		}
	}
	tk := s.ticket("u1", auth.RoleAuthenticated, 1)
	s.connect(recordsPath + "?uuid=" + tk)
	if _, code, _ := s.dial(recordsPath+"?uuid="+tk, nil); code != 401 {
		t.Errorf("reused ticket: %d", code)
	}
	expired := s.ticket("u1", auth.RoleAuthenticated, 1)
	s.exec(`UPDATE pgcast.tickets SET expires_at = now() - interval '1 second' WHERE id = $1`, expired)
	if _, code, _ := s.dial(recordsPath+"?uuid="+expired, nil); code != 401 {
		t.Errorf("expired ticket: %d", code)
	}
	// S3: two concurrent upgrades with one ticket: exactly one succeeds.
	for range 5 {
		tk := s.ticket("u1", auth.RoleAuthenticated, 1)
		var wg sync.WaitGroup
		codes := make([]int, 2)
		for i := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ws, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(s.base, "http")+recordsPath+"?uuid="+tk, nil)
				if err == nil {
					codes[i] = 101
					ws.Close()
				} else if resp != nil {
					codes[i] = resp.StatusCode
				}
			}()
		}
		wg.Wait()
		slices.Sort(codes)
		if !slices.Equal(codes, []int{101, 401}) {
			t.Fatalf("concurrent redemption: %v", codes)
		}
	}
}

// TestCatalystReconnectGetsOnlyNewEvents: a disconnect discards the buffer
// and a new connection receives only events committed after it.
func TestCatalystReconnectGetsOnlyNewEvents(t *testing.T) {
	t.Parallel()
	s := newStack(t, func(c *Config) { c.Catalyst = catalyst.Config{MessageLimit: 1000, MessageTime: time.Hour} })
	cls, _ := s.class(1, "posts", "public")
	ws := s.connect(recordsPath + "?uuid=" + s.ticket("u1", auth.RoleAuthenticated, 1))
	s.exec(`INSERT INTO pgcast.object_records (object_class_id) SELECT $1 FROM generate_series(1, 10)`, cls)
	lastOld := s.queryInt(`SELECT max(id) FROM pgcast.object_records`)
	// The tick is an hour away: wait until the 11 items sit in the buffer,
	// then disconnect.
	s.waitMetric("pgcast_hub_deliveries_total", 11)
	ws.Close()

	ws2 := s.connect(recordsPath + "?uuid=" + s.ticket("u1", auth.RoleAuthenticated, 1))
	// 999 created + 1 count = exactly one full frame, sent at once.
	s.exec(`INSERT INTO pgcast.object_records (object_class_id) SELECT $1 FROM generate_series(1, 999)`, cls)
	for _, it := range readItems(t, ws2, 1000, 10*time.Second) {
		if it.Event == "object_record_created" && it.ObjectRecordID <= lastOld {
			t.Fatalf("old event replayed: %s", it)
		}
	}
}

// metric returns the sum of a metric family's values.
func (s *stack) metric(name string) float64 {
	s.t.Helper()
	mfs, err := s.srv.cfg.Registry.Gather()
	if err != nil {
		s.t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			}
		}
	}
	return sum
}

// waitMetric waits until a metric reaches at least v. Metrics have no change
// signal, so this polls them every 5 ms, bounded by 20 s.
func (s *stack) waitMetric(name string, v float64) {
	s.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for s.metric(name) < v {
		if time.Now().After(deadline) {
			s.t.Fatalf("%s stayed at %v, want ≥ %v", name, s.metric(name), v)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
