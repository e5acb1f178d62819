package catalyst

import (
	"strconv"
	"strings"
	"testing"
)

// FuzzParseIDList feeds arbitrary object_class_ids / field_ids query values
// (Catalyst endpoints) to parseIDList: it must never panic, and what it
// accepts is exactly a comma-separated list of positive decimal integers.
func FuzzParseIDList(f *testing.F) {
	for _, seed := range []string{"", " ", "1", "1,2,3", " 4 , 5 ", "0", "-1", "+1", "1,,2", "1,", "9223372036854775807", "9223372036854775808", "0x10", "1e3", "１"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		ids, err := parseIDList("field_ids", raw)
		if err != nil {
			if ids != nil {
				t.Fatalf("error %v with ids %v", err, ids)
			}
			if !strings.HasPrefix(err.Error(), "field_ids: ") {
				t.Fatalf("error %q does not name the parameter", err)
			}
			return
		}
		if strings.TrimSpace(raw) == "" {
			if ids != nil {
				t.Fatalf("blank %q gave %v, want no filter", raw, ids)
			}
			return
		}
		items := strings.Split(raw, ",")
		if len(ids) != len(items) {
			t.Fatalf("%q: %d ids from %d items", raw, len(ids), len(items))
		}
		for i, item := range items {
			if ids[i] <= 0 || strconv.FormatInt(ids[i], 10) != strings.TrimLeft(strings.TrimSpace(item), "0") {
				t.Fatalf("%q: item %q gave %d", raw, item, ids[i])
			}
		}
	})
}
