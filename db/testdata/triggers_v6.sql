-- The capture triggers of schema version 6 (triggers/triggers.sql and
-- triggers/watch.sql at 1210236), for TestMigrateCountsFromVersion6.
-- Capture triggers: turn writes to pgcast's tables into entries of the
-- durable event log (pgcast.events) inside the writing transaction. The entry
-- kinds and data shapes are the contract documented in triggers.go.
--
-- Applied as one multi-statement script after every migrate that leaves the
-- schema at the binary's version, so everything here is idempotent:
-- CREATE OR REPLACE FUNCTION, DROP TRIGGER IF EXISTS before CREATE TRIGGER.
--
-- Performance rules (every write to these tables pays for what is here):
--   * AFTER triggers are statement-level with transition tables and append
--     with one set-based INSERT ... SELECT per statement: no per-row plpgsql,
--     so a statement touching a million rows stays one query.
--   * Postgres allows only one event per trigger that has transition tables,
--     hence one trigger per table and event.
--   * Functions are SECURITY INVOKER and carry no SET search_path (a SET
--     clause costs a GUC save/restore per call); instead every object of
--     pgcast is schema-qualified and only pg_catalog builtins are unqualified
--     (pg_catalog is searched first unless a role puts it later explicitly).
--   * Plans are cached per session and planned for the size of the
--     transition table of the first call (often one row), then reused for a
--     statement of a million rows. So no plan may depend on those estimates:
--     transition tables are never joined to each other (OLD and NEW rows of
--     an UPDATE are paired by a window over their union, sorted by id), and
--     each row finds its class by a LATERAL ... OFFSET 0 index probe, which
--     the planner can neither flatten nor turn inside out. Every trigger is
--     thus linear (n log n for UPDATE) in the rows of its statement.
--   * The doorbell (pgcast.ring) NOTIFYs at most once per transaction and only
--     while some reader is waiting: a NOTIFY takes a cluster-wide lock held
--     through the commit flush.

-------------------------------------------------------------------------------
-- Doorbell
-------------------------------------------------------------------------------

-- pgcast.ring wakes waiting readers. It is called by every trigger function
-- that appended at least one entry, and by pgcast.publish. The NOTIFY carries
-- no data (readers read the log); it is queued at most once per transaction
-- (pgcast.rang, a transaction-local setting) and only while a row of
-- pgcast.listeners says a reader waits. A transaction that found no waiting
-- reader checks again on its next write, so a reader that starts waiting
-- mid-transaction still gets the bell.
CREATE OR REPLACE FUNCTION pgcast.ring() RETURNS void
LANGUAGE plpgsql SECURITY INVOKER AS $$
BEGIN
    IF current_setting('pgcast.rang', true) = 'y' THEN
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM pgcast.listeners WHERE waiting) THEN
        PERFORM pg_notify('pgcast_events', '');
        PERFORM set_config('pgcast.rang', 'y', true);
    END IF;
END
$$;

-------------------------------------------------------------------------------
-- Record counts
-------------------------------------------------------------------------------

-- Each writing backend adds its deltas to its own shard of a class's count
-- (shard = its pid): a shard row stays locked until its writer's commit is
-- flushed, so writers sharing one would queue like they do on a NOTIFY. The
-- pruner folds the shards of backends that have exited into shard 0. A
-- class's count is the sum of its shards.
DROP FUNCTION IF EXISTS pgcast.add_count(bigint, bigint);

-------------------------------------------------------------------------------
-- Object classes
-------------------------------------------------------------------------------

-- collection_created {name}, one per inserted class.
CREATE OR REPLACE FUNCTION pgcast.capture_object_classes_insert() RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER AS $$
BEGIN
    INSERT INTO pgcast.events (kind, environment_id, object_class_id, data)
    SELECT 'collection_created', n.environment_id, n.id, jsonb_build_object('name', n.name)
    FROM pgcast_new_classes n
    ORDER BY n.id;
    IF FOUND THEN
        PERFORM pgcast.ring();
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS pgcast_capture_insert ON pgcast.object_classes;
CREATE TRIGGER pgcast_capture_insert
    AFTER INSERT ON pgcast.object_classes
    REFERENCING NEW TABLE AS pgcast_new_classes
    FOR EACH STATEMENT EXECUTE FUNCTION pgcast.capture_object_classes_insert();

-------------------------------------------------------------------------------
-- Field names
-------------------------------------------------------------------------------

-- pgcast.object_classes.field_names maps each field id (as text) of a class
-- to its name. Record entries carry it next to the raw cells (one column
-- read with the class, where looking the names up cost a subquery per
-- captured row), and the reader builds the record keyed by names from the
-- two: the names as they were at the change.
--
-- Kept incrementally: each change to a field adds or removes its key in its
-- class's map under the class row's lock, so concurrent changes to one
-- class's fields compose (a map recomputed from a snapshot could drop a
-- field committed meanwhile). The UPDATE of a class row takes no lock that
-- the foreign-key checks of concurrent record writes wait for.
CREATE OR REPLACE FUNCTION pgcast.maintain_field_names() RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        UPDATE pgcast.object_classes SET field_names = field_names - OLD.id::text
        WHERE id = OLD.object_class_id;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        UPDATE pgcast.object_classes SET field_names = field_names || jsonb_build_object(NEW.id::text, NEW.name)
        WHERE id = NEW.object_class_id;
    END IF;
    RETURN NULL;
END
$$;

