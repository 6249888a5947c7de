-- Each agent's presence and capacity since its last change in routing-svc's log: the
-- interval agent activity has not counted yet (reports add it up to now).
CREATE TABLE agent_states (
    tenant_id      TEXT    NOT NULL,
    agent_id       TEXT    NOT NULL,
    presence       TEXT    NOT NULL,
    since          INTEGER  NOT NULL,
    capacity_used  INTEGER  NOT NULL,
    capacity_total INTEGER  NOT NULL,
    PRIMARY KEY (tenant_id, agent_id)
);

-- Presence and capacity events were not counted before: fold the logs again.
DELETE FROM occurrences;
DELETE FROM rollups;
DELETE FROM ledger_entries;
DELETE FROM assignment_facts;
DELETE FROM conversation_facts;
DELETE FROM consumer_cursor;
