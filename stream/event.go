package stream

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/pgcast/pgcast/triggers"
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
	triggers.KindRecordCreated:           KindRecordCreated,
	triggers.KindRecordUpdated:           KindRecordValueChanged,
	triggers.KindRecordDeleted:           KindRecordDeleted,
	triggers.KindRecordOwnerAdded:        KindRecordOwnerAdded,
	triggers.KindRecordOwnerRemoved:      KindRecordOwnerRemoved,
	triggers.KindRecordAssigneeAdded:     KindRecordAssigneeAdded,
	triggers.KindRecordAssigneeRemoved:   KindRecordAssigneeRemoved,
	triggers.KindRecordDocumentGenerated: KindRecordDocumentGenerated,
	triggers.KindRecordsCountChanged:     KindRecordsCountChanged,
	triggers.KindTaskCreated:             KindTaskCreated,
	triggers.KindTaskValueChanged:        KindTaskValueChanged,
	triggers.KindTaskStatusChanged:       KindTaskStatusChanged,
	triggers.KindTaskOwnerAdded:          KindTaskOwnerAdded,
	triggers.KindTaskOwnerRemoved:        KindTaskOwnerRemoved,
	triggers.KindTaskAssigneeAdded:       KindTaskAssigneeAdded,
	triggers.KindTaskAssigneeRemoved:     KindTaskAssigneeRemoved,
	triggers.KindTaskDeleted:             KindTaskDeleted,
	triggers.KindCollectionCreated:       KindCollectionCreated,
	triggers.KindPublished:               KindPublished,
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
	Count       int64     // count events: the class's record count
	Delta       int64     // count events: the change in count made by the statement
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
	Delta        int64           `json:"delta"`
	RecordID     *int64          `json:"record_id"`
	recordFields                 // the record, or what it is built from
	Old          json.RawMessage `json:"old"`
	Name         string          `json:"name"`
	Type         string          `json:"type"`
	Source       string          `json:"source"`
	Payload      json.RawMessage `json:"payload"`
}

// entry is one raw row of pgcast.events.
type entry struct {
	id          int64
	xid         uint64
	createdAt   time.Time
	kind        string
	environment int64
	classID     *int64
	recordID    *int64
	taskID      *int64
	data        []byte
}

// decode turns a raw entry into an Event. It fails on an unknown kind or
// malformed data, which would mean triggers and binary disagree.
func decode(en *entry) (*Event, error) {
	k, ok := kindsByEntry[en.kind]
	if !ok {
		return nil, fmt.Errorf("entry %d: unknown kind %q", en.id, en.kind)
	}
	var d entryData
	if err := json.Unmarshal(en.data, &d); err != nil {
		return nil, fmt.Errorf("entry %d (%s): decode data: %w", en.id, en.kind, err)
	}
	ev := &Event{
		Position:    en.id,
		Kind:        k,
		Time:        en.createdAt.UTC(),
		Environment: en.environment,
		ClassName:   d.Class,
		Owners:      d.Owners,
		Assignees:   d.Assignees,
		UserID:      d.UserID,
		FieldIDs:    d.FieldIDs,
		DocumentID:  d.DocumentID,
		Delta:       d.Delta,
		Old:         d.Old,
	}
	if en.classID != nil {
		ev.ClassID = *en.classID
	}
	if en.recordID != nil {
		ev.RecordID = *en.recordID
	}
	if en.taskID != nil {
		ev.TaskID = *en.taskID
	}
	if d.RecordID != nil && ev.RecordID == 0 {
		ev.RecordID = *d.RecordID
	}
	rec, err := d.record(ev.RecordID)
	if err != nil {
		return nil, fmt.Errorf("entry %d (%s): %w", en.id, en.kind, err)
	}
	ev.Record = rec
	if d.Read != "" {
		r, ok := ParseRule(d.Read)
		if !ok {
			return nil, fmt.Errorf("entry %d: unknown read rule %q", en.id, d.Read)
		}
		ev.Read = r
	}
	switch k {
	case KindPublished:
		ev.Type, ev.Source, ev.Payload = d.Type, d.Source, d.Payload
		if ev.Type == "" {
			return nil, fmt.Errorf("entry %d: published event without type", en.id)
		}
	case KindCollectionCreated:
		ev.ClassName = d.Name
		ev.Type, ev.Source = "system.collection.created", "system"
		ev.Payload, _ = json.Marshal(map[string]string{"name": d.Name})
	}
	return ev, nil
}