-- TRUNCATE removes every field of every class.
CREATE OR REPLACE FUNCTION pgcast.reset_field_names() RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER AS $$
BEGIN
    UPDATE pgcast.object_classes SET field_names = '{}' WHERE field_names <> '{}';
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS pgcast_field_names_insert ON pgcast.object_class_fields;
CREATE TRIGGER pgcast_field_names_insert
    AFTER INSERT ON pgcast.object_class_fields
    FOR EACH ROW EXECUTE FUNCTION pgcast.maintain_field_names();
DROP TRIGGER IF EXISTS pgcast_field_names_update ON pgcast.object_class_fields;
CREATE TRIGGER pgcast_field_names_update
    AFTER UPDATE ON pgcast.object_class_fields
    FOR EACH ROW WHEN (OLD.id <> NEW.id OR OLD.name <> NEW.name OR OLD.object_class_id <> NEW.object_class_id)
    EXECUTE FUNCTION pgcast.maintain_field_names();
DROP TRIGGER IF EXISTS pgcast_field_names_delete ON pgcast.object_class_fields;
CREATE TRIGGER pgcast_field_names_delete
    AFTER DELETE ON pgcast.object_class_fields
    FOR EACH ROW EXECUTE FUNCTION pgcast.maintain_field_names();
DROP TRIGGER IF EXISTS pgcast_field_names_truncate ON pgcast.object_class_fields;
CREATE TRIGGER pgcast_field_names_truncate
    AFTER TRUNCATE ON pgcast.object_class_fields
    FOR EACH STATEMENT EXECUTE FUNCTION pgcast.reset_field_names();

-- Fill in (or repair) the maps of existing classes: they were empty when the
-- column was added, and fields may have changed while the triggers above
-- were not installed. Classes are few; this runs at every migrate.
UPDATE pgcast.object_classes c SET field_names = m.names
FROM (SELECT c.id, coalesce(jsonb_object_agg(f.id::text, f.name) FILTER (WHERE f.id IS NOT NULL), '{}') AS names
      FROM pgcast.object_classes c LEFT JOIN pgcast.object_class_fields f ON f.object_class_id = c.id
      GROUP BY c.id) m
WHERE m.id = c.id AND c.field_names IS DISTINCT FROM m.names;

-------------------------------------------------------------------------------
-- Object records
-------------------------------------------------------------------------------

-- Server-managed updated_at: bumped when, and only when, a cell changes
-- (the WHEN clause keeps the function from being called otherwise).
CREATE OR REPLACE FUNCTION pgcast.touch_updated_at() RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER AS $$
BEGIN
    NEW.updated_at := statement_timestamp();
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS pgcast_touch_updated_at ON pgcast.object_records;
CREATE TRIGGER pgcast_touch_updated_at
    BEFORE UPDATE ON pgcast.object_records
    FOR EACH ROW WHEN (OLD.cells IS DISTINCT FROM NEW.cells)
    EXECUTE FUNCTION pgcast.touch_updated_at();

-- A record belongs to its class for life: its cells are keyed by the ids of
-- that class's fields, and readers route and count by class.
CREATE OR REPLACE FUNCTION pgcast.refuse_record_class_change() RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER AS $$
BEGIN
    RAISE EXCEPTION 'object record % cannot move from object class % to object class %',
            OLD.id, OLD.object_class_id, NEW.object_class_id
        USING ERRCODE = 'check_violation',
              HINT = 'Create a record in the other class and delete this one.';
END
$$;

DROP TRIGGER IF EXISTS pgcast_refuse_class_change ON pgcast.object_records;
CREATE TRIGGER pgcast_refuse_class_change
    BEFORE UPDATE ON pgcast.object_records
    FOR EACH ROW WHEN (OLD.object_class_id IS DISTINCT FROM NEW.object_class_id)
    EXECUTE FUNCTION pgcast.refuse_record_class_change();

-- Cells are keyed by the ids of the class's fields (as text), and every
-- required field has a cell that is not null: a write through SQL is held
-- to what the REST API checks before it writes (cells keyed by field name,
-- the first thing one tries, would otherwise stream records without their
-- fields). A write that breaks either rule fails with SQLSTATE 23514
-- (check_violation), constraint object_records_cells_known or
-- object_records_cells_required, a message naming the key or field and a
-- hint with the field ids. They belong to schema version 5, whose down
-- migration removes them.
--
-- An UPDATE is held to the rules for what it changes: a key it adds or
-- whose value it changes, a required cell it removes or sets to null. Cells
-- of fields deleted since, and required fields added to a class after its
-- records were written, do not block other changes to those records.
--
-- Statement-level, like the capture: a first pass over the new rows (one
-- index probe for the class, one for its required fields) finds nothing in
-- the common case; only an UPDATE whose new rows break a rule pairs them
-- with their old rows to see whether it broke it. Types are not checked
-- here (the REST API does; a Catalyst writer keeps its own).

-- The problems of cells new_cells (old_cells: before an UPDATE, NULL for an
-- INSERT) of a record of class cls, whose field names by id are names:
-- ('unknown', key) or ('missing' | 'null', required field id).
-- Plain SQL, so that the planner inlines it into the checking queries.
CREATE OR REPLACE FUNCTION pgcast.cells_problems(cls bigint, names jsonb, new_cells jsonb, old_cells jsonb)
RETURNS TABLE (problem text, key text)
LANGUAGE sql STABLE SECURITY INVOKER AS $$
    SELECT 'unknown', k.key
    FROM jsonb_object_keys(new_cells) k(key)
    WHERE NOT names ? k.key
      AND (old_cells IS NULL OR (old_cells -> k.key) IS DISTINCT FROM (new_cells -> k.key))
    UNION ALL
    SELECT CASE WHEN new_cells ? f.id::text THEN 'null' ELSE 'missing' END, f.id::text
    FROM pgcast.object_class_fields f
    WHERE f.object_class_id = cls AND f.required
      AND coalesce(new_cells -> f.id::text, 'null'::jsonb) = 'null'::jsonb
      AND (old_cells IS NULL OR coalesce(old_cells -> f.id::text, 'null'::jsonb) <> 'null'::jsonb)
