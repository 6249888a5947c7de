-- Routing decisions listed by agent: one row per agent a decision lists (chosen or passed
-- over), newest first per agent, written with the decision.
CREATE TABLE decision_candidates (
    tenant_id   TEXT   NOT NULL,
    agent_id    TEXT   NOT NULL,
    decide_time BIGINT NOT NULL,
    decision_id TEXT   NOT NULL,
    PRIMARY KEY (tenant_id, agent_id, decide_time, decision_id)
);
INSERT INTO decision_candidates (tenant_id, agent_id, decide_time, decision_id)
SELECT DISTINCT d.tenant_id, c.value ->> 'agent_id', d.decide_time, d.id
FROM routing_decisions d, jsonb_array_elements(d.candidates::jsonb) c;

-- When each agent was a member of each queue, so that a decision can say an agent was not
-- a member when it was made. An open period has no leave_time. Memberships that exist
-- now are taken to have existed since before any decision (join_time 0).
CREATE TABLE queue_memberships (
    tenant_id  TEXT   NOT NULL,
    agent_id   TEXT   NOT NULL,
    queue_id   TEXT   NOT NULL,
    join_time  BIGINT NOT NULL,
    leave_time BIGINT
);
CREATE INDEX queue_memberships_agent ON queue_memberships (tenant_id, agent_id, queue_id);
INSERT INTO queue_memberships (tenant_id, agent_id, queue_id, join_time, leave_time)
SELECT tenant_id, agent_id, queue_id, 0, NULL FROM agent_queues;
