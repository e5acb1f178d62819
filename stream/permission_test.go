package stream_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pgcast/pgcast/stream"
)

var (
	anonymous = stream.Viewer{Environment: 1}
	user      = stream.Viewer{UserID: "u1", Environment: 1}
	admin     = stream.Viewer{UserID: "root", Admin: true, Environment: 1}
	rules     = []stream.Rule{stream.RulePublic, stream.RuleAuthenticated, stream.RuleOwner, stream.RuleAdmin, stream.RuleUnknown}
)

// TestViewerAccess is the rule table REST applies before it reads a record:
// admins reach everything; public anyone, authenticated any user, owner a
// user's own records; admin, and a rule this binary does not know, admins
// only.
func TestViewerAccess(t *testing.T) {
	t.Parallel()
	want := map[stream.Rule][3]stream.Access{ // anonymous, user, admin
		stream.RulePublic:        {stream.AccessAll, stream.AccessAll, stream.AccessAll},
		stream.RuleAuthenticated: {stream.AccessNone, stream.AccessAll, stream.AccessAll},
		stream.RuleOwner:         {stream.AccessNone, stream.AccessOwn, stream.AccessAll},
		stream.RuleAdmin:         {stream.AccessNone, stream.AccessNone, stream.AccessAll},
		stream.RuleUnknown:       {stream.AccessNone, stream.AccessNone, stream.AccessAll},
	}
	for _, rule := range rules {
		for i, v := range []stream.Viewer{anonymous, user, admin} {
			if got := v.Access(rule); got != want[rule][i] {
				t.Errorf("%+v.Access(%s) = %d, want %d", v, rule, got, want[rule][i])
			}
			owner := v.OwnerFilter(rule)
			if (owner != nil) != (want[rule][i] == stream.AccessOwn) || (owner != nil && *owner != v.UserID) {
				t.Errorf("%+v.OwnerFilter(%s) = %v", v, rule, owner)
			}
		}
	}
	if !anonymous.Anonymous() || user.Anonymous() || admin.Anonymous() {
		t.Error("Anonymous")
	}
}

// TestMayReadAgreesWithHub: the decision REST takes for one record
// (Viewer.MayRead on the row's rule, owners and assignees) is the one the
// Hub takes for the record's events, for every rule, viewer and owner list
// (including lists long enough for the Hub's owner index).
func TestMayReadAgreesWithHub(t *testing.T) {
	t.Parallel()
	many := make([]string, 40)
	for i := range many {
		many[i] = fmt.Sprintf("x%d", i)
	}
	people := []struct{ owners, assignees []string }{
		{nil, nil}, {[]string{"u1"}, nil}, {nil, []string{"u1"}}, {[]string{"o1"}, []string{"a1"}},
		{append([]string{}, many...), nil}, {many, []string{"u1"}}, {append(append([]string{}, many...), "u1"), nil},
		{[]string{""}, nil},
	}
	viewers := []stream.Viewer{anonymous, user, admin, {UserID: "x3", Environment: 1}}
	at := time.Date(2026, 6, 8, 12, 0, 0, 0, time.UTC)
	for _, rule := range rules {
		for _, p := range people {
			for _, kind := range []stream.Kind{stream.KindRecordCreated, stream.KindRecordValueChanged, stream.KindRecordDeleted} {
				ev := &stream.Event{Position: 1, Kind: kind, Time: at, Environment: 1, ClassID: 1, ClassName: "posts", Read: rule,
					RecordID: 7, Owners: p.owners, Assignees: p.assignees, Record: json.RawMessage(`{"id":7}`)}
				for _, v := range viewers {
					want := v.MayRead(rule, p.owners, p.assignees)
					for _, proto := range []stream.Protocol{stream.ProtocolRecords, stream.ProtocolRealtime} {
						h, err := stream.NewHub(stream.HubConfig{})
						if err != nil {
							t.Fatal(err)
						}
						q := &itemQueue{}
						s, err := h.Subscribe(stream.SubscribeOptions{Viewer: v, Protocol: proto, Queue: q})
						if err != nil {
							t.Fatal(err)
						}
						h.AddChannel(s, "posts.*")
						h.Publish([]*stream.Event{ev})
						if got := len(q.items) == 1; got != want {
							t.Errorf("rule %s, %s, viewer %+v, owners %s, assignees %s, protocol %d: hub %v, MayRead %v",
								rule, kind, v, strings.Join(p.owners, ","), strings.Join(p.assignees, ","), proto, got, want)
						}
						if proto == stream.ProtocolRealtime && stream.Visible(v, ev) != want {
							t.Errorf("rule %s, viewer %+v: Visible %v, MayRead %v", rule, v, !want, want)
						}
					}
				}
			}
		}
	}
}