$$;

-- Raises the error for a problem found by pgcast.cells_problems.
CREATE OR REPLACE FUNCTION pgcast.refuse_cells(record_id bigint, class_name text, names jsonb, problem text, key text)
RETURNS void
LANGUAGE plpgsql SECURITY INVOKER AS $$
DECLARE
    msg        text;
    hint       text;
    constr     text;
    field_id   text;
    field_list text;
BEGIN
    IF refuse_cells.problem = 'unknown' THEN
        constr := 'object_records_cells_known';
        msg := format('invalid cells for object class %s: key %s is not a field id', class_name, to_json(refuse_cells.key));
        SELECT f.key INTO field_id FROM jsonb_each_text(names) f WHERE f.value = refuse_cells.key;
        IF field_id IS NOT NULL THEN
            hint := format('Cells are keyed by field id, not name: field "%s" has id %s, so write {"%s": …} (pgcast collections list shows the ids).',
                           refuse_cells.key, field_id, field_id);
        ELSE
            SELECT string_agg(format('"%s" (id %s)', f.value, f.key), ', ' ORDER BY f.key::bigint) INTO field_list
            FROM jsonb_each_text(names) f;
            hint := CASE WHEN field_list IS NULL THEN format('Cells are keyed by field id, and object class %s has no fields.', class_name)
                         ELSE format('Cells are keyed by field id; the fields of object class %s are %s.', class_name, field_list) END;
        END IF;
    ELSE
        constr := 'object_records_cells_required';
        msg := format('invalid cells for object class %s: required field "%s" (id %s) %s', class_name, names ->> refuse_cells.key,
                      refuse_cells.key, CASE refuse_cells.problem WHEN 'null' THEN 'is null' ELSE 'has no cell' END);
        hint := format('Cells are keyed by field id: write {"%s": …} with a value that is not null.', refuse_cells.key);
    END IF;
    IF record_id IS NULL THEN
        RAISE EXCEPTION USING MESSAGE = msg, HINT = hint, ERRCODE = 'check_violation', CONSTRAINT = constr,
            SCHEMA = 'pgcast', TABLE = 'object_records', COLUMN = 'cells';
    END IF;
    RAISE EXCEPTION USING MESSAGE = msg, HINT = hint, ERRCODE = 'check_violation', CONSTRAINT = constr,
        SCHEMA = 'pgcast', TABLE = 'object_records', COLUMN = 'cells', DETAIL = format('Object record %s.', record_id);
END
$$;

CREATE OR REPLACE FUNCTION pgcast.check_object_records_insert() RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER AS $$
DECLARE
    bad record;
BEGIN
    SELECT c.name, c.field_names, p.problem, p.key INTO bad
    FROM pgcast_new_records n
    CROSS JOIN LATERAL (SELECT c.name, c.field_names FROM pgcast.object_classes c WHERE c.id = n.object_class_id OFFSET 0) c
    CROSS JOIN LATERAL pgcast.cells_problems(n.object_class_id, c.field_names, n.cells, NULL) p
    LIMIT 1;
    IF FOUND THEN
        PERFORM pgcast.refuse_cells(NULL, bad.name, bad.field_names, bad.problem, bad.key);
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION pgcast.check_object_records_update() RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER AS $$
DECLARE
    bad record;
BEGIN
    IF NOT EXISTS (
        SELECT FROM pgcast_new_records n
        CROSS JOIN LATERAL (SELECT c.field_names FROM pgcast.object_classes c WHERE c.id = n.object_class_id OFFSET 0) c
        CROSS JOIN LATERAL pgcast.cells_problems(n.object_class_id, c.field_names, n.cells, NULL) p
    ) THEN
        RETURN NULL;
    END IF;
    -- Pair each NEW row with its OLD row (same id) without a join.
    SELECT d.id, c.name, c.field_names, p.problem, p.key INTO bad
    FROM (
        SELECT u.v, u.id, u.object_class_id, u.cells, lag(u.v) OVER w AS old_v, lag(u.cells) OVER w AS old_cells
        FROM (
            SELECT 0 AS v, o.id, o.object_class_id, o.cells FROM pgcast_old_records o
            UNION ALL
            SELECT 1, n.id, n.object_class_id, n.cells FROM pgcast_new_records n
        ) u
        WINDOW w AS (PARTITION BY u.id ORDER BY u.v)
    ) d
    CROSS JOIN LATERAL (SELECT c.name, c.field_names FROM pgcast.object_classes c WHERE c.id = d.object_class_id OFFSET 0) c
    CROSS JOIN LATERAL pgcast.cells_problems(d.object_class_id, c.field_names, d.cells, d.old_cells) p
    WHERE d.v = 1 AND d.old_v = 0 AND d.cells IS DISTINCT FROM d.old_cells
    LIMIT 1;
    IF FOUND THEN
        PERFORM pgcast.refuse_cells(bad.id, bad.name, bad.field_names, bad.problem, bad.key);
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS pgcast_check_cells_insert ON pgcast.object_records;
CREATE TRIGGER pgcast_check_cells_insert
    AFTER INSERT ON pgcast.object_records
    REFERENCING NEW TABLE AS pgcast_new_records
    FOR EACH STATEMENT EXECUTE FUNCTION pgcast.check_object_records_insert();
