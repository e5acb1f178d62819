DROP TRIGGER IF EXISTS pgcast_check_cells_insert ON pgcast.object_records;
DROP TRIGGER IF EXISTS pgcast_check_cells_update ON pgcast.object_records;
DROP FUNCTION IF EXISTS pgcast.check_object_records_insert();
DROP FUNCTION IF EXISTS pgcast.check_object_records_update();
DROP FUNCTION IF EXISTS pgcast.refuse_cells(bigint, text, jsonb, text, text);
DROP FUNCTION IF EXISTS pgcast.cells_problems(bigint, jsonb, jsonb, jsonb);
COMMENT ON COLUMN pgcast.object_records.cells IS NULL;
