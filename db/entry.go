package db

import (
	"time"

	"github.com/pgcast/pgcast/triggers"
)

// Entry kinds, as stored in pgcast.events.kind: the names package triggers
// writes, re-exported so that the packages above db decode the log without
// importing triggers.
const (
	KindRecordCreated           = triggers.KindRecordCreated
	KindRecordUpdated           = triggers.KindRecordUpdated
	KindRecordDeleted           = triggers.KindRecordDeleted
	KindRecordOwnerAdded        = triggers.KindRecordOwnerAdded
	KindRecordOwnerRemoved      = triggers.KindRecordOwnerRemoved
	KindRecordAssigneeAdded     = triggers.KindRecordAssigneeAdded
	KindRecordAssigneeRemoved   = triggers.KindRecordAssigneeRemoved
	KindRecordDocumentGenerated = triggers.KindRecordDocumentGenerated
	KindRecordsCountChanged     = triggers.KindRecordsCountChanged
	KindTaskCreated             = triggers.KindTaskCreated
	KindTaskValueChanged        = triggers.KindTaskValueChanged
	KindTaskStatusChanged       = triggers.KindTaskStatusChanged
	KindTaskOwnerAdded          = triggers.KindTaskOwnerAdded
	KindTaskOwnerRemoved        = triggers.KindTaskOwnerRemoved
	KindTaskAssigneeAdded       = triggers.KindTaskAssigneeAdded
	KindTaskAssigneeRemoved     = triggers.KindTaskAssigneeRemoved
	KindTaskDeleted             = triggers.KindTaskDeleted
	KindCollectionCreated       = triggers.KindCollectionCreated
	KindPublished               = triggers.KindPublished
)

// Entry is one raw row of the event log (pgcast.events), undecoded: package
// stream turns it into an event. The functions that read entries hand each
// one to a callback and reuse the Entry for the next row, so a callback
// must not keep it (or Data) past its return.
type Entry struct {
	ID          int64  // log position
	Xid         uint64 // the writing transaction: delta reads only, 0 in a replay
	CreatedAt   time.Time
	Kind        string // one of the Kind constants
	Environment int64
	ClassID     *int64 // NULL for published events
	RecordID    *int64
	TaskID      *int64
	Data        []byte // pgcast.events.data, JSON (see package triggers)
}
