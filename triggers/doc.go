// Package triggers is pgcast's capture logic inside PostgreSQL: the trigger
// functions that turn writes to pgcast's tables into entries of the durable
// event log (pgcast.events), in the writing transaction. They are not
// versioned migrations: SQL is re-applied, idempotently, after every
// `pgcast migrate` that leaves the schema at the binary's version, so a fix
// to a trigger ships with the binary.
//
// # Data model (see sql/000002_capture.up.sql)
//
// Cells are one JSONB object per record keyed by field id, so one UPDATE
// changes many cells and a statement-level trigger sees OLD and NEW whole
// (transition tables): one entry per record per statement lists exactly the
// changed field ids. Owners and assignees are text arrays on the record or
// task; the trigger diffs OLD and NEW into one entry per user. No count is
// kept here: each record_created / record_deleted entry is +1 / -1 for its
// class, and the reader adds them up from a checkpoint (see package stream
// and docs/design.md, "Counts"). TRUNCATE of the records appends a
// record_deleted per record, read before the rows go.
//
// # Checks
//
// Record cells must be keyed by field ids of the record's class, and every
// required field must have a cell that is not null (an UPDATE: for what it
// changes). A write that breaks this fails with SQLSTATE 23514, constraint
// object_records_cells_known or object_records_cells_required (statement-
// level triggers pgcast_check_cells_insert and pgcast_check_cells_update,
// part of schema version 5: sql/000005_cells_check.down.sql removes them).
//
// # Entries
//
// Every entry has kind, environment_id, object_class_id (except published
// events), object_record_id or task_id where one applies, and data:
//
//	record_created            {class, read, owners, assignees, cells, fields, created_at, updated_at}
//	record_updated            {class, read, owners, assignees, field_ids, old_cells, cells, fields, created_at, updated_at}
//	record_deleted            {class, read, owners, assignees, record:{id}, old_cells, fields}   (as it was)
//	record_owner_added        {class, read, owners, assignees, user_id}       (arrays after)
//	record_owner_removed      {class, read, owners, assignees, user_id}       (arrays before)
//	record_assignee_added     {class, read, owners, assignees, user_id}
//	record_assignee_removed   {class, read, owners, assignees, user_id}
//	record_document_generated {class, read, owners, assignees, document_id}
//	records_count_changed     {class, read, count}   (a watch's count seeded; {class, read, delta} before schema 7)
//	task_created, task_value_changed, task_status_changed, task_deleted
//	                          {class, read, owners, assignees, record_id}
//	task_owner_added, task_owner_removed, task_assignee_added, task_assignee_removed
//	                          {class, read, owners, assignees, record_id, user_id}
//	collection_created        {name}
//	published                 {type, source, payload}
//
// class is the object class name and read its read rule at the moment of the
// change. cells are the record's cells (keyed by field id), fields the
// class's field names by id at the moment of the change
// (pgcast.object_classes.field_names, kept by a trigger here), created_at and
// updated_at the record's timestamps in UTC: from them the reader builds,
// once, the full record as the realtime API shows it: {"id", "createdAt",
// "updatedAt", <field name>: <cell value>...} (looking the names up in the
// trigger cost a subquery per captured row). Together they let fan-out route
// and check permissions without a query per subscriber. Payload size is unbounded: nothing travels through NOTIFY,
// which only wakes a waiting reader, at most once per transaction.
//
// # Watched tables
//
// watch.sql captures the application's own tables (docs/watch.md) into the
// same record kinds; their record entries carry the record itself
// ({class, read, owners, assignees: [], record}, plus field_ids and old, the
// changed columns' old values, for record_updated) instead of cells.
package triggers
