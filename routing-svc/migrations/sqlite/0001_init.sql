-- routing-svc schema (SQLite). Ids are TEXT UUIDs, times INTEGER microseconds since the
-- epoch, enums the contract's numbers, lists JSON text.

CREATE TABLE request_log (
    tenant_id  TEXT    NOT NULL,
    method     TEXT    NOT NULL,
    request_id TEXT    NOT NULL,
    response   BLOB    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, method, request_id)
);

-- One row; each write transaction bumps it as its last statement, so the row lock
-- orders commits and event sequences appear to readers without gaps.
CREATE TABLE event_sequence (
    id   INTEGER PRIMARY KEY,
    last INTEGER NOT NULL
);
INSERT INTO event_sequence (id, last) VALUES (1, 0);

CREATE TABLE events (
    sequence        INTEGER PRIMARY KEY,
    tenant_id       TEXT    NOT NULL,
    type            TEXT    NOT NULL,
    occur_time      INTEGER NOT NULL,
    agent_id        TEXT    NOT NULL,
    conversation_id TEXT    NOT NULL,
    queue_id        TEXT    NOT NULL,
    offer_id        TEXT    NOT NULL
);
CREATE INDEX events_agent ON events (tenant_id, agent_id, sequence);

CREATE TABLE programs (
    id           TEXT    PRIMARY KEY,
    tenant_id    TEXT    NOT NULL,
    display_name TEXT    NOT NULL,
    create_time  INTEGER NOT NULL,
    UNIQUE (tenant_id, display_name)
);

CREATE TABLE queues (
    id                     TEXT    PRIMARY KEY,
    tenant_id              TEXT    NOT NULL,
    program_id             TEXT    NOT NULL REFERENCES programs (id),
    display_name           TEXT    NOT NULL,
    accepted_channels      TEXT    NOT NULL,
    assignment_method      INTEGER NOT NULL,
    max_open_per_agent     INTEGER NOT NULL,
    offer_timeout_us       INTEGER NOT NULL,
    logout_behavior        INTEGER NOT NULL,
    offer_waiting_on_login INTEGER NOT NULL,
    required_skills        TEXT    NOT NULL,
    priority               INTEGER NOT NULL,
    overflow_queue_id      TEXT,
    overflow_after_us      INTEGER NOT NULL,
    transfer_fallback      INTEGER NOT NULL,
    wrap_up_time_limit_us  INTEGER NOT NULL,
    rr_cursor              TEXT    NOT NULL,
    create_time            INTEGER NOT NULL,
    update_time            INTEGER NOT NULL,
    UNIQUE (program_id, display_name)
);
CREATE INDEX queues_tenant ON queues (tenant_id, display_name, id);

CREATE TABLE capacity_profiles (
    id            TEXT    PRIMARY KEY,
    tenant_id     TEXT    NOT NULL,
    display_name  TEXT    NOT NULL,
    total_units   INTEGER NOT NULL,
    channel_costs TEXT    NOT NULL,
    create_time   INTEGER NOT NULL
);
CREATE INDEX capacity_profiles_tenant ON capacity_profiles (tenant_id, display_name, id);

-- The agent's profile (set by administrators) and live routing state. Capacity totals
-- and channel costs are copied from the (immutable) capacity profile.
CREATE TABLE agents (
    tenant_id            TEXT    NOT NULL,
    agent_id             TEXT    NOT NULL,
    display_name         TEXT    NOT NULL,
    capacity_profile_id  TEXT    NOT NULL REFERENCES capacity_profiles (id),
    capacity_total       INTEGER NOT NULL,
    channel_costs        TEXT    NOT NULL,
    skills               TEXT    NOT NULL,
    team_ids             TEXT    NOT NULL,
    presence             INTEGER NOT NULL,
    presence_reason      TEXT    NOT NULL,
    presence_change_time INTEGER NOT NULL,
    idle_since           INTEGER NOT NULL,
    capacity_used        INTEGER NOT NULL CHECK (capacity_used >= 0),
    pending_units        INTEGER NOT NULL CHECK (pending_units >= 0),
    create_time          INTEGER NOT NULL,
    update_time          INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, agent_id)
);
CREATE INDEX agents_name ON agents (tenant_id, display_name, agent_id);

CREATE TABLE agent_queues (
    tenant_id TEXT NOT NULL,
    agent_id  TEXT NOT NULL,
    queue_id  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, agent_id, queue_id)
);
CREATE INDEX agent_queues_queue ON agent_queues (queue_id, agent_id);

