package stream

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/pgcast/pgcast/db"
)

// Kind is the kind of an event.
type Kind uint8

// Event kinds. The names are the Catalyst event names.
const (
	KindUnknown Kind = iota
	KindRecordCreated
	KindRecordValueChanged
	KindRecordDeleted
	KindRecordOwnerAdded
	KindRecordOwnerRemoved
	KindRecordAssigneeAdded
	KindRecordAssigneeRemoved
	KindRecordDocumentGenerated
	KindRecordsCountChanged
	KindTaskCreated
	KindTaskValueChanged
	KindTaskStatusChanged
	KindTaskOwnerAdded
	KindTaskOwnerRemoved
	KindTaskAssigneeAdded
	KindTaskAssigneeRemoved
	KindTaskDeleted
	KindCollectionCreated
	KindPublished
	numKinds
)

var kindNames = [numKinds]string{
	KindUnknown:                 "unknown",
	KindRecordCreated:           "object_record_created",
	KindRecordValueChanged:      "object_record_value_changed",
	KindRecordDeleted:           "object_record_deleted",
	KindRecordOwnerAdded:        "object_record_owner_added",
	KindRecordOwnerRemoved:      "object_record_owner_removed",
	KindRecordAssigneeAdded:     "object_record_assignee_added",
	KindRecordAssigneeRemoved:   "object_record_assignee_removed",
	KindRecordDocumentGenerated: "object_record_document_generated",
	KindRecordsCountChanged:     "object_records_count_changed",
	KindTaskCreated:             "task_created",
	KindTaskValueChanged:        "task_value_changed",
	KindTaskStatusChanged:       "task_status_changed",
	KindTaskOwnerAdded:          "task_owner_added",
	KindTaskOwnerRemoved:        "task_owner_removed",
	KindTaskAssigneeAdded:       "task_assignee_added",
	KindTaskAssigneeRemoved:     "task_assignee_removed",
	KindTaskDeleted:             "task_deleted",
	KindCollectionCreated:       "collection_created",
	KindPublished:               "published",
}

