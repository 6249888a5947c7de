-- Transfers with their outcomes (the conversation's transfer ledger), and what transfer
-- events say besides the common fields: the answer and the fallback applied.
CREATE TABLE transfers (
    id               TEXT    PRIMARY KEY,
    tenant_id        TEXT    NOT NULL,
    conversation_id  TEXT    NOT NULL REFERENCES conversations (id),
    ordinal          INTEGER NOT NULL,
    from_user_id     TEXT    NOT NULL,
    from_agent_id    TEXT    NOT NULL,
    from_segment_id  TEXT    NOT NULL,
    by_supervisor    INTEGER NOT NULL,
    to_agent_id      TEXT    NOT NULL,
    to_queue_id      TEXT    NOT NULL,
    outcome          INTEGER NOT NULL,
    fallback_applied INTEGER NOT NULL,
    offer_id         TEXT    NOT NULL,
    reject_reason    TEXT    NOT NULL,
    note             TEXT    NOT NULL,
    ping_pong        INTEGER NOT NULL,
    request_time     BIGINT  NOT NULL,
    resolve_time     BIGINT,
    UNIQUE (conversation_id, ordinal)
);
ALTER TABLE events ADD COLUMN answer_outcome INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN transfer_fallback INTEGER NOT NULL DEFAULT 0;
