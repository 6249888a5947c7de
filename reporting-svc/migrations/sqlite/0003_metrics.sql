-- Counted occurrences: one row per thing a report counts (a conversation created or closed,
-- a reassignment, an offer and its outcome...), written with the cursor of the event it
-- came from. Reports read them only for the partial quarter hours at the edges of a range.
CREATE TABLE occurrences (
    tenant_id  TEXT    NOT NULL,
    metric     TEXT    NOT NULL,
    at         INTEGER  NOT NULL,
    queue_id   TEXT    NOT NULL,
    channel    INTEGER  NOT NULL,
    program_id TEXT    NOT NULL,
    agent_id   TEXT    NOT NULL,
    label      TEXT    NOT NULL,
    value      INTEGER  NOT NULL
);
CREATE INDEX occurrences_by_time ON occurrences (tenant_id, metric, at);

-- The same occurrences summed per quarter hour (UTC, which fits every zone's offset) and
-- dimension, maintained as events arrive: a report's cost follows the range asked for,
-- not the history stored.
CREATE TABLE rollups (
    tenant_id  TEXT    NOT NULL,
    metric     TEXT    NOT NULL,
    slot       INTEGER  NOT NULL,
    queue_id   TEXT    NOT NULL,
    channel    INTEGER  NOT NULL,
    program_id TEXT    NOT NULL,
    agent_id   TEXT    NOT NULL,
    label      TEXT    NOT NULL,
    n          INTEGER  NOT NULL,
    total      INTEGER  NOT NULL,
    PRIMARY KEY (tenant_id, metric, slot, queue_id, channel, program_id, agent_id, label)
);

-- The facts so far were folded without occurrences: fold the whole log again (the
-- consumer starts from the beginning of conversation-svc's log when its cursor is gone).
DELETE FROM assignment_facts;
DELETE FROM conversation_facts;
DELETE FROM consumer_cursor;
