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

-- Nothing here: a class's count is derived from the log by the reader (each
-- record_created / record_deleted entry is +1 / -1 for its class, added up
-- from a checkpoint: see docs/design.md, "Counts"). The writing transaction
-- keeps no count row (one locked through its commit flush) and appends no
-- count entry. Functions of the versions that did:
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

-- record_created per inserted row. On INSERT the initial owners and
-- assignees travel in record_created only. Each one is +1 to its class's
-- count (the reader adds them up: no count is kept here).
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
    INSERT INTO pgcast.events (kind, environment_id, object_class_id, object_record_id, data)
    SELECT 'record_created', c.environment_id, c.id, n.id,
           jsonb_build_object(
               'class', c.name, 'read', c.read_rule,
               'owners', to_jsonb(n.owners), 'assignees', to_jsonb(n.assignees),
               'cells', n.cells, 'fields', c.field_names,
               'created_at', n.created_at AT TIME ZONE 'UTC', 'updated_at', n.updated_at AT TIME ZONE 'UTC')
    FROM pgcast_new_records n
    CROSS JOIN LATERAL (SELECT c.id, c.environment_id, c.name, c.read_rule, c.field_names
                        FROM pgcast.object_classes c WHERE c.id = n.object_class_id OFFSET 0) c;
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

-- What an update changed in a record's cells: ids, the sorted ids of the
-- cells added, removed or changed (keys that are not field ids are
-- ignored; NULL when none), and old, their old values (null where the cell
-- was absent), so a subscription filter can tell a record leaving it from
-- one that never matched (package stream, Event.Old). Plain SQL, inlined
-- into the capture statements.
CREATE OR REPLACE FUNCTION pgcast.cells_changed(cells jsonb, old_cells jsonb)
RETURNS TABLE (ids bigint[], old jsonb)
LANGUAGE sql IMMUTABLE SECURITY INVOKER AS $$
    SELECT array_agg(k.key::bigint ORDER BY k.key::bigint),
           jsonb_object_agg(k.key, COALESCE(old_cells -> k.key, 'null'::jsonb))
    FROM (
        SELECT ne.key FROM jsonb_each(cells) ne
        WHERE (old_cells -> ne.key) IS DISTINCT FROM ne.value
        UNION ALL
        SELECT ok.key FROM jsonb_object_keys(old_cells) ok(key)
        WHERE NOT cells ? ok.key
    ) k
    WHERE k.key ~ '^[0-9]{1,18}$'
$$;

-- Per updated record, in this order: record_updated when cells changed
-- (field_ids and old_cells: see pgcast.cells_changed), record_owner_added /
-- record_owner_removed / record_assignee_added / record_assignee_removed per
-- user (arrays after the change for *_added and record_updated, before it
-- for *_removed). Rows whose cells, owners and assignees are all unchanged
-- cost one comparison.
--
-- A statement that updates one record without changing its owners or
-- assignees (what an application does most) takes a shorter path to the
-- same record_updated entry: the pair is read and compared in plpgsql and
-- the entry appended by a short statement. The general statement pairs old
-- and new rows with a window over their union and initialises some 40 plan
-- nodes on every call, most of an update's capture cost (BENCHMARKS.md,
-- "Counts derived from the log").
CREATE OR REPLACE FUNCTION pgcast.capture_object_records_update() RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER AS $$
DECLARE
    old_row pgcast.object_records;
    new_row pgcast.object_records;
