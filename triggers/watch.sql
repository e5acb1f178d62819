-------------------------------------------------------------------------------
-- Watches: capture of the application's own tables (see docs/watch.md)
-------------------------------------------------------------------------------

-- A watched table gets four triggers (pgcast.watch_install): statement-level
-- AFTER INSERT / UPDATE / DELETE with transition tables, and BEFORE TRUNCATE.
-- They call the functions below with the watch id as argument and append
-- the same entry kinds as pgcast's own records (record_created,
-- record_updated, record_deleted, record_owner_added / _removed), so the
-- reader, the hub and both WebSocket APIs serve them unchanged. Their data
-- differs in one way: it carries the record itself ("record": the streamed columns as to_jsonb shows them, plus
-- "id", the primary key), not cells keyed by field id.
--
-- The functions are generic: they read the watch's columns by attribute
-- number and resolve the names from pg_attribute at every statement, so ADD,
-- DROP and RENAME COLUMN need no regenerated trigger, a renamed column keeps
-- its field id, and an excluded column stays excluded under a new name.
-- (plpgsql compiles a trigger function once per trigger, so its statements
-- are planned for the row type of each table's transition tables.) A
-- column added, renamed or dropped gets its field created, renamed or
-- deleted by pgcast.watch_sync: from the DDL's own transaction when the event
-- trigger below could be installed (superuser only), else by the first write
-- that follows.
--
-- The capture functions are SECURITY DEFINER: the application's role writes
-- its own table and needs no privilege on pgcast's schema. A definer function
-- is pinned to search_path pg_catalog, pg_temp (one setting per statement,
-- not per row), and refuses to run for a table other than its watch's, so
-- attaching it to another table forges nothing.

-- The field type shown for a column of type typ (domains by their base).
CREATE OR REPLACE FUNCTION pgcast.watch_field_type(typ oid) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN t.typcategory = 'A' THEN 'json'
        WHEN b IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype) THEN 'integer'
        WHEN b IN ('float4'::regtype, 'float8'::regtype, 'numeric'::regtype) THEN 'float'
        WHEN b = 'bool'::regtype THEN 'boolean'
        WHEN b IN ('timestamptz'::regtype, 'timestamp'::regtype) THEN 'datetime'
        WHEN b IN ('json'::regtype, 'jsonb'::regtype) OR t.typtype = 'c' THEN 'json'
        WHEN b IN ('text'::regtype, 'varchar'::regtype, 'bpchar'::regtype, 'name'::regtype) THEN 'text'
        ELSE 'string'
    END
    FROM pg_catalog.pg_type t0
    CROSS JOIN LATERAL (SELECT CASE WHEN t0.typtype = 'd' THEN t0.typbasetype ELSE t0.oid END AS b) x(b)
    JOIN pg_catalog.pg_type t ON t.oid = x.b
    WHERE t0.oid = typ
$$;

-- The columns a watch streams, in column order.
CREATE OR REPLACE FUNCTION pgcast.watch_columns(watch_id bigint)
RETURNS TABLE (attnum smallint, name text, type text)
LANGUAGE sql STABLE AS $$
    SELECT a.attnum, a.attname::text, pgcast.watch_field_type(a.atttypid)
    FROM pgcast.watches w
    JOIN pg_catalog.pg_attribute a ON a.attrelid = w.table_oid AND a.attnum > 0 AND NOT a.attisdropped
    WHERE w.id = watch_id AND w.table_oid <> 0
      AND CASE WHEN w.include_attnums IS NULL THEN a.attnum <> ALL (w.exclude_attnums)
               ELSE a.attnum = ANY (w.include_attnums) END
    ORDER BY a.attnum
$$;

-- pgcast.watch_sync makes the watch's fields match its table's streamed
-- columns: one field per column, following it by attnum (created, renamed,
-- retyped, deleted); the watch's table name match the table's (after a
-- rename); and the names the capture triggers use (pgcast.watches.shape_names
-- and the columns after it) match the table's columns. Concurrent syncs of
-- one watch serialise on its row.
CREATE OR REPLACE FUNCTION pgcast.watch_sync(watch_id bigint) RETURNS void
LANGUAGE plpgsql SECURITY INVOKER AS $$
DECLARE
    w pgcast.watches;