-- Every enqueue taken, keyed for idempotency.
CREATE TABLE enqueues (
    conversation_id       TEXT    NOT NULL,
    enqueue_key           TEXT    NOT NULL,
    tenant_id             TEXT    NOT NULL,
    queue_id              TEXT    NOT NULL,
    channel               INTEGER NOT NULL,
    customer_display_name TEXT    NOT NULL,
    enqueue_time          INTEGER NOT NULL,
    entered_time          INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, enqueue_key)
);

-- Conversations waiting for an agent; state is 'waiting' or 'offered'.
CREATE TABLE waiting (
    conversation_id       TEXT    PRIMARY KEY,
    tenant_id             TEXT    NOT NULL,
    queue_id              TEXT    NOT NULL,
    channel               INTEGER NOT NULL,
    customer_display_name TEXT    NOT NULL,
    enqueue_time          INTEGER NOT NULL,
    entered_time          INTEGER NOT NULL,
    enqueue_key           TEXT    NOT NULL,
    state                 TEXT    NOT NULL,
    offer_id              TEXT
);
CREATE INDEX waiting_order ON waiting (state, enqueue_time);
CREATE INDEX waiting_queue ON waiting (queue_id, enqueue_time);

CREATE TABLE offers (
    id                    TEXT    PRIMARY KEY,
    tenant_id             TEXT    NOT NULL,
    conversation_id       TEXT    NOT NULL,
    queue_id              TEXT    NOT NULL,
    agent_id              TEXT    NOT NULL,
    channel               INTEGER NOT NULL,
    kind                  INTEGER NOT NULL,
    state                 INTEGER NOT NULL,
    create_time           INTEGER NOT NULL,
    expire_time           INTEGER NOT NULL,
    resolve_time          INTEGER,
    customer_display_name TEXT    NOT NULL,
    capacity_units        INTEGER NOT NULL
);
-- At most one pending offer per conversation.
CREATE UNIQUE INDEX offers_one_pending ON offers (conversation_id) WHERE state = 1;
CREATE INDEX offers_agent ON offers (tenant_id, agent_id, state);
CREATE INDEX offers_due ON offers (state, expire_time);
CREATE INDEX offers_conversation ON offers (conversation_id, create_time);
CREATE INDEX offers_queue ON offers (queue_id, state);

-- Capacity held by a conversation with an agent.
CREATE TABLE assignments (
    conversation_id TEXT    NOT NULL,
    agent_id        TEXT    NOT NULL,
    tenant_id       TEXT    NOT NULL,
    queue_id        TEXT    NOT NULL,
    units           INTEGER NOT NULL,
    offer_id        TEXT    NOT NULL,
    create_time     INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, agent_id)
);
CREATE INDEX assignments_agent ON assignments (tenant_id, agent_id, queue_id);
CREATE INDEX assignments_queue ON assignments (queue_id, agent_id);

-- Assignments conversation-svc has yet to confirm; retried until done.
CREATE TABLE outbox (
    id                 TEXT    PRIMARY KEY,
    tenant_id          TEXT    NOT NULL,
    conversation_id    TEXT    NOT NULL,
    agent_id           TEXT    NOT NULL,
    agent_display_name TEXT    NOT NULL,
    offer_id           TEXT    NOT NULL,
    queue_id           TEXT    NOT NULL,
    start_reason       TEXT    NOT NULL,
    attempts           INTEGER NOT NULL,
    next_attempt_time  INTEGER NOT NULL,
    done               INTEGER NOT NULL,
    outcome            TEXT    NOT NULL,
    create_time        INTEGER NOT NULL,
    done_time          INTEGER
);
CREATE INDEX outbox_due ON outbox (done, next_attempt_time);

CREATE TABLE routing_decisions (
    id                TEXT    PRIMARY KEY,
    tenant_id         TEXT    NOT NULL,
    conversation_id   TEXT    NOT NULL,
    queue_id          TEXT    NOT NULL,
    offer_id          TEXT,
    assignment_method INTEGER NOT NULL,
    candidates        TEXT    NOT NULL,
    summary           TEXT    NOT NULL,
    decide_time       INTEGER NOT NULL
);
CREATE INDEX routing_decisions_conversation
    ON routing_decisions (tenant_id, conversation_id, decide_time, id);
