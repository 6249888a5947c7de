-- Invitations to consult or conference are offers too, and several agents may be invited to
-- one conversation at once: a queue offer or a transfer still excludes every other pending
-- offer of the conversation (checked when an offer is made), while the unique index now
-- allows one pending queue or transfer offer per conversation and one pending invitation per
-- conversation and agent.
DROP INDEX offers_one_pending;
CREATE UNIQUE INDEX offers_one_pending ON offers (conversation_id) WHERE state = 1 AND kind IN (1, 2);
CREATE UNIQUE INDEX offers_one_pending_invitation ON offers (conversation_id, agent_id) WHERE state = 1 AND kind IN (3, 4);