// String is the Catalyst event name of k.
func (k Kind) String() string {
	if k < numKinds {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// IsRecord reports whether k goes to /ws/events/object-records/.
func (k Kind) IsRecord() bool { return k >= KindRecordCreated && k <= KindRecordsCountChanged }

// IsTask reports whether k goes to /ws/events/tasks/.
func (k Kind) IsTask() bool { return k >= KindTaskCreated && k <= KindTaskDeleted }

var kindsByEntry = map[string]Kind{
	db.KindRecordCreated:           KindRecordCreated,
	db.KindRecordUpdated:           KindRecordValueChanged,
	db.KindRecordDeleted:           KindRecordDeleted,
	db.KindRecordOwnerAdded:        KindRecordOwnerAdded,
	db.KindRecordOwnerRemoved:      KindRecordOwnerRemoved,
	db.KindRecordAssigneeAdded:     KindRecordAssigneeAdded,
	db.KindRecordAssigneeRemoved:   KindRecordAssigneeRemoved,
	db.KindRecordDocumentGenerated: KindRecordDocumentGenerated,
	db.KindRecordsCountChanged:     KindRecordsCountChanged,
	db.KindTaskCreated:             KindTaskCreated,
	db.KindTaskValueChanged:        KindTaskValueChanged,
	db.KindTaskStatusChanged:       KindTaskStatusChanged,
	db.KindTaskOwnerAdded:          KindTaskOwnerAdded,
	db.KindTaskOwnerRemoved:        KindTaskOwnerRemoved,
	db.KindTaskAssigneeAdded:       KindTaskAssigneeAdded,
	db.KindTaskAssigneeRemoved:     KindTaskAssigneeRemoved,
	db.KindTaskDeleted:             KindTaskDeleted,
	db.KindCollectionCreated:       KindCollectionCreated,
	db.KindPublished:               KindPublished,
}

// Rule is an object class permission rule.
type Rule uint8

// Rules, from most to least open.
const (
	RuleUnknown Rule = iota
	RulePublic
	RuleAuthenticated
	RuleOwner
	RuleAdmin
)

var ruleNames = map[string]Rule{"public": RulePublic, "authenticated": RuleAuthenticated, "owner": RuleOwner, "admin": RuleAdmin}

// ParseRule parses a rule name.
func ParseRule(s string) (Rule, bool) { r, ok := ruleNames[s]; return r, ok }

func (r Rule) String() string {
	for k, v := range ruleNames {
		if v == r {
			return k
		}
	}
	return "unknown"
}

// Event is one decoded log entry. It is decoded once by the Reader and
// shared, read-only, by everything downstream: never modify one.
type Event struct {
	Position    int64     // log position (pgcast.events.id), monotonic per deployment
	Kind        Kind      //
	Time        time.Time // when the change was made (statement time), UTC
	Environment int64     //
	ClassID     int64     // object class (0 for published events)
	ClassName   string    // object class name at the time of the change
	Read        Rule      // the class's read rule at the time of the change
	RecordID    int64     // the record (record events; task events: the task's record, 0 if none)
	TaskID      int64     // task events
	Owners      []string  // the record's or task's owners (before the change for removals and deletes)
	Assignees   []string  // likewise
	UserID      string    // owner/assignee events
	FieldIDs    []int64   // value-changed events: the changed fields, sorted
	DocumentID  int64     // document events
	Count       int64     // count events: the class's record count (see counts.go)
	Record      json.RawMessage
	// Old holds, for an update of a watched table's row, the old values
	// of the changed columns ({"column": old value}); nil otherwise.
	Old json.RawMessage
	// Published events (and collection_created, Type "system.collection.created").
	Type    string
	Source  string
	Payload json.RawMessage
}

// HasUser reports whether user is an owner or assignee: the "owner" read
// rule.
func (e *Event) HasUser(user string) bool {
	return user != "" && (slices.Contains(e.Owners, user) || slices.Contains(e.Assignees, user))
}

// entryData is the JSON shape of pgcast.events.data (see package triggers).
type entryData struct {
	Class        string          `json:"class"`
	Read         string          `json:"read"`
	Owners       []string        `json:"owners"`
	Assignees    []string        `json:"assignees"`
	UserID       string          `json:"user_id"`
	FieldIDs     []int64         `json:"field_ids"`
	DocumentID   int64           `json:"document_id"`
	Count        *int64          `json:"count"`   // a count entry that sets the count (a watch seeded)
	Counted      bool            `json:"counted"` // a watched table's record entry whose watch counts
	RecordID     *int64          `json:"record_id"`
	recordFields                 // the record, or what it is built from
	Old          json.RawMessage `json:"old"`       // watched tables: {column: old value}
	OldCells     json.RawMessage `json:"old_cells"` // pgcast's records: {field id: old value}
	Name         string          `json:"name"`
	Type         string          `json:"type"`
	Source       string          `json:"source"`
	Payload      json.RawMessage `json:"payload"`
}

// decode turns a raw entry into an Event. It fails on an unknown kind or
// malformed data, which would mean triggers and binary disagree.
func decode(en *db.Entry) (*Event, error) {
	ev, _, err := decodeEntry(en)
	return ev, err
}

// decodeEntry is decode, and what the entry does to its class's count.
func decodeEntry(en *db.Entry) (*Event, entryCount, error) {
	k, ok := kindsByEntry[en.Kind]
	if !ok {
		return nil, entryCount{}, fmt.Errorf("entry %d: unknown kind %q", en.ID, en.Kind)
	}
	var d entryData
	if err := json.Unmarshal(en.Data, &d); err != nil {
		return nil, entryCount{}, fmt.Errorf("entry %d (%s): decode data: %w", en.ID, en.Kind, err)
	}
	ev, err := d.event(en, k)
	if err != nil {
		return nil, entryCount{}, err
	}
	return ev, countOf(k, &d), nil
}

// event builds the Event of entry en of kind k whose data is d.
func (d *entryData) event(en *db.Entry, k Kind) (*Event, error) {
	ev := &Event{
		Position:    en.ID,
		Kind:        k,
		Time:        en.CreatedAt.UTC(),
		Environment: en.Environment,
		ClassName:   d.Class,
		Owners:      d.Owners,
		Assignees:   d.Assignees,
		UserID:      d.UserID,
		FieldIDs:    d.FieldIDs,
		DocumentID:  d.DocumentID,
		Old:         compact(d.Old),
	}
	if en.ClassID != nil {
		ev.ClassID = *en.ClassID
	}
	if en.RecordID != nil {
		ev.RecordID = *en.RecordID
	}
	if en.TaskID != nil {
		ev.TaskID = *en.TaskID
	}
	if d.RecordID != nil && ev.RecordID == 0 {
		ev.RecordID = *d.RecordID
	}
	if d.OldCells != nil {
		old, err := oldByName(d.OldCells, d.Fields)
		if err != nil {
			return nil, fmt.Errorf("entry %d (%s): %w", en.ID, en.Kind, err)
		}
		ev.Old = old
	}
	rec, err := d.record(ev.RecordID)
	if err != nil {
		return nil, fmt.Errorf("entry %d (%s): %w", en.ID, en.Kind, err)
	}
	ev.Record = rec
	if d.Read != "" {
		r, ok := ParseRule(d.Read)
		if !ok {
			return nil, fmt.Errorf("entry %d: unknown read rule %q", en.ID, d.Read)
		}
		ev.Read = r
	}
	switch k {
	case KindPublished:
		ev.Type, ev.Source, ev.Payload = d.Type, d.Source, d.Payload
		if ev.Type == "" {
			return nil, fmt.Errorf("entry %d: published event without type", en.ID)
		}
	case KindCollectionCreated:
		ev.ClassName = d.Name
		ev.Type, ev.Source = collectionCreatedType, "system"
		ev.Payload, _ = json.Marshal(map[string]string{"name": d.Name})
	}
	return ev, nil
}
