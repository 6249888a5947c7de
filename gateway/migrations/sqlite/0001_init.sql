-- The directory: tenants, their settings, users, API keys, the audit log of administrative
-- changes, and the responses of applied requests (request_id idempotency).
-- Ids are UUID strings; times are microseconds since the unix epoch.

CREATE TABLE tenants (
    id               TEXT    PRIMARY KEY,
    parent_tenant_id TEXT    REFERENCES tenants (id),
    display_name     TEXT    NOT NULL,
    created_at       BIGINT  NOT NULL
);
CREATE INDEX tenants_by_parent ON tenants (parent_tenant_id, display_name, id);

-- Absent row: defaults (no supervisor action enabled, 24 h reopen window, UTC).
CREATE TABLE tenant_settings (
    tenant_id                  TEXT    PRIMARY KEY REFERENCES tenants (id),
    -- Comma-separated lowercase names, e.g. "monitor,force_close".
    enabled_supervisor_actions TEXT    NOT NULL,
    reopen_window_seconds      BIGINT  NOT NULL,
    time_zone                  TEXT    NOT NULL,
    updated_at                 BIGINT  NOT NULL
);

CREATE TABLE users (
    id           TEXT    PRIMARY KEY,
    tenant_id    TEXT    NOT NULL REFERENCES tenants (id),
    display_name TEXT    NOT NULL,
    -- Lowercase; unique across Switchboard.
    email        TEXT    NOT NULL UNIQUE,
    -- Comma-separated lowercase names, e.g. "agent,supervisor".
    roles        TEXT    NOT NULL,
    active       BIGINT  NOT NULL,
    created_at   BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL
);
CREATE INDEX users_by_tenant ON users (tenant_id, display_name, id);

CREATE TABLE api_keys (
    id            TEXT    PRIMARY KEY,
    tenant_id     TEXT    NOT NULL REFERENCES tenants (id),
    display_name  TEXT    NOT NULL,
    roles         TEXT    NOT NULL,
    -- First characters of the secret, to recognise the key.
    prefix        TEXT    NOT NULL,
    -- Lowercase hex SHA-256 of the whole secret; the secret itself is never stored.
    secret_sha256 TEXT    NOT NULL,
    created_at    BIGINT  NOT NULL,
    revoked_at    BIGINT
);
CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id, created_at, id);

CREATE TABLE audit_log (
    id         TEXT    PRIMARY KEY,
    tenant_id  TEXT    NOT NULL,
    actor_id   TEXT    NOT NULL,
    method     TEXT    NOT NULL,
    target_id  TEXT    NOT NULL,
    request_id TEXT    NOT NULL,
    created_at BIGINT  NOT NULL
);
CREATE INDEX audit_log_by_tenant ON audit_log (tenant_id, created_at, id);

CREATE TABLE request_log (
    tenant_id  TEXT    NOT NULL,
    method     TEXT    NOT NULL,
    request_id TEXT    NOT NULL,
    response   BLOB    NOT NULL,
    created_at BIGINT  NOT NULL,
    PRIMARY KEY (tenant_id, method, request_id)
);
