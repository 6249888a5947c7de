-- Assignments of one conversation are applied in the order they were written: each gets
-- the next number of its conversation, and one is sent only while no earlier one is
-- pending. The lease is kept apart from the retry time, so that a process starting up can
-- retry at once what waits out a backoff without taking what another process holds.
ALTER TABLE outbox ADD COLUMN conversation_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN lease_until BIGINT NOT NULL DEFAULT 0;
UPDATE outbox SET conversation_seq = (
    SELECT COUNT(*) FROM outbox o
    WHERE o.conversation_id = outbox.conversation_id
      AND (o.create_time < outbox.create_time
           OR (o.create_time = outbox.create_time AND o.id <= outbox.id))
);
CREATE UNIQUE INDEX outbox_conversation_order ON outbox (conversation_id, conversation_seq);
