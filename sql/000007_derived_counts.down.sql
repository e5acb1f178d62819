-- Back to counts kept in the writing transactions (schema version 6): the
-- shards are set to each class's count now, with writers kept out of the
-- tables counted until this transaction ends. The triggers installed stay
-- those of version 7, which keep no shards, until the version-6 binary
-- installs its own (`pgcast migrate up` with it, right after): writes in
-- between are not counted.
LOCK TABLE pgcast.object_records IN SHARE MODE;
DELETE FROM pgcast.object_class_counts;
INSERT INTO pgcast.object_class_counts (object_class_id, shard, n)
SELECT object_class_id, 0, count(*) FROM pgcast.object_records GROUP BY 1;
DO $$
DECLARE
    w record;
BEGIN
    FOR w IN SELECT x.object_class_id, format('%I.%I', n.nspname, c.relname) AS tbl
             FROM pgcast.watches x
             JOIN pg_catalog.pg_class c ON c.oid = x.table_oid
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
             WHERE x.counts AND x.table_oid <> 0
    LOOP
        EXECUTE format('LOCK TABLE %s IN SHARE MODE', w.tbl);
        EXECUTE format('INSERT INTO pgcast.object_class_counts (object_class_id, shard, n) SELECT $1, 0, count(*) FROM ONLY %s', w.tbl)
            USING w.object_class_id;
    END LOOP;
END $$;
COMMENT ON TABLE pgcast.object_class_counts IS NULL;
DROP TABLE pgcast.count_checkpoint;
