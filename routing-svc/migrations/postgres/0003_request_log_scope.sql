-- Idempotency records are scoped to the caller and keep a fingerprint of the request
-- (server-kit idempotency, AIP-155). The key changes, so the table is rebuilt; the records
-- of earlier requests are dropped: they name no caller and would otherwise answer any
-- caller of their tenant. A retry of a request sent before the upgrade is applied anew.
DROP TABLE request_log;

CREATE TABLE request_log (
    tenant_id   TEXT   NOT NULL,
    caller      TEXT   NOT NULL,
    method      TEXT   NOT NULL,
    request_id  TEXT   NOT NULL,
    fingerprint BYTEA NOT NULL,
    response    BYTEA NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, caller, method, request_id)
);

-- The purge deletes by age.
CREATE INDEX request_log_created_at ON request_log (created_at);
