-- Queue overflow. A conversation waiting in a queue that has an overflow queue moves there
-- once it has waited the queue's overflow_after since it entered. When that falls due is kept
-- on the waiting row, set whenever it enters a queue and NULL when the queue has no overflow
-- (or it was found unable to move), so the matcher's sweep is one indexed range read that
-- finds nothing when nothing is due.
ALTER TABLE waiting ADD COLUMN overflow_due_us BIGINT;
CREATE INDEX waiting_overflow_due ON waiting (state, overflow_due_us)
    WHERE overflow_due_us IS NOT NULL;
-- Conversations already waiting in such queues fall due counting from when they entered.
UPDATE waiting SET overflow_due_us = entered_time + (
    SELECT q.overflow_after_us FROM queues q WHERE q.id = waiting.queue_id)
WHERE queue_id IN (
    SELECT q.id FROM queues q WHERE q.overflow_queue_id IS NOT NULL
    AND q.overflow_queue_id <> '' AND q.overflow_queue_id <> q.id AND q.overflow_after_us > 0);
-- Outbox entries that tell conversation-svc a conversation overflowed: the queue it left and
-- the program of the queue it entered (queue_id). Empty for every other entry.
ALTER TABLE outbox ADD COLUMN overflow_from TEXT NOT NULL DEFAULT '';
ALTER TABLE outbox ADD COLUMN overflow_program TEXT NOT NULL DEFAULT '';
-- An overflow event names the queue left as well as the queue entered.
ALTER TABLE events ADD COLUMN from_queue_id TEXT NOT NULL DEFAULT '';