DROP TRIGGER IF EXISTS pgcast_check_cells_update ON pgcast.object_records;
CREATE TRIGGER pgcast_check_cells_update
    AFTER UPDATE ON pgcast.object_records
    REFERENCING OLD TABLE AS pgcast_old_records NEW TABLE AS pgcast_new_records
    FOR EACH STATEMENT EXECUTE FUNCTION pgcast.check_object_records_update();

-- record_created per inserted row, then one records_count_changed per class
-- (delta = rows inserted) and the delta added to this backend's count shard.
-- On INSERT the initial owners and assignees travel in record_created only.
--
-- The record as the realtime API shows it is built by the reader from data:
-- cells (raw, keyed by field id), fields (the class's field names by id, as
-- they are at the change) and created_at / updated_at (UTC): the cells keyed
-- by the names of the class's fields (cells of unknown field ids are left
-- out, as are fields without a cell), then id, createdAt and updatedAt (UTC,
-- milliseconds, Z), which win over a field of the same name. The REST API
-- builds the same record in SQL (recordJSON in server/rest_records.go), the
-- reader in Go (stream.AppendRecord): keep the two in step.
--
-- Rows whose class is not found are skipped (cannot happen on INSERT: the
-- foreign key is checked first).
CREATE OR REPLACE FUNCTION pgcast.capture_object_records_insert() RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER AS $$
BEGIN
    WITH counts AS (
        SELECT c.id, c.environment_id, c.name, c.read_rule, x.n
        FROM (SELECT object_class_id, count(*) AS n FROM pgcast_new_records GROUP BY object_class_id) x
        JOIN pgcast.object_classes c ON c.id = x.object_class_id
    ), shards AS (
        INSERT INTO pgcast.object_class_counts AS cc (object_class_id, shard, n)
        SELECT counts.id, pg_backend_pid(), counts.n FROM counts
        ON CONFLICT (object_class_id, shard) DO UPDATE SET n = cc.n + EXCLUDED.n
    )
    INSERT INTO pgcast.events (kind, environment_id, object_class_id, object_record_id, data)
    SELECT * FROM (
        SELECT 'record_created', c.environment_id, c.id, n.id,
               jsonb_build_object(
                   'class', c.name, 'read', c.read_rule,
                   'owners', to_jsonb(n.owners), 'assignees', to_jsonb(n.assignees),
                   'cells', n.cells, 'fields', c.field_names,
                   'created_at', n.created_at AT TIME ZONE 'UTC', 'updated_at', n.updated_at AT TIME ZONE 'UTC')
        FROM pgcast_new_records n
        CROSS JOIN LATERAL (SELECT c.id, c.environment_id, c.name, c.read_rule, c.field_names
                            FROM pgcast.object_classes c WHERE c.id = n.object_class_id OFFSET 0) c
        UNION ALL
        SELECT 'records_count_changed', counts.environment_id, counts.id, NULL::bigint,
               jsonb_build_object('class', counts.name, 'read', counts.read_rule, 'delta', counts.n)
        FROM counts
    ) e;
    IF FOUND THEN
        PERFORM pgcast.ring();
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS pgcast_capture_insert ON pgcast.object_records;
CREATE TRIGGER pgcast_capture_insert
    AFTER INSERT ON pgcast.object_records
    REFERENCING NEW TABLE AS pgcast_new_records
    FOR EACH STATEMENT EXECUTE FUNCTION pgcast.capture_object_records_insert();

