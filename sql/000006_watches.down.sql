-- Capture triggers on watched tables call these functions (package
-- triggers): dropping them drops those triggers; the tables and their data
-- stay. The event triggers go with their functions.
DO $$
DECLARE f regprocedure;
BEGIN
    FOR f IN SELECT p.oid::regprocedure FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE n.nspname = 'pgcast' AND p.proname LIKE 'watch%' OR n.nspname = 'pgcast' AND p.proname LIKE 'capture_watch%'
    LOOP
        EXECUTE 'DROP FUNCTION ' || f || ' CASCADE';
    END LOOP;
END $$;
DELETE FROM pgcast.object_classes WHERE id IN (SELECT object_class_id FROM pgcast.watches);
DROP TABLE pgcast.watches;
DELETE FROM pgcast.object_class_fields WHERE attnum IS NOT NULL;
ALTER TABLE pgcast.object_class_fields DROP CONSTRAINT object_class_fields_attnum_key;
ALTER TABLE pgcast.object_class_fields DROP CONSTRAINT object_class_fields_name_check;
ALTER TABLE pgcast.object_class_fields ADD CONSTRAINT object_class_fields_name_check
    CHECK (name ~ '^[a-z][a-z0-9_]*$' AND length(name) <= 63);
ALTER TABLE pgcast.object_class_fields DROP COLUMN attnum;
