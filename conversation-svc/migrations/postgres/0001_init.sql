-- conversation-svc schema (PostgreSQL). Ids are UUID strings, times are microseconds since the
-- epoch, booleans are 0/1 (as on SQLite), enums are their protobuf numbers.

CREATE TABLE contacts (
    id              TEXT    PRIMARY KEY,
    tenant_id       TEXT    NOT NULL,
    channel         BIGINT  NOT NULL,
    channel_address TEXT    NOT NULL,
    display_name    TEXT    NOT NULL,
    create_time     BIGINT  NOT NULL,
    update_time     BIGINT  NOT NULL,
    UNIQUE (tenant_id, channel, channel_address)
);

CREATE TABLE conversations (
    id                  TEXT    PRIMARY KEY,
    tenant_id           TEXT    NOT NULL,
    channel             BIGINT  NOT NULL,
    state               BIGINT  NOT NULL,
    queue_id            TEXT    NOT NULL,
    program_id          TEXT    NOT NULL,
    contact_id          TEXT    NOT NULL REFERENCES contacts (id),
    owner_agent_id      TEXT    NOT NULL DEFAULT '',
    owner_display_name  TEXT    NOT NULL DEFAULT '',
    last_owner_agent_id TEXT    NOT NULL DEFAULT '',
    status_label_id     TEXT    NOT NULL DEFAULT '',
    mode                BIGINT  NOT NULL,
    wrap_up_reason_ids  TEXT    NOT NULL DEFAULT '',
    segment_count       BIGINT  NOT NULL DEFAULT 0,
    message_count       BIGINT  NOT NULL DEFAULT 0,
    current_segment_id  TEXT    NOT NULL DEFAULT '',
    create_time         BIGINT  NOT NULL,
    update_time         BIGINT  NOT NULL,
    close_time          BIGINT
);
CREATE INDEX conversations_by_tenant_time ON conversations (tenant_id, create_time DESC, id DESC);

CREATE TABLE pre_chat_fields (
    conversation_id TEXT    NOT NULL REFERENCES conversations (id),
    position        BIGINT  NOT NULL,
    name            TEXT    NOT NULL,
    label           TEXT    NOT NULL,
    value           TEXT    NOT NULL,
    PRIMARY KEY (conversation_id, position)
);

CREATE TABLE transcript_entries (
    conversation_id TEXT    NOT NULL REFERENCES conversations (id),
    position        BIGINT  NOT NULL,
    sender          BIGINT  NOT NULL,
    text            TEXT    NOT NULL,
    create_time     BIGINT  NOT NULL,
    PRIMARY KEY (conversation_id, position)
);

CREATE TABLE participants (
    id              TEXT    PRIMARY KEY,
    conversation_id TEXT    NOT NULL REFERENCES conversations (id),
    user_id         TEXT    NOT NULL,
    display_name    TEXT    NOT NULL,
    role            BIGINT  NOT NULL,
    join_time       BIGINT  NOT NULL,
    leave_time      BIGINT
);
CREATE INDEX participants_by_conversation ON participants (conversation_id, join_time);
CREATE INDEX participants_by_user ON participants (user_id, conversation_id);

CREATE TABLE segments (
    id                 TEXT    PRIMARY KEY,
    tenant_id          TEXT    NOT NULL,
    conversation_id    TEXT    NOT NULL REFERENCES conversations (id),
    ordinal            BIGINT  NOT NULL,
    agent_id           TEXT    NOT NULL,
    queue_id           TEXT    NOT NULL,
    start_reason       TEXT    NOT NULL,
    end_reason         TEXT    NOT NULL DEFAULT '',
    start_time         BIGINT  NOT NULL,
    end_time           BIGINT,
    wrap_up_reason_ids TEXT    NOT NULL DEFAULT '',
    wrap_up_note       TEXT    NOT NULL DEFAULT '',
    UNIQUE (conversation_id, ordinal)
);

