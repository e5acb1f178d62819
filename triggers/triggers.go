package triggers

import _ "embed"

// SQL installs (or replaces) every trigger function and trigger. It is
// idempotent: CREATE OR REPLACE for functions, DROP ... IF EXISTS before
// CREATE for triggers.
var SQL = coreSQL + "\n" + watchSQL

//go:embed triggers.sql
var coreSQL string

// watchSQL is the capture of watched application tables (docs/watch.md).
//
//go:embed watch.sql
var watchSQL string

// NotifyChannel is the channel writers NOTIFY (with an empty payload) to
// wake a waiting reader.
const NotifyChannel = "pgcast_events"

// Entry kinds, as stored in pgcast.events.kind.
const (
	KindRecordCreated           = "record_created"
	KindRecordUpdated           = "record_updated"
	KindRecordDeleted           = "record_deleted"
	KindRecordOwnerAdded        = "record_owner_added"
	KindRecordOwnerRemoved      = "record_owner_removed"
	KindRecordAssigneeAdded     = "record_assignee_added"
	KindRecordAssigneeRemoved   = "record_assignee_removed"
	KindRecordDocumentGenerated = "record_document_generated"
	KindRecordsCountChanged     = "records_count_changed"
	KindTaskCreated             = "task_created"
	KindTaskValueChanged        = "task_value_changed"
	KindTaskStatusChanged       = "task_status_changed"
	KindTaskOwnerAdded          = "task_owner_added"
	KindTaskOwnerRemoved        = "task_owner_removed"
	KindTaskAssigneeAdded       = "task_assignee_added"
	KindTaskAssigneeRemoved     = "task_assignee_removed"
	KindTaskDeleted             = "task_deleted"
	KindCollectionCreated       = "collection_created"
	KindPublished               = "published"
)
