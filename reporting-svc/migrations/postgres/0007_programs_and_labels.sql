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

-- Each conversation's status label now, for the open-conversations report, which counts
-- the open ones per queue and label from this index alone. Facts folded before keep no
-- label until `reporting-svc rebuild` folds the log again (docs/operations.md).
ALTER TABLE conversation_facts ADD COLUMN status_label_id TEXT NOT NULL DEFAULT '';
CREATE INDEX conversation_facts_open ON conversation_facts (tenant_id, queue_id, status_label_id, channel, created_at)
WHERE closed_at IS NULL;
