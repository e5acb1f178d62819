-- Each class's field names, by field id: {"<field id>": "<name>", ...}.
-- Record entries carry it next to the raw cells, and the reader builds the
-- record keyed by names from the two, instead of the capture trigger
-- looking the names up for every row it captures. Kept up to date by a
-- trigger on pgcast.object_class_fields (package triggers), which also
-- fills it in for existing classes.
ALTER TABLE pgcast.object_classes ADD COLUMN field_names jsonb NOT NULL DEFAULT '{}'
    CHECK (jsonb_typeof(field_names) = 'object');
