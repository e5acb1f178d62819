-- The trigger keeping field_names is installed by package triggers; it goes
-- with the column. The capture functions of the binary that ran this down
-- read the column: the older binary's `pgcast migrate` (any subcommand that
-- leaves the schema at its version) installs its own capture functions.
DROP TRIGGER IF EXISTS pgcast_field_names_insert ON pgcast.object_class_fields;
DROP TRIGGER IF EXISTS pgcast_field_names_update ON pgcast.object_class_fields;
DROP TRIGGER IF EXISTS pgcast_field_names_delete ON pgcast.object_class_fields;
DROP TRIGGER IF EXISTS pgcast_field_names_truncate ON pgcast.object_class_fields;
DROP FUNCTION IF EXISTS pgcast.maintain_field_names();
DROP FUNCTION IF EXISTS pgcast.reset_field_names();
ALTER TABLE pgcast.object_classes DROP COLUMN field_names;
