-- Commands of one conversation are sent in the order they were written: each gets the
-- next number of its conversation, and one is sent only while no earlier one is pending.
-- The lease is kept apart from the retry time, so that a process starting up can retry
-- at once what waits out a backoff without taking what another process holds.
ALTER TABLE command_outbox ADD COLUMN conversation_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE command_outbox ADD COLUMN lease_until BIGINT NOT NULL DEFAULT 0;
UPDATE command_outbox SET conversation_seq = (
    SELECT COUNT(*) FROM command_outbox o
    WHERE o.conversation_id = command_outbox.conversation_id
      AND (o.create_time < command_outbox.create_time
           OR (o.create_time = command_outbox.create_time AND o.id <= command_outbox.id))
);
CREATE UNIQUE INDEX command_outbox_conversation_order
    ON command_outbox (conversation_id, conversation_seq);
