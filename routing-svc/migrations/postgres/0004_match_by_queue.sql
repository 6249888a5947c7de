-- The matcher routes queue by queue: it walks each queue's conversations not under offer
-- by how long they have waited, to offer them, or by when they entered the queue, to
-- bring the decisions of a queue nobody can serve up to date where it last stopped. A
-- backlog in one queue then costs nothing to another.
CREATE INDEX waiting_queue_waited ON waiting (queue_id, state, enqueue_time, conversation_id);
CREATE INDEX waiting_queue_entered ON waiting (queue_id, state, entered_time, conversation_id);
-- Superseded: it ordered the whole backlog across queues.
DROP INDEX waiting_order;
