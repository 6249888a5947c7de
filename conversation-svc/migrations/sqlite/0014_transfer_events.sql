-- A TRANSFER_REQUESTED event says where the transfer goes, which offer carries it and
-- whether it is a ping-pong, so that the transfer ledger follows from the log alone.
ALTER TABLE events ADD COLUMN transfer_to_agent_id TEXT NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN transfer_to_queue_id TEXT NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN offer_id TEXT NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN ping_pong BIGINT NOT NULL DEFAULT 0;
