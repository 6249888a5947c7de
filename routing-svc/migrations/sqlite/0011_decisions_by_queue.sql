-- Routing decision records listed by queue over a time range, newest first.
CREATE INDEX routing_decisions_queue
    ON routing_decisions (tenant_id, queue_id, decide_time, id);
