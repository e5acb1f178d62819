-- pgcast's own schema. Everything pgcast creates lives here.
CREATE SCHEMA IF NOT EXISTS pgcast;

-- Environments are tenants: every object class, record, task and connection
-- belongs to exactly one. Environment 1 exists from the start so that a fresh
-- install and tokens without an "env" claim work.
CREATE TABLE pgcast.environments (
    id         bigint      PRIMARY KEY,
    name       text        NOT NULL UNIQUE CHECK (name <> ''),
    created_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO pgcast.environments (id, name) VALUES (1, 'default');
