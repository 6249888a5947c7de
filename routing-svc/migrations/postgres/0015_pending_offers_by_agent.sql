-- An agent's pending offers, oldest first (withdrawn on a presence change, timed out
-- together, listed on the agent's state): read in order from one index. With only
-- (tenant_id, agent_id, state), the order made the planner walk the tenant's every offer
-- by time instead.
DROP INDEX offers_agent;
CREATE INDEX offers_agent_pending ON offers (tenant_id, agent_id, state, create_time, id);