-- Per updated record, in this order: record_updated when cells changed
-- (field_ids: sorted ids of the cells added, removed or changed; keys that
-- are not field ids are ignored), record_owner_added / record_owner_removed /
-- record_assignee_added / record_assignee_removed per user (arrays after the
-- change for *_added and record_updated, before it for *_removed). Rows whose
-- cells, owners and assignees are all unchanged cost one comparison.
CREATE OR REPLACE FUNCTION pgcast.capture_object_records_update() RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER AS $$
BEGIN
    INSERT INTO pgcast.events (kind, environment_id, object_class_id, object_record_id, data)
    SELECT e.kind, c.environment_id, c.id, d.id,
           jsonb_build_object('class', c.name, 'read', c.read_rule,
                              'owners', to_jsonb(e.owners), 'assignees', to_jsonb(e.assignees))
           || e.extra
    FROM (
        -- Pair each NEW row with its OLD row (same id) without a join.
        SELECT u.id, u.object_class_id, u.cells, u.owners, u.assignees, u.created_at, u.updated_at,
               u.old_cells, u.old_owners, u.old_assignees
        FROM (
            SELECT u.v, u.id, u.object_class_id, u.cells, u.owners, u.assignees, u.created_at, u.updated_at,
                   lag(u.v) OVER w AS old_v, lag(u.cells) OVER w AS old_cells,
                   lag(u.owners) OVER w AS old_owners, lag(u.assignees) OVER w AS old_assignees
            FROM (
                SELECT 0 AS v, o.id, o.object_class_id, o.cells, o.owners, o.assignees, o.created_at, o.updated_at
                FROM pgcast_old_records o
                UNION ALL
                SELECT 1, n.id, n.object_class_id, n.cells, n.owners, n.assignees, n.created_at, n.updated_at
                FROM pgcast_new_records n
            ) u
            WINDOW w AS (PARTITION BY u.id ORDER BY u.v)
        ) u
        WHERE u.v = 1 AND u.old_v = 0
          AND (u.cells IS DISTINCT FROM u.old_cells
               OR u.owners IS DISTINCT FROM u.old_owners
               OR u.assignees IS DISTINCT FROM u.old_assignees)
    ) d
    CROSS JOIN LATERAL (SELECT c.id, c.environment_id, c.name, c.read_rule, c.field_names
                        FROM pgcast.object_classes c WHERE c.id = d.object_class_id OFFSET 0) c
    CROSS JOIN LATERAL (
        SELECT 'record_updated' AS kind, d.owners, d.assignees,
               jsonb_build_object(
                   'field_ids', ch.ids, 'old_cells', ch.old,
                   'cells', d.cells, 'fields', c.field_names,
                   'created_at', d.created_at AT TIME ZONE 'UTC', 'updated_at', d.updated_at AT TIME ZONE 'UTC') AS extra
        FROM (
            -- old: the changed cells' old values (null where the cell was
            -- absent), so a subscription filter can tell a record leaving
            -- it from one that never matched (package stream, Event.Old).
            SELECT array_agg(k.key::bigint ORDER BY k.key::bigint) AS ids,
                   jsonb_object_agg(k.key, COALESCE(d.old_cells -> k.key, 'null'::jsonb)) AS old
            FROM (
                SELECT ne.key FROM jsonb_each(d.cells) ne
                WHERE (d.old_cells -> ne.key) IS DISTINCT FROM ne.value
                UNION ALL
                SELECT ok.key FROM jsonb_object_keys(d.old_cells) ok(key)
                WHERE NOT d.cells ? ok.key
            ) k
            WHERE k.key ~ '^[0-9]{1,18}$'
        ) ch
        WHERE d.cells IS DISTINCT FROM d.old_cells AND ch.ids IS NOT NULL
        UNION ALL
        SELECT 'record_owner_added', d.owners, d.assignees, jsonb_build_object('user_id', u.u)
        FROM (SELECT unnest(d.owners) EXCEPT SELECT unnest(d.old_owners)) u(u)
        WHERE d.owners IS DISTINCT FROM d.old_owners AND u.u IS NOT NULL
        UNION ALL
        SELECT 'record_owner_removed', d.old_owners, d.old_assignees, jsonb_build_object('user_id', u.u)
        FROM (SELECT unnest(d.old_owners) EXCEPT SELECT unnest(d.owners)) u(u)
        WHERE d.owners IS DISTINCT FROM d.old_owners AND u.u IS NOT NULL
        UNION ALL
        SELECT 'record_assignee_added', d.owners, d.assignees, jsonb_build_object('user_id', u.u)
        FROM (SELECT unnest(d.assignees) EXCEPT SELECT unnest(d.old_assignees)) u(u)
        WHERE d.assignees IS DISTINCT FROM d.old_assignees AND u.u IS NOT NULL
        UNION ALL
        SELECT 'record_assignee_removed', d.old_owners, d.old_assignees, jsonb_build_object('user_id', u.u)
        FROM (SELECT unnest(d.old_assignees) EXCEPT SELECT unnest(d.assignees)) u(u)
        WHERE d.assignees IS DISTINCT FROM d.old_assignees AND u.u IS NOT NULL
    ) e;
    IF FOUND THEN
        PERFORM pgcast.ring();
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS pgcast_capture_update ON pgcast.object_records;
CREATE TRIGGER pgcast_capture_update
    AFTER UPDATE ON pgcast.object_records
    REFERENCING OLD TABLE AS pgcast_old_records NEW TABLE AS pgcast_new_records
    FOR EACH STATEMENT EXECUTE FUNCTION pgcast.capture_object_records_update();

-- record_deleted per deleted row ({id}, owners and assignees as they were),
-- then one records_count_changed per class (negative delta) and the delta
-- added to this backend's count shard. Records deleted because their class
-- was deleted are skipped: the class row is gone, and so are its counts.
CREATE OR REPLACE FUNCTION pgcast.capture_object_records_delete() RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER AS $$
BEGIN
    WITH counts AS (
        SELECT c.id, c.environment_id, c.name, c.read_rule, x.n
        FROM (SELECT object_class_id, -count(*) AS n FROM pgcast_old_records GROUP BY object_class_id) x
        JOIN pgcast.object_classes c ON c.id = x.object_class_id
    ), shards AS (
        INSERT INTO pgcast.object_class_counts AS cc (object_class_id, shard, n)
        SELECT counts.id, pg_backend_pid(), counts.n FROM counts
        ON CONFLICT (object_class_id, shard) DO UPDATE SET n = cc.n + EXCLUDED.n
    )
    INSERT INTO pgcast.events (kind, environment_id, object_class_id, object_record_id, data)
    SELECT * FROM (
        SELECT 'record_deleted', c.environment_id, c.id, o.id,
               jsonb_build_object('class', c.name, 'read', c.read_rule,
                                  'owners', to_jsonb(o.owners), 'assignees', to_jsonb(o.assignees),
                                  'record', jsonb_build_object('id', o.id),
                                  -- The cells as they were, so that a subscription
                                  -- filter matches a delete on the record's last
                                  -- values (package stream, Event.Old).
                                  'old_cells', o.cells, 'fields', c.field_names)
        FROM pgcast_old_records o
        CROSS JOIN LATERAL (SELECT c.id, c.environment_id, c.name, c.read_rule, c.field_names
                            FROM pgcast.object_classes c WHERE c.id = o.object_class_id OFFSET 0) c
        UNION ALL
        SELECT 'records_count_changed', counts.environment_id, counts.id, NULL::bigint,
               jsonb_build_object('class', counts.name, 'read', counts.read_rule, 'delta', counts.n)
        FROM counts
    ) e;
    IF FOUND THEN
        PERFORM pgcast.ring();
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS pgcast_capture_delete ON pgcast.object_records;
CREATE TRIGGER pgcast_capture_delete
    AFTER DELETE ON pgcast.object_records
    REFERENCING OLD TABLE AS pgcast_old_records
    FOR EACH STATEMENT EXECUTE FUNCTION pgcast.capture_object_records_delete();

