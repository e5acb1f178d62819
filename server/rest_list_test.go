package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"testing"
)

// TestRESTListByteBudgetIsExact: a truncated page stops at the first record
// that would take it over the budget, by the bytes it answers, not by an
// estimate. Arrays of small numbers are the worst case for one: jsonb's
// text of them is half spaces, which the compact record has not.
func TestRESTListByteBudgetIsExact(t *testing.T) {
	t.Parallel()
	const budget = 3000
	s := newStack(t, func(c *Config) { c.HTTP.MaxListBytes = budget })
	c := s.define(1, `{"name":"nums","fields":[{"name":"v","type":"json"}],"permissions":{"read":"public"}}`)
	classID, fieldID := num(t, c["id"]), num(t, c["fields"].([]any)[0].(map[string]any)["id"])
	for k := range 24 {
		s.exec(`INSERT INTO pgcast.object_records (object_class_id, cells)
			VALUES ($1, jsonb_build_object($2::text, (SELECT jsonb_agg(i % 10) FROM generate_series(1, $3) i)))`,
			classID, strconv.FormatInt(fieldID, 10), 150+37*k%200)
	}
	type page struct {
		Items     []json.RawMessage `json:"items"`
		Truncated bool              `json:"truncated"`
	}
	var (
		pages  []page
		bodies [][]byte
		query  = "limit=1000"
	)
	for {
		body := s.expectRaw(s.do("GET", "/api/nums?"+query, "", nil), http.StatusOK)
		var p page
		if err := json.Unmarshal(body, &p); err != nil {
			t.Fatal(err)
		}
		if len(p.Items) == 0 {
			t.Fatalf("empty page at %s", query)
		}
		pages, bodies = append(pages, p), append(bodies, body)
		if !p.Truncated {
			break
		}
		var last struct {
			ID int64 `json:"id"`
		}
		if err := json.Unmarshal(p.Items[len(p.Items)-1], &last); err != nil {
			t.Fatal(err)
		}
		query = fmt.Sprintf("limit=1000&before=%d", last.ID)
	}
	n := 0
	for i, p := range pages {
		n += len(p.Items)
		if len(bodies[i]) > budget {
			t.Errorf("page %d: %d bytes, over the %d budget", i, len(bodies[i]), budget)
		}
		if !p.Truncated {
			continue
		}
		// The next record, with its comma, would not have fit.
		if next := pages[i+1].Items[0]; len(bodies[i])+1+len(next) <= budget {
			t.Errorf("page %d of %d records (%d bytes) stopped before a %d-byte record that fits the %d budget",
				i, len(p.Items), len(bodies[i]), len(next), budget)
		}
	}
	if n != 24 || len(pages) < 3 {
		t.Errorf("%d records in %d pages, want 24 in several", n, len(pages))
	}
}
