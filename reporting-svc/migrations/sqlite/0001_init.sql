-- Where each event consumer stopped: the sequence of the last event applied, committed in
-- the same transaction as the facts that event changed.
CREATE TABLE consumer_cursor (
    source   TEXT    PRIMARY KEY,
    sequence INTEGER NOT NULL
);

-- One row per conversation, folded from conversation-svc's events.
CREATE TABLE conversation_facts (
    conversation_id       TEXT    PRIMARY KEY,
    tenant_id             TEXT    NOT NULL,
    channel               INTEGER NOT NULL,
    queue_id              TEXT    NOT NULL,
    program_id            TEXT    NOT NULL,
    created_at            INTEGER NOT NULL,
    closed_at             INTEGER,
    closing_agent_id      TEXT,
    closing_segment_start INTEGER,
    owner_agent_id        TEXT,
    owner_since           INTEGER,
    segments              INTEGER NOT NULL,
    transfers             INTEGER NOT NULL,
    reopens               INTEGER NOT NULL,
    last_sequence         INTEGER NOT NULL
);
CREATE INDEX conversation_facts_created ON conversation_facts (tenant_id, created_at);
CREATE INDEX conversation_facts_closed ON conversation_facts (tenant_id, closed_at);

-- One row per ASSIGNED event; `reassignment` is 1 when another agent owned it before.
CREATE TABLE assignment_facts (
    sequence          INTEGER PRIMARY KEY,
    tenant_id         TEXT    NOT NULL,
    conversation_id   TEXT    NOT NULL,
    agent_id          TEXT    NOT NULL,
    previous_agent_id TEXT    NOT NULL,
    queue_id          TEXT    NOT NULL,
    channel           INTEGER NOT NULL,
    assigned_at       INTEGER NOT NULL,
    reassignment      INTEGER NOT NULL
);
CREATE INDEX assignment_facts_reassigned ON assignment_facts (tenant_id, reassignment, assigned_at);
