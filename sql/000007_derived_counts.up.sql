-- Record counts derived from the log (docs/design.md, "Counts").
--
-- Until version 6 every writing statement also added its delta to a count
-- shard (pgcast.object_class_counts) and appended a records_count_changed
-- entry. From version 7 the writing transaction does neither: each
-- record_created / record_deleted entry is +1 / -1 for its class, and the
-- reader adds them up from a checkpoint, the counts as of a log position,
-- which the pruner advances (one node at a time, under its lock).
--
-- A log position here is what a reader's cursor is: a snapshot (entries of
-- the transactions it sees are counted in) plus, for a checkpoint taken
-- before a server restart, the highest entry it saw (a crash can hand out
-- again transaction ids that never reached disk; entries above max_position
-- are then counted too). One row, replaced as a whole.
CREATE TABLE pgcast.count_checkpoint (
    singleton    boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    -- The snapshot the counts are as of: an entry is counted in iff its
    -- transaction is visible in it.
    snapshot     pg_snapshot NOT NULL,
    -- The highest entry position visible in snapshot.
    max_position bigint      NOT NULL,
    -- pg_postmaster_start_time() when it was taken.
    server_start timestamptz NOT NULL,
    taken_at     timestamptz NOT NULL DEFAULT now(),
    -- {"<class id>": count}, classes with a count other than 0.
    counts       jsonb       NOT NULL CHECK (jsonb_typeof(counts) = 'object')
);

-- The first checkpoint, in one statement (one snapshot): a collection's
-- count is its records' count(*) in that snapshot (exact whatever the
-- shards say: TRUNCATE used to bypass them), a watched table's the sum of
-- its shards, kept in the same transactions as its rows (its rows outside
-- pgcast cannot be counted here without locking the table). Writers still
-- running the previous triggers until the new ones are installed (right
-- after this migration) append entries the reader counts like any other,
-- and upsert shards that nothing reads any more: the table stays, empty of
-- meaning, so that they do not fail.
INSERT INTO pgcast.count_checkpoint (snapshot, max_position, server_start, counts)
SELECT pg_current_snapshot(),
       coalesce((SELECT max(id) FROM pgcast.events), 0),
       pg_postmaster_start_time(),
       coalesce((SELECT jsonb_object_agg(c.id::text, c.n)
                 FROM (SELECT r.object_class_id AS id, count(*) AS n
                       FROM pgcast.object_records r
                       GROUP BY 1
                       UNION ALL
                       SELECT s.object_class_id, sum(s.n)
                       FROM pgcast.object_class_counts s
                       JOIN pgcast.watches w ON w.object_class_id = s.object_class_id AND w.counts
                       GROUP BY 1
                       HAVING sum(s.n) <> 0) c), '{}');

COMMENT ON TABLE pgcast.object_class_counts IS
    'Unused since schema version 7 (counts are derived from the log: pgcast.count_checkpoint). Kept so that writers running the triggers of version 6 during an upgrade do not fail.';
