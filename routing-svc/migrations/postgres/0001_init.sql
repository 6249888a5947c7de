-- routing-svc schema (PostgreSQL). Ids are TEXT UUIDs, times BIGINT microseconds since the
-- epoch, enums the contract's numbers, lists JSON text.

CREATE TABLE request_log (
    tenant_id  TEXT    NOT NULL,
    method     TEXT    NOT NULL,
    request_id TEXT    NOT NULL,
    response   BYTEA    NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, method, request_id)
);

-- One row; each write transaction bumps it as its last statement, so the row lock
-- orders commits and event sequences appear to readers without gaps.
CREATE TABLE event_sequence (
    id   BIGINT PRIMARY KEY,
    last BIGINT NOT NULL
);
INSERT INTO event_sequence (id, last) VALUES (1, 0);

CREATE TABLE events (
    sequence        BIGINT PRIMARY KEY,
    tenant_id       TEXT    NOT NULL,
    type            TEXT    NOT NULL,
    occur_time      BIGINT NOT NULL,
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
    create_time  BIGINT NOT NULL,
    UNIQUE (tenant_id, display_name)
);

CREATE TABLE queues (
    id                     TEXT    PRIMARY KEY,
    tenant_id              TEXT    NOT NULL,
    program_id             TEXT    NOT NULL REFERENCES programs (id),
    display_name           TEXT    NOT NULL,
    accepted_channels      TEXT    NOT NULL,
    assignment_method      BIGINT NOT NULL,
    max_open_per_agent     BIGINT NOT NULL,
    offer_timeout_us       BIGINT NOT NULL,
    logout_behavior        BIGINT NOT NULL,
    offer_waiting_on_login BIGINT NOT NULL,
    required_skills        TEXT    NOT NULL,
    priority               BIGINT NOT NULL,
    overflow_queue_id      TEXT,
    overflow_after_us      BIGINT NOT NULL,
    transfer_fallback      BIGINT NOT NULL,
    wrap_up_time_limit_us  BIGINT NOT NULL,
    rr_cursor              TEXT    NOT NULL,
    create_time            BIGINT NOT NULL,
    update_time            BIGINT NOT NULL,
    UNIQUE (program_id, display_name)
);
CREATE INDEX queues_tenant ON queues (tenant_id, display_name, id);

CREATE TABLE capacity_profiles (
    id            TEXT    PRIMARY KEY,
    tenant_id     TEXT    NOT NULL,
    display_name  TEXT    NOT NULL,
    total_units   BIGINT NOT NULL,
    channel_costs TEXT    NOT NULL,
    create_time   BIGINT NOT NULL
);
CREATE INDEX capacity_profiles_tenant ON capacity_profiles (tenant_id, display_name, id);

-- The agent's profile (set by administrators) and live routing state. Capacity totals
-- and channel costs are copied from the (immutable) capacity profile.
CREATE TABLE agents (
    tenant_id            TEXT    NOT NULL,
    agent_id             TEXT    NOT NULL,
    display_name         TEXT    NOT NULL,
    capacity_profile_id  TEXT    NOT NULL REFERENCES capacity_profiles (id),
    capacity_total       BIGINT NOT NULL,
    channel_costs        TEXT    NOT NULL,
    skills               TEXT    NOT NULL,
    team_ids             TEXT    NOT NULL,
    presence             BIGINT NOT NULL,
    presence_reason      TEXT    NOT NULL,
    presence_change_time BIGINT NOT NULL,
    idle_since           BIGINT NOT NULL,
    capacity_used        BIGINT NOT NULL CHECK (capacity_used >= 0),
    pending_units        BIGINT NOT NULL CHECK (pending_units >= 0),
    create_time          BIGINT NOT NULL,
    update_time          BIGINT NOT NULL,
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
    channel               BIGINT NOT NULL,
    customer_display_name TEXT    NOT NULL,
    enqueue_time          BIGINT NOT NULL,
    entered_time          BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, enqueue_key)
);

-- Conversations waiting for an agent; state is 'waiting' or 'offered'.
CREATE TABLE waiting (
    conversation_id       TEXT    PRIMARY KEY,
    tenant_id             TEXT    NOT NULL,
    queue_id              TEXT    NOT NULL,
    channel               BIGINT NOT NULL,
    customer_display_name TEXT    NOT NULL,
    enqueue_time          BIGINT NOT NULL,
    entered_time          BIGINT NOT NULL,
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
    channel               BIGINT NOT NULL,
    kind                  BIGINT NOT NULL,
    state                 BIGINT NOT NULL,
    create_time           BIGINT NOT NULL,
    expire_time           BIGINT NOT NULL,
    resolve_time          BIGINT,
    customer_display_name TEXT    NOT NULL,
    capacity_units        BIGINT NOT NULL
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
    units           BIGINT NOT NULL,
    offer_id        TEXT    NOT NULL,
    create_time     BIGINT NOT NULL,
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
    attempts           BIGINT NOT NULL,
    next_attempt_time  BIGINT NOT NULL,
    done               BIGINT NOT NULL,
    outcome            TEXT    NOT NULL,
    create_time        BIGINT NOT NULL,
    done_time          BIGINT
);
CREATE INDEX outbox_due ON outbox (done, next_attempt_time);

CREATE TABLE routing_decisions (
    id                TEXT    PRIMARY KEY,
    tenant_id         TEXT    NOT NULL,
    conversation_id   TEXT    NOT NULL,
    queue_id          TEXT    NOT NULL,
    offer_id          TEXT,
    assignment_method BIGINT NOT NULL,
    candidates        TEXT    NOT NULL,
    summary           TEXT    NOT NULL,
    decide_time       BIGINT NOT NULL
);
CREATE INDEX routing_decisions_conversation
    ON routing_decisions (tenant_id, conversation_id, decide_time, id);
