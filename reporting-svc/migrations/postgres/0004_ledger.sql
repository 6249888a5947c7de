-- The transfer ledger: one line per queue offer, transfer and invitation, opened by the
-- event that proposes it and answered by the event that ends it.
CREATE TABLE ledger_entries (
    entry_id        TEXT    PRIMARY KEY,
    tenant_id       TEXT    NOT NULL,
    conversation_id TEXT    NOT NULL,
    kind            BIGINT  NOT NULL,
    transfer_id     TEXT    NOT NULL,
    offer_id        TEXT    NOT NULL,
    from_user_id    TEXT    NOT NULL,
    to_agent_id     TEXT    NOT NULL,
    to_queue_id     TEXT    NOT NULL,
    channel         BIGINT  NOT NULL,
    requested_at    BIGINT  NOT NULL,
    answered_at     BIGINT,
    outcome         BIGINT  NOT NULL,
    fallback        BIGINT  NOT NULL,
    ping_pong       BIGINT  NOT NULL
);
CREATE INDEX ledger_by_time ON ledger_entries (tenant_id, requested_at, entry_id);
CREATE INDEX ledger_by_conversation ON ledger_entries (tenant_id, conversation_id, requested_at);

-- Whether an agent owned a conversation before: the ledger's ping-pong for queue offers.
CREATE INDEX assignment_facts_by_owner ON assignment_facts (conversation_id, agent_id, assigned_at);

-- Transfers and invitations were not followed before: fold the logs again.
DELETE FROM occurrences;
DELETE FROM rollups;
DELETE FROM assignment_facts;
DELETE FROM conversation_facts;
DELETE FROM consumer_cursor;
