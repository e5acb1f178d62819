-- Record cells are checked by triggers installed with the others at this
-- version (package triggers: pgcast_check_cells_insert and
-- pgcast_check_cells_update): their keys must be field ids of the record's
-- class, and every required field needs a cell that is not null. No table
-- changes; the version exists so that migrating down removes the check
-- (a binary of an older version would not know to).
COMMENT ON COLUMN pgcast.object_records.cells IS
    'Cells keyed by field id (as text). Keys must be field ids of the class and required fields need a non-null cell (checked by triggers).';
