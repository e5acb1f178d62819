package stream

import (
	"encoding/json"
	"slices"
	"strings"
)

// Who may read what: the one home of the read rules. The Hub applies them
// when it fans events out, Replay's callers through Visible, and the REST
// API through Viewer.Access and Viewer.MayRead, so that a record is readable
// through every API or through none.

// Viewer is who a subscription or request reads as.
type Viewer struct {
	UserID      string // "" = anonymous
	Admin       bool
	Environment int64
}

// Anonymous reports whether v carries no user.
func (v Viewer) Anonymous() bool { return v.UserID == "" }

// Access is what a collection's rule lets a viewer reach, decided before
// any record is known.
type Access uint8

// Accesses.
const (
	// AccessNone: the viewer may not (an error for a request).
	AccessNone Access = iota
	// AccessOwn: only the records the viewer owns or is assigned to (a
	// listing is restricted to them; a single record is checked).
	AccessOwn
	// AccessAll: every record of the collection.
	AccessAll
)

// Access applies rule to v as far as it can without the record. Admins
// reach everything; RulePublic admits anyone, RuleAuthenticated any user;
// RuleOwner admits users to their own records (for a create, where there
// is no record yet, any user: the creator becomes its owner); RuleAdmin,
// and a rule this binary does not know (RuleUnknown), admins only.
func (v Viewer) Access(rule Rule) Access {
	if v.Admin {
		return AccessAll
	}
	switch rule {
	case RulePublic:
		return AccessAll
	case RuleAuthenticated:
		if !v.Anonymous() {
			return AccessAll
		}
	case RuleOwner:
		if !v.Anonymous() {
			return AccessOwn
		}
	}
	return AccessNone
}

// MayRead reports whether v may read a record, under its collection's rule,
// with these owners and assignees.
func (v Viewer) MayRead(rule Rule, owners, assignees []string) bool {
	switch v.Access(rule) {
	case AccessAll:
		return true
	case AccessOwn:
		return slices.Contains(owners, v.UserID) || slices.Contains(assignees, v.UserID)
	}
	return false
}

// OwnerFilter is the user a listing under rule must be restricted to (the
// records it owns or is assigned to), or nil for none: every record when
// v.Access(rule) is AccessAll (and nothing to list when AccessNone).
func (v Viewer) OwnerFilter(rule Rule) *string {
	if v.Access(rule) != AccessOwn {
		return nil
	}
	user := v.UserID
	return &user
}

// mayRead applies an object class read rule to a record or task event.
// A count is about the whole class: under the owner rule it would tell a
// user how many records others have, so it goes to admins only.
func mayRead(v Viewer, ev *Event, users *userIndex) bool {
	if ev.Kind == KindRecordsCountChanged && ev.Read == RuleOwner && !v.Admin {
		return false
	}
	switch v.Access(ev.Read) {
	case AccessAll:
		return true
	case AccessOwn:
		return users.has(v.UserID)
	}
	return false
}

// userIndex answers "is this user an owner or assignee of the event?" for
// every subscriber of one event. Short lists are scanned; from
// userIndexMin users on, a set is built once, on the first question, so
// that a record with a thousand owners costs O(1) per subscriber, not a
// thousand comparisons.
type userIndex struct {
	ev  *Event
	set map[string]struct{}
}

const userIndexMin = 16

func (u *userIndex) has(user string) bool {
	if user == "" {
		return false
	}
	if len(u.ev.Owners)+len(u.ev.Assignees) < userIndexMin {
		return u.ev.HasUser(user)
	}
	if u.set == nil {
		u.set = make(map[string]struct{}, len(u.ev.Owners)+len(u.ev.Assignees))
		for _, o := range u.ev.Owners {
			u.set[o] = struct{}{}
		}
		for _, a := range u.ev.Assignees {
			u.set[a] = struct{}{}
		}
	}
	_, ok := u.set[user]
	return ok
}

// Visible reports whether viewer may receive realtime event ev: the same
// rules the Hub applies when it fans out (a collection's read rule for
// record events, the namespace rules of the realtime contract for the
// others). ev must have a realtime form (RealtimeType(ev) != "").
func Visible(viewer Viewer, ev *Event) bool {
	return visibilityOf(ev).allows(viewer, ev)
}

// visibility decides who may see a realtime event; built once per event.
type visibility struct {
	users      userIndex
	namespace  string
	userID     string
	publicFile bool
}

func visibilityOf(ev *Event) *visibility {
	v := &visibility{users: userIndex{ev: ev}}
	if ev.Kind != KindPublished {
		return v
	}
	v.namespace, _, _ = strings.Cut(ev.Type, ".")
	if v.namespace == "auth" || v.namespace == "storage" {
		var p struct {
			UserID     string `json:"userId"`
			Visibility string `json:"visibility"`
		}
		_ = json.Unmarshal(ev.Payload, &p) // a payload without these fields is visible to admins only
		v.userID, v.publicFile = p.UserID, p.Visibility == "public"
	}
	return v
}

// allows is the permission table of the realtime contract.
func (v *visibility) allows(viewer Viewer, ev *Event) bool {
	switch ev.Kind {
	case KindRecordCreated, KindRecordValueChanged, KindRecordDeleted:
		return mayRead(viewer, ev, &v.users)
	case KindCollectionCreated:
		return true
	}
	if viewer.Admin {
		return true
	}
	switch v.namespace {
	case "system":
		return true
	case "auth":
		return viewer.UserID != "" && viewer.UserID == v.userID
	case "storage":
		return v.publicFile || (viewer.UserID != "" && viewer.UserID == v.userID)
	default: // function, job, and application namespaces
		return viewer.UserID != ""
	}
}
