-- Events carry what happened, not only whom it concerned, so that reporting follows agents
-- and queues from the log alone: a presence change with what it was before and why, the
-- units and the agent's load after a capacity change, and for waiting and offer events the
-- customer's wait start, the offer's times and kind, and the channel. Zero or empty where a
-- field does not apply (and for events written before this migration).
ALTER TABLE events ADD COLUMN presence BIGINT NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN previous_presence BIGINT NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN presence_cause BIGINT NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN presence_reason TEXT NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN actor_id TEXT NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN capacity_units BIGINT NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN capacity_used BIGINT NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN capacity_total BIGINT NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN units_over_capacity BIGINT NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN wait_start_time BIGINT NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN offer_create_time BIGINT NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN offer_expire_time BIGINT NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN offer_kind BIGINT NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN reject_reason TEXT NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN channel BIGINT NOT NULL DEFAULT 0;