BEGIN
    SELECT * INTO w FROM pgcast.watches WHERE id = watch_id FOR NO KEY UPDATE;
    IF NOT FOUND OR w.table_oid = 0 THEN
        RETURN;
    END IF;
    DELETE FROM pgcast.object_class_fields f
    WHERE f.object_class_id = w.object_class_id
      AND (f.attnum IS NULL OR f.attnum NOT IN (SELECT c.attnum FROM pgcast.watch_columns(watch_id) c));
    -- Renames in two steps, so that columns that swapped names never
    -- collide on (class, name) halfway.
    UPDATE pgcast.object_class_fields f SET name = '#' || f.attnum
    FROM pgcast.watch_columns(watch_id) c
    WHERE f.object_class_id = w.object_class_id AND f.attnum = c.attnum AND f.name <> c.name;
    UPDATE pgcast.object_class_fields f SET name = c.name, type = c.type, position = c.attnum
    FROM pgcast.watch_columns(watch_id) c
    WHERE f.object_class_id = w.object_class_id AND f.attnum = c.attnum
      AND (f.name <> c.name OR f.type <> c.type OR f.position <> c.attnum);
    INSERT INTO pgcast.object_class_fields (object_class_id, name, type, position, attnum)
    SELECT w.object_class_id, c.name, c.type, c.attnum, c.attnum
    FROM pgcast.watch_columns(watch_id) c
    WHERE NOT EXISTS (SELECT 1 FROM pgcast.object_class_fields f WHERE f.object_class_id = w.object_class_id AND f.attnum = c.attnum)
    ON CONFLICT DO NOTHING;
    UPDATE pgcast.watches x
    SET schema_name = a.schema_name, table_name = a.table_name,
        shape_names = a.shape_names, shape_types = a.shape_types, drop_cols = a.drop_cols, key_cols = a.key_cols,
        int_key = a.int_key, owner_cols = a.owner_cols, env_col = a.env_col, field_ids = a.field_ids,
        healthy = a.healthy, updated_at = now()
    FROM (
        SELECT n.nspname::text AS schema_name, r.relname::text AS table_name, a.shape_names, a.shape_types,
               coalesce(a.drop_cols, '{}') AS drop_cols, coalesce(a.key_cols, '{}') AS key_cols,
               cardinality(w.key_attnums) = 1 AND coalesce(a.int_key, false) AS int_key,
               coalesce(a.owner_cols, '{}') AS owner_cols, a.env_col, coalesce(a.field_ids, '{}') AS field_ids,
               coalesce(cardinality(a.key_cols), 0) = cardinality(w.key_attnums) AND (w.env_attnum IS NULL OR a.env_col IS NOT NULL) AS healthy
        FROM pg_catalog.pg_class r
        JOIN pg_catalog.pg_namespace n ON n.oid = r.relnamespace
        CROSS JOIN LATERAL (
            SELECT array_agg(a.attname::text ORDER BY a.attnum) AS shape_names,
                   array_agg(a.atttypid ORDER BY a.attnum) AS shape_types,
                   array_agg(a.attname::text ORDER BY a.attnum) FILTER (WHERE NOT a.streamed) AS drop_cols,
                   array_agg(a.attname::text ORDER BY array_position(w.key_attnums, a.attnum))
                       FILTER (WHERE a.attnum = ANY (w.key_attnums)) AS key_cols,
                   bool_and(a.atttypid IN ('pg_catalog.int2'::regtype, 'pg_catalog.int4'::regtype, 'pg_catalog.int8'::regtype))
                       FILTER (WHERE a.attnum = ANY (w.key_attnums)) AS int_key,
                   array_agg(a.attname::text ORDER BY a.attnum) FILTER (WHERE a.attnum = ANY (w.owner_attnums)) AS owner_cols,
                   min(a.attname::text) FILTER (WHERE a.attnum = w.env_attnum) AS env_col,
                   jsonb_object_agg(a.attname::text, f.id) FILTER (WHERE f.id IS NOT NULL) AS field_ids
            FROM (SELECT a.attnum, a.attname, a.atttypid,
                         CASE WHEN w.include_attnums IS NULL THEN a.attnum <> ALL (w.exclude_attnums)
                              ELSE a.attnum = ANY (w.include_attnums) END AS streamed
                  FROM pg_catalog.pg_attribute a
                  WHERE a.attrelid = w.table_oid AND a.attnum > 0 AND NOT a.attisdropped) a
            LEFT JOIN pgcast.object_class_fields f ON f.object_class_id = w.object_class_id AND f.attnum = a.attnum
        ) a
        WHERE r.oid = w.table_oid
    ) a
    WHERE x.id = watch_id
      AND (x.schema_name, x.table_name, x.shape_names, x.shape_types, x.drop_cols, x.key_cols, x.int_key, x.owner_cols,
           x.env_col, x.field_ids, x.healthy)
          IS DISTINCT FROM (a.schema_name, a.table_name, a.shape_names, a.shape_types, a.drop_cols, a.key_cols, a.int_key,
                            a.owner_cols, a.env_col, a.field_ids, a.healthy);
