-- One-time WebSocket connection tickets (Catalyst's ws-auth uuid). Stored in
-- Postgres so that any pgcast node can redeem a ticket another issued;
-- redemption is a single DELETE ... RETURNING, so two concurrent upgrades
-- with one ticket cannot both succeed.
CREATE TABLE pgcast.tickets (
    id             uuid        PRIMARY KEY,
    user_id        text        NOT NULL,
    role           text        NOT NULL CHECK (role IN ('admin', 'authenticated')),
    environment_id bigint      NOT NULL,
    expires_at     timestamptz NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tickets_expires_idx ON pgcast.tickets (expires_at);
