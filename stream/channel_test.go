package stream_test

import (
	"slices"
	"testing"

	"github.com/pgcast/pgcast/internal/pgtest"
	"github.com/pgcast/pgcast/stream"
)

func TestValidChannel(t *testing.T) {
	t.Parallel()
	for ch, want := range map[string]bool{
		"posts.created": true, "posts.*": true, "system.collection.*": true, "job": true, "a-b_C9.x": true, "*": true,
		"": false, ".": false, "posts.": false, ".posts": false, "posts..created": false, "posts.*.created": false,
		"posts*": false, "posts.c*": false, "posts.**": false, "pos ts": false, "posts/created": false, "é.x": false,
	} {
		if got := stream.ValidChannel(ch); got != want {
			t.Errorf("ValidChannel(%q) = %v, want %v", ch, got, want)
		}
	}
}

func TestChannelNamespaceAndCollectionChannels(t *testing.T) {
	t.Parallel()
	for ch, want := range map[string]string{"posts.created": "posts", "posts.*": "posts", "system.collection.created": "system", "job": "job", "": ""} {
		if got := stream.ChannelNamespace(ch); got != want {
			t.Errorf("ChannelNamespace(%q) = %q, want %q", ch, got, want)
		}
	}
	got := stream.CollectionChannels("posts")
	if want := []string{"posts.created", "posts.updated", "posts.deleted"}; !slices.Equal(got, want) {
		t.Errorf("CollectionChannels = %v, want %v", got, want)
	}
	// They are the types of the collection's record events.
	for i, k := range []stream.Kind{stream.KindRecordCreated, stream.KindRecordValueChanged, stream.KindRecordDeleted} {
		if typ := stream.RealtimeType(&stream.Event{Kind: k, ClassName: "posts"}); typ != got[i] {
			t.Errorf("RealtimeType of %s = %q, want %q", k, typ, got[i])
		}
	}
}

// TestReplayNamespaceIsRealtimeTypeNamespace: the entries a namespace
// replay keeps, filtered in the database, are exactly those whose
// RealtimeType has that namespace: the SQL condition is produced from the
// Go rule, not a copy of it.
func TestReplayNamespaceIsRealtimeTypeNamespace(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewPool(t)
	for _, name := range []string{"posts", "po_ts", "system", "job", "postsx"} {
		cls := queryInt(t, pool, `INSERT INTO pgcast.object_classes (name, read_rule) VALUES ($1, 'public') RETURNING id`, name)
		rec := queryInt(t, pool, `INSERT INTO pgcast.object_records (object_class_id) VALUES ($1) RETURNING id`, cls)
		mustExec(t, pool, `UPDATE pgcast.object_records SET owners = '{u1}' WHERE id = $1`, rec)
		mustExec(t, pool, `DELETE FROM pgcast.object_records WHERE id = $1`, rec)
	}
	mustExec(t, pool, `INSERT INTO pgcast.publish_namespaces (name, source) VALUES ('posts', 'app')`)
	for _, typ := range []string{"job.completed", "job.x.y", "auth.login", "system.custom", "posts.custom"} {
		mustExec(t, pool, `SELECT pgcast.publish($1, '{}')`, typ)
	}
	all := replayAll(t, pool, stream.ReplayOptions{Environment: 1})
	for _, ns := range []string{"posts", "po_ts", "po", "system", "job", "auth", "postsx", "nothing"} {
		var want []int64
		for _, ev := range all {
			if typ := stream.RealtimeType(ev); typ != "" && stream.ChannelNamespace(typ) == ns {
				want = append(want, ev.Position)
			}
		}
		got := positions(replayAll(t, pool, stream.ReplayOptions{Environment: 1, Namespace: ns, PageSize: 3}))
		if !slices.Equal(got, want) {
			t.Errorf("namespace %q: replayed %v, want %v", ns, got, want)
		}
	}
}
