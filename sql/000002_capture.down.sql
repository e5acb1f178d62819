DROP FUNCTION IF EXISTS pgcast.publish(text, jsonb, text);
DROP TABLE IF EXISTS pgcast.publish_namespaces, pgcast.listeners, pgcast.event_log_marks, pgcast.event_log,
    pgcast.events, pgcast.object_class_counts, pgcast.tasks, pgcast.object_record_documents,
    pgcast.object_records, pgcast.object_class_fields, pgcast.object_classes;

-- Trigger functions are installed by package triggers, not by a migration;
-- they reference the tables above, so they go with them.
DO $$
DECLARE f regprocedure;
BEGIN
    FOR f IN SELECT p.oid::regprocedure FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'pgcast'
    LOOP
        EXECUTE 'DROP FUNCTION ' || f || ' CASCADE';
    END LOOP;
END $$;