CREATE TABLE messages (
    id                  TEXT    PRIMARY KEY,
    tenant_id           TEXT    NOT NULL,
    conversation_id     TEXT    NOT NULL REFERENCES conversations (id),
    ordinal             BIGINT  NOT NULL,
    sender              BIGINT  NOT NULL,
    sender_id           TEXT    NOT NULL,
    sender_display_name TEXT    NOT NULL,
    text                TEXT    NOT NULL,
    internal            BIGINT  NOT NULL,
    create_time         BIGINT  NOT NULL,
    UNIQUE (conversation_id, ordinal)
);

-- The event log. `sequence` comes from event_counter, taken at the end of each write
-- transaction: the counter row stays locked until commit, so sequences commit in order
-- and a reader following `sequence > cursor` never misses one.
CREATE TABLE events (
    sequence                 BIGINT  PRIMARY KEY,
    id                       TEXT    NOT NULL UNIQUE,
    tenant_id                TEXT    NOT NULL,
    conversation_id          TEXT    NOT NULL,
    type                     BIGINT  NOT NULL,
    occur_time               BIGINT  NOT NULL,
    actor_id                 TEXT    NOT NULL,
    agent_id                 TEXT    NOT NULL,
    previous_agent_id        TEXT    NOT NULL,
    queue_id                 TEXT    NOT NULL,
    program_id               TEXT    NOT NULL,
    channel                  BIGINT  NOT NULL,
    segment_id               TEXT    NOT NULL,
    state                    BIGINT  NOT NULL,
    wrap_up_reason_ids       TEXT    NOT NULL,
    message_id               TEXT    NOT NULL,
    transfer_id              TEXT    NOT NULL,
    detail                   TEXT    NOT NULL,
    conversation_create_time BIGINT  NOT NULL
);
CREATE INDEX events_by_conversation ON events (conversation_id, sequence);

CREATE TABLE event_counter (
    id   BIGINT  PRIMARY KEY CHECK (id = 1),
    last BIGINT  NOT NULL
);
INSERT INTO event_counter (id, last) VALUES (1, 0);

-- Assignments applied, by offer: a retried ApplyAssignment finds its offer here.
CREATE TABLE assignments (
    offer_id        TEXT   PRIMARY KEY,
    tenant_id       TEXT   NOT NULL,
    conversation_id TEXT   NOT NULL,
    agent_id        TEXT   NOT NULL,
    segment_id      TEXT   NOT NULL,
    apply_time      BIGINT NOT NULL
);

CREATE TABLE wrap_up_reasons (
    id                TEXT    PRIMARY KEY,
    tenant_id         TEXT    NOT NULL,
    display_name      TEXT    NOT NULL,
    marks_transferred BIGINT  NOT NULL,
    active            BIGINT  NOT NULL,
    create_time       BIGINT  NOT NULL,
    update_time       BIGINT  NOT NULL,
    UNIQUE (tenant_id, display_name)
);

-- Queues offering a reason; a reason without rows here is offered in every queue.
CREATE TABLE wrap_up_reason_queues (
    reason_id TEXT NOT NULL REFERENCES wrap_up_reasons (id),
    queue_id  TEXT NOT NULL,
    PRIMARY KEY (reason_id, queue_id)
);

-- Calls to routing-svc decided in a transaction and sent after it commits, retried until
-- routing-svc accepts them. `payload` is the encoded protobuf request.
CREATE TABLE command_outbox (
    id                TEXT    PRIMARY KEY,
    kind              TEXT    NOT NULL,
    tenant_id         TEXT    NOT NULL,
    conversation_id   TEXT    NOT NULL,
    payload           BYTEA    NOT NULL,
    state             TEXT    NOT NULL,
    attempts          BIGINT  NOT NULL DEFAULT 0,
    next_attempt_time BIGINT  NOT NULL,
    last_error        TEXT    NOT NULL DEFAULT '',
    create_time       BIGINT  NOT NULL,
    done_time         BIGINT
);
CREATE INDEX command_outbox_due ON command_outbox (state, next_attempt_time);

CREATE TABLE request_log (
    tenant_id  TEXT   NOT NULL,
    method     TEXT   NOT NULL,
    request_id TEXT   NOT NULL,
    response   BYTEA   NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, method, request_id)
);