BEGIN
    IF (SELECT count(*) FROM pgcast_new_records) = 1 THEN
        SELECT * INTO old_row FROM pgcast_old_records;
        SELECT * INTO new_row FROM pgcast_new_records;
        IF old_row.id = new_row.id AND old_row.owners IS NOT DISTINCT FROM new_row.owners AND old_row.assignees IS NOT DISTINCT FROM new_row.assignees THEN
            IF old_row.cells IS NOT DISTINCT FROM new_row.cells THEN
                RETURN NULL;
            END IF;
            INSERT INTO pgcast.events (kind, environment_id, object_class_id, object_record_id, data)
            SELECT 'record_updated', c.environment_id, c.id, new_row.id,
                   jsonb_build_object('class', c.name, 'read', c.read_rule,
                                      'owners', to_jsonb(new_row.owners), 'assignees', to_jsonb(new_row.assignees),
                                      'field_ids', ch.ids, 'old_cells', ch.old,
                                      'cells', new_row.cells, 'fields', c.field_names,
                                      'created_at', new_row.created_at AT TIME ZONE 'UTC', 'updated_at', new_row.updated_at AT TIME ZONE 'UTC')
            FROM pgcast.object_classes c, pgcast.cells_changed(new_row.cells, old_row.cells) ch
            WHERE c.id = new_row.object_class_id AND ch.ids IS NOT NULL;
            IF FOUND THEN
                PERFORM pgcast.ring();
            END IF;
            RETURN NULL;
        END IF;
    END IF;
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
        FROM pgcast.cells_changed(d.cells, d.old_cells) ch
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

-- The data of a record_deleted entry, for DELETE and TRUNCATE alike: the
-- class, its read rule, owners and assignees as they were, {id}, and the
-- cells as they were with the class's field names, so that a subscription
-- filter matches a delete on the record's last values (package stream,
-- Event.Old). A one-SELECT SQL function the planner inlines (EXPLAIN VERBOSE
-- shows the jsonb_build_object): STABLE, as its body is; IMMUTABLE would stop
-- the inlining and cost a call per row.
CREATE OR REPLACE FUNCTION pgcast.record_deleted_data(rec_id bigint, rec_owners text[], rec_assignees text[],
                                                      rec_cells jsonb, class_name text, class_read text,
                                                      class_fields jsonb)
RETURNS jsonb LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT jsonb_build_object('class', class_name, 'read', class_read,
                              'owners', to_jsonb(rec_owners), 'assignees', to_jsonb(rec_assignees),
                              'record', jsonb_build_object('id', rec_id),
                              'old_cells', rec_cells, 'fields', class_fields)
$$;

-- record_deleted per deleted row ({id}, owners and assignees as they were),
-- each one -1 to its class's count. Records deleted because their class was
-- deleted are skipped: the class row is gone, and its count goes with it.
CREATE OR REPLACE FUNCTION pgcast.capture_object_records_delete() RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER AS $$
BEGIN
    INSERT INTO pgcast.events (kind, environment_id, object_class_id, object_record_id, data)
    SELECT 'record_deleted', c.environment_id, c.id, o.id,
           pgcast.record_deleted_data(o.id, o.owners, o.assignees, o.cells, c.name, c.read_rule, c.field_names)
    FROM pgcast_old_records o
    CROSS JOIN LATERAL (SELECT c.id, c.environment_id, c.name, c.read_rule, c.field_names
                        FROM pgcast.object_classes c WHERE c.id = o.object_class_id OFFSET 0) c;
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

-- TRUNCATE has no transition table: BEFORE it, while the rows are still
-- there (and, under its ACCESS EXCLUSIVE lock, no other transaction's
-- uncommitted ones), record_deleted per record as for DELETE, so that
-- subscribers see the records go and the counts derived from the log stay
-- exact, at the cost of reading the table (as DELETE would). Also when
-- object_records is truncated by a TRUNCATE ... CASCADE of another table.
CREATE OR REPLACE FUNCTION pgcast.capture_object_records_truncate() RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER AS $$
BEGIN
    INSERT INTO pgcast.events (kind, environment_id, object_class_id, object_record_id, data)
    SELECT 'record_deleted', c.environment_id, c.id, o.id,
           pgcast.record_deleted_data(o.id, o.owners, o.assignees, o.cells, c.name, c.read_rule, c.field_names)
    FROM pgcast.object_records o
    CROSS JOIN LATERAL (SELECT c.id, c.environment_id, c.name, c.read_rule, c.field_names
                        FROM pgcast.object_classes c WHERE c.id = o.object_class_id OFFSET 0) c
    ORDER BY o.id;
    IF FOUND THEN
        PERFORM pgcast.ring();
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS pgcast_capture_truncate ON pgcast.object_records;
CREATE TRIGGER pgcast_capture_truncate
    BEFORE TRUNCATE ON pgcast.object_records
    FOR EACH STATEMENT EXECUTE FUNCTION pgcast.capture_object_records_truncate();

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
