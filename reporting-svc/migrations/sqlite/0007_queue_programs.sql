-- The program of every queue a conversation was in, from conversation-svc's events (a
-- queue's program never changes): a report filtered by program reads the queues of those
-- programs, so that routing's counts, which name only the queue, are filtered too.
CREATE TABLE queue_programs (
    tenant_id  TEXT NOT NULL,
    queue_id   TEXT NOT NULL,
    program_id TEXT NOT NULL,
    PRIMARY KEY (tenant_id, queue_id)
);
CREATE INDEX queue_programs_by_program ON queue_programs (tenant_id, program_id);

-- What was folded before: every queue with a counted conversation event.
INSERT INTO queue_programs (tenant_id, queue_id, program_id)
SELECT DISTINCT tenant_id, queue_id, program_id FROM rollups
WHERE queue_id <> '' AND program_id <> ''
ON CONFLICT (tenant_id, queue_id) DO NOTHING;
