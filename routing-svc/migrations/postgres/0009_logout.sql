-- Logout handling. When an agent last left Offline (logged in): a queue that does not
-- offer waiting conversations on login offers the agent only those that entered it since.
-- 0 for agents signed in before this release: everything waiting is theirs to be offered.
ALTER TABLE agents ADD COLUMN login_time BIGINT NOT NULL DEFAULT 0;
-- Outbox entries that return an agent's conversation to its queue on logout, rather than
-- apply an assignment: who set the agent Offline, and when.
ALTER TABLE outbox ADD COLUMN logout_by TEXT NOT NULL DEFAULT '';
ALTER TABLE outbox ADD COLUMN logout_time BIGINT NOT NULL DEFAULT 0;
