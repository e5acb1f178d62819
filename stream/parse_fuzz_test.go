package stream

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgcast/pgcast/db"
)

// FuzzParseSnapshot: whatever the database (or a proxy in between) sends as
// a snapshot, parsing never panics, and what it accepts is well formed and
// round-trips.
func FuzzParseSnapshot(f *testing.F) {
	for _, s := range []string{"10:20:", "10:20:10,15,19", "1:1:", "5:3:", "10:20:25", "::", "a:b:c", "10:20:15,12", "18446744073709551615:18446744073709551615:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sn, err := parseSnapshot(s)
		if err != nil {
			return
		}
		if sn.xmin > sn.xmax {
			t.Fatalf("%q: xmin %d above xmax %d", s, sn.xmin, sn.xmax)
		}
		parts := make([]string, len(sn.xip))
		for i, x := range sn.xip {
			if x < sn.xmin || x >= sn.xmax {
				t.Fatalf("%q: xip %d outside [%d,%d)", s, x, sn.xmin, sn.xmax)
			}
			if i > 0 && sn.xip[i-1] > x {
				t.Fatalf("%q: xip not sorted", s)
			}
			if sn.sees(x) {
				t.Fatalf("%q: sees in-progress %d", s, x)
			}
			parts[i] = strconv.FormatUint(x, 10)
		}
		back, err := parseSnapshot(strconv.FormatUint(sn.xmin, 10) + ":" + strconv.FormatUint(sn.xmax, 10) + ":" + strings.Join(parts, ","))
		if err != nil || back.xmin != sn.xmin || back.xmax != sn.xmax || len(back.xip) != len(sn.xip) {
			t.Fatalf("%q does not round-trip: %v %v", s, back, err)
		}
	})
}

// FuzzDecode: an entry's data comes from the database; decoding it never
// panics, and a decoded event encodes to valid JSON for both protocols.
func FuzzDecode(f *testing.F) {
	seeds := []struct{ kind, data string }{
		{"record_created", `{"class":"posts","read":"public","owners":["u1"],"assignees":[],"record":{"id":1,"title":"x"}}`},
		{"record_updated", `{"class":"posts","read":"owner","owners":["u1"],"field_ids":[3,1]}`},
		{"record_created", `{"class":"posts","read":"public","owners":[],"assignees":[],"cells":{"1":"x","2":{"a":[1]},"9":null},"fields":{"1":"title","2":"meta","3":"id"},"created_at":"2026-01-02T03:04:05.678901","updated_at":"10000-01-01T00:00:00.5"}`},
		{"record_updated", `{"class":"posts","read":"public","field_ids":[1],"cells":{"1":"x"},"fields":{"1":"a"b"},"created_at":"0044-03-15T00:00:00 BC","updated_at":"infinity"}`},
		{"record_created", `{"cells":{"1":1},"fields":{"1":"x"},"created_at":"2026"","updated_at":null}`},
		{"record_created", `{"cells":[1],"fields":{}}`},
		{"record_deleted", `{"class":"posts","read":"admin","record":{"id":1}}`},
		{"record_owner_added", `{"class":"posts","read":"public","user_id":"u\"2"}`},
		{"document_generated", `{"class":"posts","read":"public","document_id":7}`},
		{"records_count_changed", `{"class":"posts","read":"public","delta":-3}`},
		{"task_created", `{"class":"posts","read":"authenticated","record_id":5}`},
		{"published", `{"type":"job.completed","source":"jobs","payload":{"name":"n"}}`},
		{"published", `{"type":"","payload":null}`},
		{"collection_created", `{"name":"posts"}`},
		{"record_created", `{"read":"nobody"}`},
		{"nope", `{}`},
		{"record_created", `[`},
	}
	for _, s := range seeds {
		f.Add(s.kind, s.data)
	}
	f.Fuzz(func(t *testing.T, kind, data string) {
		one, two := int64(2), int64(3)
		ev, err := decode(&db.Entry{ID: 1, Xid: 9, CreatedAt: time.Unix(1, 0), Kind: kind, Environment: 1, ClassID: &one, RecordID: &two, Data: []byte(data)})
		if err != nil {
			return
		}
		if ev.Kind.IsRecord() || ev.Kind.IsTask() {
			if b := AppendCatalystItem(nil, ev); !json.Valid(b) {
				t.Fatalf("catalyst item not JSON: %s", b)
			}
		}
		if typ := RealtimeType(ev); typ != "" {
			if b := AppendRealtimeEvent(nil, ev, typ); !json.Valid(b) {
				t.Fatalf("realtime event not JSON: %s", b)
			}
		}
	})
}

// Record entries written before schema version 4 carry the record built;
// later ones carry what the reader builds it from. Both decode to the same
// record, so a log that spans an upgrade is read whole.
func TestDecodeReadsBothRecordShapes(t *testing.T) {
	t.Parallel()
	const want = `{"n":3,"id":7,"title":"x","createdAt":"2026-01-02T03:04:05.678Z","updatedAt":"2026-01-02T03:04:05.000Z"}`
	for name, data := range map[string]string{
		"built by the trigger (before version 4)": `{"class":"posts","read":"public","owners":[],"assignees":[],"record":` +
			`{"n": 3, "id": 7, "title": "x", "createdAt": "2026-01-02T03:04:05.678Z", "updatedAt": "2026-01-02T03:04:05.000Z"}}`,
		"built by the reader": `{"class":"posts","read":"public","owners":[],"assignees":[],"cells":{"1":"x","2":3,"5":true},` +
			`"fields":{"1":"title","2":"n"},"created_at":"2026-01-02T03:04:05.678901","updated_at":"2026-01-02T03:04:05"}`,
	} {
		seven := int64(7)
		ev, err := decode(&db.Entry{ID: 1, Kind: "record_created", Environment: 1, RecordID: &seven, Data: []byte(data)})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if string(ev.Record) != want {
			t.Errorf("%s: record\n%s\nwant\n%s", name, ev.Record, want)
		}
	}
}
