package rest

import (
	"encoding/json"
	"strconv"
	"testing"

	"github.com/pgcast/pgcast/internal/collections"
	"github.com/pgcast/pgcast/server/internal/httpjson"
)

// FuzzRecordCells: record validation never panics; what it accepts is a
// JSON object of cells, and validating the stored values again yields the
// same cells (stored values are in canonical form).
func FuzzRecordCells(f *testing.F) {
	c := collections.Collection{Name: "things", Fields: []collections.Field{
		{ID: 1, Name: "s", Type: collections.TypeString}, {ID: 2, Name: "t", Type: collections.TypeText},
		{ID: 3, Name: "i", Type: collections.TypeInteger}, {ID: 4, Name: "f", Type: collections.TypeFloat},
		{ID: 5, Name: "b", Type: collections.TypeBoolean}, {ID: 6, Name: "d", Type: collections.TypeDatetime},
		{ID: 7, Name: "j", Type: collections.TypeJSON, Required: true},
	}}
	for _, s := range []string{
		`{"s":"x","i":1e3,"f":-0.5,"b":true,"d":"2026-06-08T14:00:00.5+02:00","j":{"a":[null]}}`,
		`{"id":1,"j":null}`, `{"i":9007199254740992,"j":1}`, `{"s":"\u0000","j":"\u0000"}`, `{"d":"2026-13-01T00:00:00Z","j":[]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		members, err := collections.ParseObject(data)
		if err != nil {
			return
		}
		cells, err := recordCells(c, members, false)
		if err != nil {
			if _, ok := err.(*httpjson.APIError); !ok {
				t.Fatalf("error %T %v", err, err)
			}
			return
		}
		var byID map[string]json.RawMessage
		if err := json.Unmarshal(cells, &byID); err != nil {
			t.Fatalf("cells %s: %v", cells, err)
		}
		// Feed the stored values back under their field names.
		byName := map[string]json.RawMessage{}
		for _, fd := range c.Fields {
			if v, ok := byID[strconv.FormatInt(fd.ID, 10)]; ok {
				byName[fd.Name] = v
			}
		}
		body, _ := json.Marshal(byName)
		members, err = collections.ParseObject(body)
		if err != nil {
			t.Fatal(err)
		}
		again, err := recordCells(c, members, false)
		if err != nil || string(again) != string(cells) {
			t.Fatalf("stored %s, revalidated %s (%v)", cells, again, err)
		}
	})
}
