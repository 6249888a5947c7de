-- The wrap-up time limit: the limit of the queue the conversation was assigned from (0 for
-- none), the time it closes on its own while in WRAP_UP (NULL otherwise) and the reopen
-- window of the agent who ended it, which its CLOSED event records. The partial index
-- serves the sweeper's "nearest deadline" and "due now" reads.
ALTER TABLE conversations ADD COLUMN wrap_up_limit_us BIGINT NOT NULL DEFAULT 0;
ALTER TABLE conversations ADD COLUMN wrap_up_deadline BIGINT;
ALTER TABLE conversations ADD COLUMN wrap_up_reopen_window_secs BIGINT NOT NULL DEFAULT 0;
CREATE INDEX conversations_wrap_up_due ON conversations (wrap_up_deadline)
    WHERE wrap_up_deadline IS NOT NULL;