-------------------------------------------------------------------------------
-- Object record documents
-------------------------------------------------------------------------------

-- record_document_generated per inserted document, with the owners and
-- assignees of its record.
CREATE OR REPLACE FUNCTION pgcast.capture_object_record_documents_insert() RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER AS $$
BEGIN
    INSERT INTO pgcast.events (kind, environment_id, object_class_id, object_record_id, data)
    SELECT 'record_document_generated', c.environment_id, c.id, r.id,
           jsonb_build_object('class', c.name, 'read', c.read_rule,
                              'owners', to_jsonb(r.owners), 'assignees', to_jsonb(r.assignees),
                              'document_id', n.id)
    FROM pgcast_new_documents n
    CROSS JOIN LATERAL (SELECT r.id, r.owners, r.assignees, r.object_class_id
                        FROM pgcast.object_records r WHERE r.id = n.object_record_id OFFSET 0) r
    CROSS JOIN LATERAL (SELECT c.id, c.environment_id, c.name, c.read_rule
                        FROM pgcast.object_classes c WHERE c.id = r.object_class_id OFFSET 0) c;
    IF FOUND THEN
        PERFORM pgcast.ring();
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS pgcast_capture_insert ON pgcast.object_record_documents;
CREATE TRIGGER pgcast_capture_insert
    AFTER INSERT ON pgcast.object_record_documents
    REFERENCING NEW TABLE AS pgcast_new_documents
    FOR EACH STATEMENT EXECUTE FUNCTION pgcast.capture_object_record_documents_insert();

-------------------------------------------------------------------------------
-- Tasks
-------------------------------------------------------------------------------

-- Server-managed updated_at: bumped when the status or the values change.
DROP TRIGGER IF EXISTS pgcast_touch_updated_at ON pgcast.tasks;
CREATE TRIGGER pgcast_touch_updated_at
    BEFORE UPDATE ON pgcast.tasks
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD."values" IS DISTINCT FROM NEW."values")
    EXECUTE FUNCTION pgcast.touch_updated_at();

-- task_created per inserted task {class, read, owners, assignees, record_id}.
CREATE OR REPLACE FUNCTION pgcast.capture_tasks_insert() RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER AS $$
BEGIN
    INSERT INTO pgcast.events (kind, environment_id, object_class_id, task_id, data)
    SELECT 'task_created', c.environment_id, c.id, n.id,
           jsonb_build_object('class', c.name, 'read', c.read_rule,
                              'owners', to_jsonb(n.owners), 'assignees', to_jsonb(n.assignees),
                              'record_id', n.object_record_id)
    FROM pgcast_new_tasks n
    CROSS JOIN LATERAL (SELECT c.id, c.environment_id, c.name, c.read_rule
                        FROM pgcast.object_classes c WHERE c.id = n.object_class_id OFFSET 0) c;
    IF FOUND THEN
        PERFORM pgcast.ring();
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS pgcast_capture_insert ON pgcast.tasks;
CREATE TRIGGER pgcast_capture_insert
    AFTER INSERT ON pgcast.tasks
    REFERENCING NEW TABLE AS pgcast_new_tasks
    FOR EACH STATEMENT EXECUTE FUNCTION pgcast.capture_tasks_insert();