END
$$;

-- What the capture functions need of a watch, for this statement: mine (the
-- watch is active and its table is relid), fresh (the names resolved by
-- pgcast.watch_sync are those of the table's columns now: if not, sync
-- first, which happens at the first write after a column was added,
-- renamed, dropped or retyped where no event trigger could sync in the DDL's
-- transaction), healthy (key and environment columns exist), the class and
-- the resolved names. One index probe each into pgcast.watches and
-- pgcast.object_classes and two into pg_attribute (ARRAY(...) subqueries:
-- array_agg(... ORDER BY) sets up a sort per aggregate on every statement,
-- which cost twice as much); a set-returning SQL function that is inlined
-- into the caller's query.
CREATE OR REPLACE FUNCTION pgcast.watch_config(watch_id bigint, relid oid)
RETURNS TABLE (mine boolean, fresh boolean, healthy boolean, class_id bigint, class_name text, read_rule text,
               home_env bigint, counts boolean, drop_cols text[], key_cols text[], int_key boolean,
               owner_cols text[], env_col text, field_ids jsonb)
LANGUAGE sql STABLE AS $$
    SELECT w.table_oid = relid AND w.status = 'active',
           w.shape_names = ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a
                                 WHERE a.attrelid = relid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum)
           AND w.shape_types = ARRAY(SELECT a.atttypid FROM pg_catalog.pg_attribute a
                                     WHERE a.attrelid = relid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum),
           w.healthy, c.id, c.name, c.read_rule, c.environment_id, w.counts,
           w.drop_cols, w.key_cols, w.int_key, w.owner_cols, w.env_col, w.field_ids
    FROM pgcast.watches w
    JOIN pgcast.object_classes c ON c.id = w.object_class_id
    WHERE w.id = watch_id
$$;