-- Per updated task, in this order: task_value_changed (values changed),
-- task_status_changed (status changed), then task_owner_added /
-- task_owner_removed / task_assignee_added / task_assignee_removed per user
-- (arrays after the change, before it for *_removed). The class is the
-- task's class after the update.
CREATE OR REPLACE FUNCTION pgcast.capture_tasks_update() RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER AS $$
BEGIN
    INSERT INTO pgcast.events (kind, environment_id, object_class_id, task_id, data)
    SELECT e.kind, c.environment_id, c.id, d.id,
           jsonb_build_object('class', c.name, 'read', c.read_rule,
                              'owners', to_jsonb(e.owners), 'assignees', to_jsonb(e.assignees),
                              'record_id', d.object_record_id)
           || e.extra
    FROM (
        -- Pair each NEW row with its OLD row (same id) without a join.
        SELECT u.id, u.object_class_id, u.object_record_id, u.status, u."values", u.owners, u.assignees,
               u.old_status, u.old_values, u.old_owners, u.old_assignees
        FROM (
            SELECT u.v, u.id, u.object_class_id, u.object_record_id, u.status, u."values", u.owners, u.assignees,
                   lag(u.v) OVER w AS old_v, lag(u.status) OVER w AS old_status, lag(u."values") OVER w AS old_values,
                   lag(u.owners) OVER w AS old_owners, lag(u.assignees) OVER w AS old_assignees
            FROM (
                SELECT 0 AS v, o.id, o.object_class_id, o.object_record_id, o.status, o."values", o.owners, o.assignees
                FROM pgcast_old_tasks o
                UNION ALL
                SELECT 1, n.id, n.object_class_id, n.object_record_id, n.status, n."values", n.owners, n.assignees
                FROM pgcast_new_tasks n
            ) u
            WINDOW w AS (PARTITION BY u.id ORDER BY u.v)
        ) u
        WHERE u.v = 1 AND u.old_v = 0
          AND (u."values" IS DISTINCT FROM u.old_values
               OR u.status IS DISTINCT FROM u.old_status
               OR u.owners IS DISTINCT FROM u.old_owners
               OR u.assignees IS DISTINCT FROM u.old_assignees)
    ) d
    CROSS JOIN LATERAL (SELECT c.id, c.environment_id, c.name, c.read_rule
                        FROM pgcast.object_classes c WHERE c.id = d.object_class_id OFFSET 0) c
    CROSS JOIN LATERAL (
        SELECT 'task_value_changed' AS kind, d.owners, d.assignees, '{}'::jsonb AS extra
        WHERE d."values" IS DISTINCT FROM d.old_values
        UNION ALL
        SELECT 'task_status_changed', d.owners, d.assignees, '{}'::jsonb
        WHERE d.status IS DISTINCT FROM d.old_status
        UNION ALL
        SELECT 'task_owner_added', d.owners, d.assignees, jsonb_build_object('user_id', u.u)
        FROM (SELECT unnest(d.owners) EXCEPT SELECT unnest(d.old_owners)) u(u)
        WHERE d.owners IS DISTINCT FROM d.old_owners AND u.u IS NOT NULL
        UNION ALL
        SELECT 'task_owner_removed', d.old_owners, d.old_assignees, jsonb_build_object('user_id', u.u)
        FROM (SELECT unnest(d.old_owners) EXCEPT SELECT unnest(d.owners)) u(u)
        WHERE d.owners IS DISTINCT FROM d.old_owners AND u.u IS NOT NULL
        UNION ALL
        SELECT 'task_assignee_added', d.owners, d.assignees, jsonb_build_object('user_id', u.u)
        FROM (SELECT unnest(d.assignees) EXCEPT SELECT unnest(d.old_assignees)) u(u)
        WHERE d.assignees IS DISTINCT FROM d.old_assignees AND u.u IS NOT NULL
        UNION ALL
        SELECT 'task_assignee_removed', d.old_owners, d.old_assignees, jsonb_build_object('user_id', u.u)
        FROM (SELECT unnest(d.old_assignees) EXCEPT SELECT unnest(d.assignees)) u(u)
        WHERE d.assignees IS DISTINCT FROM d.old_assignees AND u.u IS NOT NULL
    ) e;
    IF FOUND THEN
        PERFORM pgcast.ring();
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS pgcast_capture_update ON pgcast.tasks;
CREATE TRIGGER pgcast_capture_update
    AFTER UPDATE ON pgcast.tasks
    REFERENCING OLD TABLE AS pgcast_old_tasks NEW TABLE AS pgcast_new_tasks
    FOR EACH STATEMENT EXECUTE FUNCTION pgcast.capture_tasks_update();

-- task_deleted per deleted task, with owners and assignees as they were.
-- Tasks deleted because their class was deleted are skipped.
CREATE OR REPLACE FUNCTION pgcast.capture_tasks_delete() RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER AS $$
BEGIN
    INSERT INTO pgcast.events (kind, environment_id, object_class_id, task_id, data)
    SELECT 'task_deleted', c.environment_id, c.id, o.id,
           jsonb_build_object('class', c.name, 'read', c.read_rule,
                              'owners', to_jsonb(o.owners), 'assignees', to_jsonb(o.assignees),
                              'record_id', o.object_record_id)
    FROM pgcast_old_tasks o
    CROSS JOIN LATERAL (SELECT c.id, c.environment_id, c.name, c.read_rule
                        FROM pgcast.object_classes c WHERE c.id = o.object_class_id OFFSET 0) c;
    IF FOUND THEN
        PERFORM pgcast.ring();
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS pgcast_capture_delete ON pgcast.tasks;
CREATE TRIGGER pgcast_capture_delete
    AFTER DELETE ON pgcast.tasks
    REFERENCING OLD TABLE AS pgcast_old_tasks
    FOR EACH STATEMENT EXECUTE FUNCTION pgcast.capture_tasks_delete();

-------------------------------------------------------------------------------
-- Publishing other events
-------------------------------------------------------------------------------