-- A row's environment: the watch's (home_env), or the integer in its
-- environment column (NULL when that holds no integer: the row is not
-- streamed).
CREATE OR REPLACE FUNCTION pgcast.watch_env(j jsonb, env_col text, home_env bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN env_col IS NULL THEN home_env
                WHEN (j ->> env_col) ~ '^-?[0-9]{1,18}$' THEN (j ->> env_col)::bigint END
$$;

-- A row's record: the streamed columns plus "id", its key (see
-- pgcast.watch_row).
CREATE OR REPLACE FUNCTION pgcast.watch_record(j jsonb, drop_cols text[], key jsonb, key_cols text[], int_key boolean) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT (j - drop_cols) || jsonb_build_object('id',
               CASE WHEN int_key THEN key
                    WHEN cardinality(key_cols) = 1 THEN to_jsonb(key #>> '{}')
                    ELSE to_jsonb(key::text) END)
$$;

-- What an update changed in a record: the field ids of the changed columns
-- (sorted; columns without a field, "id", are left out) and their old values.
CREATE OR REPLACE FUNCTION pgcast.watch_changes(rec jsonb, old_rec jsonb, field_ids jsonb)
RETURNS TABLE (ids jsonb, old jsonb)
LANGUAGE sql STABLE AS $$
    SELECT jsonb_agg((field_ids ->> x.key)::bigint ORDER BY (field_ids ->> x.key)::bigint)
               FILTER (WHERE field_ids ? x.key),
           jsonb_object_agg(x.key, coalesce(old_rec -> x.key, 'null'::jsonb))
    FROM jsonb_each(rec) x
    WHERE (old_rec -> x.key) IS DISTINCT FROM x.value
$$;

-- One row of a watched table as its entries show it: its key (the key
-- column's JSON value, or an array of the values of a composite key), the
-- record id (the key when it is one integer column, else NULL), its
-- environment (NULL when the environment column holds no integer: the row
-- is not streamed), its owners (the owner columns' values as text, arrays
-- flattened, nulls left out) and the record: the streamed columns plus
-- "id", the key as an integer for one integer key column, as a string for
-- any other one-column key, and for a composite key the text of the JSON
-- array of its values (e.g. "[42, \"eu\"]").
--
-- A set-returning SQL function that is neither strict nor volatile: the
-- planner inlines it into the capture statements (and the scalar helpers
-- above into it).
CREATE OR REPLACE FUNCTION pgcast.watch_row(j jsonb, drop_cols text[], key_cols text[], int_key boolean,
    owner_cols text[], env_col text, home_env bigint)
RETURNS TABLE (key jsonb, rid bigint, env bigint, owners text[], rec jsonb)
LANGUAGE sql IMMUTABLE AS $$
    SELECT k.key,
           CASE WHEN int_key THEN (j ->> key_cols[1])::bigint END,
           pgcast.watch_env(j, env_col, home_env),
           CASE WHEN cardinality(owner_cols) = 0 THEN '{}'::text[]
                ELSE ARRAY(SELECT DISTINCT o.v
                           FROM unnest(owner_cols) c(c)
                           CROSS JOIN LATERAL jsonb_array_elements_text(
                               CASE jsonb_typeof(j -> c.c) WHEN 'array' THEN j -> c.c ELSE jsonb_build_array(j -> c.c) END) o(v)
                           WHERE o.v IS NOT NULL ORDER BY 1) END,
           pgcast.watch_record(j, drop_cols, k.key, key_cols, int_key)
    FROM (SELECT CASE WHEN cardinality(key_cols) = 1 THEN j -> key_cols[1]
                      ELSE (SELECT jsonb_agg(j -> c.c ORDER BY c.o) FROM unnest(key_cols) WITH ORDINALITY c(c, o)) END
          OFFSET 0) k(key)
$$;

-- A watch with counts: true has its count derived from the log like a
-- collection's (docs/design.md, "Counts"): its record_created and
-- record_deleted entries carry "counted": true, which tells the reader to
-- announce the count after them (each entry is +1 / -1 whatever the flag;
-- a watch that starts counting is seeded with an absolute count, see
-- db.ApplyWatch). Functions of the versions that kept shards:
DROP FUNCTION IF EXISTS pgcast.watch_count(bigint, text, text, bigint, bigint);

-- record_created per inserted row (rows without an environment are left
-- out).
--
-- Rows become JSON once, in a subquery the planner keeps (OFFSET 0): the
-- inlined pgcast.watch_row refers to its argument many times. to_jsonb(t.*)
-- and not to_jsonb(t): a column named t would win over the row.
CREATE OR REPLACE FUNCTION pgcast.capture_watch_insert() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan SET TimeZone = 'UTC' AS $$
DECLARE
    w record;
    n bigint;
BEGIN
    SELECT * INTO w FROM pgcast.watch_config(TG_ARGV[0]::bigint, TG_RELID);
    IF NOT FOUND OR NOT w.mine THEN
        RETURN NULL;
    ELSIF NOT w.fresh THEN
        PERFORM pgcast.watch_sync(TG_ARGV[0]::bigint);
        SELECT * INTO w FROM pgcast.watch_config(TG_ARGV[0]::bigint, TG_RELID);
    END IF;
    IF NOT w.healthy THEN
        RETURN NULL;
    END IF;
    INSERT INTO pgcast.events (kind, environment_id, object_class_id, object_record_id, data)
    SELECT 'record_created', r.env, w.class_id, r.rid,
           jsonb_build_object('class', w.class_name, 'read', w.read_rule,
                              'owners', to_jsonb(r.owners), 'assignees', '[]'::jsonb, 'record', r.rec)
           || CASE WHEN w.counts THEN '{"counted": true}'::jsonb ELSE '{}'::jsonb END
    FROM (SELECT to_jsonb(t.*) AS j FROM pgcast_new t OFFSET 0) t
    CROSS JOIN LATERAL pgcast.watch_row(t.j, w.drop_cols, w.key_cols, w.int_key, w.owner_cols, w.env_col, w.home_env) r
    WHERE r.env IS NOT NULL;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM pgcast.ring();
    END IF;
    RETURN NULL;
END
$$;

-- record_deleted per deleted row, with the row as it was (streamed columns
-- only).
CREATE OR REPLACE FUNCTION pgcast.capture_watch_delete() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan SET TimeZone = 'UTC' AS $$
DECLARE
    w record;
    n bigint;
BEGIN
    SELECT * INTO w FROM pgcast.watch_config(TG_ARGV[0]::bigint, TG_RELID);
    IF NOT FOUND OR NOT w.mine THEN
        RETURN NULL;
    ELSIF NOT w.fresh THEN
        PERFORM pgcast.watch_sync(TG_ARGV[0]::bigint);
        SELECT * INTO w FROM pgcast.watch_config(TG_ARGV[0]::bigint, TG_RELID);
    END IF;
    IF NOT w.healthy THEN
        RETURN NULL;
    END IF;
    INSERT INTO pgcast.events (kind, environment_id, object_class_id, object_record_id, data)
    SELECT 'record_deleted', r.env, w.class_id, r.rid,
           jsonb_build_object('class', w.class_name, 'read', w.read_rule,
                              'owners', to_jsonb(r.owners), 'assignees', '[]'::jsonb, 'record', r.rec)
           || CASE WHEN w.counts THEN '{"counted": true}'::jsonb ELSE '{}'::jsonb END
    FROM (SELECT to_jsonb(t.*) AS j FROM pgcast_old t OFFSET 0) t
    CROSS JOIN LATERAL pgcast.watch_row(t.j, w.drop_cols, w.key_cols, w.int_key, w.owner_cols, w.env_col, w.home_env) r
    WHERE r.env IS NOT NULL;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM pgcast.ring();
    END IF;
    RETURN NULL;
END
$$;

-- Old and new rows are paired by key (a window over their union, as for
-- records: never a join of the transition tables). Per key, in this order:
--   * an old row without a new one (its key changed): record_deleted;
--   * a new row without an old one: record_created;
--   * a pair whose streamed columns are all unchanged: nothing (a no-op
--     update, or one that changed excluded columns only);
--   * a pair whose environment changed: record_deleted in the old one, then
--     record_created in the new one;
--   * any other pair: record_updated {field_ids: the changed columns' field
--     ids, sorted; old: the changed columns' old values; record: the row
--     after}, then record_owner_added / record_owner_removed per owner that
--     came or went (owners after, respectively before, the change).
--
-- A statement that updates one row (what an application does most) without
-- changing its key, environment or owners takes a shorter path to the same
-- record_updated entry: the pair is read and compared in plpgsql, and the
-- entry appended by a plain INSERT. The statement above initialises some 40
-- plan nodes on every execution, which cost single-row updates of a
-- typical table more than twice the time of the update itself (see
-- BENCHMARKS.md, "Watched tables").
CREATE OR REPLACE FUNCTION pgcast.capture_watch_update() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan SET TimeZone = 'UTC' AS $$
DECLARE
    w record;
    f_rows bigint;
    f_oj jsonb;
    f_nj jsonb;
    f_okey jsonb;
    f_nkey jsonb;
    f_oenv bigint;
    f_nenv bigint;
    f_oown text[] := '{}';
    f_nown text[] := '{}';
    f_orec jsonb;
    f_nrec jsonb;
BEGIN
    SELECT * INTO w FROM pgcast.watch_config(TG_ARGV[0]::bigint, TG_RELID);
    IF NOT FOUND OR NOT w.mine THEN
        RETURN NULL;
    ELSIF NOT w.fresh THEN
        PERFORM pgcast.watch_sync(TG_ARGV[0]::bigint);
        SELECT * INTO w FROM pgcast.watch_config(TG_ARGV[0]::bigint, TG_RELID);
    END IF;
    IF NOT w.healthy THEN
        RETURN NULL;
    END IF;
    IF cardinality(w.key_cols) = 1 THEN
        SELECT (SELECT count(*) FROM pgcast_new), (SELECT to_jsonb(t.*) FROM pgcast_old t LIMIT 1),
               (SELECT to_jsonb(t.*) FROM pgcast_new t LIMIT 1)
        INTO f_rows, f_oj, f_nj;
        f_okey := f_oj -> w.key_cols[1];
        f_nkey := f_nj -> w.key_cols[1];
        f_oenv := pgcast.watch_env(f_oj, w.env_col, w.home_env);
        f_nenv := pgcast.watch_env(f_nj, w.env_col, w.home_env);
        IF f_rows = 1 AND f_okey = f_nkey AND f_oenv IS NOT DISTINCT FROM f_nenv THEN
            IF cardinality(w.owner_cols) > 0 THEN
                SELECT o.owners, x.owners INTO f_oown, f_nown
                FROM pgcast.watch_row(f_oj, w.drop_cols, w.key_cols, w.int_key, w.owner_cols, w.env_col, w.home_env) o,
                     pgcast.watch_row(f_nj, w.drop_cols, w.key_cols, w.int_key, w.owner_cols, w.env_col, w.home_env) x;
            END IF;
            IF f_oown IS NOT DISTINCT FROM f_nown THEN
                f_orec := pgcast.watch_record(f_oj, w.drop_cols, f_okey, w.key_cols, w.int_key);
                f_nrec := pgcast.watch_record(f_nj, w.drop_cols, f_nkey, w.key_cols, w.int_key);
                IF f_nenv IS NULL OR f_orec IS NOT DISTINCT FROM f_nrec THEN
                    RETURN NULL;
                END IF;
                INSERT INTO pgcast.events (kind, environment_id, object_class_id, object_record_id, data)
                SELECT 'record_updated', f_nenv, w.class_id, CASE WHEN w.int_key THEN (f_nj ->> w.key_cols[1])::bigint END,
                       jsonb_build_object('class', w.class_name, 'read', w.read_rule,
                                          'owners', to_jsonb(f_nown), 'assignees', '[]'::jsonb)
                       || jsonb_build_object('record', f_nrec)
                       || jsonb_build_object('field_ids', coalesce(ch.ids, '[]'::jsonb), 'old', ch.old)
                FROM pgcast.watch_changes(f_nrec, f_orec, w.field_ids) ch;
                PERFORM pgcast.ring();
                RETURN NULL;
            END IF;
        END IF;
    END IF;
    INSERT INTO pgcast.events (kind, environment_id, object_class_id, object_record_id, data)
    SELECT e.kind, e.env, w.class_id, e.rid,
           jsonb_build_object('class', w.class_name, 'read', w.read_rule,
                              'owners', to_jsonb(e.owners), 'assignees', '[]'::jsonb)
           || CASE WHEN e.rec IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('record', e.rec) END || e.extra
           || CASE WHEN w.counts AND e.kind IN ('record_created', 'record_deleted') THEN '{"counted": true}'::jsonb ELSE '{}'::jsonb END
    FROM (
        SELECT u.v, u.key, u.rid, u.env, u.owners, u.rec,
               lag(u.v) OVER w AS old_v, lead(u.v) OVER w AS next_v,
               lag(u.env) OVER w AS old_env, lag(u.owners) OVER w AS old_owners, lag(u.rec) OVER w AS old_rec
        FROM (
            SELECT 0 AS v, r.* FROM (SELECT to_jsonb(t.*) AS j FROM pgcast_old t OFFSET 0) t
            CROSS JOIN LATERAL pgcast.watch_row(t.j, w.drop_cols, w.key_cols, w.int_key, w.owner_cols, w.env_col, w.home_env) r
            UNION ALL
            SELECT 1, r.* FROM (SELECT to_jsonb(t.*) AS j FROM pgcast_new t OFFSET 0) t
            CROSS JOIN LATERAL pgcast.watch_row(t.j, w.drop_cols, w.key_cols, w.int_key, w.owner_cols, w.env_col, w.home_env) r
        ) u
        WINDOW w AS (PARTITION BY u.key ORDER BY u.v)
    ) d
    CROSS JOIN LATERAL (
        -- The old row of a changed key.
        SELECT 'record_deleted' AS kind, d.env, d.rid, d.owners, d.rec, '{}'::jsonb AS extra
        WHERE d.v = 0 AND d.next_v IS NULL
        UNION ALL
        -- A pair that moved to another environment: gone from the old.
        SELECT 'record_deleted', d.old_env, d.rid, d.old_owners, d.old_rec, '{}'::jsonb
        WHERE d.v = 1 AND d.old_v = 0 AND d.env IS DISTINCT FROM d.old_env AND d.rec IS DISTINCT FROM d.old_rec
        UNION ALL
        -- The new row of a changed key, or of a pair that moved.
        SELECT 'record_created', d.env, d.rid, d.owners, d.rec, '{}'::jsonb
        WHERE d.v = 1 AND (d.old_v IS NULL OR (d.env IS DISTINCT FROM d.old_env AND d.rec IS DISTINCT FROM d.old_rec))
        UNION ALL
        SELECT 'record_updated', d.env, d.rid, d.owners, d.rec,
               jsonb_build_object('field_ids', coalesce(ch.ids, '[]'::jsonb), 'old', ch.old)
        FROM pgcast.watch_changes(d.rec, d.old_rec, w.field_ids) ch
        WHERE d.v = 1 AND d.old_v = 0 AND d.env IS NOT DISTINCT FROM d.old_env AND d.rec IS DISTINCT FROM d.old_rec
        UNION ALL
        SELECT 'record_owner_added', d.env, d.rid, d.owners, NULL::jsonb, jsonb_build_object('user_id', o.u)
        FROM (SELECT unnest(d.owners) EXCEPT SELECT unnest(d.old_owners)) o(u)
        WHERE d.v = 1 AND d.old_v = 0 AND d.env IS NOT DISTINCT FROM d.old_env AND d.owners IS DISTINCT FROM d.old_owners
        UNION ALL
        SELECT 'record_owner_removed', d.old_env, d.rid, d.old_owners, NULL::jsonb, jsonb_build_object('user_id', o.u)
        FROM (SELECT unnest(d.old_owners) EXCEPT SELECT unnest(d.owners)) o(u)
        WHERE d.v = 1 AND d.old_v = 0 AND d.env IS NOT DISTINCT FROM d.old_env AND d.owners IS DISTINCT FROM d.old_owners
    ) e
    WHERE e.env IS NOT NULL;
    IF FOUND THEN
        PERFORM pgcast.ring();
    END IF;
    RETURN NULL;
END
$$;

-- TRUNCATE has no transition table: BEFORE it, while the rows are still
-- there (and, under its ACCESS EXCLUSIVE lock, no other transaction's
-- uncommitted ones), record_deleted per row as for DELETE. So subscribers
-- see the table empty, at the cost of reading it (as DELETE would).
CREATE OR REPLACE FUNCTION pgcast.capture_watch_truncate() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan SET TimeZone = 'UTC' AS $$
DECLARE
    w record;
    n bigint;
BEGIN
    SELECT * INTO w FROM pgcast.watch_config(TG_ARGV[0]::bigint, TG_RELID);
    IF NOT FOUND OR NOT w.mine THEN
        RETURN NULL;
    ELSIF NOT w.fresh THEN
        PERFORM pgcast.watch_sync(TG_ARGV[0]::bigint);
        SELECT * INTO w FROM pgcast.watch_config(TG_ARGV[0]::bigint, TG_RELID);
    END IF;
    IF NOT w.healthy THEN
        RETURN NULL;
    END IF;
    EXECUTE format($q$
        INSERT INTO pgcast.events (kind, environment_id, object_class_id, object_record_id, data)
        SELECT 'record_deleted', r.env, $1, r.rid,
               jsonb_build_object('class', $2, 'read', $3, 'owners', to_jsonb(r.owners), 'assignees', '[]'::jsonb, 'record', r.rec)
               || CASE WHEN $10 THEN '{"counted": true}'::jsonb ELSE '{}'::jsonb END
        FROM (SELECT to_jsonb(t.*) AS j FROM ONLY %I.%I t OFFSET 0) t
        CROSS JOIN LATERAL pgcast.watch_row(t.j, $4, $5, $6, $7, $8, $9) r
        WHERE r.env IS NOT NULL$q$, TG_TABLE_SCHEMA, TG_TABLE_NAME)
    USING w.class_id, w.class_name, w.read_rule, w.drop_cols, w.key_cols, w.int_key, w.owner_cols, w.env_col, w.home_env, w.counts;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM pgcast.ring();
    END IF;
    RETURN NULL;
END
$$;

-- The capture triggers of a watch's table. Trigger names are fixed (one
-- watch per table); SECURITY INVOKER: creating a trigger needs the table's
-- owner (or the TRIGGER privilege), which the caller must have.
CREATE OR REPLACE FUNCTION pgcast.watch_uninstall(tbl oid) RETURNS void
LANGUAGE plpgsql SECURITY INVOKER AS $$
DECLARE
    t record;
BEGIN
    FOR t IN
        SELECT format('DROP TRIGGER %I ON %I.%I', g.tgname, n.nspname, c.relname) AS q
        FROM pg_catalog.pg_trigger g
        JOIN pg_catalog.pg_class c ON c.oid = g.tgrelid
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE g.tgrelid = tbl AND g.tgname IN ('pgcast_watch_insert', 'pgcast_watch_update', 'pgcast_watch_delete', 'pgcast_watch_truncate')
    LOOP
        EXECUTE t.q;
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION pgcast.watch_install(watch_id bigint) RETURNS void
LANGUAGE plpgsql SECURITY INVOKER AS $$
DECLARE
    tbl oid;
    q   text;
BEGIN
    SELECT w.table_oid, format('%I.%I', n.nspname, c.relname) INTO tbl, q
    FROM pgcast.watches w
    JOIN pg_catalog.pg_class c ON c.oid = w.table_oid
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE w.id = watch_id;
    IF q IS NULL THEN
        RAISE EXCEPTION 'watch % has no table', watch_id;
    END IF;
    PERFORM pgcast.watch_uninstall(tbl);
    EXECUTE format('CREATE TRIGGER pgcast_watch_insert AFTER INSERT ON %s REFERENCING NEW TABLE AS pgcast_new '
                   'FOR EACH STATEMENT EXECUTE FUNCTION pgcast.capture_watch_insert(%L)', q, watch_id);
    EXECUTE format('CREATE TRIGGER pgcast_watch_update AFTER UPDATE ON %s REFERENCING OLD TABLE AS pgcast_old NEW TABLE AS pgcast_new '
                   'FOR EACH STATEMENT EXECUTE FUNCTION pgcast.capture_watch_update(%L)', q, watch_id);
    EXECUTE format('CREATE TRIGGER pgcast_watch_delete AFTER DELETE ON %s REFERENCING OLD TABLE AS pgcast_old '
                   'FOR EACH STATEMENT EXECUTE FUNCTION pgcast.capture_watch_delete(%L)', q, watch_id);
    EXECUTE format('CREATE TRIGGER pgcast_watch_truncate BEFORE TRUNCATE ON %s '
                   'FOR EACH STATEMENT EXECUTE FUNCTION pgcast.capture_watch_truncate(%L)', q, watch_id);
END
$$;

-- Event triggers (installed only when the migrating role is a superuser,
-- the only role Postgres lets create them):
--   * after ALTER TABLE of a watched table, sync its fields in the DDL's
--     transaction, and refuse the change when it drops a key or
--     environment column (the watch could no longer key or place its rows:
--     remove the watch first);
--   * when a watched table is dropped, mark its watch 'dropped'
--     (`pgcast watch list` shows it).
CREATE OR REPLACE FUNCTION pgcast.watch_ddl() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan SET TimeZone = 'UTC' AS $$
DECLARE
    w record;
BEGIN
    FOR w IN
        SELECT DISTINCT x.id, c.name, format('%I.%I', x.schema_name, x.table_name) AS tbl,
               (SELECT count(*) FROM pg_catalog.pg_attribute a
                WHERE a.attrelid = x.table_oid AND a.attnum = ANY (x.key_attnums) AND NOT a.attisdropped) = cardinality(x.key_attnums) AS key_ok,
               x.env_attnum IS NULL OR EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                WHERE a.attrelid = x.table_oid AND a.attnum = x.env_attnum AND NOT a.attisdropped) AS env_ok
        FROM pg_catalog.pg_event_trigger_ddl_commands() d
        JOIN pgcast.watches x ON x.table_oid = d.objid
        JOIN pgcast.object_classes c ON c.id = x.object_class_id
        WHERE d.classid = 'pg_catalog.pg_class'::regclass
    LOOP
        IF NOT w.key_ok THEN
            RAISE EXCEPTION 'table % is watched by pgcast (watch "%") and this change drops a primary key column', w.tbl, w.name
                USING HINT = format('Remove the watch first: pgcast watch remove %s', w.name);
        END IF;
        IF NOT w.env_ok THEN
            RAISE EXCEPTION 'table % is watched by pgcast (watch "%") and this change drops its environment column', w.tbl, w.name
                USING HINT = format('Remove the watch first: pgcast watch remove %s', w.name);
        END IF;
        PERFORM pgcast.watch_sync(w.id);
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION pgcast.watch_dropped() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_generic_plan SET TimeZone = 'UTC' AS $$
BEGIN
    UPDATE pgcast.watches SET status = 'dropped', table_oid = 0, updated_at = now()
    WHERE table_oid IN (SELECT d.objid FROM pg_catalog.pg_event_trigger_dropped_objects() d
                        WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objsubid = 0 AND d.object_type = 'table');
END
$$;

DO $$
BEGIN
    IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
        DROP EVENT TRIGGER IF EXISTS pgcast_watch_ddl;
        CREATE EVENT TRIGGER pgcast_watch_ddl ON ddl_command_end WHEN TAG IN ('ALTER TABLE')
            EXECUTE FUNCTION pgcast.watch_ddl();
        DROP EVENT TRIGGER IF EXISTS pgcast_watch_drop;
        CREATE EVENT TRIGGER pgcast_watch_drop ON sql_drop
            EXECUTE FUNCTION pgcast.watch_dropped();
    END IF;
END
$$;