-- pgcast.publish appends a 'published' entry {type, source, payload} in the
-- caller's transaction and returns its log position, e.g.
--
--     SELECT pgcast.publish('job.completed', '{"name":"nightly"}');
--
-- type: dot-separated segments of [A-Za-z0-9_-]+, at least two; its first
-- segment must be a namespace listed in pgcast.publish_namespaces.
-- Applications can add their own namespaces (the source is what a NULL
-- source argument becomes):
--
--     INSERT INTO pgcast.publish_namespaces (name, source) VALUES ('billing', 'billing');
--
-- payload: a JSON object (NULL means {}). The environment is the setting
-- pgcast.environment when set and non-empty (SET LOCAL pgcast.environment =
-- '2'), else 1. Bad arguments raise SQLSTATE 22023 (invalid_parameter_value).
CREATE OR REPLACE FUNCTION pgcast.publish(type text, payload jsonb, source text DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql SECURITY INVOKER AS $$
DECLARE
    ns         text;
    ns_source  text;
    env_text   text;
    env        bigint;
    entry_id   bigint;
BEGIN
    IF publish.type IS NULL OR publish.type !~ '^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+$' THEN
        RAISE EXCEPTION 'invalid event type %: want dot-separated segments of letters, digits, "_" or "-", at least two (e.g. "job.completed")',
                coalesce(quote_literal(publish.type), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    ns := split_part(publish.type, '.', 1);
    SELECT p.source INTO ns_source FROM pgcast.publish_namespaces p WHERE p.name = ns;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown event namespace "%": add it to pgcast.publish_namespaces', ns
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF publish.payload IS NULL THEN
        publish.payload := '{}'::jsonb;
    ELSIF jsonb_typeof(publish.payload) <> 'object' THEN
        RAISE EXCEPTION 'event payload must be a JSON object, got %', jsonb_typeof(publish.payload)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    env_text := current_setting('pgcast.environment', true);
    IF env_text IS NULL OR env_text = '' THEN
        env := 1;
    ELSIF env_text ~ '^\s*[0-9]{1,18}\s*$' THEN
        env := env_text::bigint;
    ELSE
        RAISE EXCEPTION 'invalid setting pgcast.environment %: want an environment id', quote_literal(env_text)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO pgcast.events (kind, environment_id, data)
    VALUES ('published', env, jsonb_build_object('type', publish.type,
                                                 'source', coalesce(publish.source, ns_source),
                                                 'payload', publish.payload))
    RETURNING id INTO entry_id;
    PERFORM pgcast.ring();
    RETURN entry_id;
END
$$;

-------------------------------------------------------------------------------
-- Watches: capture of the application's own tables (see docs/watch.md)
-------------------------------------------------------------------------------

-- A watched table gets four triggers (pgcast.watch_install): statement-level
-- AFTER INSERT / UPDATE / DELETE with transition tables, and BEFORE TRUNCATE.
-- They call the functions below with the watch id as argument and append
-- the same entry kinds as pgcast's own records (record_created,
-- record_updated, record_deleted, record_owner_added / _removed,
-- records_count_changed), so the reader, the hub and both WebSocket APIs
-- serve them unchanged. Their data differs in one way: it carries the
-- record itself ("record": the streamed columns as to_jsonb shows them, plus
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

-- Adds delta to the watch's count (this backend's shard, as for records)
-- and appends the records_count_changed entry.
CREATE OR REPLACE FUNCTION pgcast.watch_count(class_id bigint, class_name text, read_rule text, env bigint, delta bigint) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO pgcast.object_class_counts AS cc (object_class_id, shard, n) VALUES (class_id, pg_backend_pid(), delta)
    ON CONFLICT (object_class_id, shard) DO UPDATE SET n = cc.n + EXCLUDED.n;
    INSERT INTO pgcast.events (kind, environment_id, object_class_id, data)
    VALUES ('records_count_changed', env, class_id, jsonb_build_object('class', class_name, 'read', read_rule, 'delta', delta));
$$;

-- record_created per inserted row (rows without an environment are left
-- out), then the count.
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
    FROM (SELECT to_jsonb(t.*) AS j FROM pgcast_new t OFFSET 0) t
    CROSS JOIN LATERAL pgcast.watch_row(t.j, w.drop_cols, w.key_cols, w.int_key, w.owner_cols, w.env_col, w.home_env) r
    WHERE r.env IS NOT NULL;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        IF w.counts THEN
            PERFORM pgcast.watch_count(w.class_id, w.class_name, w.read_rule, w.home_env, n);
        END IF;
        PERFORM pgcast.ring();
    END IF;
    RETURN NULL;
END
$$;

-- record_deleted per deleted row, with the row as it was (streamed columns
-- only), then the count.
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
    FROM (SELECT to_jsonb(t.*) AS j FROM pgcast_old t OFFSET 0) t
    CROSS JOIN LATERAL pgcast.watch_row(t.j, w.drop_cols, w.key_cols, w.int_key, w.owner_cols, w.env_col, w.home_env) r
    WHERE r.env IS NOT NULL;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        IF w.counts THEN
            PERFORM pgcast.watch_count(w.class_id, w.class_name, w.read_rule, w.home_env, -n);
        END IF;
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
-- Then the count, when key changes changed it.
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
    n bigint;
    delta bigint;
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
    WITH appended AS (
        INSERT INTO pgcast.events (kind, environment_id, object_class_id, object_record_id, data)
        SELECT e.kind, e.env, w.class_id, e.rid,
               jsonb_build_object('class', w.class_name, 'read', w.read_rule,
                                  'owners', to_jsonb(e.owners), 'assignees', '[]'::jsonb)
               || CASE WHEN e.rec IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('record', e.rec) END || e.extra
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
        WHERE e.env IS NOT NULL
        RETURNING kind
    )
    SELECT count(*), coalesce(sum(CASE kind WHEN 'record_created' THEN 1 WHEN 'record_deleted' THEN -1 ELSE 0 END), 0)
    INTO n, delta FROM appended;
    IF n > 0 THEN
        IF w.counts AND delta <> 0 THEN
            PERFORM pgcast.watch_count(w.class_id, w.class_name, w.read_rule, w.home_env, delta);
        END IF;
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
        FROM (SELECT to_jsonb(t.*) AS j FROM ONLY %I.%I t OFFSET 0) t
        CROSS JOIN LATERAL pgcast.watch_row(t.j, $4, $5, $6, $7, $8, $9) r
        WHERE r.env IS NOT NULL$q$, TG_TABLE_SCHEMA, TG_TABLE_NAME)
    USING w.class_id, w.class_name, w.read_rule, w.drop_cols, w.key_cols, w.int_key, w.owner_cols, w.env_col, w.home_env;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        IF w.counts THEN
            PERFORM pgcast.watch_count(w.class_id, w.class_name, w.read_rule, w.home_env, -n);
        END IF;
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
